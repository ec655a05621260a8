"""What makes a pipeline managed: Deck's lock, the provenance marker, and content normalisation."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pipeline_sync.canonical import canonical_json, sha256_hex
from pipeline_sync.front50_model import PIPELINE_FIELDS, JavaType, java_trim, stored_value

if TYPE_CHECKING:
    from pipeline_sync.approvers import Approver

MARKER_FIELD = "pipelineSync"
# Marker fields of a signed approval: `signedBy` (one line, kept in live summaries, so `plan` can
# show it) and `signatures` (each statement and its SSH signature: `ssh-keygen -Y verify` proves it).
SIGNED_BY_FIELD = "signedBy"
SIGNATURES_FIELD = "signatures"
CATALOG_FIELD = "catalog"
# Front50 sets these itself (StorageServiceSupport.update: lastModifiedBy, lastModified, which
# Pipeline.getUpdateTs() writes as updateTs; ReorderPipelinesController: index) or only echoes
# them (createTs, and lastModified when a body has it): never pipeline content.
SERVER_MANAGED_FIELDS = ("updateTs", "lastModifiedBy", "lastModified", "createTs", "index")
# Front50 drops these when it reads a pipeline (TimestampedMixins): gone after its next save.
DROPPED_ON_READ = ("createdAt",)
# What Front50 writes for a field a pipeline leaves out: Pipeline.triggers starts as an empty
# list and Pipeline.getSchema() answers "1" for null and for "" (it compares with the literal
# by identity, and Jackson reads an empty JSON string as that literal). Equal to absence.
FRONT50_DEFAULTS: Mapping[str, object] = {"schema": "1", "triggers": []}
_IGNORED = frozenset((*SERVER_MANAGED_FIELDS, *DROPPED_ON_READ, MARKER_FIELD))
# Only these typed fields are compared as Front50 holds them; triggers is not: a null triggers
# list is not its absence (Front50's list endpoints fail on it), so it stays as written.
_COERCED = {field: java_type for field, java_type in PIPELINE_FIELDS.items() if field != "triggers"}


def normalise(document: Mapping[str, Any]) -> dict[str, Any]:
    """The document as Front50 holds it, without what Front50 manages itself or the marker.

    A Front50 save (a Deck save, a reorder) changes nothing this leaves: server fields,
    default triggers and schema, null typed fields (written NON_NULL), Jackson's coercions of
    typed fields (`"3"` is 3 in an Integer field), a trimmed name (PipelineController), and
    cron trigger ids when `regenerateCronTriggerIds` asks Front50 to replace them on each save.
    """
    clean: dict[str, Any] = {}
    for key, value in document.items():
        if key in _IGNORED:
            continue
        java_type = _COERCED.get(key)
        if java_type is not None and java_type.accepts(value):
            value = stored_value(java_type, value)
            if value is None:
                continue
        clean[key] = value
    if clean.get("schema") == "":
        del clean["schema"]
    for key, default in FRONT50_DEFAULTS.items():
        if key in clean and clean[key] == default:
            del clean[key]
    if isinstance(clean.get("name"), str):
        clean["name"] = java_trim(clean["name"])
    if clean.get("regenerateCronTriggerIds") is True and isinstance(clean.get("triggers"), list):
        clean["triggers"] = [_without_cron_id(trigger) for trigger in clean["triggers"]]
    return clean


def _without_cron_id(trigger: object) -> object:
    # PipelineController.validatePipeline: `"cron".equals(type)` gets a new random id on every save.
    if isinstance(trigger, dict) and trigger.get("type") == "cron":
        return {k: v for k, v in trigger.items() if k != "id"}
    return trigger


def content_digest(document: Mapping[str, Any]) -> str:
    """sha256 of the normalised canonical JSON: equal digests mean no semantic difference."""
    return sha256_hex(canonical_json(normalise(document)))


# The normalisation markers were written with until 2026-12 (server fields without createTs,
# the default schema, nothing else). Every field it drops, normalise drops too, so a document
# it matches is matched by normalise as well: accepting it never hides a change.
_LEGACY_SERVER_FIELDS = frozenset(("updateTs", "lastModifiedBy", "lastModified", "index", MARKER_FIELD))


def legacy_content_digest(document: Mapping[str, Any]) -> str:
    """content_digest as pipeline-sync computed it before 2026-12, for markers written then."""
    clean = {k: v for k, v in document.items() if k not in _LEGACY_SERVER_FIELDS}
    if clean.get("schema") == "1":
        del clean["schema"]
    return sha256_hex(canonical_json(clean))


def as_written(document: Mapping[str, Any], render_digest: object, *, digest: str | None = None) -> bool:
    """Whether document's content is what a marker's renderDigest records pipeline-sync wrote.

    digest, when given, is content_digest(document), already computed. A marker written before
    2026-12 holds the digest of the normalisation of that time (legacy_content_digest).
    """
    if not isinstance(render_digest, str):
        return False
    current = digest if digest is not None else content_digest(document)
    return current == render_digest or legacy_content_digest(document) == render_digest


def render_digests(*documents: Mapping[str, Any]) -> frozenset[str]:
    """Every digest a marker may hold for writing one of documents: today's and the legacy one."""
    return frozenset(d(doc) for doc in documents for d in (content_digest, legacy_content_digest))


def marker_of(document: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The provenance marker, or None for a pipeline pipeline-sync does not manage."""
    if document is None:
        return None
    marker = document.get(MARKER_FIELD)
    if isinstance(marker, dict) and isinstance(marker.get("key"), str):
        return marker
    return None


def kept_from(live: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a write keeps of the live pipeline it replaces, when the render says nothing of it.

    - index: Front50's position of the pipeline in its application, set by a person's
      reordering in Deck (ReorderPipelinesController); only a value Front50 can load.
    - allowUnlockUi false: a stricter lock than pipeline-sync's own (Deck then offers no Unlock).
    """
    kept: dict[str, Any] = {}
    if live is None:
        return kept
    index = live.get("index")
    if index is not None and JavaType.INTEGER.accepts(index):
        index = stored_value(JavaType.INTEGER, index)
        if index is not None:
            kept["index"] = index
    if _locks_without_unlock(live.get("locked")):
        kept["allowUnlockUi"] = False
    return kept


def _locks_without_unlock(locked: object) -> bool:
    """Deck's reading (PipelineConfigActions.tsx): a truthy `locked` locks the pipeline, and only a
    truthy `locked.allowUnlockUi` offers Unlock (JavaScript truthiness, so an empty mapping locks)."""
    if not _js_truthy(locked):
        return False
    return not (isinstance(locked, dict) and _js_truthy(locked.get("allowUnlockUi")))


def _js_truthy(value: object) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int | float):
        return value != 0  # JSON has no NaN
    if isinstance(value, str):
        return value != ""
    return True  # every object and array, empty ones too


def managed_document(
    canonical: str,
    *,
    key: str,
    source_file: str,
    catalog_id: str | None = None,
    keep_from: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The rendered pipeline (given as its canonical JSON) with Deck's lock and the provenance marker.

    keep_from is the live pipeline this one replaces: what kept_from finds in it is kept, and
    the marker's renderDigest covers it, as it covers everything written.

    Built from the JSON rather than copied from the rendered document: a fresh tree of exactly
    what will be written, for a twentieth of the cost of a deepcopy.
    """
    document: dict[str, Any] = json.loads(canonical)
    kept = kept_from(keep_from)
    _lock(document, kept, key, source_file)
    if kept:
        digest = content_digest(document)
    else:
        digest = render_digest_of(canonical, key=key, source_file=source_file, locked=document)
    marker: dict[str, Any] = {"key": key, "renderDigest": digest}
    if catalog_id is not None:
        marker[CATALOG_FIELD] = catalog_id  # absent for an unnamed catalog: its bytes stay as they were
    document[MARKER_FIELD] = marker
    return document


def _lock(document: dict[str, Any], kept: Mapping[str, Any], key: str, source_file: str) -> None:
    if "index" in kept and "index" not in document:
        document["index"] = kept["index"]
    document["locked"] = {
        "ui": True,
        "allowUnlockUi": kept.get("allowUnlockUi", True),
        "description": (
            f"Managed by pipeline-sync from {source_file} ({key}). "
            "Edit the catalog or template instead: changes made here show up as drift."
        ),
    }


# (sha256 of the canonical JSON, key, source file) -> renderDigest, for this process: a plan
# computes each target's twice when a fresh pod's plan first asks which bodies it must read.
_RENDER_DIGESTS: dict[tuple[str, str, str], str] = {}
_RENDER_DIGESTS_MAX = 100_000


def render_digest_of(
    canonical: str, *, key: str, source_file: str, locked: Mapping[str, Any] | None = None
) -> str:
    """The renderDigest managed_document records for a render when the live pipeline it replaces
    gives it nothing to keep (kept_from is empty): the content digest of the render with Deck's
    lock. Memoised by the render's sha256, so a second call costs a hash. locked, when given, is
    that document already built (managed_document's, before its marker)."""
    memo_key = (sha256_hex(canonical), key, source_file)
    found = _RENDER_DIGESTS.get(memo_key)
    if found is None:
        if locked is None:
            document: dict[str, Any] = json.loads(canonical)
            _lock(document, {}, key, source_file)
            locked = document
        found = content_digest(locked)
        if len(_RENDER_DIGESTS) >= _RENDER_DIGESTS_MAX:
            _RENDER_DIGESTS.clear()
        _RENDER_DIGESTS[memo_key] = found
    return found


def signature_marker(approvers: Iterable[Approver]) -> dict[str, Any]:
    """What the marker records of a signed approval: who signed with which key, and the proof."""
    found = list(approvers)
    return {
        SIGNED_BY_FIELD: ", ".join(f"{a.principal} ({a.fingerprint})" for a in found),
        SIGNATURES_FIELD: [
            {
                "principal": a.principal,
                "fingerprint": a.fingerprint,
                "statement": a.signed.statement_text,
                "signature": a.signed.signature,
            }
            for a in found
        ],
    }


def signed_by(marker: Mapping[str, Any] | None) -> str | None:
    """Who signed the approval of the write a marker records ("alice (SHA256:...), ..."), if signed."""
    value = marker.get(SIGNED_BY_FIELD) if marker else None
    return value if isinstance(value, str) and value else None
