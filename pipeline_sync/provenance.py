"""What makes a pipeline managed: Deck's lock, the provenance marker, and content normalisation."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pipeline_sync.canonical import canonical_json, sha256_hex

MARKER_FIELD = "pipelineSync"
CATALOG_FIELD = "catalog"
SERVER_MANAGED_FIELDS = ("updateTs", "lastModifiedBy", "lastModified", "index")


def normalise(document: Mapping[str, Any]) -> dict[str, Any]:
    """The document without server-managed fields, the marker, or a default schema."""
    clean = {k: v for k, v in document.items() if k not in SERVER_MANAGED_FIELDS and k != MARKER_FIELD}
    if clean.get("schema") == "1":
        del clean["schema"]
    return clean


def content_digest(document: Mapping[str, Any]) -> str:
    """sha256 of the normalised canonical JSON: equal digests mean no semantic difference."""
    return sha256_hex(canonical_json(normalise(document)))


def marker_of(document: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The provenance marker, or None for a pipeline pipeline-sync does not manage."""
    if document is None:
        return None
    marker = document.get(MARKER_FIELD)
    if isinstance(marker, dict) and isinstance(marker.get("key"), str):
        return marker
    return None


def managed_document(
    canonical: str, *, key: str, source_file: str, catalog_id: str | None = None
) -> dict[str, Any]:
    """The rendered pipeline (given as its canonical JSON) with Deck's lock and the provenance marker.

    Built from the JSON rather than copied from the rendered document: a fresh tree of exactly
    what will be written, for a twentieth of the cost of a deepcopy.
    """
    document: dict[str, Any] = json.loads(canonical)
    document["locked"] = {
        "ui": True,
        "allowUnlockUi": True,
        "description": (
            f"Managed by pipeline-sync from {source_file} ({key}). "
            "Edit the catalog or template instead: changes made here show up as drift."
        ),
    }
    marker: dict[str, Any] = {"key": key, "renderDigest": content_digest(document)}
    if catalog_id is not None:
        marker[CATALOG_FIELD] = catalog_id  # absent for an unnamed catalog: its bytes stay as they were
    document[MARKER_FIELD] = marker
    return document
