"""Drift classification (Deck, catalog, both) and orphan deletes, through the core API against moto."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner
from s3support import BUCKET, workspace_of

from pipeline_sync import engine
from pipeline_sync.cli import compute_plan, main
from pipeline_sync.engine import Selection
from pipeline_sync.plan import Plan, PlanEntry, fleet_summary
from pipeline_sync.status import AUTO_APPROVABLE, Status
from pipeline_sync.store.s3 import S3Store

KEY = "checkout/prod/deploy"
ORPHANS = ["notifications/dev/deploy", "notifications/prod/deploy"]
DECK_FIELD = "root['limitConcurrent']"
CATALOG_FIELDS = (
    "root['expectedArtifacts']['<id>']['defaultArtifact']['version'], "
    "root['expectedArtifacts']['<id>']['matchArtifact']['version']"
)


def versioned(store: S3Store) -> S3Store:
    store.client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return store


def apply_everything(project: Path, store: S3Store) -> None:
    plan = engine.plan(
        workspace_of(project), store, Selection.of(sorted(workspace_of(project).catalog.targets))
    )
    approved = {k: e.digest for k, e in plan.entries.items() if e.actionable}
    assert {r.outcome for r in engine.apply(workspace_of(project), store, approved, approver="a")} == {
        "applied"
    }


def deck_edit(store: S3Store, pipeline_id: str, **change: object) -> None:
    """What saving in Deck does: new content, server fields restamped, marker kept."""
    live = store.read_pipeline(pipeline_id)
    assert live is not None and live.document is not None
    edited = {**live.document, **change, "lastModifiedBy": "dave", "updateTs": "1"}
    store.client.put_object(Bucket=BUCKET, Key=live.key, Body=json.dumps(edited).encode())


def bump_chart(project: Path) -> None:
    defaults = project / "catalog" / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace("chart_version: 1.4.0", "chart_version: 1.4.1"))


def entry_of(project: Path, store: S3Store, key: str = KEY) -> PlanEntry:
    return engine.plan(workspace_of(project), store, Selection.of([key])).entries[key]


def blank_ids(text: str) -> str:
    """Artifact ids are UUIDs derived from the pipeline id: name them <id> in expectations."""
    return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<id>", text)


def test_deck_only_drift_names_the_fields_and_shows_the_persons_values(project: Path, store: S3Store) -> None:
    apply_everything(project, store)
    entry = entry_of(project, store)
    deck_edit(store, entry.pipeline_id or "", limitConcurrent=False)
    drift = entry_of(project, store)
    assert (drift.status, drift.drift_kind, drift.drift_fields) == (Status.DRIFT, "deck", (DECK_FIELD,))
    assert drift.messages == (
        f"changed in Deck since pipeline-sync wrote it; applying overwrites these fields: {DECK_FIELD}",
    )
    assert "new_value: false" in drift.drift_yaml and "old_value: true" in drift.drift_yaml


@pytest.mark.parametrize("deck_edits", [1, 3])
def test_both_with_versioning_separates_the_persons_fields(
    project: Path, store: S3Store, deck_edits: int
) -> None:
    apply_everything(project, versioned(store))
    pipeline_id = entry_of(project, store).pipeline_id or ""
    for _ in range(deck_edits):
        deck_edit(store, pipeline_id, limitConcurrent=False)
    bump_chart(project)
    drift = entry_of(project, store)
    assert (drift.status, drift.drift_kind, drift.drift_fields) == (Status.DRIFT, "both", (DECK_FIELD,))
    assert [blank_ids(m) for m in drift.messages] == [
        f"changed in Deck since pipeline-sync wrote it (a person changed {DECK_FIELD}) and in the "
        f"catalog/templates (which change {CATALOG_FIELDS}); applying overwrites the person's fields: "
        "carry a hotfix into the catalog first if it should stay"
    ]
    assert "limitConcurrent" in drift.drift_yaml and "1.4.1" not in drift.drift_yaml
    assert "1.4.1" in drift.diff_yaml and "limitConcurrent" in drift.diff_yaml  # the diff shows both


def test_both_without_versioning_says_the_fields_cannot_be_separated(project: Path, store: S3Store) -> None:
    apply_everything(project, store)
    deck_edit(store, entry_of(project, store).pipeline_id or "", limitConcurrent=False)
    bump_chart(project)
    drift = entry_of(project, store)
    assert (drift.status, drift.drift_kind, drift.drift_fields, drift.drift_yaml) == (
        Status.DRIFT,
        "both",
        (),
        "",
    )
    assert drift.messages == (
        "changed in Deck and in the catalog/templates since pipeline-sync wrote it; the fields a person "
        "changed can't be separated from the catalog's change: no version pipeline-sync wrote was found "
        "in the bucket's history (that needs S3 versioning). The diff shows both; check it for a hotfix "
        "to carry into the catalog.",
    )


def test_catalog_only_change_is_an_update_not_drift(project: Path, store: S3Store) -> None:
    apply_everything(project, versioned(store))
    bump_chart(project)
    entry = entry_of(project, store)
    assert (entry.status, entry.drift_kind, entry.drift_fields) == (Status.UPDATE, None, ())


def test_cli_plan_separates_drift_too(project: Path, store: S3Store) -> None:
    apply_everything(project, versioned(store))
    deck_edit(store, entry_of(project, store).pipeline_id or "", limitConcurrent=False)
    bump_chart(project)
    plan = compute_plan(workspace_of(project), store, KEY)
    assert plan.entries[KEY].drift_fields == (DECK_FIELD,)


def test_history_lookup_costs_nothing_without_drift(project: Path, store: S3Store) -> None:
    apply_everything(project, versioned(store))
    bump_chart(project)
    calls: list[str] = []
    store.client.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    engine.plan(workspace_of(project), store, Selection.of(sorted(workspace_of(project).catalog.targets)))
    assert "GetBucketVersioning" not in calls and "ListObjectVersions" not in calls


# -- orphans and deletes ----------------------------------------------------------------------


def prune_notifications(project: Path) -> None:
    (project / "catalog" / "services" / "notifications.yaml").unlink()
    defaults = project / "catalog" / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace("prune: false", "prune: true"))


def full_plan(project: Path, store: S3Store) -> Plan:
    return compute_plan(workspace_of(project), store, None)


def test_deletes_need_approval_and_are_listed_separately(project: Path, store: S3Store) -> None:
    apply_everything(project, store)
    prune_notifications(project)
    bump_chart(project)
    plan = compute_plan(workspace_of(project), store, None)
    deletes = {k: e for k, e in plan.entries.items() if e.status is Status.DELETE}
    assert sorted(deletes) == ORPHANS
    assert fleet_summary(plan)["delete"] == ORPHANS
    assert deletes[ORPHANS[0]].messages == (
        "no longer in the catalog, and pruning is on: deleting it needs approval like any change",
    )
    assert Status.DELETE not in AUTO_APPROVABLE  # a stack's auto policy never approves a delete
    updates = {k: e.digest for k, e in plan.entries.items() if e.status is Status.UPDATE}
    engine.apply(workspace_of(project), store, updates, approver="a")
    for entry in deletes.values():  # approved nothing for them: still there
        assert store.read_pipeline(entry.pipeline_id or "") is not None


def test_cli_plan_lists_deletes_on_their_own_line(
    project: Path, store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_everything(project, store)
    prune_notifications(project)
    monkeypatch.setenv("PIPELINE_SYNC_BUCKET", BUCKET)
    args = ["--catalog", str(project / "catalog"), "--templates", str(project / "templates"), "plan"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert f"Deletes (2): {', '.join(ORPHANS)}" in result.output.splitlines()
    assert "Summary: 2 delete, 11 in-sync" in result.output


@pytest.mark.parametrize("when", ["after the plan", "just before the delete"])
def test_delete_goes_through_compare_and_swap(project: Path, store: S3Store, when: str) -> None:
    apply_everything(project, store)
    prune_notifications(project)
    entry = full_plan(project, store).entries[ORPHANS[0]]
    pipeline_id = entry.pipeline_id or ""
    if when == "after the plan":
        deck_edit(store, pipeline_id, description="still needed, says dave")
    else:  # after apply has re-planned and found the digest current: only the CAS can catch it
        edits: list[str] = []

        def edit_once(**_: object) -> None:
            if not edits:
                edits.append("done")
                deck_edit(store, pipeline_id, description="still needed, says dave")

        store.client.meta.events.register("before-call.s3.DeleteObject", edit_once)
    [result] = engine.apply(workspace_of(project), store, {entry.key: entry.digest}, approver="a")
    caught_by = "the approved digest" if when == "after the plan" else "is no longer what the plan saw"
    assert result.outcome == "stale" and caught_by in result.message
    after = store.read_pipeline(pipeline_id)
    assert after is not None and after.document is not None
    assert after.document["description"] == "still needed, says dave"


def test_approved_delete_is_applied(project: Path, store: S3Store) -> None:
    apply_everything(project, store)
    prune_notifications(project)
    entry = full_plan(project, store).entries[ORPHANS[1]]
    [deleted] = engine.apply(workspace_of(project), store, {entry.key: entry.digest}, approver="a")
    assert deleted.outcome == "applied" and store.read_pipeline(entry.pipeline_id or "") is None
    assert ORPHANS[1] not in full_plan(project, store).entries


def test_delete_of_an_edited_orphan_says_what_it_discards(project: Path, store: S3Store) -> None:
    apply_everything(project, versioned(store))
    pipeline_id = entry_of(project, store, ORPHANS[0]).pipeline_id or ""
    deck_edit(store, pipeline_id, description="edited by dave")
    prune_notifications(project)
    entry = full_plan(project, store).entries[ORPHANS[0]]
    assert entry.status is Status.DELETE
    assert entry.messages[1] == (
        "a person changed it (root['description']) since pipeline-sync wrote it; deleting discards that too"
    )


def test_unmanaged_pipelines_are_never_delete_entries(project: Path, store: S3Store) -> None:
    body = {"id": "by-hand", "application": "notifications", "name": "manual", "stages": []}
    store.put_pipeline("by-hand", json.dumps(body).encode(), if_match=None)
    apply_everything(project, store)
    prune_notifications(project)
    plan = full_plan(project, store)
    assert all(e.pipeline_id != "by-hand" for e in plan.entries.values())


def test_plan_still_works_when_history_is_forbidden(project: Path, store: S3Store) -> None:
    apply_everything(project, versioned(store))
    deck_edit(store, entry_of(project, store).pipeline_id or "", limitConcurrent=False)
    bump_chart(project)

    def deny(**_: object) -> None:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetBucketVersioning")

    store.client.meta.events.register("before-call.s3.GetBucketVersioning", deny)
    drift = entry_of(project, store)
    assert (drift.status, drift.drift_kind, drift.drift_fields) == (Status.DRIFT, "both", ())


def test_cli_plan_prints_what_the_person_changed(
    project: Path, store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_everything(project, versioned(store))
    deck_edit(store, entry_of(project, store).pipeline_id or "", limitConcurrent=False)
    bump_chart(project)
    monkeypatch.setenv("PIPELINE_SYNC_BUCKET", BUCKET)
    args = ["--catalog", str(project / "catalog"), "--templates", str(project / "templates")]
    result = CliRunner().invoke(main, [*args, "plan", "--select", KEY])
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    start = lines.index(
        "  what a person changed since pipeline-sync wrote it (carry a hotfix into the catalog):"
    )
    assert lines[start + 1 : start + 5] == [
        "    values_changed:",
        "      root['limitConcurrent']:",
        "        new_value: false",
        "        old_value: true",
    ]
