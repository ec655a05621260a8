"""A plan's in-sync entries get their digests from texts spliced out of the render's JSON
(provenance.managed_texts) instead of a built and dumped managed document: exactly the same
digests, entries and plans, on edge cases, random documents, a fleet, and tampered render texts."""

from __future__ import annotations

import gc
import json
import random
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_parallel_plan import TEMPLATE, fleet, workspace

from pipeline_sync import plan as plan_module
from pipeline_sync import provenance
from pipeline_sync import rendering as rendering_module
from pipeline_sync.canonical import canonical_json
from pipeline_sync.front50_model import java_trim, stored_value
from pipeline_sync.json_members import json_members
from pipeline_sync.live import LiveObject
from pipeline_sync.plan import Plan, build_plan, spliced_texts
from pipeline_sync.provenance import MARKER_FIELD, managed_document, managed_texts, render_digest_of
from pipeline_sync.render import RenderedPipeline
from pipeline_sync.render_cache import TABLE, RenderCache
from pipeline_sync.rendering import RenderOutcome, Sources, render_all
from pipeline_sync.report import plan_markdown

KEY = "svc/dev/deploy"
SOURCE = "catalog/services/svc.yaml"
BASE = {"application": "svc", "name": "deploy-dev", "stages": [{"refId": "1", "type": "wait"}]}

EDGES: dict[str, dict[str, Any]] = {
    "plain": BASE,
    "a lock of its own": {**BASE, "locked": {"ui": False}},
    "a marker of its own": {**BASE, MARKER_FIELD: {"key": "other/dev/deploy", "renderDigest": "x"}},
    "server fields": {**BASE, "index": 3, "updateTs": "1", "lastModifiedBy": "a", "createTs": 2},
    "Front50 defaults": {**BASE, "schema": "1", "triggers": []},
    "an empty schema": {**BASE, "schema": ""},
    "a padded name": {**BASE, "name": "  deploy-dev\t"},
    "coerced fields": {
        **BASE,
        "disabled": "true",
        "keepWaitingPipelines": 1,
        "stageCounter": 2.0,
        "roles": [1, True, "r"],
        "limitConcurrent": None,
        "email": 7,
    },
    "cron ids": {
        **BASE,
        "regenerateCronTriggerIds": True,
        "triggers": [{"type": "cron", "id": "c1", "cronExpression": "0 0 * * *"}, {"type": "git"}],
    },
    "keys around the inserted ones": {**BASE, "lockedAt": 1, "lock": 2, "pipelineSynced": 3, "pipeline": 4},
    "non-ASCII keys and text": {**BASE, "é": "ü", "Z": "\u2028", 'z"q': "\\n", "emoji": "\U0001f600"},
    "numbers": {**BASE, "big": 10**30, "float": 0.1, "neg": -0.0, "exp": 1e300, "int": -5},
    "deep nesting": {**BASE, "deep": json.loads("[" * 150 + "]" * 150)},
    "a non-string application": {**BASE, "application": 5, "name": None},
}


def _expected(canonical: str, catalog_id: str | None) -> tuple[str, str, Any, Any]:
    document = managed_document(canonical, key=KEY, source_file=SOURCE, catalog_id=catalog_id)
    return (
        str(document[MARKER_FIELD]["renderDigest"]),
        canonical_json(document),
        document["application"],
        document["name"],
    )


@pytest.mark.parametrize("catalog_id", [None, "team-a"])
@pytest.mark.parametrize("name", sorted(EDGES))
def test_managed_texts_are_the_managed_documents_digest_and_json(name: str, catalog_id: str | None) -> None:
    canonical = canonical_json(EDGES[name])
    texts = managed_texts(canonical, key=KEY, source_file=SOURCE, catalog_id=catalog_id)
    assert texts is not None
    digest, body, application, pipeline_name = _expected(canonical, catalog_id)
    assert (texts.render_digest, texts.canonical) == (digest, body)
    assert (texts.application, texts.name) == (application, pipeline_name)
    assert render_digest_of(canonical, key=KEY, source_file=SOURCE) == digest


@pytest.mark.parametrize(
    ("key", "source_file", "catalog_id"),
    [
        ('s"v/dev/d\\eploy', "catalog/services/sü\u2028.yaml", 'té"am\\'),
        ("svc/dev/deploy", 'a "quoted"\tfile.yaml', ""),
    ],
)
def test_managed_texts_write_keys_files_and_catalog_ids_as_json_does(
    key: str, source_file: str, catalog_id: str
) -> None:
    canonical = canonical_json(BASE)
    texts = managed_texts(canonical, key=key, source_file=source_file, catalog_id=catalog_id)
    document = managed_document(canonical, key=key, source_file=source_file, catalog_id=catalog_id)
    assert texts is not None
    assert (texts.render_digest, texts.canonical) == (
        document[MARKER_FIELD]["renderDigest"],
        canonical_json(document),
    )


def _random_value(rng: random.Random, depth: int) -> Any:
    kinds = ["str", "int", "float", "bool", "none"] + (["list", "dict"] if depth < 4 else [])
    kind = rng.choice(kinds)
    if kind == "list":
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == "dict":
        return {_random_key(rng): _random_value(rng, depth + 1) for _ in range(rng.randrange(4))}
    return {
        "str": lambda: rng.choice(["", " x ", "1", "true", "null", "é", "cron", "a\nb"]),
        "int": lambda: rng.choice([0, 1, -1, 3, 2**40]),
        "float": lambda: rng.choice([0.5, 2.0, -1.25, 1e20]),
        "bool": lambda: rng.choice([True, False]),
        "none": lambda: None,
    }[kind]()


FIELDS = [
    "index", "schema", "triggers", "name", "disabled", "roles", "stageCounter", "locked", "type",
    "pipelineSync", "updateTs", "createdAt", "regenerateCronTriggerIds", "keepWaitingPipelines",
    "limitConcurrent", "parameterConfig", "config", "template", "id", "email", "spelEvaluator",
]  # fmt: skip


def _random_key(rng: random.Random) -> str:
    return rng.choice([*FIELDS, "a", "zz", "Ä", "locke", "pipelineSynd"])


def test_managed_texts_on_random_documents() -> None:
    rng = random.Random(19)
    checked = 0
    for _ in range(600):
        document: dict[str, Any] = {"application": "svc", "name": _random_value(rng, 3)}
        for _ in range(rng.randrange(8)):
            document[_random_key(rng)] = _random_value(rng, 0)
        if rng.random() < 0.3:
            document["triggers"] = [
                {"type": rng.choice(["cron", "git"]), "id": _random_value(rng, 4)} for _ in range(2)
            ]
        canonical = canonical_json(document)
        catalog_id = rng.choice([None, "team-a"])
        texts = managed_texts(canonical, key=KEY, source_file=SOURCE, catalog_id=catalog_id)
        assert texts is not None
        digest, body, _, _ = _expected(canonical, catalog_id)
        assert (texts.render_digest, texts.canonical) == (digest, body), canonical
        checked += 1
    assert checked == 600


@pytest.mark.parametrize(
    ("why", "text"),
    [
        ("not an object", '["application"]'),
        ("an empty object", "{}"),
        ("no name", '{"application":"svc"}'),
        ("no application", '{"name":"n"}'),
        ("space between members", '{"application":"svc", "name":"n"}'),
        ("space after a key", '{"application" :"svc","name":"n"}'),
        ("keys out of order", '{"name":"n","application":"svc"}'),
        ("a duplicate key", '{"application":"svc","application":"x","name":"n"}'),
        ("a trailing comma", '{"application":"svc","name":"n",}'),
        ("NaN", '{"application":"svc","name":"n","x":NaN}'),
        ("Infinity", '{"application":"svc","name":"n","x":-Infinity}'),
        ("a truncated text", '{"application":"svc","name":"n'),
        ("trailing text", '{"application":"svc","name":"n"}x'),
        ("a leading space", ' {"application":"svc","name":"n"}'),
    ],
)
def test_texts_that_are_not_compact_sorted_objects_are_left_to_the_document(why: str, text: str) -> None:
    assert managed_texts(text, key=KEY, source_file=SOURCE) is None, why


# --- whole plans: the spliced texts against the built documents (managed_texts switched off) -----


def _plans(
    monkeypatch: pytest.MonkeyPatch,
    catalog: Any,
    outcomes: dict[str, RenderOutcome],
    live: dict[str, LiveObject],
    written: dict[str, dict[str, Any]],
) -> tuple[Plan, Plan]:
    spliced = build_plan(catalog, outcomes, live, written=written)
    with monkeypatch.context() as patched:
        patched.setattr(plan_module, "managed_texts", lambda *args, **kwargs: None)
        built = build_plan(catalog, outcomes, live, written=written)
    return spliced, built


def _assert_identical(spliced: Plan, built: Plan) -> None:
    assert spliced.dumps() == built.dumps()
    assert spliced == built
    assert list(spliced.entries) == list(built.entries)
    assert plan_markdown(spliced) == plan_markdown(built)


@pytest.mark.parametrize("changed", [False, True], ids=["no-op", "template changed"])
def test_a_fleet_plan_is_byte_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, changed: bool
) -> None:
    after, live, written = fleet(tmp_path)
    sources = after if changed else workspace(tmp_path / "same", TEMPLATE)
    spliced, built = _plans(monkeypatch, sources.catalog, render_all(sources), live, written)
    _assert_identical(spliced, built)
    counts = spliced.counts()
    assert counts["create"] > 0 and counts["drift"] > 0
    assert counts["in-sync" if not changed else "update"] > 50


@pytest.mark.parametrize("changed", [False, True], ids=["no-op", "template changed"])
def test_texts_spliced_ahead_of_the_plan_give_the_same_plan(tmp_path: Path, changed: bool) -> None:
    """engine.plan_loading splices the texts while the store is read and hands them in: the
    plan is the one build_plan makes when it splices them itself."""
    after, live, written = fleet(tmp_path)
    sources = after if changed else workspace(tmp_path / "same", TEMPLATE)
    outcomes = render_all(sources)
    ahead = spliced_texts(sources.catalog, outcomes)
    assert sum(t is not None for t in ahead.values()) > 50
    handed = build_plan(sources.catalog, outcomes, live, written=written, texts=ahead)
    _assert_identical(handed, build_plan(sources.catalog, outcomes, live, written=written))


def test_the_cheap_pass_runs_without_the_cyclic_gc_and_the_diffs_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each target's cheap part makes nothing cyclic: the collector is paused there (full
    collections over a fleet plan's heap cost a third of that pass). DeepDiff's trees are cyclic:
    the diffs run with it on, or a template change's thousand diffs would hold all their garbage."""
    after, live, written = fleet(tmp_path)
    enabled: dict[str, set[bool]] = {"cheap": set(), "diff": set()}
    target_entry, changed = plan_module._target_entry, plan_module._changed

    def cheap(*args: Any, **kwargs: Any) -> Any:
        enabled["cheap"].add(gc.isenabled())
        return target_entry(*args, **kwargs)

    def diff(*args: Any, **kwargs: Any) -> Any:
        enabled["diff"].add(gc.isenabled())
        return changed(*args, **kwargs)

    monkeypatch.setattr(plan_module, "_target_entry", cheap)
    monkeypatch.setattr(plan_module, "_changed", diff)
    monkeypatch.setattr(plan_module, "PARALLEL_MIN", 10**9)  # the diffs in this process, to be seen
    assert gc.isenabled()
    the_plan = build_plan(after.catalog, render_all(after), live, written=written)
    assert the_plan.counts()["update"] > 50
    assert enabled == {"cheap": {False}, "diff": {True}}
    assert gc.isenabled()


def test_an_in_sync_entry_builds_no_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources = workspace(tmp_path / "same", TEMPLATE)
    _, live, written = fleet(tmp_path)
    built: list[str] = []

    def counted(canonical: str, **kwargs: Any) -> dict[str, Any]:
        built.append(kwargs["key"])
        return managed_document(canonical, **kwargs)

    monkeypatch.setattr(plan_module, "managed_document", counted)
    the_plan = build_plan(sources.catalog, render_all(sources), live, written=written)
    in_sync = {k for k, e in the_plan.entries.items() if e.status.value == "in-sync"}
    assert len(in_sync) > 50
    # Only an entry in sync once a tighter lock a write keeps is kept builds its document: its
    # live content (the lock) differs from the render's.
    locked_tighter = set()
    for key in in_sync:
        document = live[str(the_plan.entries[key].pipeline_id)].document
        assert document is not None
        if document["locked"]["allowUnlockUi"] is False:
            locked_tighter.add(key)
    assert locked_tighter and {k for k in built if k in in_sync} == locked_tighter


def _respaced(document: dict[str, Any]) -> str:
    """document's JSON with its top-level members compact and sorted (as canonical_json writes
    them) and every value written otherwise: spaces, unsorted keys, escaped characters."""
    members = [
        f"{json.dumps(name)}:{json.dumps(document[name], indent=1, ensure_ascii=True)[::1]}"
        for name in sorted(document)
    ]
    return "{" + ",".join(members) + "}"


@pytest.mark.parametrize("tamper", ["respaced", "content changed", "unsorted top level"])
def test_a_tampered_render_text_plans_exactly_as_the_built_documents_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tamper: str
) -> None:
    """The render cache hands out the render's JSON text: a row edited to hold another text of the
    same document, or another document, gives the plan the built documents give, entry for entry.
    The spliced texts are trusted only when their digest is the live pipeline's."""
    sources = workspace(tmp_path / "same", TEMPLATE)
    _, live, written = fleet(tmp_path)
    outcomes = render_all(sources)
    tampered: dict[str, RenderOutcome] = {}
    for key, outcome in outcomes.items():
        rendered = outcome.rendered
        assert rendered is not None
        document = dict(rendered.document)
        if tamper == "content changed":
            document["description"] = "attacker"
            text = canonical_json(document)
        elif tamper == "respaced":
            document["stages"] = [dict(reversed(list(stage.items()))) for stage in document["stages"]]
            text = _respaced(document)
        else:
            text = json.dumps(dict(reversed(list(document.items()))), separators=(",", ":"))
        assert text != rendered.canonical
        fake = RenderedPipeline(rendered.key, rendered.pipeline_id, json.loads(text), text)
        tampered[key] = RenderOutcome(outcome.target, fake, outcome.problems)
    spliced, built = _plans(monkeypatch, sources.catalog, tampered, live, written)
    _assert_identical(spliced, built)
    honest, _ = _plans(monkeypatch, sources.catalog, outcomes, live, written)
    if tamper == "content changed":
        assert spliced.counts().get("in-sync", 0) == 0
    else:  # the same documents: the same plan as the honest texts give
        _assert_identical(spliced, honest)


def test_json_members_are_json_loads_values_and_canonical_texts() -> None:
    rng = random.Random(7)
    for _ in range(300):
        document = {_random_key(rng): _random_value(rng, 0) for _ in range(rng.randrange(10))}
        canonical = canonical_json(document)
        members = json_members(canonical)
        assert members is not None
        assert {name: value for name, (value, _) in members.items()} == json.loads(canonical)
        assert list(members) == sorted(document)
        for name, (value, text) in members.items():
            assert text == f"{canonical_json(name)}:{canonical_json(value)}"


def _reordered_and_respaced(canonical: str) -> str:
    document = json.loads(canonical)
    document["stages"] = [dict(reversed(list(stage.items()))) for stage in document["stages"]]
    return _respaced(document)


def _indented(canonical: str) -> str:
    return json.dumps(json.loads(canonical), indent=1, sort_keys=True)


@pytest.mark.parametrize(
    ("rewrite", "spliced"),
    [(_reordered_and_respaced, True), (_indented, False)],
    ids=["respaced inside, compact at the top", "indented at the top"],
)
def test_a_render_cache_row_of_another_text_plans_as_the_honest_one(
    tmp_path: Path, rewrite: Callable[[str], str], spliced: bool
) -> None:
    """A cached render's text reaches the plan: a row edited to hold another text of the same
    document plans exactly as the row that was written. Compact and sorted at the top, its texts
    are spliced from the edited text as the row is read (managed_texts, trusted only by digest);
    indented at the top, it is read with json.loads, carries no texts, and the plan builds its
    documents."""
    _, live, written = fleet(tmp_path)
    project = workspace(tmp_path / "same", TEMPLATE)
    cache_file = tmp_path / "render-cache.sqlite"

    def sources() -> Sources:
        return Sources(project.catalog, project.renderer, RenderCache(cache_file))

    honest = build_plan(project.catalog, render_all(sources()), live, written=written)
    with sqlite3.connect(cache_file) as db:
        rows = db.execute(f"SELECT key, canonical FROM {TABLE}").fetchall()
        assert len(rows) == len(project.catalog.targets)
        edited = {rewrite(canonical) for _, canonical in rows}
        for key, canonical in rows:
            db.execute(f"UPDATE {TABLE} SET canonical = ? WHERE key = ?", (rewrite(canonical), key))
    outcomes = render_all(sources(), with_texts=True)
    read = {o.rendered.canonical for o in outcomes.values() if o.rendered is not None}
    assert read == edited  # every render was read from the edited rows
    for key, outcome in outcomes.items():
        assert outcome.rendered is not None
        text = managed_texts(
            outcome.rendered.canonical,
            key=key,
            source_file=outcome.target.source_file,
            catalog_id=project.catalog.catalog_id,
        )
        assert outcome.texts == (text if spliced else None)
    tampered = build_plan(project.catalog, outcomes, live, written=written)
    _assert_identical(tampered, honest)


@pytest.mark.parametrize("changed", [False, True], ids=["no-op", "template changed"])
def test_render_cache_hits_carry_the_texts_a_plan_would_splice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, changed: bool
) -> None:
    """A render and a hit give the plan its managed texts (RenderOutcome.texts): the render as it
    is stored, the hit from what its row keeps (render_cache.Derived), parsing nothing. They are
    managed_texts of the stored render for this catalog, and the plan made with them is byte for
    byte the one made from documents built with no texts at all. A catalog with another id gets
    texts spliced afresh, from one parse."""
    after, live, written = fleet(tmp_path)
    project = after if changed else workspace(tmp_path / "same", TEMPLATE)
    cache_file = tmp_path / "render-cache.sqlite"

    def sources() -> Sources:
        return Sources(project.catalog, project.renderer, RenderCache(cache_file))

    parses: list[str] = []
    members_of = rendering_module.json_members

    def counted(text: str) -> Any:
        parses.append(text)
        return members_of(text)

    monkeypatch.setattr(rendering_module, "json_members", counted)
    missed = render_all(sources(), with_texts=True)
    assert all(o.texts is None for o in render_all(sources()).values())  # not asked for
    hits = render_all(sources(), with_texts=True)
    assert parses == []  # neither a render nor a hit parsed its JSON for the texts
    assert hits == missed
    catalog = project.catalog
    for key, outcome in [*missed.items(), *hits.items()]:
        assert outcome.rendered is not None and outcome.texts is not None
        assert outcome.texts == managed_texts(
            outcome.rendered.canonical,
            key=key,
            source_file=outcome.target.source_file,
            catalog_id=catalog.catalog_id,
        )
    spliced = build_plan(catalog, hits, live, written=written)
    bare = {key: replace(outcome, texts=None) for key, outcome in hits.items()}
    with monkeypatch.context() as patched:
        patched.setattr(plan_module, "managed_texts", lambda *args, **kwargs: None)
        built = build_plan(catalog, bare, live, written=written)
    _assert_identical(spliced, built)
    assert spliced.counts()["in-sync" if not changed else "update"] > 50
    # The texts are spliced for the catalog that reads the row: its id is in the marker.
    named = Sources(replace(catalog, catalog_id="team-a"), project.renderer, RenderCache(cache_file))
    for key, outcome in render_all(named, with_texts=True).items():
        assert outcome.rendered is not None and outcome.rendered.canonical in parses
        assert outcome.rendered is not None and outcome.texts is not None
        assert '"catalog":"team-a"' in outcome.texts.canonical
        assert outcome.texts == managed_texts(
            outcome.rendered.canonical, key=key, source_file=outcome.target.source_file, catalog_id="team-a"
        )


def _old_normalise(document: dict[str, Any]) -> dict[str, Any]:
    """provenance.normalise before it skipped accepts() for fields stored as they are: the oracle."""
    clean: dict[str, Any] = {}
    for key, value in document.items():
        if key in provenance._IGNORED:
            continue
        java_type = provenance._COERCED.get(key)
        if java_type is not None and java_type.accepts(value):
            value = stored_value(java_type, value)
            if value is None:
                continue
        clean[key] = value
    if clean.get("schema") == "":
        del clean["schema"]
    for key, default in provenance.FRONT50_DEFAULTS.items():
        if key in clean and clean[key] == default:
            del clean[key]
    if isinstance(clean.get("name"), str):
        clean["name"] = java_trim(clean["name"])
    if clean.get("regenerateCronTriggerIds") is True and isinstance(clean.get("triggers"), list):
        clean["triggers"] = [provenance._without_cron_id(trigger) for trigger in clean["triggers"]]
    return clean


def test_normalise_is_the_oracles_on_random_documents() -> None:
    rng = random.Random(23)
    typed = [*provenance._AS_IS, "stageCounter", "roles", "disabled", "index"]
    for _ in range(500):
        document = {rng.choice(typed): _random_value(rng, 0) for _ in range(rng.randrange(8))}
        document.update({_random_key(rng): _random_value(rng, 1) for _ in range(rng.randrange(4))})
        assert canonical_json(provenance.normalise(document)) == canonical_json(_old_normalise(document))
