"""What makes a pipeline managed: Deck's lock, the provenance marker, and content normalisation."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline_sync.canonical import canonical_json, sha256_hex
from pipeline_sync.front50_model import _STORED, PIPELINE_FIELDS, JavaType, java_trim, stored_value
from pipeline_sync.json_members import Members, json_members

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
# Of these, the fields whose stored_value is the value itself (stages, maps, ...): for them
# accepts() only decides whether a null is left out, and a large value need not be walked.
_AS_IS = frozenset(field for field, java_type in _COERCED.items() if java_type not in _STORED)


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
        if java_type is not None and (value is None or key not in _AS_IS) and java_type.accepts(value):
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
    digest = content_digest(document)
    marker: dict[str, Any] = {"key": key, "renderDigest": digest}
    if catalog_id is not None:
        marker[CATALOG_FIELD] = catalog_id  # absent for an unnamed catalog: its bytes stay as they were
    document[MARKER_FIELD] = marker
    return document


def _lock(document: dict[str, Any], kept: Mapping[str, Any], key: str, source_file: str) -> None:
    if "index" in kept and "index" not in document:
        document["index"] = kept["index"]
    document["locked"] = _lock_value(kept, key, source_file)


def _lock_value(kept: Mapping[str, Any], key: str, source_file: str) -> dict[str, Any]:
    """Deck's lock as a write sets it (`locked`)."""
    return {
        "ui": True,
        "allowUnlockUi": kept.get("allowUnlockUi", True),
        "description": (
            f"Managed by pipeline-sync from {source_file} ({key}). "
            "Edit the catalog or template instead: changes made here show up as drift."
        ),
    }


def render_digest_of(canonical: str, *, key: str, source_file: str) -> str:
    """The renderDigest managed_document records for a render (given as its canonical JSON) when
    the live pipeline it replaces gives it nothing to keep (kept_from is empty): the content
    digest of the render with Deck's lock, from the JSON's top-level members (managed_texts).
    Of a text that is not canonical JSON it may differ: engine._prefetch only guesses with it."""
    members = json_members(canonical)
    if members is not None:
        return _render_digest(members, _lock_value({}, key, source_file))[0]
    document: dict[str, Any] = json.loads(canonical)
    _lock(document, {}, key, source_file)
    return content_digest(document)


@dataclass(frozen=True)
class ManagedTexts:
    """What a plan needs of a managed document that is in sync, without building it: its
    renderDigest, its canonical JSON (what plan digests hash) and its application and name."""

    render_digest: str
    canonical: str
    application: object
    name: object


def managed_texts(
    canonical: str,
    *,
    key: str,
    source_file: str,
    catalog_id: str | None = None,
    members: Members | None = None,
) -> ManagedTexts | None:
    """managed_document's renderDigest and canonical JSON, spliced from the render's JSON text.

    canonical_json writes a mapping as its members in key order, each `"name":value` in canonical
    JSON, and normalise and the lock change top-level members only: the digest hashes the
    render's own text of each member normalise leaves as it was, and the document's text is those
    members' texts with every other member written afresh. No tree is built or dumped whole.

    Both are exactly content_digest and canonical_json of managed_document(canonical, key=key,
    source_file=source_file, catalog_id=catalog_id) when canonical is canonical JSON (a render's
    is; tests/test_plan_cost.py compares them). Of any other text, the digest equals a live
    pipeline's content digest only when the member texts it hashed are canonical after all (the
    live digest is sha256 of canonical JSON): a plan trusts these texts only then. None, for the
    caller to build the document instead, when canonical is not a compact JSON object with
    sorted, unique keys, or lacks an application or a name.

    members: json_members(canonical), when the caller parsed it already (a render cache hit).
    """
    if members is None:
        members = json_members(canonical)
    if members is None or "application" not in members or "name" not in members:
        return None
    lock = _lock_value({}, key, source_file)
    lock_text = _lock_text(lock)
    digest, verbatim = _render_digest(members, lock, lock_text)
    texts = {
        name: text if name in verbatim else _member_text(name, value)
        for name, (value, text) in members.items()
    }
    texts["locked"] = lock_text
    # The marker managed_document writes, as canonical_json writes it (keys in order).
    catalog = "" if catalog_id is None else f'"{CATALOG_FIELD}":{_json_string(catalog_id)},'
    texts[MARKER_FIELD] = f'"{MARKER_FIELD}":{{{catalog}"key":{_json_string(key)},"renderDigest":"{digest}"}}'
    body = "{" + ",".join(texts[name] for name in sorted(texts)) + "}"
    return ManagedTexts(digest, body, members["application"][0], members["name"][0])


def _render_digest(
    members: Members, lock: dict[str, Any], lock_text: str | None = None
) -> tuple[str, frozenset[str]]:
    """content_digest of the document members hold with Deck's lock (lock_text: its member
    text, when known), and the members hashed as their own text: those normalise leaves as they
    were (the same object); the rest are written afresh."""
    values = {name: value for name, (value, _) in members.items()}
    values["locked"] = lock
    clean = normalise(values)
    parts = []
    verbatim = []
    for name in sorted(clean):
        value = clean[name]
        member = members.get(name)
        if member is not None and member[0] is value and name != "locked":
            parts.append(member[1])
            verbatim.append(name)
        elif value is lock and lock_text is not None:
            parts.append(lock_text)
        else:
            parts.append(_member_text(name, value))
    return sha256_hex("{" + ",".join(parts) + "}"), frozenset(verbatim)


# json's encoder of a string as canonical_json writes one (ensure_ascii=False). Not in typeshed.
_json_string: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]


def _lock_text(lock: Mapping[str, Any]) -> str:
    """The member `"locked":{...}` of _lock_value's lock, as canonical_json writes it."""
    if set(lock) != {"allowUnlockUi", "description", "ui"} or lock["ui"] is not True:
        return _member_text("locked", lock)
    if lock["allowUnlockUi"] is not True or not isinstance(lock["description"], str):
        return _member_text("locked", lock)
    description = _json_string(lock["description"])
    return f'"locked":{{"allowUnlockUi":true,"description":{description},"ui":true}}'


def _member_text(name: str, value: Any) -> str:
    """One member of an object as canonical_json writes it."""
    return f"{canonical_json(name)}:{canonical_json(value)}"


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
