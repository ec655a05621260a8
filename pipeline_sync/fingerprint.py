"""What a cached value was computed by: a digest of labels and of the code's own source files (pure)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path


def code_fingerprint(parts: Iterable[str], sources: Iterable[str | None]) -> str | None:
    """sha256 over parts and the bytes of each source file: what a cached value was computed by.

    None when a source cannot be read: such a cache must not outlive the process.
    """
    digest = hashlib.sha256()
    for part in parts:
        digest.update(f"{len(part)}:{part}".encode())
    for source in sources:
        if source is None:
            return None
        try:
            digest.update(hashlib.sha256(Path(source).read_bytes()).digest())
        except OSError:
            return None
    return digest.hexdigest()
