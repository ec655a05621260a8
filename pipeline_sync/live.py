"""A live pipeline object, and the summary of it a plan needs, parsed from its body at most once.

A warm no-op plan compares 10,000 live objects it has seen before. What it needs of each (the
application and name, the provenance marker, the content digest) is a few hundred bytes,
computed once per (key, ETag) and kept in the local cache with the body. The body is parsed
only when something asks for the document itself: a diff, a rollback, an adoption.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline_sync import canonical, provenance
from pipeline_sync.provenance import content_digest, marker_of

# Bump when what a summary holds, or how it is computed from a body, changes.
SUMMARY_FORMAT = 1


def _fingerprint() -> str:
    """What a stored summary was computed by: this format and the source of the code computing it."""
    digest = hashlib.sha256(f"live summary {SUMMARY_FORMAT}".encode())
    for module in (canonical, provenance, sys.modules[__name__]):
        try:
            digest.update(Path(str(module.__file__)).read_bytes())
        except (OSError, TypeError):
            digest.update(b"unreadable")  # still one fixed value per version; the format guards it
    return digest.hexdigest()


SUMMARY_FINGERPRINT = _fingerprint()


@dataclass(frozen=True)
class LiveSummary:
    """What a plan reads of a live object, without its document."""

    problem: str | None
    has_document: bool
    application: str | None = None
    name: str | None = None
    marker: dict[str, Any] | None = None
    content_digest: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> LiveSummary | None:
        """The summary stored as text, or None when it is not one (then it is recomputed)."""
        try:
            data = json.loads(text)
            summary = cls(**data)
        except (ValueError, TypeError):
            return None
        if not isinstance(summary.marker, dict | None) or not isinstance(summary.content_digest, str | None):
            return None
        return summary


def summarise(document: Mapping[str, Any] | None, problem: str | None) -> LiveSummary:
    if document is None:
        return LiveSummary(problem=problem, has_document=False)
    try:
        digest = content_digest(document)
    except (ValueError, TypeError, UnicodeError) as exc:
        return LiveSummary(problem=f"cannot be compared: {exc}", has_document=False)
    application, name = document.get("application"), document.get("name")
    return LiveSummary(
        problem=problem,
        has_document=True,
        application=application if isinstance(application, str) else None,
        name=name if isinstance(name, str) else None,
        marker=marker_of(document),
        content_digest=digest,
    )


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_body(body: bytes | None) -> tuple[dict[str, Any] | None, str | None]:
    """(document, problem) of a body; anything that is not a pipeline is kept with its problem."""
    if body is None:
        return None, "object vanished while reading"
    try:
        document = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"not valid JSON: {exc}"
    if not isinstance(document, dict):
        return None, "not a JSON object"
    if not isinstance(document.get("id"), str) or not document["id"]:
        return document, "has no id"
    return document, None


class LiveObject:
    """One pipeline object as it is in the bucket.

    Built either from a parsed document, or from its body and a cached summary, in which case
    the body is parsed on the first read of `document`.
    """

    __slots__ = ("_body", "_document", "_problem", "_summary", "etag", "key", "pipeline_id")

    def __init__(
        self,
        pipeline_id: str,
        key: str,
        etag: str,
        document: dict[str, Any] | None,
        problem: str | None = None,
    ) -> None:
        self.pipeline_id = pipeline_id
        self.key = key
        self.etag = etag
        self._document = document
        self._problem = problem
        self._body: bytes | None = None
        self._summary: LiveSummary | None = None

    @classmethod
    def from_body(
        cls, pipeline_id: str, key: str, etag: str, body: bytes | None, summary: LiveSummary | None = None
    ) -> LiveObject:
        """The object of a body; with a summary its parse waits until the document is read."""
        if summary is None or body is None:
            document, problem = parse_body(body)
            return cls(pipeline_id, key, etag, document, problem)
        obj = cls(pipeline_id, key, etag, None, summary.problem)
        obj._body = body if summary.has_document else None
        obj._summary = summary
        return obj

    @property
    def document(self) -> dict[str, Any] | None:
        if self._body is not None:
            self._document, _ = parse_body(self._body)
            self._body = None
        return self._document

    @property
    def problem(self) -> str | None:
        """Why this object is not a usable pipeline, or None (from its summary: one verdict)."""
        return self.summary.problem

    @property
    def summary(self) -> LiveSummary:
        if self._summary is None:
            self._summary = summarise(self.document, self._problem)
        return self._summary

    def __repr__(self) -> str:
        return f"LiveObject({self.pipeline_id!r}, {self.key!r}, {self.etag!r}, problem={self._problem!r})"


def parse_live(pipeline_id: str, key: str, etag: str, body: bytes | None) -> LiveObject:
    """Parse a live object; anything that is not a pipeline is kept with its problem, never raised."""
    return LiveObject.from_body(pipeline_id, key, etag, body)
