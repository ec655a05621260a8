"""Apply approved plan entries: re-check each digest, then write with compare-and-swap."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline_sync.build import Workspace, render_all
from pipeline_sync.canonical import canonical_json
from pipeline_sync.errors import StalePlanError, StoreError
from pipeline_sync.front50 import WRITER, Front50Store, now_ms
from pipeline_sync.history import written_documents
from pipeline_sync.plan import Plan, PlanEntry, Status, build_plan
from pipeline_sync.provenance import MARKER_FIELD


@dataclass(frozen=True)
class ApplyResult:
    """The outcome of one entry, for the audit trail and the exit code."""

    key: str
    outcome: str  # applied | stale | failed | skipped
    message: str
    status: str | None = None
    etag: str | None = None
    version_id: str | None = None
    approver: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in {"applied", "skipped"}


def current_plan(workspace: Workspace, store: Front50Store, keys: list[str]) -> Plan:
    """The plan for keys as things stand now: fresh render, fresh live listing.

    Where a person edited a pipeline, the version pipeline-sync last wrote is looked up in the
    bucket's history, so the plan can name the person's fields.
    """
    in_catalog = [k for k in keys if k in workspace.catalog.targets]
    outcomes = render_all(workspace, in_catalog)
    live = store.read_live()
    written = written_documents(store, live, keys)
    return build_plan(workspace.catalog, outcomes, live, scope=keys, written=written)


def apply_approved(
    workspace: Workspace,
    store: Front50Store,
    approved: Mapping[str, str],
    *,
    approver: str,
) -> list[ApplyResult]:
    """Apply each key whose approved digest still matches the current plan; refuse the rest.

    approved maps partition key -> the plan digest a person (or policy) approved.
    A failure on one entry never blocks the others.
    """
    try:
        now = current_plan(workspace, store, sorted(approved))
    except StoreError as exc:
        return [ApplyResult(k, "failed", str(exc)) for k in sorted(approved)]
    results = []
    for key in sorted(approved):
        results.append(_apply_one(store, now.entries.get(key), key, approved[key], approver))
    return results


def _apply_one(
    store: Front50Store, entry: PlanEntry | None, key: str, digest: str, approver: str
) -> ApplyResult:
    if entry is None:
        return ApplyResult(key, "stale", f"{key}: no longer planned (it left the catalog and the bucket)")
    if entry.digest != digest:
        return ApplyResult(
            key,
            "stale",
            f"{key}: stale plan: the approved digest {digest[:12]} is not the current plan "
            f"({entry.digest[:12]}, {entry.status}); nothing was written. Plan and approve again.",
            status=str(entry.status),
        )
    if entry.status is Status.IN_SYNC:
        return ApplyResult(key, "skipped", f"{key}: already in sync", status=str(entry.status))
    if not entry.actionable:
        return ApplyResult(
            key,
            "failed",
            f"{key}: {entry.status} entries cannot be applied: " + "; ".join(entry.messages),
            status=str(entry.status),
        )
    try:
        return _write(store, entry, approver)
    except StalePlanError as exc:
        return ApplyResult(key, "stale", f"{key}: {exc}", status=str(entry.status))
    except StoreError as exc:
        return ApplyResult(key, "failed", f"{key}: {exc}", status=str(entry.status))


def _write(store: Front50Store, entry: PlanEntry, approver: str) -> ApplyResult:
    assert entry.pipeline_id is not None
    if entry.status is Status.DELETE:
        assert entry.live_etag is not None
        result = store.delete_pipeline(entry.pipeline_id, if_match=entry.live_etag)
        return ApplyResult(
            entry.key,
            "applied",
            f"{entry.key}: deleted {result.key}",
            "delete",
            None,
            result.version_id,
            approver,
        )
    assert entry.desired is not None and entry.application is not None
    # The application first: if it can't be written, nothing is, and a re-run does both.
    created_app = store.ensure_application(entry.application, entry.email)
    body = stamped_body(entry.desired, approver=approver, plan_digest=entry.digest)
    result = store.put_pipeline(entry.pipeline_id, body, if_match=entry.live_etag)
    note = f" (created application {entry.application})" if created_app else ""
    if result.marker_error:
        note += f"; the change marker was not bumped ({result.marker_error}): Front50 sees it within a minute"
    return ApplyResult(
        entry.key,
        "applied",
        f"{entry.key}: {entry.status} -> {result.key}{note}",
        str(entry.status),
        result.etag,
        result.version_id,
        approver,
    )


def stamped_body(desired: Mapping[str, Any], *, approver: str, plan_digest: str) -> bytes:
    """The bytes to write: server fields Front50 expects, plus who approved which plan.

    writeId makes every write's bytes unique, so a retry that finds "its" bytes in the bucket
    knows they are its own, not an identical write by a racing apply.
    """
    document: dict[str, Any] = copy.deepcopy(dict(desired))
    document["updateTs"] = str(now_ms())
    document["lastModifiedBy"] = WRITER
    document[MARKER_FIELD] = {
        **document[MARKER_FIELD],
        "approvedBy": approver,
        "planDigest": plan_digest,
        "writeId": uuid.uuid4().hex,
    }
    return canonical_json(document).encode("utf-8")
