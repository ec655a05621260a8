"""Pipeline history from the store's versions: what pipeline-sync last wrote before a person edited it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pipeline_sync.errors import StoreError
from pipeline_sync.live import LiveObject
from pipeline_sync.provenance import as_written, marker_of
from pipeline_sync.store import Store

# How far back to look for the version pipeline-sync wrote before a person edited it.
MAX_HISTORY = 20


def person_edited(obj: LiveObject) -> bool:
    """True for a managed pipeline whose content is no longer what pipeline-sync wrote."""
    summary = obj.summary
    if not summary.has_document or summary.marker is None:
        return False
    digest = summary.marker.get("renderDigest")
    if summary.content_digest == digest:
        return False
    return obj.document is None or not as_written(obj.document, digest, digest=summary.content_digest)


def last_written(store: Store, obj: LiveObject, *, limit: int = MAX_HISTORY) -> dict[str, Any] | None:
    """The newest earlier version of obj that pipeline-sync wrote and nobody changed, or None."""
    marker = obj.summary.marker
    if marker is None:
        return None
    for version in store.pipeline_versions(obj.pipeline_id)[:limit]:
        if version.etag == obj.etag:
            continue
        document = store.read_pipeline_version(obj.pipeline_id, version.version_id).document
        old_marker = marker_of(document)
        if (
            document is not None
            and old_marker is not None
            and old_marker["key"] == marker["key"]
            and as_written(document, old_marker.get("renderDigest"))
        ):
            return document
    return None


def written_documents(
    store: Store, live: Mapping[str, LiveObject], keys: Iterable[str] | None = None
) -> dict[str, dict[str, Any]]:
    """{pipeline id: what pipeline-sync last wrote} for managed pipelines a person edited since.

    Only those pipelines (of keys, when given) are looked up, and only when the bucket keeps
    versions, so a plan with no drift costs no extra request. History is a help, not a need:
    when it can't be read (no permission, say) the plan shows such drift as one diff.
    """
    wanted = set(keys) if keys is not None else None
    edited = [
        obj
        for obj in live.values()
        if person_edited(obj) and (wanted is None or (obj.summary.marker or {})["key"] in wanted)
    ]
    found: dict[str, dict[str, Any]] = {}
    try:
        if not edited or not store.keeps_history():
            return found
        for obj in edited:
            document = last_written(store, obj)
            if document is not None:
                found[obj.pipeline_id.lower()] = document
    except StoreError:
        pass
    return found
