"""Canonical JSON and digests: the byte-exact form everything is hashed and compared in."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pipeline_sync.nesting import MAX_ROOM, nesting_depth, recursion_room


def canonical_json(document: Any) -> str:
    """Sorted keys, fixed separators, UTF-8 text: identical inputs give identical bytes.

    A document nested deeper than the recursion limit allows (Front50 reads 1,000 levels) is
    dumped again with room for its depth; one nested deeper than MAX_ROOM is a ValueError.
    """
    try:
        return _dumps(document)
    except RecursionError:
        pass
    depth = nesting_depth(document)
    if depth > MAX_ROOM:
        raise ValueError(f"it nests deeper than {MAX_ROOM:,} levels") from None
    with recursion_room(depth):
        return _dumps(document)


def _dumps(document: Any) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_hex(*parts: str) -> str:
    """sha256 over parts joined unambiguously (length-prefixed)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8")
        digest.update(f"{len(data)}:".encode())
        digest.update(data)
    return digest.hexdigest()
