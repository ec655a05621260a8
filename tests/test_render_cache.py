"""The persistent render cache: warm renders are byte-identical, skip Jinja, and go stale exactly when they should."""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DEPLOY_DEFAULTS, DEPLOY_TEMPLATE, MakeProject
from s3support import workspace_of

from pipeline_sync import render_cache
from pipeline_sync.catalog import Target
from pipeline_sync.provenance import managed_texts
from pipeline_sync.render import RenderedPipeline, Renderer
from pipeline_sync.render_cache import CACHE_FILE, RenderCache, context_fingerprint
from pipeline_sync.rendering import RenderOutcome, Sources, render_all

CANARY = "checkout/prod/deploy-canary"
CHECKOUT_PROD = "checkout/prod/deploy"
ALL_TARGETS = 13


@pytest.fixture
def cache_file(aws_env: None, tmp_path: Path) -> Path:
    """Where the render cache of this test lives (aws_env points PIPELINE_SYNC_CACHE_DIR at tmp_path)."""
    return tmp_path / "cache" / CACHE_FILE


@pytest.fixture
def rendered_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The keys Renderer.render runs on (Jinja and YAML), in order, from now on."""
    seen: list[str] = []
    original = Renderer.render

    def counting(self: Renderer, target: Target, **kwargs: Any) -> RenderedPipeline:
        seen.append(target.key)
        return original(self, target, **kwargs)

    monkeypatch.setattr(Renderer, "render", counting)
    yield seen


def canonical_of(outcomes: dict[str, RenderOutcome]) -> dict[str, str]:
    return {k: o.rendered.canonical for k, o in outcomes.items() if o.rendered is not None}


def rerendered(root: Path, seen: list[str]) -> set[str]:
    """The targets a fresh workspace's render_all had to render (the rest came from the cache)."""
    seen.clear()
    render_all(workspace_of(root))
    return set(seen)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_warm_cache_is_byte_identical_and_never_runs_jinja(
    project: Path, cache_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cold = render_all(workspace_of(project))
    assert cache_file.exists() and len(cold) == ALL_TARGETS

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("rendered although the cache is warm")

    monkeypatch.setattr(Renderer, "render", refuse)
    monkeypatch.setattr("pipeline_sync.render.load_yaml", refuse)
    warm = render_all(workspace_of(project))
    assert canonical_of(warm) == canonical_of(cold) and len(canonical_of(warm)) == ALL_TARGETS
    for key, outcome in warm.items():
        assert outcome.rendered is not None and cold[key].rendered is not None
        assert outcome.rendered.document == cold[key].rendered.document
        assert outcome.rendered.pipeline_id == cold[key].rendered.pipeline_id
        assert outcome.rendered.digest == cold[key].rendered.digest
        assert outcome.problems == cold[key].problems and outcome.valid
    # a selection is served from the same rows
    assert canonical_of(render_all(workspace_of(project), [CANARY])) == {CANARY: canonical_of(cold)[CANARY]}


def test_one_query_and_one_transaction_per_run(
    project: Path, cache_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: dict[str, int] = {"select": 0, "store": 0}
    select, store = RenderCache._select, RenderCache.store

    def counted_select(db: sqlite3.Connection, wanted: list[str]) -> list[tuple[Any, ...]]:
        calls["select"] += 1
        return select(db, wanted)

    def counted_store(self: RenderCache, *args: Any, **kwargs: Any) -> None:
        calls["store"] += 1
        store(self, *args, **kwargs)

    monkeypatch.setattr(RenderCache, "_select", staticmethod(counted_select))
    monkeypatch.setattr(RenderCache, "store", counted_store)
    render_all(workspace_of(project))
    assert calls == {"select": 1, "store": 1}
    with sqlite3.connect(cache_file) as db:
        assert db.execute(f"SELECT count(*) FROM {render_cache.TABLE}").fetchone() == (ALL_TARGETS,)
    render_all(workspace_of(project))
    assert calls == {"select": 2, "store": 2}


def texts_of(outcomes: dict[str, RenderOutcome]) -> dict[str, Any]:
    return {k: o.texts for k, o in outcomes.items()}


def spliced_afresh(root: Path, outcomes: dict[str, RenderOutcome]) -> dict[str, Any]:
    catalog_id = workspace_of(root).catalog.catalog_id
    return {
        k: managed_texts(o.rendered.canonical, key=k, source_file=o.target.source_file, catalog_id=catalog_id)
        for k, o in outcomes.items()
        if o.rendered is not None
    }


@pytest.mark.parametrize(
    "damage",
    [
        "derived = 'nope'",
        "derived = '[1]'",
        "managed = NULL",  # a digest without its text
        "derived = json_set(derived, '$.identity', 'application')",  # not a mapping
        "derived = json_set(derived, '$.checksum', 'x')",
    ],
)
def test_derived_columns_that_are_not_what_this_code_writes_leave_the_render_in_use(
    project: Path, cache_file: Path, rendered_keys: list[str], damage: str
) -> None:
    """What a row keeps derived from its render is left out when it is not what this code writes:
    the render is still a hit, read with one parse, with the same identity and texts."""
    cold = render_all(workspace_of(project), with_texts=True)
    assert texts_of(cold) == spliced_afresh(project, cold)
    with sqlite3.connect(cache_file) as db:
        db.execute(f"UPDATE {render_cache.TABLE} SET {damage}")
    rendered_keys.clear()
    warm = render_all(workspace_of(project), with_texts=True)
    assert rendered_keys == []
    assert warm == cold and texts_of(warm) == texts_of(cold)
    assert all(
        o.rendered is not None and o.rendered.identity == cold[k].rendered.identity for k, o in warm.items()
    )


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"a": 1,}', '"a string"'])
def test_a_row_whose_json_is_not_an_object_is_a_miss_even_with_a_forged_checksum(
    project: Path, cache_file: Path, rendered_keys: list[str], text: str
) -> None:
    """A hit that takes a row's derived columns parses nothing, so they are used only for JSON
    sqlite's parser reads as an object: a row whose text is anything else is rendered again, as
    before format 2, whatever its checksum says (here forged to match)."""
    cold = render_all(workspace_of(project), with_texts=True)
    forged_checksum = zlib.crc32(text.encode())
    with sqlite3.connect(cache_file) as db:
        db.execute(
            f"UPDATE {render_cache.TABLE} SET canonical = ?, derived = json_set(derived, '$.checksum', ?)",
            (text, forged_checksum),
        )
    rendered_keys.clear()
    warm = render_all(workspace_of(project), with_texts=True)
    assert sorted(rendered_keys) == sorted(cold)
    assert warm == cold and texts_of(warm) == texts_of(cold)


@pytest.mark.parametrize(
    "text",
    [
        "{}",
        '{"application": "checkout"}',
        '{"id": "x", "name": "deploy"}',
        '{"application": "checkout", "id": "x", "name": ""}',
        '{"application": 7, "id": "x", "name": "deploy"}',
        '{"application": "checkout", "id": null, "name": "deploy"}',
    ],
)
@pytest.mark.parametrize("derived", ["kept", "forged to match", "none"])
def test_a_row_stored_valid_without_a_valid_identity_is_a_miss(
    project: Path, cache_file: Path, rendered_keys: list[str], text: str, derived: str
) -> None:
    """A render stored without problems passed validate_pipeline, so its id, application and name
    are non-empty strings. A row that says otherwise was edited by hand: it is rendered again,
    where a plan read from it failed (KeyError on a missing application). Its derived identity,
    when it is forged to match, is left out as not what this code writes."""
    cold = render_all(workspace_of(project), with_texts=True)
    forged_checksum = zlib.crc32(text.encode())
    identity = {
        "kept": "derived",
        "forged to match": "json_set(derived, '$.identity', json(?))",
        "none": "NULL",
    }
    with sqlite3.connect(cache_file) as db:
        statement = (
            f"UPDATE {render_cache.TABLE} SET canonical = ?, problems = '[]', derived = {identity[derived]}"
        )
        parameters = (text, text) if derived == "forged to match" else (text,)
        db.execute(statement, parameters)
        if derived != "none":
            db.execute(
                f"UPDATE {render_cache.TABLE} SET derived = json_set(derived, '$.checksum', ?)",
                (forged_checksum,),
            )
    rendered_keys.clear()
    warm = render_all(workspace_of(project), with_texts=True)
    if derived == "kept":  # the identity derived from the honest render: no plan fails on it
        assert rendered_keys == []
    else:
        assert sorted(rendered_keys) == sorted(cold)
        assert warm == cold and texts_of(warm) == texts_of(cold)


def test_texts_a_row_kept_for_another_catalog_file_are_spliced_afresh(
    project: Path, cache_file: Path, rendered_keys: list[str]
) -> None:
    """A row's managed texts are taken only for the catalog file and catalog id they were made
    for: kept for another file (here: with other texts), they are spliced again from the render."""
    cold = render_all(workspace_of(project), with_texts=True)
    with sqlite3.connect(cache_file) as db:
        db.execute(
            f"UPDATE {render_cache.TABLE} SET managed = '{{}}', "
            "derived = json_set(json_set(derived, '$.for[0]', 'catalog/services/elsewhere.yaml'), "
            "'$.renderDigest', 'forged')"
        )
    rendered_keys.clear()
    warm = render_all(workspace_of(project), with_texts=True)
    assert rendered_keys == []
    assert texts_of(warm) == texts_of(cold) == spliced_afresh(project, warm)


def test_a_template_edit_invalidates_exactly_its_targets(
    project: Path, cache_file: Path, rendered_keys: list[str]
) -> None:
    assert len(rerendered(project, rendered_keys)) == ALL_TARGETS
    assert rerendered(project, rendered_keys) == set()
    edit(project / "templates" / "deploy-canary.yaml.j2", "Judge the canary at", "Judge canary health at")
    assert rerendered(project, rendered_keys) == {CANARY}
    outcome = render_all(workspace_of(project))[CANARY]
    assert outcome.rendered is not None and "Judge canary health at" in outcome.rendered.canonical
    deploy_keys = {k for k in workspace_of(project).catalog.targets if k.endswith("/deploy")}
    edit(project / "templates" / "deploy.yaml.j2", "application:", "# a comment\napplication:")
    assert rerendered(project, rendered_keys) == deploy_keys


def test_a_catalog_variable_invalidates_exactly_the_targets_that_see_it(
    project: Path, cache_file: Path, rendered_keys: list[str]
) -> None:
    rerendered(project, rendered_keys)
    edit(project / "catalog" / "services" / "notifications.yaml", "messaging/docker-build", "messaging/build")
    assert rerendered(project, rendered_keys) == {"notifications/dev/deploy", "notifications/prod/deploy"}
    edit(project / "catalog" / "defaults.yaml", "replicas: 4", "replicas: 5")  # the prod stack's
    prod = {k for k in workspace_of(project).catalog.targets if k.split("/")[1] == "prod"}
    changed = rerendered(project, rendered_keys)
    # checkout pins replicas for prod itself, so its prod pipelines do not see the stack's value
    assert changed == prod - {CHECKOUT_PROD, CANARY} and changed
    outcome = render_all(workspace_of(project))["search/prod/deploy"]
    assert outcome.rendered is not None and '"replicaCount":5' in outcome.rendered.canonical


def test_map_order_is_part_of_the_key(project: Path, cache_file: Path, rendered_keys: list[str]) -> None:
    """A template may iterate a map: reordering its keys in the catalog is a change."""
    assert context_fingerprint({"a": 1, "b": 2}) != context_fingerprint({"b": 2, "a": 1})
    rerendered(project, rendered_keys)
    edit(
        project / "catalog" / "defaults.yaml",
        "    master: jenkins-main\n    job: common/docker-build",
        "    job: common/docker-build\n    master: jenkins-main",
    )
    assert rerendered(project, rendered_keys) == set(workspace_of(project).catalog.targets)


def test_pinning_an_id_invalidates_the_target_and_what_references_it(
    project: Path, cache_file: Path, rendered_keys: list[str]
) -> None:
    rerendered(project, rendered_keys)
    edit(
        project / "catalog" / "services" / "checkout.yaml",
        "    pipelines: [deploy, deploy-canary]",
        "    pipelines: [deploy, deploy-canary]\n    ids: {deploy: checkout-prod-pinned}",
    )
    assert rerendered(project, rendered_keys) == {CHECKOUT_PROD, CANARY}
    outcomes = render_all(workspace_of(project))
    assert outcomes[CHECKOUT_PROD].rendered is not None and outcomes[CANARY].rendered is not None
    assert outcomes[CHECKOUT_PROD].rendered.pipeline_id == "checkout-prod-pinned"
    assert outcomes[CANARY].rendered.document["triggers"][0]["pipeline"] == "checkout-prod-pinned"


def test_removing_a_referenced_target_is_not_hidden_by_the_cache(
    project: Path, cache_file: Path, rendered_keys: list[str]
) -> None:
    rerendered(project, rendered_keys)
    edit(
        project / "catalog" / "services" / "checkout.yaml",
        "pipelines: [deploy, deploy-canary]",
        "pipelines: [deploy-canary]",
    )
    assert rerendered(project, rendered_keys) == {CANARY}
    outcome = render_all(workspace_of(project))[CANARY]
    assert outcome.rendered is None and "names no catalog target" in outcome.problems[0]


PROMOTE = """\
application: "{{ app_name }}"
name: "promote-{{ stack }}"
stages:
  - refId: "promote"
    type: deployManifest
triggers:
  - type: pipeline
    application: "{{ upstream }}"
    pipeline: "{{ pipeline_id(upstream, stack, 'deploy') }}"
"""


def test_adding_a_target_invalidates_exactly_the_renders_that_reference_it(
    make_project: MakeProject, tmp_path: Path, cache_file: Path, rendered_keys: list[str]
) -> None:
    # "up" fails to load, so pipeline_id() answers its derived id without it being a target.
    project = make_project(
        tmp_path / "p",
        defaults=DEPLOY_DEFAULTS,
        services={
            "svc": {"vars": {"upstream": "up"}, "stacks": {"dev": {"pipelines": ["deploy", "promote"]}}},
            "other": {},
            "up": "name: up\nbroken: [\n",
        },
        templates={"deploy": DEPLOY_TEMPLATE, "promote": PROMOTE},
    )
    root = project.root
    assert rerendered(root, rendered_keys) == {"svc/dev/deploy", "svc/dev/promote", "other/dev/deploy"}
    derived = render_all(workspace_of(root))["svc/dev/promote"]
    assert derived.rendered is not None and derived.valid
    # up becomes a target, its id pinned: only the render that asked for it changes
    project.write_service(
        "up", {"stacks": {"dev": {"pipelines": ["deploy"], "ids": {"deploy": "up-pinned"}}}}
    )
    assert rerendered(root, rendered_keys) == {"svc/dev/promote", "up/dev/deploy"}
    promote = render_all(workspace_of(root))["svc/dev/promote"]
    assert promote.rendered is not None
    assert promote.rendered.document["triggers"][0]["pipeline"] == "up-pinned"
    # a new target nobody references invalidates nothing but itself
    project.write_service("new", {})
    assert rerendered(root, rendered_keys) == {"new/dev/deploy"}
    # and when a reference's answer is unchanged, the stored render is the render
    project.write_service("up", {})
    rerendered(root, rendered_keys)
    fresh = Sources.load(root / "catalog", root / "templates", render_cache=RenderCache.in_memory())
    assert canonical_of(render_all(workspace_of(root))) == canonical_of(render_all(fresh))


def test_render_errors_are_not_cached(
    make_project: MakeProject, tmp_path: Path, cache_file: Path, rendered_keys: list[str]
) -> None:
    root = make_project(
        tmp_path / "p",
        defaults=DEPLOY_DEFAULTS,
        services={"svc": {"vars": {"upstream": "up"}}},
        templates={"deploy": PROMOTE},
    ).root
    for _ in range(2):
        assert rerendered(root, rendered_keys) == {"svc/dev/deploy"}
    outcome = render_all(workspace_of(root))["svc/dev/deploy"]
    assert outcome.rendered is None and "names no catalog target" in outcome.problems[0]


def test_validation_problems_and_fleet_checks_survive_a_warm_cache(
    project: Path, cache_file: Path, rendered_keys: list[str]
) -> None:
    # the canary now takes the deploy pipeline's name: a fleet collision, on top of a stage problem
    edit(
        project / "templates" / "deploy-canary.yaml.j2",
        'name: "deploy-canary-{{ stack }}"',
        'name: "deploy-{{ stack }}"',
    )
    edit(
        project / "templates" / "deploy-canary.yaml.j2",
        "requisiteStageRefIds: [bake]",
        "requisiteStageRefIds: [nowhere]",
    )
    cold = render_all(workspace_of(project))
    rendered_keys.clear()
    warm = render_all(workspace_of(project))
    assert rendered_keys == []
    assert {k: o.problems for k, o in warm.items()} == {k: o.problems for k, o in cold.items()}
    assert any("nowhere" in p for p in warm[CANARY].problems)
    assert any(CANARY in p for p in warm[CHECKOUT_PROD].problems)  # the collision names both
    assert not warm[CANARY].valid and not warm[CHECKOUT_PROD].valid


@pytest.mark.parametrize("line", ['note: "{{ [1, 2, 3] | random }}"', 'note: "{{ lipsum(1) }}"'])
def test_nondeterministic_templates_are_never_cached(
    make_project: MakeProject, tmp_path: Path, cache_file: Path, rendered_keys: list[str], line: str
) -> None:
    template = DEPLOY_TEMPLATE + line + "\n"
    root = make_project(tmp_path / "p", defaults=DEPLOY_DEFAULTS, templates={"deploy": template}).root
    for _ in range(2):
        assert rerendered(root, rendered_keys) == {"svc/dev/deploy"}


def test_contexts_that_are_not_plain_json_are_never_cached(
    make_project: MakeProject, tmp_path: Path, cache_file: Path, rendered_keys: list[str]
) -> None:
    assert context_fingerprint({"when": __import__("datetime").date(2024, 1, 1)}) is None
    assert context_fingerprint({"pair": (1, 2)}) is None
    assert context_fingerprint({"m": {1: "x"}}) is None
    assert context_fingerprint({"x": float("nan")}) is None
    service = "name: svc\nproduct: p\nteam: t\nnamespace: n\ngit_repo: g\nvars: {when: 2024-01-01}\n"
    root = make_project(
        tmp_path / "p",
        defaults=DEPLOY_DEFAULTS,
        services={"svc": service + "stacks:\n  dev: {pipelines: [deploy]}\n"},
        templates={"deploy": DEPLOY_TEMPLATE},
    ).root
    for _ in range(2):
        assert rerendered(root, rendered_keys) == {"svc/dev/deploy"}


def test_a_code_change_invalidates_everything(
    project: Path, cache_file: Path, rendered_keys: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rerendered(project, rendered_keys)
    monkeypatch.setattr(render_cache, "code_fingerprint", lambda: "another version of the renderer")
    assert len(rerendered(project, rendered_keys)) == ALL_TARGETS


def test_cache_off_keeps_nothing_on_disk(
    project: Path, cache_file: Path, rendered_keys: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPELINE_SYNC_CACHE", "off")
    ws = workspace_of(project)
    first = render_all(ws)
    assert len(rendered_keys) == ALL_TARGETS
    assert not cache_file.parent.exists() or not any(cache_file.parent.iterdir())
    rendered_keys.clear()
    assert canonical_of(render_all(ws)) == canonical_of(first)  # in memory, for this workspace
    assert rendered_keys == []
    assert len(rerendered(project, rendered_keys)) == ALL_TARGETS  # a new workspace starts empty


@pytest.mark.parametrize("damage", ["garbage", "truncated", "bad rows"])
def test_a_corrupt_cache_file_is_rebuilt(
    project: Path, cache_file: Path, rendered_keys: list[str], damage: str
) -> None:
    expected = canonical_of(render_all(workspace_of(project)))
    if damage == "garbage":
        cache_file.write_bytes(b"this is not a database" * 500)
    elif damage == "truncated":
        with sqlite3.connect(cache_file) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        data = cache_file.read_bytes()
        cache_file.write_bytes(data[:100] + b"\xff" * (len(data) - 100))
    else:
        with sqlite3.connect(cache_file) as db:
            db.execute(f"UPDATE {render_cache.TABLE} SET canonical = '{{not json', refs = 'nope'")
    rendered_keys.clear()
    assert canonical_of(render_all(workspace_of(project))) == expected
    assert len(rendered_keys) == ALL_TARGETS
    assert rerendered(project, rendered_keys) == set()  # rebuilt: warm again
    assert canonical_of(render_all(workspace_of(project))) == expected


def test_a_cache_of_an_earlier_format_is_dropped_and_never_read(
    project: Path, cache_file: Path, rendered_keys: list[str]
) -> None:
    """Format 1 rows (no derived columns) are not read: the first run renders everything, and the
    old table is gone from the file."""
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(cache_file) as db:
        db.execute(
            "CREATE TABLE renders_v1 (key TEXT PRIMARY KEY, pipeline_id TEXT NOT NULL, canonical TEXT "
            "NOT NULL, problems TEXT NOT NULL, refs TEXT NOT NULL, used INTEGER NOT NULL) WITHOUT ROWID"
        )
        db.execute("INSERT INTO renders_v1 VALUES ('k', 'p', '{}', '[]', '[]', 0)")
    rendered_keys.clear()
    render_all(workspace_of(project))
    assert len(rendered_keys) == ALL_TARGETS
    with sqlite3.connect(cache_file) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {render_cache.TABLE}
    assert render_cache.OLD_TABLES == ("renders_v1",)


def test_an_unwritable_cache_dir_only_costs_speed(
    project: Path, tmp_path: Path, aws_env: None, monkeypatch: pytest.MonkeyPatch, rendered_keys: list[str]
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache dir should be")
    monkeypatch.setenv("PIPELINE_SYNC_CACHE_DIR", str(blocker))
    expected = canonical_of(
        render_all(
            Sources.load(project / "catalog", project / "templates", render_cache=RenderCache.in_memory())
        )
    )
    rendered_keys.clear()
    assert canonical_of(render_all(workspace_of(project))) == expected
    assert len(rendered_keys) == ALL_TARGETS
