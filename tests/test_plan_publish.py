"""Plan statuses and approved publish against moto, through the core API."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from s3support import object_keys, workspace_of

from pipeline_sync import engine
from pipeline_sync.engine import Selection
from pipeline_sync.plan import Plan, build_plan, fleet_summary, plan_digest
from pipeline_sync.provenance import MARKER_FIELD
from pipeline_sync.rendering import render_all
from pipeline_sync.status import Status
from pipeline_sync.store.s3 import S3Store

KEY = "checkout/prod/deploy"


def plan_now(root: Path, store: S3Store, keys: list[str] | None = None) -> Plan:
    ws = workspace_of(root)
    return build_plan(ws.catalog, render_all(ws, keys), store.read_live())


def apply_all(root: Path, store: S3Store, plan: Plan, approver: str = "alice") -> list[str]:
    approved = {k: e.digest for k, e in plan.entries.items() if e.actionable}
    results = engine.apply(workspace_of(root), store, approved, approver=approver)
    return [r.outcome for r in results]


def edit_live(store: S3Store, pipeline_id: str, change: dict[str, object]) -> None:
    live = store.read_pipeline(pipeline_id)
    assert live is not None and live.document is not None
    store.put_pipeline(pipeline_id, json.dumps({**live.document, **change}).encode(), if_match=live.etag)


def test_first_plan_creates_everything_then_in_sync(project: Path, store: S3Store) -> None:
    plan = plan_now(project, store)
    assert set(plan.counts()) == {"create"} and len(plan.entries) == 13
    assert set(apply_all(project, store, plan)) == {"applied"}
    again = plan_now(project, store)
    assert again.counts() == {"in-sync": 13}
    assert not again.has_changes and not again.has_errors


def test_written_object_layout_and_marker(project: Path, store: S3Store) -> None:
    plan = plan_now(project, store, [KEY])
    entry = plan.entries[KEY]
    apply_all(project, store, Plan({KEY: entry}))
    live = store.read_pipeline(entry.pipeline_id or "")
    assert live is not None and live.document is not None
    doc = live.document
    assert live.key == f"front50/pipelines/{entry.pipeline_id}/pipeline-metadata.json"
    assert doc["lastModifiedBy"] == "pipeline-sync" and doc["updateTs"].isdigit()
    assert doc["locked"]["ui"] is True and "catalog/services/checkout.yaml" in doc["locked"]["description"]
    assert doc[MARKER_FIELD]["key"] == KEY
    assert doc[MARKER_FIELD]["approvedBy"] == "alice" and doc[MARKER_FIELD]["planDigest"] == entry.digest
    keys = object_keys(store)
    assert "front50/applications/checkout/application-metadata.json" in keys
    assert "front50/pipelines/last-modified.json" in keys


def test_plan_digest_binds_key_etag_and_content() -> None:
    doc = {"a": 1}
    assert plan_digest("k", None, doc) != plan_digest("k", '"e"', doc)
    assert plan_digest("k", None, doc) != plan_digest("k2", None, doc)
    assert plan_digest("k", None, doc) != plan_digest("k", None, {"a": 2})
    assert plan_digest("k", None, doc) == plan_digest("k", None, {"a": 1})


def test_template_change_is_an_update_and_clusters(project: Path, store: S3Store) -> None:
    apply_all(project, store, plan_now(project, store))
    defaults = project / "catalog" / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace("chart_version: 1.4.0", "chart_version: 1.4.1"))
    plan = plan_now(project, store)
    updates = [k for k, e in plan.entries.items() if e.status is Status.UPDATE]
    assert len(updates) == 10  # search (3 targets) pins its own chart_version
    entry = plan.entries[KEY]
    assert "1.4.1" in entry.diff_yaml and "values_changed" in entry.diff_yaml
    assert re.search(r"^-\s+version: 1\.4\.0$", entry.unified, re.M)
    assert re.search(r"^\+\s+version: 1\.4\.1$", entry.unified, re.M)
    clusters = fleet_summary(plan)["clusters"]
    assert clusters[0]["count"] >= 9


def test_stages_are_matched_by_ref_id(project: Path, store: S3Store) -> None:
    apply_all(project, store, plan_now(project, store, [KEY]))
    live = store.read_pipeline(plan_now(project, store, [KEY]).entries[KEY].pipeline_id or "")
    assert live is not None and live.document is not None
    reordered = {**live.document, "stages": list(reversed(live.document["stages"]))}
    edit_live(store, live.pipeline_id, reordered)
    entry = plan_now(project, store, [KEY]).entries[KEY]
    assert entry.status is Status.DRIFT
    assert "stages" not in entry.diff_yaml  # same stages by refId: only list order changed


def test_deck_edit_is_drift_naming_fields(project: Path, store: S3Store) -> None:
    apply_all(project, store, plan_now(project, store))
    entry = plan_now(project, store, [KEY]).entries[KEY]
    edit_live(
        store,
        entry.pipeline_id or "",
        {"limitConcurrent": False, "lastModifiedBy": "bob", "updateTs": "1"},
    )
    drift = plan_now(project, store, [KEY]).entries[KEY]
    assert drift.status is Status.DRIFT and drift.drift_kind == "deck"
    assert drift.drift_fields == ("root['limitConcurrent']",)


def test_server_fields_are_ignored(project: Path, store: S3Store) -> None:
    apply_all(project, store, plan_now(project, store, [KEY]))
    entry = plan_now(project, store, [KEY]).entries[KEY]
    edit_live(
        store,
        entry.pipeline_id or "",
        {"index": 7, "updateTs": "5", "lastModifiedBy": "x", "schema": "1"},
    )
    assert plan_now(project, store, [KEY]).entries[KEY].status is Status.IN_SYNC


def test_stale_plan_is_refused_and_nothing_written(project: Path, store: S3Store) -> None:
    apply_all(project, store, plan_now(project, store))
    defaults = project / "catalog" / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace("values_branch: release", "values_branch: release-2"))
    plan = plan_now(project, store, [KEY])
    pid = plan.entries[KEY].pipeline_id or ""
    edit_live(store, pid, {"description": "hotfix in Deck"})
    before = store.read_pipeline(pid)
    results = engine.apply(workspace_of(project), store, {KEY: plan.entries[KEY].digest}, approver="a")
    assert results[0].outcome == "stale" and "stale plan" in results[0].message
    after = store.read_pipeline(pid)
    assert before is not None and after is not None and after.etag == before.etag


def test_unmanaged_pipeline_at_same_name_is_conflict_and_untouched(project: Path, store: S3Store) -> None:
    body = {"id": "hand-made", "application": "checkout", "name": "DEPLOY-PROD", "stages": []}
    store.put_pipeline("hand-made", json.dumps(body).encode(), if_match=None)
    plan = plan_now(project, store)
    assert plan.entries[KEY].status is Status.CONFLICT
    assert "hand-made" in plan.entries[KEY].messages[0]
    assert plan.has_errors
    apply_all(project, store, plan)
    live = store.read_pipeline("hand-made")
    assert live is not None and live.document == body


def test_unmanaged_object_at_our_id_is_conflict(project: Path, store: S3Store) -> None:
    pid = plan_now(project, store, [KEY]).entries[KEY].pipeline_id or ""
    store.put_pipeline(pid, json.dumps({"id": pid, "application": "x", "name": "y"}).encode(), if_match=None)
    entry = plan_now(project, store, [KEY]).entries[KEY]
    assert entry.status is Status.CONFLICT and "not managed" in entry.messages[0]


def test_invalid_render_is_invalid_and_cannot_be_applied(project: Path, store: S3Store) -> None:
    (project / "templates" / "deploy.yaml.j2").write_text('name: "{{ missing_var }}"\nstages: []\n')
    plan = plan_now(project, store, [KEY])
    entry = plan.entries[KEY]
    assert entry.status is Status.INVALID and "missing_var" in entry.messages[0]
    results = engine.apply(workspace_of(project), store, {KEY: entry.digest}, approver="a")
    assert results[0].outcome == "failed"
    assert object_keys(store) == []


def test_removed_target_is_orphan_unless_prune(project: Path, store: S3Store) -> None:
    apply_all(project, store, plan_now(project, store))
    (project / "catalog" / "services" / "notifications.yaml").unlink()
    plan = plan_now(project, store)
    orphans = sorted(k for k, e in plan.entries.items() if e.status is Status.ORPHAN)
    assert orphans == ["notifications/dev/deploy", "notifications/prod/deploy"]
    defaults = project / "catalog" / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace("prune: false", "prune: true"))
    plan = plan_now(project, store)
    deletes = {k: e for k, e in plan.entries.items() if e.status is Status.DELETE}
    assert sorted(deletes) == orphans
    apply_all(project, store, Plan(deletes))
    assert plan_now(project, store).counts() == {"in-sync": 11}


def test_broken_service_file_hides_targets_as_unknown(project: Path, store: S3Store) -> None:
    apply_all(project, store, plan_now(project, store))
    (project / "catalog" / "services" / "search.yaml").write_text("name: search\nstacks: [\n")
    plan = plan_now(project, store)
    unknown = sorted(k for k, e in plan.entries.items() if e.status is Status.UNKNOWN)
    assert unknown == ["search/dev/deploy", "search/prod/deploy", "search/stage/deploy"]
    assert not any(e.status in {Status.DELETE, Status.ORPHAN} for e in plan.entries.values())


def test_plan_round_trips_through_json(project: Path, store: S3Store) -> None:
    plan = plan_now(project, store)
    again = Plan.from_json(json.loads(plan.dumps()))
    assert again == plan


def test_current_plan_equals_full_plan_for_a_key(project: Path, store: S3Store) -> None:
    full = plan_now(project, store)
    one = engine.plan(workspace_of(project), store, Selection.of([KEY]))
    assert one.entries[KEY].digest == full.entries[KEY].digest


@pytest.mark.parametrize(
    ("key", "approver", "policy"),
    [(KEY, "alice", False), ("checkout/dev/deploy", engine.AUTO_APPROVER, True)],
)
def test_racing_applies_write_once(
    project: Path, store: S3Store, key: str, approver: str, policy: bool
) -> None:
    plan = plan_now(project, store, [key])
    approved = {key: plan.entries[key].digest}
    first = engine.apply(workspace_of(project), store, approved, approver=approver, policy=policy)
    second = engine.apply(workspace_of(project), store, approved, approver=approver, policy=policy)
    assert [r.outcome for r in first] == ["applied"]
    assert [r.outcome for r in second] == ["stale"]
