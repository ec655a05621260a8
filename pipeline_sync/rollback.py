"""Rollback: plan and apply the restore of an earlier S3 version of a managed pipeline."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pipeline_sync.engine import ApplyResult, write_entry
from pipeline_sync.errors import PipelineSyncError, StalePlanError, StoreError
from pipeline_sync.live import LiveObject
from pipeline_sync.names import split_key
from pipeline_sync.plan import PlanEntry, plan_digest, rollback_entry
from pipeline_sync.provenance import MARKER_FIELD, content_digest, marker_of
from pipeline_sync.status import Status
from pipeline_sync.store import ObjectVersion, Store
from pipeline_sync.validate import validate_pipeline


class RollbackError(PipelineSyncError):
    """A rollback cannot be planned: no versioning, no such version, or nothing to restore."""


# -- planning a rollback ----------------------------------------------------------------------


def plan_rollback(
    store: Store,
    target: str,
    *,
    catalog_id: str | None = None,
    to_version: str | None = None,
) -> PlanEntry:
    """A plan entry that restores an earlier S3 version of a managed pipeline.

    target is a partition key (service/stack/template) or a pipeline id; catalog_id is the
    catalog's id for a partition key, used when no live pipeline carries that key.
    """
    if not store.keeps_history():
        raise RollbackError(
            f"{store.describe()} has no versioning, so it keeps no earlier version to roll "
            "back to. Revert the catalog or template change and apply that instead (and consider "
            "enabling versioning on the bucket, as Front50 does for buckets it creates)."
        )
    key, pipeline_id, live = _locate(store, target, catalog_id)
    versions = store.pipeline_versions(pipeline_id)
    chosen = _choose(store, target, versions, live, to_version)
    key, restored = _restorable(store, key, pipeline_id, chosen)
    if (
        live is not None
        and live.document is not None
        and content_digest(live.document) == content_digest(restored)
    ):
        raise RollbackError(
            f"nothing to roll back: version {chosen.version_id} of {target} has the same content as "
            "the live pipeline. Pick another with --to (see the versions with --list)."
        )
    return rollback_entry(key, pipeline_id, live, restored, chosen.version_id, stack=split_key(key)[1])


def describe_versions(store: Store, target: str, catalog_id: str | None = None) -> list[str]:
    """One line per stored version of target's pipeline, newest first."""
    _, pipeline_id, live = _locate(store, target, catalog_id)
    lines = []
    for version in store.pipeline_versions(pipeline_id):
        current = " (live)" if live is not None and version.etag == live.etag and version.is_latest else ""
        lines.append(f"{version.version_id}  {version.last_modified}{current}")
    return lines


def _locate(store: Store, target: str, catalog_id: str | None) -> tuple[str | None, str, LiveObject | None]:
    """(partition key, pipeline id, live object or None) of target.

    The key is None for a deleted pipeline named by id: its versions' marker says it.
    """
    live = store.read_live()
    if "/" not in target:
        obj = live.get(target.lower())
        if obj is None:
            return None, target.lower(), None
        marker = obj.summary.marker
        if marker is None:
            raise RollbackError(
                f"the live pipeline {target!r} is not managed by pipeline-sync; it is left alone"
            )
        return str(marker["key"]), obj.pipeline_id, obj
    for obj in live.values():
        marker = obj.summary.marker
        if marker is not None and marker["key"] == target:
            return target, obj.pipeline_id, obj
    if catalog_id is None:
        raise RollbackError(
            f"no live pipeline is managed as {target!r}, and it is not in the catalog; "
            "roll back by pipeline id instead"
        )
    existing = live.get(catalog_id.lower())
    if existing is not None:
        raise RollbackError(
            f"the live object at {target}'s id {catalog_id} is not managed as {target!r}; it is left alone"
        )
    return target, catalog_id.lower(), None


def _choose(
    store: Store,
    target: str,
    versions: list[ObjectVersion],
    live: LiveObject | None,
    to_version: str | None,
) -> ObjectVersion:
    current = versions[0] if versions and live is not None and versions[0].etag == live.etag else None
    if to_version is not None:
        for version in versions:
            if version.version_id == to_version:
                if version is current:
                    raise RollbackError(
                        f"version {to_version} is the live version of {target}; nothing to do"
                    )
                return version
        raise RollbackError(
            f"{target} has no version {to_version!r} in {store.describe()}; "
            f"its versions, newest first: {_listing(versions)}"
        )
    earlier = versions[1:] if current is not None else versions
    if not earlier:
        raise RollbackError(
            f"{target} has no earlier version to roll back to in {store.describe()} "
            f"(versions: {_listing(versions)})"
        )
    return earlier[0]


def _listing(versions: list[ObjectVersion]) -> str:
    return ", ".join(f"{v.version_id} ({v.last_modified})" for v in versions) or "none"


def _restorable(
    store: Store, key: str | None, pipeline_id: str, version: ObjectVersion
) -> tuple[str, dict[str, Any]]:
    """(key, the version's document), when it is a valid pipeline pipeline-sync wrote for key."""
    obj = store.read_pipeline_version(pipeline_id, version.version_id)
    return restorable_document(obj, key, f"version {version.version_id} of {obj.key}")


def restorable_document(obj: LiveObject, key: str | None, where: str) -> tuple[str, dict[str, Any]]:
    """The rules a restored version must meet, when it is planned and again when it is written:
    a pipeline, with pipeline-sync's marker for key, that validates like any render."""
    if obj.document is None or obj.problem:
        raise RollbackError(f"{where} is not a pipeline ({obj.problem}); it cannot be restored")
    marker = marker_of(obj.document)
    if marker is None or marker["key"] != (key or marker["key"]):
        raise RollbackError(
            f"{where} was not written by pipeline-sync for {key or 'this pipeline'} "
            f"(no matching {MARKER_FIELD} marker); "
            "restore it by hand from the bucket's history if you really mean it"
        )
    key = str(marker["key"])
    problems = validate_pipeline(key, obj.document)
    if problems:
        raise RollbackError(f"{where} is not a valid pipeline: " + "; ".join(str(p) for p in problems))
    return key, obj.document


# -- applying a rollback ----------------------------------------------------------------------


def apply_rollback(
    store: Store, entry: PlanEntry, *, approver: str, marker: Mapping[str, Any] | None = None
) -> ApplyResult:
    """Write an approved rollback entry back with compare-and-swap, after re-reading both sides.

    The restored version must still be a valid pipeline pipeline-sync wrote for the entry's key
    (a saved plan is a file anyone can edit), and the live version and the restored content must
    still give the approved digest: anything else is refused, and nothing is written.
    """
    version = entry.rollback_version
    assert version is not None
    if entry.pipeline_id is None:
        return ApplyResult(entry.key, "refused", f"{entry.key}: the rollback entry names no pipeline id")
    try:
        live = store.read_pipeline(entry.pipeline_id)
        stored = store.read_pipeline_version(entry.pipeline_id, version)
        _, restored = restorable_document(stored, entry.key, f"version {version} of {stored.key}")
        etag = live.etag if live is not None else None
        if plan_digest(entry.key, etag, restored) != entry.digest:
            return ApplyResult(
                entry.key,
                "stale",
                f"{entry.key}: stale plan: the live pipeline moved since the rollback was planned; "
                "nothing was written. Plan the rollback again.",
                status=str(entry.status),
            )
        status = Status.UPDATE if live is not None else Status.CREATE
        checked = replace(
            entry,
            status=status,
            desired=restored,
            live_etag=etag,
            application=str(restored.get("application")),
            email=None,
        )
        result = write_entry(
            store, checked, approver, extra_marker={**(marker or {}), "restoredFrom": version}
        )
    except RollbackError as exc:
        return ApplyResult(entry.key, "refused", f"{entry.key}: {exc}", status=str(entry.status))
    except StalePlanError as exc:
        return ApplyResult(entry.key, "stale", f"{entry.key}: {exc}", status=str(entry.status))
    except StoreError as exc:
        return ApplyResult(entry.key, "failed", f"{entry.key}: {exc}", status=str(entry.status))
    written_to = result.message.partition(" -> ")[2]
    return replace(result, message=f"{entry.key}: rolled back to S3 version {version} -> {written_to}")
