"""Release (un-adopt): restore a managed pipeline as it was before pipeline-sync first wrote it, unmanaged.

`plan_release` finds, in the store's history, the newest version without pipeline-sync's marker
that precedes the current managed run of versions (the pipeline as a person last left it before
import or adopt took it over), plans writing it back as an ordinary entry bound to the live
version, and takes the target out of the catalog. `apply_release` writes it only after a person
approved it (running `apply` is the approval), after re-reading both the live pipeline and that
version: without marker and lock, so the pipeline is unmanaged again. Policy never approves it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline_sync import catalog_edit
from pipeline_sync.canonical import canonical_json
from pipeline_sync.catalog import TEMPLATE_SUFFIX
from pipeline_sync.engine import POLICY_PREFIX, ApplyResult, is_reserved_approver, modifier_of
from pipeline_sync.errors import PipelineSyncError, StalePlanError, StoreError
from pipeline_sync.live import LiveObject
from pipeline_sync.names import split_key
from pipeline_sync.ownership import Owner, ownership
from pipeline_sync.plan import PlanEntry, plan_digest, rollback_entry
from pipeline_sync.provenance import MARKER_FIELD, marker_of
from pipeline_sync.rendering import Sources
from pipeline_sync.safefiles import read_text_file
from pipeline_sync.store import ObjectVersion, Store
from pipeline_sync.store.front50 import now_ms
from pipeline_sync.validate import validate_pipeline

RELEASE_SOURCE = "release:"


class ReleaseError(PipelineSyncError):
    """A release cannot be planned or written: not managed, no earlier version, or it moved."""


@dataclass(frozen=True)
class Release:
    """A planned release: the entry to approve, and the catalog file the target left."""

    entry: PlanEntry
    version_id: str
    service_file: Path
    template_file: str
    catalog_before: str
    catalog_after: str


def release_version(entry: PlanEntry) -> str | None:
    """The stored version a release entry restores, or None for any other entry."""
    if entry.source and entry.source.startswith(RELEASE_SOURCE):
        return entry.source[len(RELEASE_SOURCE) :]
    return None


def plan_release(catalog_dir: Path, templates_dir: Path, store: Store, key: str) -> Release:
    """The release entry of key, and its service file's text without the target (not written yet:
    see take_out_of_catalog)."""
    workspace = Sources.load(catalog_dir, templates_dir)
    catalog = workspace.catalog
    target = catalog.targets.get(key)
    if target is None:
        raise ReleaseError(
            f"{key} is not a target of the catalog; release takes a managed target's key "
            "(`pipeline-sync plan` lists them)"
        )
    pipeline_id = catalog.pipeline_id(key)
    live = store.read_pipeline(pipeline_id)
    if live is None or live.document is None:
        why = "there is none" if live is None else f"it is unreadable ({live.problem})"
        raise ReleaseError(f"no live pipeline can be released at {key}'s id {pipeline_id}: {why}")
    marker = live.summary.marker
    owner = ownership(catalog, pipeline_id, live.summary.application, marker)
    if marker is None or owner.owner is not Owner.OURS or owner.key != key:
        why = owner.reason or f"its marker names {owner.key!r}"
        raise ReleaseError(
            f"the live pipeline {pipeline_id} is not managed by pipeline-sync as {key} ({why}); "
            "there is nothing to release, and it is left alone"
        )
    if not store.keeps_history():
        raise ReleaseError(
            f"{store.describe()} keeps no earlier versions (no bucket versioning), so the pipeline as it was "
            f"before pipeline-sync wrote it cannot be found; {key} is left as it is"
        )
    version, original = before_first_write(store, key, pipeline_id)
    entry = release_entry(key, pipeline_id, live, original, version.version_id)
    path = Path(catalog_dir) / Path(*Path(target.source_file).parts[1:])
    text = read_text_file(path, root=Path(catalog_dir), what="catalog file")
    edited = catalog_edit.remove_target(text, target.source_file, target.stack, target.template)
    template_file = f"{Path(templates_dir).name}/{target.template}{TEMPLATE_SUFFIX}"
    return Release(entry, version.version_id, path, template_file, text, edited)


def take_out_of_catalog(release: Release) -> None:
    """Write the service file without the released target, if it is still as it was planned."""
    current = release.service_file.read_text(encoding="utf-8")
    if current != release.catalog_before:
        raise ReleaseError(
            f"{release.service_file} changed since the release was planned; take {release.entry.key} "
            "out of it by hand"
        )
    release.service_file.write_text(release.catalog_after, encoding="utf-8")


def before_first_write(store: Store, key: str, pipeline_id: str) -> tuple[ObjectVersion, dict[str, Any]]:
    """The newest stored version without a marker before the current run of marked ones: the
    pipeline as it was just before pipeline-sync took it over."""
    versions = store.pipeline_versions(pipeline_id)
    for version in versions:
        stored = store.read_pipeline_version(pipeline_id, version.version_id)
        if stored.document is None:
            raise ReleaseError(
                f"version {version.version_id} of {stored.key} is unreadable ({stored.problem}); the "
                f"pipeline as it was before pipeline-sync wrote {key} cannot be told"
            )
        if MARKER_FIELD not in stored.document:
            return version, dict(stored.document)
    raise ReleaseError(
        f"pipeline-sync created {key} ({len(versions)} stored version{'s' if len(versions) != 1 else ''}, "
        "every one written by pipeline-sync): there is no earlier, unmanaged version to release it to. "
        "Take it out of the catalog (with `prune: true` the next plan deletes it), or delete it in Deck."
    )


def release_entry(
    key: str, pipeline_id: str, live: LiveObject, original: dict[str, Any], version_id: str
) -> PlanEntry:
    """An update entry that writes original back over live; approved and applied like any entry."""
    entry = rollback_entry(key, pipeline_id, live, original, version_id, stack=split_key(key)[1])
    return replace(
        entry,
        source=f"{RELEASE_SOURCE}{version_id}",
        messages=(
            f"releases {key}: restores version {version_id}, the pipeline as it was before pipeline-sync "
            "first wrote it, without pipeline-sync's lock and marker; it is unmanaged once applied",
        ),
    )


def apply_release(store: Store, entry: PlanEntry, *, approver: str) -> ApplyResult:
    """Write an approved release entry with compare-and-swap, after re-reading both sides."""
    version = release_version(entry)
    status = str(entry.status)
    if version is None or entry.pipeline_id is None:
        return ApplyResult(entry.key, "refused", f"{entry.key}: not a release entry", status=status)
    if is_reserved_approver(approver):
        message = (
            f"{entry.key}: a release needs a person; approver names beginning with {POLICY_PREFIX!r} "
            "are reserved for stack policy"
        )
        return ApplyResult(entry.key, "refused", message, status=status)
    try:
        live = store.read_pipeline(entry.pipeline_id)
        stored = store.read_pipeline_version(entry.pipeline_id, version)
        document = _releasable(entry, live, stored, version)
        assert live is not None
        if plan_digest(entry.key, live.etag, document) != entry.digest:
            return ApplyResult(
                entry.key,
                "stale",
                f"{entry.key}: stale plan: the live pipeline moved since the release was planned; nothing "
                "was written. Plan the release again.",
                status=status,
            )
        restored = copy.deepcopy(document)
        restored["updateTs"] = str(now_ms())
        restored["lastModifiedBy"] = modifier_of(store, approver)
        body = canonical_json(restored).encode("utf-8")
        result = store.put_pipeline(entry.pipeline_id, body, if_match=live.etag)
    except ReleaseError as exc:
        return ApplyResult(entry.key, "refused", f"{entry.key}: {exc}", status=status)
    except StalePlanError as exc:
        return ApplyResult(entry.key, "stale", f"{entry.key}: {exc}", status=status)
    except StoreError as exc:
        return ApplyResult(entry.key, "failed", f"{entry.key}: {exc}", status=status)
    return ApplyResult(
        entry.key,
        "applied",
        f"{entry.key}: released: version {version} restored, unmanaged again -> {result.key}",
        status,
        result.etag,
        result.version_id,
        approver,
    )


def _releasable(
    entry: PlanEntry, live: LiveObject | None, stored: LiveObject, version: str
) -> dict[str, Any]:
    """The stored version's document, when the rules of a release still hold (a saved plan is a file
    anyone can edit): the live pipeline is still managed as the entry's key, and the version is an
    unmanaged, valid pipeline of the same id and application."""
    where = f"version {version} of {stored.key}"
    if live is None or live.document is None or (marker_of(live.document) or {}).get("key") != entry.key:
        raise ReleaseError(f"the live pipeline is no longer managed as {entry.key}; nothing was written")
    document = stored.document
    if document is None or stored.problem:
        raise ReleaseError(f"{where} is not a pipeline ({stored.problem}); it cannot be restored")
    if MARKER_FIELD in document:
        raise ReleaseError(
            f"{where} was written by pipeline-sync; a release restores only the version from before "
            "its first write (plan it again with `pipeline-sync release`)"
        )
    if (
        str(document.get("id", "")).lower() != str(entry.pipeline_id).lower()
        or str(document.get("application", "")).lower() != str(live.document.get("application", "")).lower()
    ):
        raise ReleaseError(f"{where} is not this pipeline (another id or application); nothing was written")
    problems = validate_pipeline(entry.key, document)
    if problems:
        raise ReleaseError(f"{where} is not a valid pipeline: " + "; ".join(str(p) for p in problems))
    return dict(document)
