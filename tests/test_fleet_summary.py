"""One partition's plan reads O(1) objects through the fleet summary; a stale or tampered summary
never lets through a write the full fresh path refuses."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest import DEPLOY_DEFAULTS, DEPLOY_TEMPLATE, build_project
from front50_schema import session
from s3support import BUCKET, object_keys, workspace_of

from pipeline_sync import catalog as catalog_module
from pipeline_sync import engine
from pipeline_sync.engine import Selection
from pipeline_sync.fleet_summary import FleetSummary, Related
from pipeline_sync.identity import pipeline_id_for
from pipeline_sync.status import Status
from pipeline_sync.store.front50 import change_marker_body
from pipeline_sync.store.s3 import RequestCounter, S3Store
from pipeline_sync.store.select import open_store
from pipeline_sync.store.sql import SqlStore

KEY = "svc0/prod/deploy"
pytest_plugins = ("front50_schema",)
OTHER_ID = "0b0b0b0b-0000-4000-8000-000000000000"
STACKS = {"dev": {"pipelines": ["deploy"]}, "prod": {"pipelines": ["deploy"]}}


def fleet(root: Path, services: int) -> Path:
    project = build_project(
        root,
        defaults=DEPLOY_DEFAULTS,
        services={f"svc{i}": {"stacks": STACKS} for i in range(services)},
        templates={"deploy": DEPLOY_TEMPLATE},
    ).root
    return project


def apply_all(project: Path, store: S3Store) -> None:
    workspace = workspace_of(project)
    plan = engine.plan(workspace, store)
    approved = {k: e.digest for k, e in plan.entries.items() if e.actionable}
    assert {r.outcome for r in engine.apply(workspace, store, approved, approver="alice")} == {"applied"}


def change_description(project: Path) -> None:
    path = project / "catalog" / "defaults.yaml"
    path.write_text(path.read_text().replace("description: plain", "description: changed"))


def counted(store: S3Store, action: Callable[[], object]) -> dict[str, int]:
    counter = RequestCounter()
    store.client.meta.events.register("before-call.s3", counter)
    try:
        action()
    finally:
        store.client.meta.events.unregister("before-call.s3", counter)
    return counter.counts


def front50_writes(store: S3Store, pipeline_id: str, document: dict[str, object]) -> None:
    """A write as Front50 makes one (Deck, its API): the object, then its marker."""
    store.client.put_object(Bucket=BUCKET, Key=store.pipeline_key(pipeline_id), Body=json.dumps(document))
    store.client.put_object(
        Bucket=BUCKET, Key=store.marker_key("pipelines"), Body=change_marker_body(1_900_000_000_000)
    )


def summary_of(store: S3Store) -> FleetSummary:
    body = store.client.get_object(Bucket=BUCKET, Key=store.summary_key)["Body"].read()
    summary = FleetSummary.from_bytes(body)
    assert summary is not None
    return summary


def tamper(store: S3Store, edit: Callable[[FleetSummary], FleetSummary]) -> None:
    """Rewrite the summary by hand, witness kept current: what a person with the bucket could do."""
    witness = store.client.head_object(Bucket=BUCKET, Key=store.marker_key("pipelines"))["ETag"]
    forged = edit(summary_of(store))
    forged = FleetSummary(str(witness), forged.entries)
    store.client.put_object(Bucket=BUCKET, Key=store.summary_key, Body=forged.to_bytes())


def fresh_store(store: S3Store) -> S3Store:
    """A new run: nothing kept in memory from earlier runs."""
    return S3Store(store.settings, client=store.client)


@pytest.mark.parametrize("services", [3, 12])
def test_one_partition_reads_three_objects_however_large_the_fleet(
    store: S3Store, tmp_path: Path, services: int
) -> None:
    project = fleet(tmp_path / "p", services)
    apply_all(project, store)
    change_description(project)
    workspace = workspace_of(project)
    full = engine.plan(workspace, fresh_store(store)).entries[KEY]
    run = fresh_store(store)
    narrow: dict[str, object] = {}
    counts = counted(run, lambda: narrow.update(engine.plan(workspace, run, Selection.of([KEY])).entries))
    # Front50's marker (the summary's witness), the summary, and the object at KEY's id.
    assert counts == {"GetObject": 3}
    assert narrow[KEY] == full and full.status is Status.UPDATE


def test_a_publish_keeps_the_summary_current_for_the_next_run(store: S3Store, tmp_path: Path) -> None:
    project = fleet(tmp_path / "p", 4)
    apply_all(project, store)
    change_description(project)
    workspace = workspace_of(project)
    entry = engine.plan(workspace, fresh_store(store), Selection.of([KEY])).entries[KEY]
    run = fresh_store(store)
    results: list[engine.ApplyResult] = []
    counts = counted(
        run, lambda: results.extend(engine.apply(workspace, run, {KEY: entry.digest}, approver="a"))
    )
    assert [r.outcome for r in results] == ["applied"]
    assert "ListObjectsV2" in counts  # the applications listing only: no pipeline is listed
    assert sum(counts.values()) <= 10, counts
    again = fresh_store(store)
    after: dict[str, object] = {}
    counts = counted(again, lambda: after.update(engine.plan(workspace, again, Selection.of([KEY])).entries))
    assert counts == {"GetObject": 3}
    assert after[KEY].status is Status.IN_SYNC  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b'{"format": 99}', b'{"format": 1, "witness": "x", "pipelines": {"a": [1, 2]}}'],
)
def test_an_unreadable_summary_is_rebuilt_and_the_plan_is_the_same(
    store: S3Store, tmp_path: Path, body: bytes
) -> None:
    project = fleet(tmp_path / "p", 3)
    apply_all(project, store)
    change_description(project)
    workspace = workspace_of(project)
    store.client.put_object(Bucket=BUCKET, Key=store.summary_key, Body=body)
    narrow = engine.plan(workspace, fresh_store(store), Selection.of([KEY])).entries[KEY]
    assert narrow == engine.plan(workspace, fresh_store(store)).entries[KEY]
    assert set(summary_of(store).entries) == {
        pipeline_id_for(f"svc{i}/{s}/deploy") for i in range(3) for s in ("dev", "prod")
    }


# -- a summary may only speed up a plan: it never lets a write through --------------------------


def _claims_ours(store: S3Store) -> None:
    """The object at KEY's id is replaced by a person's unmanaged pipeline (no Front50 marker bump),
    and the summary is forged to vouch for it at its new version."""
    pid = pipeline_id_for(KEY)
    document = {"id": pid, "application": "svc0", "name": "deploy-prod", "stages": []}
    store.client.put_object(Bucket=BUCKET, Key=store.pipeline_key(pid), Body=json.dumps(document))
    etag = store.client.head_object(Bucket=BUCKET, Key=store.pipeline_key(pid))["ETag"]
    tamper(store, lambda s: s.with_object(pid, (etag, "svc0", "deploy-prod", KEY), s.witness))


def _stale_hides_a_collision(store: S3Store) -> None:
    """KEY's pipeline is gone (a create), and Front50 saved another pipeline with its name since
    the summary was written."""
    store.client.delete_object(Bucket=BUCKET, Key=store.pipeline_key(pipeline_id_for(KEY)))
    front50_writes(store, OTHER_ID, {"id": OTHER_ID, "application": "svc0", "name": "Deploy-Prod"})


def _forged_hides_a_collision(store: S3Store) -> None:
    """As above, with the summary forged current and the colliding pipeline left out of it."""
    _stale_hides_a_collision(store)
    run = fresh_store(store)
    run.read_related(Related.of([pipeline_id_for(KEY)], [], []))  # rebuilds it, with the collision
    tamper(store, lambda s: s.with_object(OTHER_ID, None, s.witness))


def _forged_hides_a_rename_collision(store: S3Store) -> None:
    """The catalog renames KEY's pipeline onto the name of a pipeline the forged summary leaves out."""
    front50_writes(store, OTHER_ID, {"id": OTHER_ID, "application": "svc0", "name": "deploy-later-prod"})
    fresh_store(store).read_related(Related.of([pipeline_id_for(KEY)], [], []))
    tamper(store, lambda s: s.with_object(OTHER_ID, None, s.witness))


@pytest.mark.parametrize(
    ("arrange", "rename", "refusal"),
    [
        (_claims_ours, False, "is not managed by pipeline-sync"),
        (_stale_hides_a_collision, False, "another live pipeline (0b0b0b0b"),
        (_forged_hides_a_collision, False, "another live pipeline (0b0b0b0b"),
        (_forged_hides_a_rename_collision, True, "another live pipeline (0b0b0b0b"),
    ],
)
def test_a_stale_or_forged_summary_never_lets_a_write_through(
    store: S3Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    arrange: Callable[[S3Store], None],
    rename: bool,
    refusal: str,
) -> None:
    project = fleet(tmp_path / "p", 3)
    apply_all(project, store)
    engine.plan(workspace_of(project), fresh_store(store))  # the summary, as a fleet plan leaves it
    arrange(store)
    if rename:
        template = project / "templates" / "deploy.yaml.j2"
        template.write_text(
            template.read_text().replace('"deploy-{{ stack }}"', '"deploy-later-{{ stack }}"')
        )
    workspace = workspace_of(project)
    before = {k: store.client.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in object_keys(store)}
    # The digest of the write the forgery is after (a conflict's digest is that of its write too).
    attempted = engine.plan(workspace, fresh_store(store), Selection.of([KEY])).entries[KEY]
    narrow = engine.apply(workspace, fresh_store(store), {KEY: attempted.digest}, approver="alice")[0]
    monkeypatch.setattr(engine, "NARROW_MAX", 0)  # the full fresh path: every object listed
    full = engine.fresh_plan(workspace, fresh_store(store), [KEY]).entries[KEY]
    assert full.status is Status.CONFLICT and refusal in full.messages[0]
    assert narrow.outcome in {"failed", "stale"} and narrow.status == str(Status.CONFLICT), narrow
    after = {k: store.client.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in object_keys(store)}
    assert after == before


# -- the SQL store: its own columns are the index ----------------------------------------------


def _row(pipeline_id: str, application: str, name: str, **extra: object) -> bytes:
    return json.dumps({"id": pipeline_id, "application": application, "name": name, **extra}).encode()


@pytest.mark.parametrize("listed", [False, True])
def test_sql_reads_only_the_rows_a_few_keys_need(front50_sql: str, listed: bool) -> None:
    store = open_store(front50_sql, {})
    assert isinstance(store, SqlStore)
    marker = {"pipelineSync": {"key": "svc/prod/deploy_x"}}
    rows = {
        "ours": _row("ours", "svc", "deploy-prod"),
        "clash": _row("clash", "SVC", "  Deploy-Prod"),  # Front50 trims and ignores case
        "claims": _row("claims", "other", "copy", **marker),
        "like-wildcard": _row("like-wildcard", "other", "n", pipelineSync={"key": "svc/prod/deployXx"}),
        "unrelated": _row("unrelated", "svc", "deploy-dev"),
        "renamed-column": _row("renamed-column", "svc", "deploy-prod-2"),
    }
    for pipeline_id, body in rows.items():
        store.put_pipeline(pipeline_id, body, if_match=None)
    with session(front50_sql, autocommit=True) as db:  # a name column out of step with its body
        db.execute("UPDATE pipelines SET name = 'x' WHERE id = 'renamed-column'")
    related = Related.of(["ours"], [("svc", "deploy-prod-2"), ("svc", "deploy-prod")], ["svc/prod/deploy_x"])
    found = store.read_related(related, listed=listed)
    expected = {"ours", "clash", "claims"} | ({"renamed-column"} if listed else set())
    assert set(found) == expected
    assert found["clash"].summary.name == "  Deploy-Prod"  # parsed from the row's body


def test_a_summary_it_may_not_read_costs_a_listing_not_the_plan(
    store: S3Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = fleet(tmp_path / "p", 3)
    apply_all(project, store)
    change_description(project)
    workspace = workspace_of(project)
    full = engine.plan(workspace, fresh_store(store)).entries[KEY]
    real = store.client.get_object

    def get_object(**kwargs: Any) -> Any:
        if kwargs["Key"] == store.summary_key:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "denied"}}, "GetObject")
        return real(**kwargs)

    monkeypatch.setattr(store.client, "get_object", get_object)
    run = fresh_store(store)
    narrow: dict[str, object] = {}
    counts = counted(run, lambda: narrow.update(engine.plan(workspace, run, Selection.of([KEY])).entries))
    assert narrow[KEY] == full
    assert counts["ListObjectsV2"] == 1


def test_one_partition_merges_the_variables_of_its_own_stack_alone(
    store: S3Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A target's context is merged when first asked for: one partition's plan and publish merge
    the variables of its service's stacks (its siblings are rendered too, for the collision check),
    not the fleet's (the merge was most of loading the catalog's targets)."""
    project = fleet(tmp_path / "p", 12)
    apply_all(project, store)
    change_description(project)
    merged: list[int] = []  # one per service stack's merge (defaults.yaml's stacks are merged at load)
    real_merge = catalog_module.merge_layers
    monkeypatch.setattr(
        catalog_module,
        "merge_layers",
        lambda *layers: (merged.append(1) if len(layers) == 3 else None) or real_merge(*layers),
    )
    workspace = workspace_of(project)
    assert merged == []  # loading merges no service's variables
    entry = engine.plan(workspace, fresh_store(store), Selection.of([KEY])).entries[KEY]
    assert entry.status is Status.UPDATE and len(merged) == len(STACKS)
    assert "settings" not in workspace.catalog.__dict__  # validate's variable settings: never asked
    results = engine.apply(workspace_of(project), fresh_store(store), {KEY: entry.digest}, approver="a")
    assert [r.outcome for r in results] == ["applied"] and len(merged) == 2 * len(STACKS)
    full = engine.plan(workspace_of(project), fresh_store(store))
    assert len(merged) == (2 + 12) * len(STACKS) and len(full.entries) == 12 * len(STACKS)
