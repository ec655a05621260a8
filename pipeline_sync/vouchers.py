"""Vouchers: the live summary of each object at its ETag, signed, so a fresh pod's plan need not
read 10,000 bodies to find 9,900 in sync.

pipeline-sync keeps them in one object beside the fleet summary,
`{root}/.pipeline-sync/fleet-vouchers.json`, only when it holds a key
(`PIPELINE_SYNC_SUMMARY_KEY_FILE`): the object is an HMAC-SHA256 of its text under that key,
bound to the bucket and root, so someone who may write to the bucket but does not hold the key
cannot forge one (a forged, copied or damaged object is ignored, and bodies are read instead).
A voucher only ever stands for a summary pipeline-sync computed from a body; the summarising
code and limits are named too (`computedBy`), and vouchers of other code are not used.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipeline_sync.errors import StoreError
from pipeline_sync.live import LiveLimits, LiveObject, LiveSummary, summaries_computed_by

FORMAT = "pipeline-sync-vouchers 1"
KEY_VARIABLE = "PIPELINE_SYNC_SUMMARY_KEY_FILE"
MIN_KEY_BYTES = 32


@dataclass(frozen=True)
class Vouchers:
    """Live summaries by lower-case id, each with the ETag of the body it was computed from."""

    computed_by: str
    entries: Mapping[str, tuple[str, LiveSummary]] = field(default_factory=dict)

    @classmethod
    def of_live(cls, live: Mapping[str, LiveObject], limits: LiveLimits) -> Vouchers:
        """The vouchers of what a plan read: every object with a document."""
        entries = {
            pid.lower(): (obj.etag, obj.summary) for pid, obj in live.items() if obj.summary.has_document
        }
        return cls(summaries_computed_by(limits), entries)

    def usable(self, limits: LiveLimits) -> Mapping[str, tuple[str, LiveSummary]]:
        """The vouchers, when computed by this code under these limits; else none."""
        return self.entries if self.computed_by == summaries_computed_by(limits) else {}

    def to_bytes(self, key: bytes, where: str) -> bytes:
        payload = json.dumps(
            {
                "computedBy": self.computed_by,
                "vouchers": {pid: [etag, vars(s)] for pid, (etag, s) in self.entries.items()},
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode("utf-8")
        return f"{FORMAT} {_mac(key, where, payload)}\n".encode() + payload

    @classmethod
    def from_bytes(cls, data: bytes | None, key: bytes, where: str) -> Vouchers | None:
        """The vouchers these bytes hold, when signed under key for where; None otherwise."""
        if data is None:
            return None
        head, _, payload = data.partition(b"\n")
        parts = head.decode("ascii", "replace").rsplit(" ", 1)
        if (
            len(parts) != 2
            or parts[0] != FORMAT
            or not hmac.compare_digest(parts[1], _mac(key, where, payload))
        ):
            return None
        try:
            document = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(document, dict) or not isinstance(document.get("computedBy"), str):
            return None
        found = document.get("vouchers")
        if not isinstance(found, dict):
            return None
        entries: dict[str, tuple[str, LiveSummary]] = {}
        for pid, value in found.items():
            if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)):
                return None
            summary = LiveSummary.from_data(value[1])
            if summary is None:
                return None
            entries[str(pid).lower()] = (value[0], summary)
        return cls(document["computedBy"], entries)


def _mac(key: bytes, where: str, payload: bytes) -> str:
    return signature(key, where, FORMAT, payload)


def signature(key: bytes, where: str, kind: str, payload: bytes) -> str:
    """HMAC-SHA256 under key of payload, bound to what it is (kind) and where it lives."""
    signed = hmac.new(key, f"{kind}\n{where}\n".encode(), hashlib.sha256)
    signed.update(payload)
    return signed.hexdigest()


def key_from_env(environ: Mapping[str, str]) -> bytes | None:
    """The key PIPELINE_SYNC_SUMMARY_KEY_FILE names (its bytes, surrounding whitespace removed),
    or None when unset; a file that cannot be read, or holds fewer than 32 bytes, is an error."""
    name = environ.get(KEY_VARIABLE, "").strip()
    if not name:
        return None
    try:
        key = Path(name).read_bytes().strip()
    except OSError as exc:
        raise StoreError(f"{KEY_VARIABLE} names {name}, which cannot be read: {exc.strerror}") from None
    if len(key) < MIN_KEY_BYTES:
        raise StoreError(
            f"{KEY_VARIABLE} names {name}, which holds {len(key)} bytes: a key needs at least "
            f"{MIN_KEY_BYTES} (make one with `openssl rand -hex 32 > FILE`)"
        )
    return key
