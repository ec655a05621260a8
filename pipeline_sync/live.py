"""A live pipeline object, and the summary of it a plan needs, parsed from its body at most once.

A warm no-op plan compares 10,000 live objects it has seen before. What it needs of each (the
application and name, the provenance marker, the content digest) is a few hundred bytes,
computed once per (key, ETag) and kept in the local cache with the body. The body is parsed
only when something asks for the document itself: a diff, a rollback, an adoption.

A body bigger or nested deeper than LiveLimits allow is unreadable, like one that is not JSON:
reported and left alone, never parsed into a crash.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from pipeline_sync import canonical, front50_model, nesting, provenance
from pipeline_sync.errors import StoreError
from pipeline_sync.fingerprint import code_fingerprint
from pipeline_sync.nesting import MAX_ROOM, nesting_depth, recursion_room
from pipeline_sync.provenance import content_digest, marker_of

# Bump when what a summary holds, or how it is computed from a body, changes.
SUMMARY_FORMAT = 2
MIB = 1024 * 1024
# Front50's parser (Jackson 2.15+ StreamReadConstraints) refuses JSON nested deeper than this.
DEFAULT_MAX_DEPTH = 1000
# Jackson caps no document's length: this one is ours (see LiveLimits).
DEFAULT_MAX_BODY_BYTES = 16 * MIB


def _fingerprint() -> str:
    """What a stored summary was computed by: this format and the source of the code computing it."""
    modules = (canonical, front50_model, nesting, provenance, sys.modules[__name__])
    found = code_fingerprint(
        [f"live summary {SUMMARY_FORMAT}"], [getattr(m, "__file__", None) for m in modules]
    )
    # An unreadable source still gives one fixed value per version: the format number guards it.
    return found or f"live summary {SUMMARY_FORMAT}, unreadable source"


SUMMARY_FINGERPRINT = _fingerprint()


def summaries_computed_by(limits: LiveLimits) -> str:
    """What a stored summary (the content cache's, a voucher) must have been computed by to be
    reused: this code, these limits."""
    return canonical.sha256_hex(SUMMARY_FINGERPRINT, limits.fingerprint)


@dataclass(frozen=True)
class LiveLimits:
    """How big and how deeply nested a live object may be; past either it is unreadable, left alone.

    max_depth is Front50's own: its parser (Jackson 2.15+) refuses JSON nested deeper than
    1,000 levels. Jackson caps no document's length, so max_body_bytes is ours: far above any
    real pipeline (5 to 200 KB), low enough that reading one costs bounded memory.
    """

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH

    BODY_VARIABLE: ClassVar[str] = "PIPELINE_SYNC_MAX_BODY_BYTES"
    DEPTH_VARIABLE: ClassVar[str] = "PIPELINE_SYNC_MAX_DEPTH"

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1:
            raise StoreError(_bad_body_cap(self.max_body_bytes))
        if not 1 <= self.max_depth <= MAX_ROOM:
            raise StoreError(_bad_depth(self.max_depth))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LiveLimits:
        """The limits PIPELINE_SYNC_MAX_BODY_BYTES and PIPELINE_SYNC_MAX_DEPTH set; unset, the defaults."""
        return cls(
            max_body_bytes=_whole_number(env, cls.BODY_VARIABLE, DEFAULT_MAX_BODY_BYTES, _bad_body_cap),
            max_depth=_whole_number(env, cls.DEPTH_VARIABLE, DEFAULT_MAX_DEPTH, _bad_depth),
        )

    @property
    def fingerprint(self) -> str:
        """The limits as text: a summary computed under other limits is not reused."""
        return f"{self.max_body_bytes}:{self.max_depth}"

    def too_big(self, size: int | None) -> str:
        """The problem of a body of size bytes (None: unknown, but over the cap)."""
        what = f"is {size:,} bytes, over" if size is not None else "is over"
        return f"{what} the {_bytes_text(self.max_body_bytes)} limit; raise {self.BODY_VARIABLE} to read it"

    def too_deep(self) -> str:
        return f"nests deeper than {self.max_depth:,} levels; raise {self.DEPTH_VARIABLE} to read it"


DEFAULT_LIMITS = LiveLimits()


def _whole_number(env: Mapping[str, str], name: str, default: int, problem: Callable[[object], str]) -> int:
    text = env.get(name, "").strip().replace("_", "")
    if not text:
        return default
    if not (text.isascii() and text.isdigit()):
        raise StoreError(problem(env[name]))
    return int(text)


def _bad_body_cap(value: object) -> str:
    return (
        f"{LiveLimits.BODY_VARIABLE} is {str(value)!r}: set it to a whole number of bytes of at least 1 "
        "(a real pipeline is under 1 MiB), or unset it for the default "
        f"{_bytes_text(DEFAULT_MAX_BODY_BYTES)}."
    )


def _bad_depth(value: object) -> str:
    return (
        f"{LiveLimits.DEPTH_VARIABLE} is {str(value)!r}: set it to a whole number of levels from 1 to "
        f"{MAX_ROOM:,}, or unset it for the default {DEFAULT_MAX_DEPTH:,} (what Front50 itself reads)."
    )


def _bytes_text(size: int) -> str:
    for unit, scale in (("GiB", 1024 * MIB), ("MiB", MIB), ("KiB", 1024)):
        if size >= scale and size % scale == 0:
            return f"{size // scale:,} {unit}"
    return f"{size:,} bytes"


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
        except ValueError:
            return None
        return cls.from_data(data)

    @classmethod
    def from_data(cls, data: object) -> LiveSummary | None:
        """The summary stored as a JSON object, or None when it is not one."""
        if not isinstance(data, dict):
            return None
        try:
            summary = cls(**data)
        except TypeError:
            return None
        if not (
            isinstance(summary.problem, str | None)
            and isinstance(summary.has_document, bool)
            and isinstance(summary.application, str | None)
            and isinstance(summary.name, str | None)
            and isinstance(summary.marker, dict | None)
            and all(isinstance(k, str) and _is_scalar(v) for k, v in (summary.marker or {}).items())
            and (summary.marker is None or isinstance(summary.marker.get("key"), str))
            and isinstance(summary.content_digest, str | None)
        ):
            return None
        return summary


def summarise(document: Mapping[str, Any] | None, problem: str | None) -> LiveSummary:
    if document is None:
        return LiveSummary(problem=problem, has_document=False)
    try:
        digest = content_digest(document)
    except (ValueError, TypeError, UnicodeError, RecursionError) as exc:
        return LiveSummary(problem=f"cannot be compared: {exc}", has_document=False)
    application, name = document.get("application"), document.get("name")
    marker = marker_of(document)
    return LiveSummary(
        problem=problem,
        has_document=True,
        application=application if isinstance(application, str) else None,
        name=name if isinstance(name, str) else None,
        # Its plain fields only (key, renderDigest, ...): a summary stays small and flat.
        marker={k: v for k, v in marker.items() if _is_scalar(v)} if marker is not None else None,
        content_digest=digest,
    )


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_body(
    body: bytes | None, limits: LiveLimits = DEFAULT_LIMITS
) -> tuple[dict[str, Any] | None, str | None]:
    """(document, problem) of a body; anything that is not a pipeline is kept with its problem.

    A body over the size limit is not parsed at all. One nested deeper than the recursion limit
    allows is parsed again with room for limits.max_depth levels; the depth of what parsed is
    then measured (without recursion) unless the body has too few brackets to nest that deep.
    """
    if body is None:
        return None, "object vanished while reading"
    if len(body) > limits.max_body_bytes:
        return None, limits.too_big(len(body))
    try:
        document = _loads(body, limits)
    except RecursionError:
        return None, limits.too_deep()
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"not valid JSON: {exc}"
    if _nests_deeper(body, document, limits.max_depth):
        return None, limits.too_deep()
    if not isinstance(document, dict):
        return None, "not a JSON object"
    if not isinstance(document.get("id"), str) or not document["id"]:
        return document, "has no id"
    return document, None


def _nests_deeper(body: bytes, document: Any, levels: int) -> bool:
    """Whether document nests deeper than levels; a body with fewer brackets is not measured."""
    return body.count(b"{") + body.count(b"[") > levels and nesting_depth(document, levels) > levels


def _loads(body: bytes, limits: LiveLimits) -> Any:
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        pass
    with recursion_room(limits.max_depth):
        return json.loads(body, parse_constant=_reject_constant)


class LiveObject:
    """One pipeline object as it is in the bucket.

    Built either from a parsed document, or from its body and a cached summary, in which case
    the body is parsed (under the same limits) on the first read of `document`.
    """

    __slots__ = (
        "_body",
        "_document",
        "_fetch",
        "_limits",
        "_parsed_body",
        "_problem",
        "_summary",
        "etag",
        "key",
        "pipeline_id",
    )

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
        self._body: bytes | None = None  # a body whose summary was given (cached), not parsed yet
        self._parsed_body: bytes | None = None  # a body this process parsed and summarised (read_now)
        self._summary: LiveSummary | None = None
        self._limits = DEFAULT_LIMITS
        self._fetch: Callable[[LiveObject], tuple[dict[str, Any] | None, str | None]] | None = None

    @classmethod
    def from_body(
        cls,
        pipeline_id: str,
        key: str,
        etag: str,
        body: bytes | None,
        summary: LiveSummary | None = None,
        limits: LiveLimits = DEFAULT_LIMITS,
    ) -> LiveObject:
        """The object of a body; with a summary its parse waits until the document is read.

        A summary never vouches for a body over the size limit: that body is judged afresh.
        """
        if summary is None or body is None or len(body) > limits.max_body_bytes:
            document, problem = parse_body(body, limits)
            return cls(pipeline_id, key, etag, document, problem)
        obj = cls(pipeline_id, key, etag, None, summary.problem)
        obj._body = body if summary.has_document else None
        obj._summary = summary
        obj._limits = limits
        return obj

    @classmethod
    def read_now(
        cls, pipeline_id: str, key: str, etag: str, body: bytes, limits: LiveLimits = DEFAULT_LIMITS
    ) -> LiveObject:
        """The object of a body this process just read: parsed and summarised now, then only the
        body kept (its document is parsed again, under the same limits, when read), so a plan of a
        fleet does not hold every parsed document at once (~5x its body in memory)."""
        obj = parse_live(pipeline_id, key, etag, body, limits)
        if obj.summary.has_document:  # else nothing parsed to drop, or kept as parse_live gave it
            obj._document, obj._parsed_body, obj._limits = None, body, limits
        return obj

    @classmethod
    def vouched(
        cls,
        pipeline_id: str,
        key: str,
        etag: str,
        summary: LiveSummary,
        fetch: Callable[[LiveObject], bytes | None],
        disproved: Callable[[LiveObject], None],
        limits: LiveLimits = DEFAULT_LIMITS,
    ) -> LiveObject:
        """An object known only by a summary computed of it at etag by an earlier run (the fleet
        summary), not by this process: its body is fetched, by fetch(obj) (None: it is no longer at
        etag), only when its document is read. What was fetched is summarised afresh; if that is
        not what was vouched, the object takes the true summary and disproved(obj) is called, so
        a plan that believed the voucher can be made again without it."""
        obj = cls(pipeline_id, key, etag, None, summary.problem)
        obj._summary = summary
        obj._limits = limits

        def read(this: LiveObject) -> tuple[dict[str, Any] | None, str | None]:
            document, problem = parse_body(fetch(this), limits)
            true = summarise(document, problem)
            if true != summary:
                this._summary = true
                disproved(this)
            return document, problem

        obj._fetch = read if summary.has_document else None
        return obj

    @classmethod
    def unreadable(cls, pipeline_id: str, key: str, etag: str, problem: str) -> LiveObject:
        """An object left alone without reading its body (too big to fetch, say)."""
        return cls(pipeline_id, key, etag, None, problem)

    def load(self) -> None:
        """Read and parse the body now (in this process), if that has not happened yet."""
        _ = self.document

    @property
    def deferred(self) -> bool:
        """True while this is a vouched object whose body has not been read."""
        return self._fetch is not None

    @property
    def document(self) -> dict[str, Any] | None:
        if self._fetch is not None:
            fetch, self._fetch = self._fetch, None
            self._document, self._problem = fetch(self)
            return self._document
        if self._body is not None:
            self._document, _ = parse_body(self._body, self._limits)
            self._body = None
        if self._parsed_body is not None:
            self._document, _ = parse_body(self._parsed_body, self._limits)
            self._parsed_body = None
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


def parse_live(
    pipeline_id: str, key: str, etag: str, body: bytes | None, limits: LiveLimits = DEFAULT_LIMITS
) -> LiveObject:
    """Parse a live object; anything that is not a pipeline is kept with its problem, never raised."""
    return LiveObject.from_body(pipeline_id, key, etag, body, limits=limits)
