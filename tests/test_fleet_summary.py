"""One partition's plan reads O(1) objects through the fleet summary; a stale or tampered summary
never lets through a write the full fresh path refuses."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest import DEPLOY_DEFAULTS, DEPLOY_TEMPLATE, build_project
from front50_schema import session
from s3support import BUCKET, object_keys, workspace_of

from pipeline_sync import engine
from pipeline_sync.engine import Selection
from pipeline_sync.fleet_summary import FleetSummary, Related
from pipeline_sync.identity import pipeline_id_for
from pipeline_sync.live import LiveLimits
from pipeline_sync.rendering import Sources
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


# -- a full plan in a fresh pod: the summary vouches for bodies the local cache lacks ----------


def pod(store: S3Store, tmp_path: Path, name: str) -> S3Store:
    """A new run on a new machine: its own empty local cache (vouchers read for any cache miss)."""
    return S3Store(replace(store.settings, cache_dir=tmp_path / name, vouch_min=1), client=store.client)


def plan_view(plan: engine.Plan) -> dict[str, tuple[str, str] | tuple[str, ...]]:
    return {k: (str(e.status), e.digest) for k, e in plan.entries.items()} | {"warnings": plan.warnings}


def truth(workspace: Sources, store: S3Store) -> dict[str, tuple[str, str] | tuple[str, ...]]:
    """The plan from every body, with no local cache and no fleet summary (neither read nor written)."""
    run = S3Store(replace(store.settings, use_cache=False), client=store.client)
    run.read_live_summarised = None  # type: ignore[assignment,method-assign]
    return plan_view(engine.plan(workspace, run))


def vouched_fleet(store: S3Store, tmp_path: Path) -> tuple[Path, S3Store]:
    """A managed fleet of 6 services, its summary written by a full plan, and one pipeline edited
    in Deck (drift) so the next plan must read at least one body."""
    project = fleet(tmp_path / "p", 6)
    apply_all(project, store)
    workspace = workspace_of(project)
    drifted = engine.plan(workspace, store).entries["svc1/dev/deploy"].pipeline_id or ""
    document = store.read_pipeline(drifted).document  # type: ignore[union-attr]
    front50_writes(store, drifted, {**document, "description": "edited in Deck"})
    engine.plan(workspace, pod(store, tmp_path, "writer"))  # writes the summary with vouchers
    return project, store


def test_a_fresh_pod_plans_the_fleet_reading_only_the_bodies_it_must(store: S3Store, tmp_path: Path) -> None:
    project, store = vouched_fleet(store, tmp_path)
    workspace = workspace_of(project)
    expected = truth(workspace, store)
    run = pod(store, tmp_path, "fresh")
    got: dict[str, object] = {}
    counts = counted(run, lambda: got.update(plan_view(engine.plan(workspace, run))))
    assert got == expected
    assert expected["svc1/dev/deploy"][0] == "drift"
    # The marker, the summary and the drifted body (its history is not versioned here): not 12 bodies.
    assert counts.get("GetObject", 0) <= 3, counts


# Each forgery, and whether the plan must open the body it lies about (then the summary it
# rewrites tells the truth again); a lie a plan never looks into (a name) changes no entry.
FORGERIES: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], bool]] = {
    "claims our marker at an older digest": (
        lambda s: {
            **s,
            "marker": {"key": "svc2/dev/deploy", "renderDigest": "0" * 64},
            "content_digest": "1" * 64,
        },
        True,
    ),
    "says someone edited it": (lambda s: {**s, "content_digest": "2" * 64}, True),
    "claims a key the catalog no longer has": (
        lambda s: {**s, "marker": {**s["marker"], "key": "gone/dev/deploy"}},
        False,
    ),
    "says it is not ours": (lambda s: {**s, "marker": None}, False),
    "renames the pipeline": (lambda s: {**s, "name": "someone else's"}, False),
}


@pytest.mark.parametrize(("forge", "opened"), FORGERIES.values(), ids=FORGERIES.keys())
def test_a_forged_voucher_never_changes_a_plan(
    store: S3Store, tmp_path: Path, forge: Callable[[dict[str, Any]], dict[str, Any]], opened: bool
) -> None:
    project, store = vouched_fleet(store, tmp_path)
    workspace = workspace_of(project)
    victim = engine.plan(workspace, store).entries["svc2/dev/deploy"].pipeline_id or ""
    body = json.loads(store.client.get_object(Bucket=BUCKET, Key=store.summary_key)["Body"].read())
    body["summaries"][victim] = forge(body["summaries"][victim])
    store.client.put_object(Bucket=BUCKET, Key=store.summary_key, Body=json.dumps(body).encode())
    expected = truth(workspace, store)
    run = pod(store, tmp_path, "fresh")
    planned = engine.plan(workspace, run)
    if opened:
        assert plan_view(planned) == expected
        # ... and the summary it rewrote vouches for the truth again.
        assert summary_of(store).summaries[victim] == run.read_pipeline(victim).summary  # type: ignore[union-attr]
    else:
        # A lie the plan does not open shows as a conflict at worst, never as a write.
        assert {k: v for k, v in plan_view(planned).items() if k not in {"svc2/dev/deploy", "warnings"}} == {
            k: v for k, v in expected.items() if k not in {"svc2/dev/deploy", "warnings"}
        }
        assert planned.entries["svc2/dev/deploy"].status in {Status.IN_SYNC, Status.CONFLICT}


def test_a_few_cache_misses_are_read_as_bodies_not_through_the_summary(
    store: S3Store, tmp_path: Path
) -> None:
    project, store = vouched_fleet(store, tmp_path)
    workspace = workspace_of(project)
    run = S3Store(replace(store.settings, cache_dir=tmp_path / "few"), client=store.client)  # vouch_min 64
    counts = counted(run, lambda: engine.plan(workspace, run))
    assert counts["GetObject"] == 1 + 12  # the marker, and each of the 12 bodies: no 6 MB summary


def test_a_voucher_is_not_used_for_an_object_that_changed_since(store: S3Store, tmp_path: Path) -> None:
    project, store = vouched_fleet(store, tmp_path)
    workspace = workspace_of(project)
    victim = engine.plan(workspace, store).entries["svc3/prod/deploy"].pipeline_id or ""
    document = store.read_pipeline(victim).document  # type: ignore[union-attr]
    # Edited after the summary was written, without the change marker: the ETag alone tells.
    store.client.put_object(
        Bucket=BUCKET, Key=store.pipeline_key(victim), Body=json.dumps({**document, "name": "renamed"})
    )
    assert plan_view(engine.plan(workspace, pod(store, tmp_path, "fresh"))) == truth(workspace, store)


def test_vouchers_computed_under_other_limits_are_not_used(store: S3Store, tmp_path: Path) -> None:
    project, store = vouched_fleet(store, tmp_path)
    workspace = workspace_of(project)
    run = S3Store(
        replace(store.settings, cache_dir=tmp_path / "other", limits=LiveLimits(max_depth=900), vouch_min=1),
        client=store.client,
    )
    counts = counted(run, lambda: engine.plan(workspace, run))
    assert counts["GetObject"] >= 12  # every body: the summary's were computed under 1,000 levels


def test_a_write_decision_never_reads_the_summary(store: S3Store, tmp_path: Path) -> None:
    project, store = vouched_fleet(store, tmp_path)
    change_description(project)
    workspace = workspace_of(project)
    plan = engine.plan(workspace, pod(store, tmp_path, "planner"))
    approved = {k: e.digest for k, e in plan.entries.items() if e.status is Status.UPDATE}
    assert len(approved) == 11
    # The summary now lies about every object: a write decision must not notice, it reads bodies.
    body = json.loads(store.client.get_object(Bucket=BUCKET, Key=store.summary_key)["Body"].read())
    for summary in body["summaries"].values():
        summary["content_digest"] = "3" * 64
        summary["marker"] = {"key": "svc0/dev/deploy", "renderDigest": "3" * 64}
    store.client.put_object(Bucket=BUCKET, Key=store.summary_key, Body=json.dumps(body).encode())
    run = pod(store, tmp_path, "applier")
    results = engine.apply(workspace, run, approved, approver="alice")
    assert {r.outcome for r in results} == {"applied"}
    after = truth(workspace, store)
    assert after["svc0/prod/deploy"][0] == "in-sync" and after["svc1/dev/deploy"][0] == "drift"


def test_the_next_run_on_the_same_machine_reads_neither_the_summary_nor_the_bodies_again(
    store: S3Store, tmp_path: Path
) -> None:
    project, store = vouched_fleet(store, tmp_path)
    workspace = workspace_of(project)
    engine.plan(workspace, pod(store, tmp_path, "same"))  # vouchers and the drifted body, cached
    again = pod(store, tmp_path, "same")
    counts = counted(again, lambda: engine.plan(workspace, again))
    assert counts.get("GetObject", 0) == 1, counts  # Front50's marker only


def test_a_fresh_read_never_takes_a_cached_voucher(store: S3Store, tmp_path: Path) -> None:
    """The local cache keeps vouchers (summaries without bodies) for the next plan; a write
    decision's read (read_live) treats them as misses and reads the bodies."""
    project, store = vouched_fleet(store, tmp_path)
    run = pod(store, tmp_path, "tampered")
    engine.plan(workspace_of(project), run)
    cache = next((tmp_path / "tampered").glob("*.sqlite"))
    with sqlite3.connect(cache) as db:
        rows = db.execute("SELECT key, summary FROM objects_v3 WHERE body IS NULL").fetchall()
        assert len(rows) >= 10
        for key, text in rows:  # someone with the machine rewrites every voucher: "not ours"
            db.execute(
                "UPDATE objects_v3 SET summary = ? WHERE key = ?",
                (json.dumps({**json.loads(text), "marker": None}), key),
            )
    planned = pod(store, tmp_path, "tampered").read_live_summarised()
    assert sum(1 for o in planned.values() if o.summary.marker is None) >= 10  # the plan's read: believed
    fresh = pod(store, tmp_path, "tampered").read_live()
    assert all(o.summary.marker is not None for o in fresh.values())  # the write decision's: bodies
