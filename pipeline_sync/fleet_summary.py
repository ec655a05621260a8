"""The fleet summary: what one partition's plan must know about the rest of the fleet, in one read.

A plan of a few keys reads the objects at their ids, every object that could collide with them
by name, and every object whose marker claims one of them; nothing else. The summary names
those objects without reading the fleet: for each live pipeline its version (S3 ETag), its
application and name (lower-cased, as Front50 compares them) and the key its marker claims.

It is a hint, never evidence. A plan reads every object it names afresh, so ownership and
names come from real bodies; the summary only says which objects to read. It counts only while
the store's change signal is the one it records (its witness: on S3 the ETag of Front50's
pipelines marker, which Front50 and pipeline-sync rewrite on every write), and every object read
through it must still be at the version it records; otherwise the store rebuilds it from a
listing. See docs/fleet-summary.md for what it cannot prove.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pipeline_sync.live import LiveObject, LiveSummary
from pipeline_sync.vouchers import signature

SUMMARY_FORMAT = 1

# (etag, application lower-cased or None, name lower-cased or None, marker key or None)
Entry = tuple[str, str | None, str | None, str | None]


@dataclass(frozen=True)
class Related:
    """What a plan of some keys must read: the ids it targets, the (application, name) pairs it
    would write, and the keys whose markers it plans."""

    ids: frozenset[str] = frozenset()
    names: frozenset[tuple[str, str]] = frozenset()
    keys: frozenset[str] = frozenset()

    @classmethod
    def of(cls, ids: Iterable[str], names: Iterable[tuple[str, str]], keys: Iterable[str]) -> Related:
        return cls(
            frozenset(i.lower() for i in ids),
            frozenset((a.lower(), n.strip().lower()) for a, n in names),
            frozenset(keys),
        )


def entry_of(summary: LiveSummary, etag: str) -> Entry:
    """The summary entry of a live object's summary at etag."""
    application = summary.application.lower() if summary.application is not None else None
    name = summary.name.strip().lower() if summary.name is not None else None
    key = (summary.marker or {}).get("key")
    return (etag, application, name, key if isinstance(key, str) else None)


@dataclass(frozen=True)
class FleetSummary:
    """Every live pipeline by lower-case id, as of the store's change signal `witness`."""

    witness: str
    entries: Mapping[str, Entry] = field(default_factory=dict)

    @classmethod
    def of_live(cls, live: Mapping[str, LiveObject], witness: str) -> FleetSummary:
        return cls(witness, {pid.lower(): entry_of(obj.summary, obj.etag) for pid, obj in live.items()})

    def related_ids(self, related: Related) -> set[str]:
        """The ids a plan of related must read: its own ids, and every object the summary says
        has one of its names or claims one of its keys."""
        found = set(related.ids)
        for pipeline_id, (_, application, name, key) in self.entries.items():
            if (application is not None and name is not None and (application, name) in related.names) or (
                key is not None and key in related.keys
            ):
                found.add(pipeline_id)
        return found

    def with_object(self, pipeline_id: str, entry: Entry | None, witness: str) -> FleetSummary:
        """This summary after one write (entry None: a delete), as of the new witness."""
        entries = dict(self.entries)
        if entry is None:
            entries.pop(pipeline_id.lower(), None)
        else:
            entries[pipeline_id.lower()] = entry
        return replace(self, witness=witness, entries=entries)

    def to_bytes(self, key: bytes | None = None, where: str = "") -> bytes:
        """The summary as JSON; with a key (PIPELINE_SYNC_SUMMARY_KEY_FILE), with an HMAC of it
        bound to where (the bucket and root) under "mac", which code without a key ignores."""
        data: dict[str, Any] = {"format": SUMMARY_FORMAT, "witness": self.witness, "pipelines": self.entries}
        if key is not None:
            data["mac"] = signature(key, where, "fleet summary", _signed_text(data))
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes | None, key: bytes | None = None, where: str = "") -> FleetSummary | None:
        """The summary these bytes hold, or None when they are not one this code wrote; with a
        key, None too unless its "mac" proves it was written under that key for where."""
        if data is None:
            return None
        try:
            document = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(document, dict) or document.get("format") != SUMMARY_FORMAT:
            return None
        if key is not None:
            mac = document.pop("mac", None)
            expected = signature(key, where, "fleet summary", _signed_text(document))
            if not isinstance(mac, str) or not hmac.compare_digest(mac, expected):
                return None
        witness, pipelines = document.get("witness"), document.get("pipelines")
        if not isinstance(witness, str) or not isinstance(pipelines, dict):
            return None
        entries: dict[str, Entry] = {}
        for pipeline_id, value in pipelines.items():
            entry = _entry(value)
            if entry is None:
                return None
            entries[str(pipeline_id).lower()] = entry
        return cls(witness, entries)


def _signed_text(data: Mapping[str, Any]) -> bytes:
    """What the mac covers: the summary's JSON (without its mac), keys sorted."""
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _entry(value: Any) -> Entry | None:
    if not isinstance(value, list) or len(value) != 4 or not isinstance(value[0], str):
        return None
    if not all(v is None or isinstance(v, str) for v in value[1:]):
        return None
    return (value[0], value[1], value[2], value[3])
