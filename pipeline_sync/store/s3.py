"""Front50's S3 layout through boto3: list and read pipelines in bulk, write with compare-and-swap."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import boto3
import botocore.session
import platformdirs
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from pipeline_sync.cachefiles import guarded_sqlite
from pipeline_sync.canonical import sha256_hex
from pipeline_sync.errors import StalePlanError, StoreError
from pipeline_sync.fleet_summary import Entry, FleetSummary, Related, entry_of
from pipeline_sync.live import (
    DEFAULT_LIMITS,
    LiveLimits,
    LiveObject,
    LiveSummary,
    parse_live,
    summaries_computed_by,
)
from pipeline_sync.store import ObjectVersion, WriteResult
from pipeline_sync.store.fast_reads import LIST_PAGE_KEYS, MIN_BATCH, Fetched, ObstoreReader, reader_setting
from pipeline_sync.store.front50 import (
    WRITER,
    application_document,
    change_marker_body,
    next_change_stamp,
    now_ms,
    read_change_marker,
)
from pipeline_sync.vouchers import Vouchers, key_from_env

__all__ = [
    "WRITER",
    "LiveLimits",
    "LiveObject",
    "LiveSummary",
    "ObjectVersion",
    "S3Settings",
    "S3Store",
    "WriteResult",
    "now_ms",
    "parse_live",
]

PIPELINES = "pipelines"
APPLICATIONS = "applications"
PIPELINE_FILE = "pipeline-metadata.json"
APPLICATION_FILE = "application-metadata.json"
MARKER_FILE = "last-modified.json"
# The fleet summary (pipeline_sync.fleet_summary) sits under the root folder, where the bucket's
# permissions for pipeline-sync already reach, but in no group: Front50 lists only
# `{root}/{group}` prefixes (S3StorageService.listObjectKeys) and reads only keys ending in its
# metadata file names, and no Front50 group begins with a dot.
SUMMARY_FOLDER = ".pipeline-sync"
SUMMARY_FILE = "fleet-summary.json"
VOUCHERS_FILE = "fleet-vouchers.json"
# The witness of a bucket without a pipelines marker yet.
NO_MARKER = "absent"
# A summary of 30,000 pipelines is about 3 MB; one over this is not read (it is rebuilt).
SUMMARY_MAX_BYTES = 64 * 1024 * 1024
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})
# Server-side encryption of every put, as S3 spells it; Front50's own setting
# (S3BucketProperties.serverSideEncryption) names the same two AES256 and AWSKMS.
SSE_S3 = "AES256"
SSE_KMS = "aws:kms"
_SSE_SPELLINGS = {"aes256": SSE_S3, "aws:kms": SSE_KMS, "awskms": SSE_KMS}


@dataclass(frozen=True)
class S3Settings:
    """Where Front50 keeps its objects, and how to reach them."""

    bucket: str
    root: str = "front50"
    endpoint_url: str | None = field(default=None, repr=False)  # may carry credentials
    region: str | None = None
    cache_dir: Path | None = None
    use_cache: bool = True
    max_workers: int = 16
    limits: LiveLimits = DEFAULT_LIMITS
    # The key vouchers are signed with (PIPELINE_SYNC_SUMMARY_KEY_FILE): without one, none are kept.
    summary_key: bytes | None = field(default=None, repr=False)
    # A full plan reads the vouchers only when its local cache lacks at least this many objects:
    # below it, reading the bodies costs less than the vouchers (5 MB at 10,000).
    vouch_min: int = 64
    # Server-side encryption requested on every put: None, SSE_S3 or SSE_KMS (with an optional key).
    sse: str | None = None
    sse_kms_key_id: str | None = None

    def __post_init__(self) -> None:
        if self.sse not in (None, SSE_S3, SSE_KMS):
            raise StoreError(
                f"server-side encryption {self.sse!r} is not one S3 knows: use {SSE_S3!r} (SSE-S3) or "
                f"{SSE_KMS!r} (SSE-KMS) in PIPELINE_SYNC_SSE, or leave it unset"
            )
        if self.sse_kms_key_id and self.sse != SSE_KMS:
            raise StoreError(
                "PIPELINE_SYNC_SSE_KMS_KEY_ID names a KMS key, which only SSE-KMS uses: "
                f"set PIPELINE_SYNC_SSE={SSE_KMS}, or unset PIPELINE_SYNC_SSE_KMS_KEY_ID"
            )

    @property
    def put_encryption(self) -> dict[str, str]:
        """The encryption arguments of every put_object: pipelines, applications, change markers."""
        arguments: dict[str, str] = {}
        if self.sse is not None:
            arguments["ServerSideEncryption"] = self.sse
        if self.sse_kms_key_id:
            arguments["SSEKMSKeyId"] = self.sse_kms_key_id
        return arguments

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> S3Settings:
        """Settings from PIPELINE_SYNC_* variables; boto3 reads AWS_ENDPOINT_URL(_S3) itself.

        PIPELINE_SYNC_MAX_BODY_BYTES and PIPELINE_SYNC_MAX_DEPTH bound what a live object may be
        before it is left alone as unreadable (LiveLimits). PIPELINE_SYNC_SSE (AES256 or aws:kms,
        or Front50's spelling AWSKMS) and PIPELINE_SYNC_SSE_KMS_KEY_ID encrypt every put, for a
        bucket whose policy refuses unencrypted ones.
        """
        env = os.environ if environ is None else environ
        bucket = env.get("PIPELINE_SYNC_BUCKET", "")
        if not bucket:
            raise StoreError(
                "PIPELINE_SYNC_BUCKET is not set: export the name of Front50's S3 bucket "
                "(and PIPELINE_SYNC_ROOT if its root folder is not 'front50')."
            )
        cache_dir = env.get("PIPELINE_SYNC_CACHE_DIR")
        return cls(
            bucket=bucket,
            root=env.get("PIPELINE_SYNC_ROOT") or "front50",
            endpoint_url=env.get("PIPELINE_SYNC_ENDPOINT_URL") or None,
            cache_dir=Path(cache_dir) if cache_dir else None,
            use_cache=env.get("PIPELINE_SYNC_CACHE", "on").lower() not in {"off", "0", "false"},
            limits=LiveLimits.from_env(env),
            sse=_sse_from_env(env.get("PIPELINE_SYNC_SSE", "")),
            sse_kms_key_id=env.get("PIPELINE_SYNC_SSE_KMS_KEY_ID") or None,
            summary_key=key_from_env(env),
        )


def _sse_from_env(value: str) -> str | None:
    """PIPELINE_SYNC_SSE as S3 spells it; unknown spellings are left for S3Settings to refuse."""
    text = value.strip()
    if not text:
        return None
    return _SSE_SPELLINGS.get(text.lower(), text)


# A pipeline object as the bucket listing shows it: (key, ETag, Size or None). A plain tuple:
# a warm plan makes 10,000 of them, and a NamedTuple costs fifty times as much to make.
Listed = tuple[str, str, int | None]


@dataclass
class RequestCounter:
    """Counts S3 requests by operation name (botocore event hook)."""

    counts: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, model: Any, **_: Any) -> None:
        self.add(model.name)

    def add(self, operation: str) -> None:
        """Count one request (obstore's, pipeline_sync.store.fast_reads.REQUEST_OBSERVERS)."""
        with self._lock:
            self.counts[operation] = self.counts.get(operation, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _timestamp_text(value: str) -> str:
    return value


_session_lock = threading.Lock()
_session: boto3.Session | None = None


def s3_session() -> boto3.Session:
    """The boto3 session every pipeline-sync client is made from, created on first use.

    It leaves timestamps (LastModified) as the text S3 sent: nothing here computes with
    them, and parsing them into datetimes is a fifth of the client time of a 10,000-object
    listing. One session for the process also loads botocore's service model once.
    """
    global _session
    with _session_lock:
        if _session is None:
            core = botocore.session.get_session()
            core.get_component("response_parser_factory").set_parser_defaults(
                timestamp_parser=_timestamp_text
            )
            _session = boto3.Session(botocore_session=core)
        return _session


def make_s3_client(settings: S3Settings) -> Any:
    """A boto3 S3 client with standard retries, bounded attempts and timeouts."""
    config = Config(
        retries={"mode": "standard", "total_max_attempts": 5},
        connect_timeout=5,
        read_timeout=30,
        max_pool_connections=settings.max_workers + 4,
    )
    session = s3_session()
    with _session_lock:  # a boto3 session is not thread-safe; the clients it makes are
        return session.client(
            "s3", endpoint_url=settings.endpoint_url, region_name=settings.region, config=config
        )


_T = TypeVar("_T")


@dataclass(frozen=True)
class CachedObject:
    """A body the cache holds for a (key, ETag), and its summary when the current code made it."""

    body: bytes
    summary: LiveSummary | None


class ContentCache:
    """Object bodies and their summaries keyed by (S3 key, ETag), kept in a sqlite file across runs.

    Only a speed-up: a corrupt file is deleted and made again, and a file that can't be used
    (locked, read-only, a full disk) gives an empty cache for this run, never a failed plan.
    It neither keeps nor returns a body over limits.max_body_bytes, and a summary counts only
    under the code and the limits that computed it.
    """

    TABLE = "objects_v2"
    SCHEMA = (
        "DROP TABLE IF EXISTS objects",  # format 1: bodies only
        f"CREATE TABLE IF NOT EXISTS {TABLE} (key TEXT PRIMARY KEY, etag TEXT NOT NULL, "
        "body BLOB NOT NULL, summary TEXT, summary_of TEXT)",
    )

    def __init__(self, path: Path | None, limits: LiveLimits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._summary_of = summaries_computed_by(limits)
        self._path = path
        self._memory: dict[str, tuple[str, bytes, str | None, str | None]] = {}  # when path is None

    def _guarded(self, action: Callable[[sqlite3.Connection], _T], fallback: _T) -> _T:
        assert self._path is not None
        return guarded_sqlite(self._path, self.SCHEMA, action, fallback)

    def get_many(self, wanted: Mapping[str, str]) -> dict[str, CachedObject]:
        if self._path is None:
            rows: list[tuple[Any, ...]] = [(k, *v) for k, v in self._memory.items()]
        else:
            query = f"SELECT key, etag, body, summary, summary_of FROM {self.TABLE}"
            rows = self._guarded(lambda db: db.execute(query).fetchall(), [])
        found = {}
        cap = self._limits.max_body_bytes
        for key, etag, body, summary, summary_of in rows:
            if wanted.get(key) != etag or not isinstance(body, bytes) or len(body) > cap:
                continue
            fresh = isinstance(summary, str) and summary_of == self._summary_of
            found[key] = CachedObject(body, LiveSummary.from_json(summary) if fresh else None)
        return found

    def put_many(self, items: Iterable[tuple[str, str, bytes, LiveSummary]]) -> None:
        cap = self._limits.max_body_bytes
        rows = [
            (key, etag, body, s.to_json(), self._summary_of)
            for key, etag, body, s in items
            if len(body) <= cap
        ]
        if not rows:
            return
        if self._path is None:
            self._memory.update({key: (etag, body, summary, of) for key, etag, body, summary, of in rows})
            return

        def write(db: sqlite3.Connection) -> None:
            with db:
                db.executemany(
                    f"INSERT OR REPLACE INTO {self.TABLE} (key, etag, body, summary, summary_of) "
                    "VALUES (?, ?, ?, ?, ?)",
                    rows,
                )

        self._guarded(write, None)  # not kept on failure: the next run reads these objects again

    def forget_except(self, keep: Iterable[str]) -> None:
        keep_set = set(keep)
        if self._path is None:
            self._memory = {k: v for k, v in self._memory.items() if k in keep_set}
            return

        def forget(db: sqlite3.Connection) -> None:
            stale = [(k,) for (k,) in db.execute(f"SELECT key FROM {self.TABLE}") if k not in keep_set]
            if stale:
                with db:
                    db.executemany(f"DELETE FROM {self.TABLE} WHERE key = ?", stale)

        self._guarded(forget, None)

    def close(self) -> None:
        """Nothing stays open between calls; kept for callers that close what they open."""


def default_cache_path(settings: S3Settings) -> Path:
    base = settings.cache_dir or Path(platformdirs.user_cache_dir("pipeline-sync"))
    base.mkdir(parents=True, exist_ok=True)
    where = sha256_hex(
        settings.endpoint_url
        or os.environ.get("AWS_ENDPOINT_URL_S3", "")
        or os.environ.get("AWS_ENDPOINT_URL", ""),
        settings.bucket,
        settings.root,
    )
    return base / f"front50-{where[:16]}.sqlite"


class S3Store:
    """Reads and writes pipelines exactly as Front50 lays them out in S3."""

    def __init__(self, settings: S3Settings, client: Any | None = None) -> None:
        self.settings = settings
        self.client = client if client is not None else make_s3_client(settings)
        self._own_client = client is None
        self._known_applications: set[str] = set()
        # Per group: the newest LastModified a listing saw, and the marker value last read.
        self._newest_listed: dict[str, str] = {}
        self._marker_seen: dict[str, int] = {}
        # The fleet summary this run planned from (read_related), and its S3 ETag: a write of
        # this run updates it, so the next run's plan of one partition stays O(1).
        self._summary: FleetSummary | None = None
        self._summary_etag: str | None = None
        self._narrow = False
        # The last read_related of this run: (witness, summary, the objects it read).
        self._last_read: tuple[str, FleetSummary, dict[str, LiveObject | None]] | None = None
        self._disproved: list[str] = []  # ids whose fleet-summary voucher a body contradicted
        self._fetched: list[tuple[LiveObject, bytes]] = []  # vouched bodies read since, to cache
        self._prefetched: dict[tuple[str, str], bytes | None] = {}  # (key, ETag): bodies read ahead
        self._arriving: dict[tuple[str, str], threading.Event] = {}  # (key, ETag): read ahead now
        self._vouchers_seen: tuple[bool, Vouchers | None] = (False, None)  # (read this run, what)
        self._summary_put = False  # whether this run wrote the fleet summary

    def describe(self) -> str:
        return f"s3://{self.settings.bucket}"

    # -- keys ---------------------------------------------------------------
    @property
    def root(self) -> str:
        return self.settings.root.strip("/")

    def pipeline_key(self, pipeline_id: str) -> str:
        return f"{self.root}/{PIPELINES}/{pipeline_id.lower()}/{PIPELINE_FILE}"

    def application_key(self, application: str) -> str:
        return f"{self.root}/{APPLICATIONS}/{application.lower()}/{APPLICATION_FILE}"

    def marker_key(self, group: str) -> str:
        return f"{self.root}/{group}/{MARKER_FILE}"

    @property
    def summary_key(self) -> str:
        return f"{self.root}/{SUMMARY_FOLDER}/{SUMMARY_FILE}"

    # -- reads --------------------------------------------------------------
    def list_pipeline_etags(self) -> dict[str, tuple[str, str]]:
        """{pipeline id: (key, etag)} from one paginated listing."""
        return {pid: (key, etag) for pid, (key, etag, _) in self.list_pipeline_objects().items()}

    def list_pipeline_objects(self, *, fast: bool = False) -> dict[str, Listed]:
        """{pipeline id: (key, ETag, size)} from one paginated listing; size is None if not listed.
        fast: a fleet plan's listing, which may take its pages after the first through obstore."""
        prefix = f"{self.root}/{PIPELINES}/"
        found: dict[str, Listed] = {}
        for item in self._list(prefix, fast=fast):
            key = item["Key"]
            rest = key[len(prefix) :]
            parts = rest.split("/")
            if len(parts) == 2 and parts[1] == PIPELINE_FILE and parts[0]:
                found[parts[0]] = (key, item["ETag"], item.get("Size"))
        return found

    def list_applications(self) -> set[str]:
        """Application names (lower-case) from one listing, not a request per application."""
        prefix = f"{self.root}/{APPLICATIONS}/"
        names = set()
        for item in self._list(prefix):
            parts = item["Key"][len(prefix) :].split("/")
            if len(parts) == 2 and parts[1] == APPLICATION_FILE:
                names.add(parts[0])
        self._known_applications |= names
        return names

    def read_live(self) -> dict[str, LiveObject]:
        """Every pipeline object, reading only those whose ETag the local cache lacks.

        Objects the cache holds with a current summary are not parsed: their documents are
        read from the body on first use. Everything else is parsed, summarised and cached.
        An object the listing shows over the size limit is neither read nor cached, whatever
        the cache holds: it is unreadable, and left alone.
        """
        return self._read_live()

    def read_live_summarised(self, *, vouched: bool = True) -> dict[str, LiveObject]:
        """read_live, and the fleet summary of what it read written beside Front50's objects for
        later plans (two requests more: the marker first, the summary after); with a summary key,
        the signed vouchers too (pipeline_sync.vouchers).

        With vouched (and a key), an object the local cache lacks but the vouchers know at its
        listed ETag is not read: its summary is taken from there and its body fetched only if the
        plan reads its document (LiveObject.vouched), which checks the voucher; summary_misled()
        then says whether the plan must be made again with vouched=False. One GET more, of the
        vouchers, and only when the local cache lacks at least settings.vouch_min objects.
        Its listing may take the pages after the first through obstore (fast_reads.list_after)."""
        witness = self._read_witness()  # before the listing: a write after it changes the witness
        self._prefetched.clear()  # read ahead for an earlier listing: never for this one
        self._vouchers_seen, self._summary_put = (False, None), False
        live = self._read_live(vouched=vouched, fast=True)
        self._publish_summary(FleetSummary.of_live(live, witness))
        if self.settings.summary_key is not None:
            fresh = Vouchers.of_live(live, self.settings.limits)
            read, seen = self._vouchers_seen
            # Rewritten when the fleet changed (the summary was), when the vouchers this run read
            # are not these (missing, forged, other code), or after a body disproved one (a read
            # without them): no request on a warm no-op.
            if self._summary_put or not vouched or (read and seen != fresh):
                self._publish_vouchers(fresh)
        return live

    def summary_misled(self) -> bool:
        """Whether a body read since the last call contradicted what a voucher said of it (a stale
        voucher, or one signed under a leaked key): a plan made from read_live_summarised must be
        made again with vouched=False. Clears the record, and keeps the vouched bodies read since
        in the local cache (one write), so the next run does not read them again."""
        disproved, self._disproved = self._disproved, []
        fetched, self._fetched = self._fetched, []
        rows = [(obj.key, obj.etag, body, obj.summary) for obj, body in fetched if obj.summary.has_document]
        if rows:
            ContentCache(self._cache_path(), self.settings.limits).put_many(rows)
        return bool(disproved)

    def _read_live(self, *, vouched: bool = False, fast: bool = False) -> dict[str, LiveObject]:
        limits = self.settings.limits
        cap = limits.max_body_bytes
        listing = self.list_pipeline_objects(fast=fast)
        wanted = {key: etag for key, etag, size in listing.values() if size is None or size <= cap}
        cache = ContentCache(self._cache_path(), limits)
        try:
            cached = cache.get_many(wanted)
            vouchers = self._vouchers(listing, cached) if vouched else {}
            to_read = {key: etag for key, etag in wanted.items() if key not in cached and key not in vouchers}
            # Which id each key to read has: built only when something is to be read (not on a no-op).
            ids = {key: pid for pid, (key, _, _) in listing.items() if key in to_read} if to_read else {}
            arrived: dict[str, tuple[Fetched, LiveObject]] = {}

            def read_on_arrival(key: str, found: Fetched) -> None:
                # Parsed in the reading thread as it comes, while the other reads wait on the
                # server, not after the last: the same read_now of the same (ETag, body) below.
                etag, body, _ = found
                if body is not None and key in ids:
                    arrived[key] = (found, LiveObject.read_now(ids[key], key, etag, body, limits))

            fetched = self._get_many(to_read, each=read_on_arrival)
            live: dict[str, LiveObject] = {}
            to_store: list[tuple[str, str, bytes, LiveSummary]] = []
            for pipeline_id, (key, etag, size) in listing.items():
                if key not in wanted:
                    live[pipeline_id] = LiveObject.unreadable(pipeline_id, key, etag, limits.too_big(size))
                    continue
                hit = cached.get(key)
                if hit is not None and hit.summary is not None:
                    live[pipeline_id] = LiveObject.from_body(
                        pipeline_id, key, etag, hit.body, hit.summary, limits
                    )
                    continue
                if hit is None and key in vouchers:
                    live[pipeline_id] = LiveObject.vouched(
                        pipeline_id, key, etag, vouchers[key], self._fetch_vouched, self._disproved_by, limits
                    )
                    continue
                if hit is not None:
                    body: bytes | None = hit.body
                elif key in fetched:
                    etag, body, size = fetched[key]
                    if body is None:
                        live[pipeline_id] = LiveObject.unreadable(
                            pipeline_id, key, etag, limits.too_big(size)
                        )
                        continue
                else:
                    body = None  # deleted between the listing and the read
                if body is None:
                    live[pipeline_id] = parse_live(pipeline_id, key, etag, body, limits)
                    continue
                early = arrived.get(key)
                if early is not None and early[0] is fetched.get(key):
                    obj = early[1]
                else:
                    obj = LiveObject.read_now(pipeline_id, key, etag, body, limits)
                live[pipeline_id] = obj
                to_store.append((key, etag, body, obj.summary))
            cache.put_many(to_store)
            cache.forget_except(wanted)
        finally:
            cache.close()
        return live

    # -- vouchers (pipeline_sync.vouchers) ---------------------------------------
    @property
    def vouchers_key(self) -> str:
        return f"{self.root}/{SUMMARY_FOLDER}/{VOUCHERS_FILE}"

    def _signed_where(self) -> str:
        """What signed objects (vouchers, the fleet summary) are bound to: this bucket and root."""
        return f"s3://{self.settings.bucket}/{self.root}"

    def _vouchers(self, listing: Mapping[str, Listed], cached: Mapping[str, Any]) -> dict[str, LiveSummary]:
        """{key: summary} the signed vouchers give for objects the local cache lacks, each at the
        ETag the listing shows; nothing (and no request) without a key, or when the cache lacks
        fewer than settings.vouch_min objects."""
        key = self.settings.summary_key
        missing = sum(1 for k, _, _ in listing.values() if k not in cached)
        if key is None or missing == 0 or missing < self.settings.vouch_min:
            return {}
        try:
            found = self._get_capped(self.vouchers_key, cap=SUMMARY_MAX_BYTES)
        except StoreError:
            return {}  # a role that may not read them: bodies are read instead
        vouchers = Vouchers.from_bytes(found[1] if found else None, key, self._signed_where())
        self._vouchers_seen = (True, vouchers)
        if vouchers is None:
            return {}
        usable = vouchers.usable(self.settings.limits)
        return {
            listed[0]: summary
            for pipeline_id, (etag, summary) in usable.items()
            if (listed := listing.get(pipeline_id)) is not None and listed[1] == etag
        }

    def _publish_vouchers(self, vouchers: Vouchers) -> None:
        """Write the vouchers; a failure costs the next fresh pod its bodies, nothing else."""
        assert self.settings.summary_key is not None
        body = vouchers.to_bytes(self.settings.summary_key, self._signed_where())
        with contextlib.suppress(StoreError):
            self._put_if(self.vouchers_key, body, {})

    def prefetch(self, objects: Iterable[LiveObject]) -> None:
        """Read, in parallel, the bodies of deferred objects a plan is about to open (each at the
        ETag it was listed with), so it does not read them one by one."""
        self.prefetch_in_background(objects)()

    def prefetch_in_background(self, objects: Iterable[LiveObject]) -> Callable[[], None]:
        """prefetch(objects) in a thread of its own; what it returns waits for that thread and
        raises what it raised. Meanwhile an object among them that the plan opens
        (_fetch_vouched) waits for its own body only, so the plan's entries are made while the
        bodies after them are still being read. A body the reads miss, or all of them after an
        error, is read when opened, as without a prefetch."""
        known = self._prefetched.keys() | self._arriving.keys()
        wanted = [o for o in objects if o.deferred and (o.key, o.etag) not in known]
        if not wanted:
            return _waits_for_nothing
        arriving = {(o.key, o.etag): threading.Event() for o in wanted}
        self._arriving.update(arriving)
        failed: list[Exception] = []

        def arrived(at: tuple[str, str], body: bytes | None) -> None:  # in a reading thread
            self._prefetched[at] = body
            arriving[at].set()

        def read() -> None:
            try:
                self._read_ahead(wanted, arrived)
            except Exception as exc:  # raised by the call that waits for the reads
                failed.append(exc)
            finally:
                for event in arriving.values():  # none waits for a body that will not come
                    event.set()

        reader = threading.Thread(target=read, name="pipeline-sync-prefetch", daemon=True)
        reader.start()

        def wait() -> None:
            reader.join()
            for at in arriving:
                self._arriving.pop(at, None)
            if failed:
                raise failed[0]

        return wait

    def _read_ahead(
        self, wanted: list[LiveObject], arrived: Callable[[tuple[str, str], bytes | None], None]
    ) -> None:
        """The bodies of wanted, each at its listed ETag, handed to arrived as each is read: through
        obstore when it stands in, the rest through botocore."""
        etags = {o.key: o.etag for o in wanted}
        read = self._fast_get_many(etags, each=lambda key, found: arrived((key, etags[key]), found[1]))
        rest = [o for o in wanted if o.key not in read]

        def read_one(obj: LiveObject) -> None:
            arrived((obj.key, obj.etag), self._get_at_etag(obj))

        with ThreadPoolExecutor(max_workers=self.settings.max_workers) as pool:
            for _ in pool.map(read_one, rest):  # raises the first read's error
                pass

    def _fetch_vouched(self, obj: LiveObject) -> bytes | None:
        """The body of a vouched object at the ETag it was listed with (prefetched, or read now);
        None when it is no longer there (changed or deleted since: then the voucher is
        disproved), or over the size limit."""
        at = (obj.key, obj.etag)
        arriving = self._arriving.get(at)
        if arriving is not None:
            arriving.wait()  # being read ahead
        body = self._prefetched.pop(at) if at in self._prefetched else self._get_at_etag(obj)
        if body is not None:
            self._fetched.append((obj, body))
        return body

    def _get_at_etag(self, obj: LiveObject) -> bytes | None:
        found = self._get_capped(obj.key, if_match=obj.etag)
        return found[1] if found is not None else None

    def _disproved_by(self, obj: LiveObject) -> None:
        self._disproved.append(obj.pipeline_id)

    # -- one partition: the fleet summary --------------------------------------
    def read_related(self, related: Related, *, listed: bool = False) -> dict[str, LiveObject]:
        """The live objects a plan of a few keys needs, each read afresh from S3: the objects at
        related.ids, and every object the fleet summary says has one of related.names or claims
        one of related.keys. Three requests when the summary is current; when it is not (missing,
        unreadable, another witness, or an object read is not at the version it records), or
        when listed is True (a write that gives a pipeline a name it did not have), it is
        rebuilt first from a listing, reading only objects it does not know at their listed ETag.

        A listed call right after an unlisted one of this run reuses its witness and summary, and
        the objects it read that the listing shows still at the version read.
        """
        summary: FleetSummary | None
        if listed and self._last_read is not None:
            witness, summary, seen = self._last_read
        else:
            witness, seen = self._read_witness(), {}
            summary, self._summary_etag = self._read_summary()
        rebuilt = False
        if listed or summary is None or summary.witness != witness:
            summary, rebuilt = self._rebuilt_summary(summary, witness), True
        while True:
            read, consistent = self._read_through(summary, related, seen)
            if consistent or rebuilt:
                break
            summary, rebuilt = self._rebuilt_summary(summary, witness), True
        self._summary = summary
        self._last_read = (witness, summary, read)
        live = {pipeline_id: obj for pipeline_id, obj in read.items() if obj is not None}
        self._narrow = True
        return live

    def _read_through(
        self, summary: FleetSummary, related: Related, seen: Mapping[str, LiveObject | None]
    ) -> tuple[dict[str, LiveObject | None], bool]:
        """(the related objects by id, read afresh, None where absent; whether each is at the
        version the summary records). seen holds objects read moments ago: one the summary (just
        rebuilt) records at the version read (or as absent) is not read again."""
        limits = self.settings.limits
        ids = sorted(summary.related_ids(related))
        reused = {i: seen[i] for i in ids if i in seen and _at(seen[i], summary.entries.get(i))}
        fetched = self._get_many(
            {self.pipeline_key(i): _etag_of(summary.entries.get(i)) for i in ids if i not in reused}
        )
        live: dict[str, LiveObject | None] = dict(reused)
        consistent = True
        for pipeline_id in ids:
            if pipeline_id in reused:
                continue
            key = self.pipeline_key(pipeline_id)
            known = summary.entries.get(pipeline_id)
            found = fetched.get(key)
            if found is None:
                consistent &= known is None
                live[pipeline_id] = None
                continue
            etag, body, size = found
            consistent &= known is not None and known[0] == etag
            if body is None:
                live[pipeline_id] = LiveObject.unreadable(pipeline_id, key, etag, limits.too_big(size))
            else:
                live[pipeline_id] = parse_live(pipeline_id, key, etag, body, limits)
        return live, consistent

    def _read_witness(self) -> str:
        """The ETag of Front50's pipelines marker (NO_MARKER when there is none); its value is
        kept, so a write of this run bumps the marker past it."""
        found = self._get_capped(self.marker_key(PIPELINES))
        if found is None:
            return NO_MARKER
        response, body = found
        value = read_change_marker(body)
        if value is not None:
            self._marker_seen[PIPELINES] = value
        return str(response["ETag"])

    def _read_summary(self) -> tuple[FleetSummary | None, str | None]:
        """(the fleet summary, its ETag), or (None, None) when absent or not readable as one (a
        role that may not read it, too: then each plan of a few keys rebuilds it from a listing)."""
        try:
            found = self._get_capped(self.summary_key, cap=SUMMARY_MAX_BYTES)
        except StoreError:
            return None, None
        if found is None:
            return None, None
        response, body = found
        summary = FleetSummary.from_bytes(body, self.settings.summary_key, self._signed_where())
        return summary, str(response["ETag"]) if summary is not None else None

    def _rebuilt_summary(self, old: FleetSummary | None, witness: str) -> FleetSummary:
        """The summary as of witness from a listing: entries of old still at their listed ETag are
        kept, the rest come from the local content cache or are read. Written back to S3."""
        limits = self.settings.limits
        cap = limits.max_body_bytes
        listing = self.list_pipeline_objects()
        known = old.entries if old is not None else {}
        entries: dict[str, Entry] = {}
        unknown: dict[str, str] = {}
        for pipeline_id, (key, etag, size) in listing.items():
            entry = known.get(pipeline_id)
            if entry is not None and entry[0] == etag:
                entries[pipeline_id] = entry
            elif size is not None and size > cap:
                entries[pipeline_id] = (etag, None, None, None)  # unreadable: it names nothing
            else:
                unknown[key] = pipeline_id
        if unknown:
            cache = ContentCache(self._cache_path(), limits)
            cached = cache.get_many({key: listing[pid][1] for key, pid in unknown.items()})
            fetched = self._get_many(
                {
                    key: listing[pipeline_id][1]
                    for key, pipeline_id in unknown.items()
                    if key not in cached or cached[key].summary is None
                }
            )
            for key, pipeline_id in unknown.items():
                hit = cached.get(key)
                if hit is not None and hit.summary is not None:
                    entries[pipeline_id] = entry_of(hit.summary, listing[pipeline_id][1])
                elif key in fetched:
                    etag, body, _ = fetched[key]
                    obj = parse_live(pipeline_id, key, etag, body, limits) if body is not None else None
                    entries[pipeline_id] = entry_of(obj.summary, etag) if obj else (etag, None, None, None)
        summary = FleetSummary(witness, entries)
        self._publish_summary(summary)
        return summary

    def _publish_summary(self, summary: FleetSummary, *, if_match: str | None = None) -> bool:
        """Write the summary unless S3 already holds exactly it; True when it is there now. A
        failure (a role that may only read, a race) costs nothing but the next run's rebuild."""
        body = summary.to_bytes(self.settings.summary_key, self._signed_where())
        condition = {"IfMatch": if_match} if if_match else {}
        try:
            if not if_match:
                head = self.client.head_object(Bucket=self.settings.bucket, Key=self.summary_key)
                if head.get("ETag") == f'"{md5_hex(body)}"':
                    self._summary_etag = str(head["ETag"])
                    return True
        except (ClientError, BotoCoreError):
            pass
        try:
            etag = self._put_if(self.summary_key, body, condition)
        except StoreError:
            return False
        if etag is None:  # someone else's summary is there now
            return False
        self._summary_etag, self._summary_put = etag, True
        return True

    def _signal_write(self, pipeline_id: str, entry: Entry | None) -> str | None:
        """Bump the pipelines marker after a write; when this run planned from a current summary
        and nobody else wrote since (the marker is still its witness: the bump is conditional),
        the summary gets the write and the new witness. Otherwise it is left to be rebuilt."""
        summary, self._summary = self._summary, None
        try:
            witness = self.bump_marker(PIPELINES, expect=summary.witness if summary else None)
        except StoreError as exc:
            return str(exc)
        if summary is not None and witness is not None:
            updated = summary.with_object(pipeline_id, entry, witness)
            if self._publish_summary(updated, if_match=self._summary_etag):
                self._summary = updated
        return None

    def _cache_path(self) -> Path | None:
        """The content cache file, or None (a cache in memory) when it is off or can't be made."""
        if not self.settings.use_cache:
            return None
        try:
            return default_cache_path(self.settings)
        except OSError:
            return None

    def read_pipeline(self, pipeline_id: str) -> LiveObject | None:
        """One pipeline object, fresh from S3, or None when absent (over the size limit: unreadable)."""
        key = self.pipeline_key(pipeline_id)
        found = self._get_capped(key)
        if found is None:
            return None
        response, body = found
        return self._live_of(pipeline_id.lower(), key, response, body)

    def _get_capped(
        self, key: str, cap: int | None = None, *, if_match: str | None = None
    ) -> tuple[Mapping[str, Any], bytes | None] | None:
        """(response, body) of one object, None when absent (with if_match: or no longer at that
        ETag); body None when over the size limit (cap, by default the limit on a pipeline body)."""
        condition = {"IfMatch": if_match} if if_match else {}
        try:
            response = self.client.get_object(Bucket=self.settings.bucket, Key=key, **condition)
            return response, read_capped(
                response, self.settings.limits.max_body_bytes if cap is None else cap
            )
        except ClientError as exc:
            if _error_code(exc) in {"NoSuchKey", "404"} or (
                if_match and _error_code(exc) in {"PreconditionFailed", "412"}
            ):
                return None
            raise StoreError(f"cannot read s3://{self.settings.bucket}/{key}: {exc}") from None
        except BotoCoreError as exc:
            raise StoreError(f"cannot read s3://{self.settings.bucket}/{key}: {exc}") from None

    def _live_of(
        self, pipeline_id: str, key: str, response: Mapping[str, Any], body: bytes | None
    ) -> LiveObject:
        """The object a capped read gave: parsed, or unreadable when read_capped refused its body."""
        limits = self.settings.limits
        if body is None:
            return LiveObject.unreadable(
                pipeline_id, key, response["ETag"], limits.too_big(_length(response))
            )
        return parse_live(pipeline_id, key, response["ETag"], body, limits)

    def _list(self, prefix: str, *, fast: bool = False) -> Iterable[dict[str, Any]]:
        """Every object under prefix, as botocore lists them. With fast (a fleet plan's read, never
        a write decision's) and an obstore reader standing in, the pages after the first are listed
        through obstore when it can list them as botocore would (fast_reads.list_after)."""
        bucket = self.settings.bucket
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            reader = self._fast_reader() if fast else None
            if reader is None:
                for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                    yield from self._noted(prefix, page.get("Contents", []))
                return
            first = self.client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=LIST_PAGE_KEYS)
            contents = first.get("Contents", [])
            yield from self._noted(prefix, contents)
            if not first.get("IsTruncated"):
                return
            # After the first page's last key; an empty page that says more follow: botocore, whole.
            after = {"StartAfter": str(contents[-1]["Key"])} if contents else {}
            rest = reader.list_after(prefix, after["StartAfter"]) if after else None
            if rest is not None:
                yield from self._noted(prefix, rest)
                return
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix, **after):
                yield from self._noted(prefix, page.get("Contents", []))
        except (ClientError, BotoCoreError) as exc:
            raise StoreError(f"cannot list s3://{bucket}/{prefix}: {exc}") from None

    def _noted(self, prefix: str, contents: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """contents, the newest LastModified among them (change markers aside) noted for its group."""
        group = prefix[len(self.root) + 1 :].strip("/")
        objects = (i for i in contents if not str(i["Key"]).endswith(MARKER_FILE))
        newest = max((str(i.get("LastModified", "")) for i in objects), default="")
        if newest > self._newest_listed.get(group, ""):
            self._newest_listed[group] = newest
        return contents

    def _get_many(
        self, wanted: Mapping[str, str | None], each: Callable[[str, Fetched], None] | None = None
    ) -> dict[str, Fetched]:
        """{key: (ETag, body, size)} of objects still there; body None when over the size limit.

        wanted maps each key to the ETag the caller saw it at (None: not seen). A large batch
        reads those at a known ETag through obstore first (pipeline_sync.store.fast_reads: a
        body only at that ETag); whatever it leaves, and the rest, botocore reads as it stands.
        each(key, found), when given, is called from a reading thread as obstore reads each key
        (botocore's reads are not reported).
        """
        found = self._fast_get_many({key: etag for key, etag in wanted.items() if etag}, each)
        keys = [key for key in wanted if key not in found]

        def get(key: str) -> tuple[str, Fetched | None]:
            read = self._get_capped(key)
            if read is None:
                return key, None  # deleted since the listing
            response, body = read
            return key, (response["ETag"], body, _length(response))

        if keys:
            with ThreadPoolExecutor(max_workers=self.settings.max_workers) as pool:
                found.update((key, value) for key, value in pool.map(get, keys) if value is not None)
        return found

    def _fast_get_many(
        self, at_etag: Mapping[str, str], each: Callable[[str, Fetched], None] | None = None
    ) -> dict[str, Fetched]:
        """{key: (ETag, body, size)} of the keys obstore read at the ETag given for each, when
        the batch is large enough and a reader stands in; the rest is for botocore to read.
        each(key, found): ObstoreReader.get_many's, as each key is read."""
        if len(at_etag) < MIN_BATCH or (reader := self._fast_reader()) is None:
            return {}
        return reader.get_many(at_etag, self.settings.limits.max_body_bytes, each)

    def _fast_reader(self) -> ObstoreReader | None:
        """The obstore reader standing in for this store's client while it is usable (it stops
        after an error, and in a fork)."""
        reader = self._obstore_reader
        return reader if reader is not None and reader.usable else None

    @cached_property
    def _obstore_reader(self) -> ObstoreReader | None:
        """Made on first use; None when PIPELINE_SYNC_S3_READER=botocore, the client was handed
        in (a test's, a caller's own), or obstore cannot reach S3 as the client does."""
        if not self._own_client or reader_setting() != "auto":
            return None
        credentials = s3_session().get_credentials()
        workers = self.settings.max_workers
        return ObstoreReader.for_client(self.client, self.settings.bucket, credentials, workers)

    # -- history ------------------------------------------------------------
    def keeps_history(self) -> bool:
        return self.versioning() is not None

    def versioning(self) -> str | None:
        """The bucket's versioning status ("Enabled" or "Suspended"), or None when never enabled."""
        try:
            response = self.client.get_bucket_versioning(Bucket=self.settings.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise StoreError(f"cannot read the versioning of s3://{self.settings.bucket}: {exc}") from None
        status = response.get("Status")
        return str(status) if status else None

    def pipeline_versions(self, pipeline_id: str) -> list[ObjectVersion]:
        """Every stored version of a pipeline object, newest first (delete markers left out)."""
        key = self.pipeline_key(pipeline_id)
        found = []
        try:
            paginator = self.client.get_paginator("list_object_versions")
            for page in paginator.paginate(Bucket=self.settings.bucket, Prefix=key):
                for item in page.get("Versions", []):
                    if item["Key"] == key:
                        found.append(
                            ObjectVersion(
                                version_id=str(item["VersionId"]),
                                etag=str(item["ETag"]),
                                last_modified=str(item["LastModified"]),
                                is_latest=bool(item.get("IsLatest")),
                            )
                        )
        except (ClientError, BotoCoreError) as exc:
            raise StoreError(f"cannot list versions of s3://{self.settings.bucket}/{key}: {exc}") from None
        return found

    def read_pipeline_version(self, pipeline_id: str, version_id: str) -> LiveObject:
        """One stored version of a pipeline object, parsed like a live one."""
        key = self.pipeline_key(pipeline_id)
        try:
            response = self.client.get_object(Bucket=self.settings.bucket, Key=key, VersionId=version_id)
            body = read_capped(response, self.settings.limits.max_body_bytes)
        except (ClientError, BotoCoreError) as exc:
            raise StoreError(
                f"cannot read version {version_id} of s3://{self.settings.bucket}/{key}: {exc}"
            ) from None
        return self._live_of(pipeline_id.lower(), key, response, body)

    # -- writes -------------------------------------------------------------
    def put_pipeline(self, pipeline_id: str, body: bytes, *, if_match: str | None) -> WriteResult:
        """Write a pipeline object only if it is still as planned (ETag), or still absent.

        A failed condition is a stale plan, unless the object now holds exactly these bytes:
        then an earlier attempt of this very write landed and only its response was lost.
        """
        key = self.pipeline_key(pipeline_id)
        condition = {"IfMatch": if_match} if if_match else {"IfNoneMatch": "*"}
        try:
            response = self.client.put_object(
                Bucket=self.settings.bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                **condition,
                **self.settings.put_encryption,
            )
        except ClientError as exc:
            if _error_code(exc) not in _PRECONDITION_CODES:
                raise StoreError(f"cannot write s3://{self.settings.bucket}/{key}: {exc}") from None
            landed = self._holds_exactly(key, body)
            if landed is None:
                raise StalePlanError(_stale_message(key, if_match)) from None
            response = landed
        except BotoCoreError as exc:
            raise StoreError(f"cannot write s3://{self.settings.bucket}/{key}: {exc}") from None
        written = parse_live(pipeline_id.lower(), key, str(response.get("ETag")), body, self.settings.limits)
        return WriteResult(
            key=key,
            etag=response.get("ETag"),
            version_id=response.get("VersionId"),
            marker_error=self._signal_write(pipeline_id, entry_of(written.summary, written.etag)),
        )

    def delete_pipeline(self, pipeline_id: str, *, if_match: str) -> WriteResult:
        """Delete a pipeline object only if it is still the version the plan saw."""
        key = self.pipeline_key(pipeline_id)
        try:
            response = self.client.delete_object(Bucket=self.settings.bucket, Key=key, IfMatch=if_match)
        except ClientError as exc:
            if _error_code(exc) in {"NoSuchKey", "404"}:
                response = {}  # already gone (an earlier attempt whose response was lost): same end state
            elif _error_code(exc) in _PRECONDITION_CODES:
                raise StalePlanError(_stale_message(key, if_match)) from None
            else:
                raise StoreError(f"cannot delete s3://{self.settings.bucket}/{key}: {exc}") from None
        except BotoCoreError as exc:
            raise StoreError(f"cannot delete s3://{self.settings.bucket}/{key}: {exc}") from None
        return WriteResult(
            key=key,
            etag=None,
            version_id=response.get("VersionId"),
            marker_error=self._signal_write(pipeline_id, None),
        )

    def _holds_exactly(self, key: str, body: bytes) -> dict[str, Any] | None:
        """The object's ETag and version when it holds exactly body, else None.

        It reads at most one byte more than body: an object of another length is not it.
        """
        try:
            response = self.client.get_object(Bucket=self.settings.bucket, Key=key)
            if read_capped(response, len(body)) == body:
                return {"ETag": response.get("ETag"), "VersionId": response.get("VersionId")}
        except (ClientError, BotoCoreError):
            return None
        return None

    def _bump_quietly(self, group: str) -> str | None:
        """Bump a marker; a failure is reported, not raised: the object is written, and
        Front50's background refresh still finds it within a minute."""
        try:
            self.bump_marker(group)
        except StoreError as exc:
            return str(exc)
        return None

    def bump_marker(self, group: str, *, expect: str | None = None) -> str | None:
        """Tell Front50 the group changed: {"lastModified": <epoch ms as a JSON number>}, past
        the value last read from the marker, so a clock behind Front50's still counts.

        With expect (the marker's ETag as last read, or NO_MARKER) the marker is first written
        only if it is still that one; the new ETag is returned when it was. Either way it is
        bumped: a marker someone else rewrote meanwhile is bumped unconditionally (None)."""
        stamp = next_change_stamp(
            self._marker_seen.get(group), newest_object_ms=_epoch_ms(self._newest_listed.get(group))
        )
        body = change_marker_body(stamp)
        witness = None
        if expect is not None:
            condition = {"IfNoneMatch": "*"} if expect == NO_MARKER else {"IfMatch": expect}
            witness = self._put_if(self.marker_key(group), body, condition)
        if witness is None:
            self._put(self.marker_key(group), body)
        self._marker_seen[group] = stamp
        return witness

    def repair_change_signals(self) -> list[str]:
        """Bump each group's marker when an object of it is newer than the marker: a write whose
        bump was lost (a crash between the two) is then seen by Front50 on its next load."""
        repaired = []
        groups = [PIPELINES, APPLICATIONS]
        if PIPELINES in self._newest_listed:
            pass  # a plan of this run listed them already
        elif self._narrow:
            # A plan of a few keys that found its summary current lists no pipelines; the next
            # fleet plan repairs a lost bump, and Front50's own refresh finds the object within a
            # minute. (A rerun of the interrupted write itself lists: its object is not at the
            # version the summary records.) The witness read gave the marker's value already.
            groups.remove(PIPELINES)
        else:
            self.list_pipeline_etags()
        self.list_applications()
        for group in groups:
            newest = _epoch_ms(self._newest_listed.get(group))
            marker = self._read_marker(group)
            if marker is not None:
                self._marker_seen[group] = marker
            if newest is not None and (marker is None or newest > marker):
                self.bump_marker(group)
                repaired.append(self.marker_key(group))
        return repaired

    def _read_marker(self, group: str) -> int | None:
        found = self._get_capped(self.marker_key(group))
        return read_change_marker(found[1]) if found is not None else None

    def read_application(self, application: str) -> dict[str, Any] | None:
        """Front50's application object (its email, ...), or None when absent or not a JSON object."""
        found = self._get_capped(self.application_key(application.lower()))
        if found is None or found[1] is None:
            return None
        try:
            document = json.loads(found[1])
        except ValueError:
            return None
        return document if isinstance(document, dict) else None

    def ensure_application(self, application: str, email: str | None) -> bool:
        """Create the application object when missing; True when it was created."""
        name = application.lower()
        if name in self._known_applications:
            return False
        key = self.application_key(name)
        try:
            self.client.head_object(Bucket=self.settings.bucket, Key=key)
            self._known_applications.add(name)
            return False
        except ClientError as exc:
            if _error_code(exc) not in {"404", "NoSuchKey", "NotFound"}:
                raise StoreError(f"cannot read s3://{self.settings.bucket}/{key}: {exc}") from None
        except BotoCoreError as exc:
            raise StoreError(f"cannot read s3://{self.settings.bucket}/{key}: {exc}") from None
        document = application_document(application, email)
        try:
            self.client.put_object(
                Bucket=self.settings.bucket,
                Key=key,
                Body=json.dumps(document, sort_keys=True).encode(),
                ContentType="application/json",
                IfNoneMatch="*",
                **self.settings.put_encryption,
            )
        except ClientError as exc:
            if _error_code(exc) in _PRECONDITION_CODES:
                self._known_applications.add(name)  # someone created it meanwhile: fine
                return False
            raise StoreError(f"cannot write s3://{self.settings.bucket}/{key}: {exc}") from None
        except BotoCoreError as exc:
            raise StoreError(f"cannot write s3://{self.settings.bucket}/{key}: {exc}") from None
        self._bump_quietly(APPLICATIONS)
        self._known_applications.add(name)
        return True

    def _put_if(self, key: str, body: bytes, condition: Mapping[str, str]) -> str | None:
        """Write key only under condition; its new ETag, or None when the condition failed."""
        try:
            response = self.client.put_object(
                Bucket=self.settings.bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                **condition,
                **self.settings.put_encryption,
            )
        except ClientError as exc:
            if _error_code(exc) in _PRECONDITION_CODES:
                return None
            raise StoreError(f"cannot write s3://{self.settings.bucket}/{key}: {exc}") from None
        except BotoCoreError as exc:
            raise StoreError(f"cannot write s3://{self.settings.bucket}/{key}: {exc}") from None
        return str(response.get("ETag"))

    def _put(self, key: str, body: bytes) -> None:
        try:
            self.client.put_object(
                Bucket=self.settings.bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                **self.settings.put_encryption,
            )
        except (ClientError, BotoCoreError) as exc:
            raise StoreError(f"cannot write s3://{self.settings.bucket}/{key}: {exc}") from None


def _waits_for_nothing() -> None:
    """What prefetch_in_background returns when it reads nothing."""


def _etag_of(entry: Entry | None) -> str | None:
    """The ETag a fleet summary entry records, None for an object it does not know."""
    return entry[0] if entry is not None else None


def _at(obj: LiveObject | None, entry: Entry | None) -> bool:
    """Whether an object read (None: absent) is where a summary entry (None: absent) says."""
    if obj is None or entry is None:
        return obj is None and entry is None
    return obj.etag == entry[0]


def md5_hex(body: bytes) -> str:
    """The MD5 of body: S3's ETag of an object PUT in one part without SSE-KMS."""
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def _epoch_ms(timestamp: str | None) -> int | None:
    """Epoch ms of an S3 LastModified (ISO 8601 text, as the shared session leaves it)."""
    if not timestamp:
        return None
    try:
        return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def read_capped(response: Mapping[str, Any], cap: int) -> bytes | None:
    """The body of a get_object response, or None when it is longer than cap bytes.

    A ContentLength over cap is refused without reading; otherwise at most cap + 1 bytes are
    read, whatever the length claimed. The stream is closed either way.
    """
    stream = response["Body"]
    try:
        length = _length(response)
        if length is not None and length > cap:
            return None
        chunks: list[bytes] = []
        total = 0
        while chunk := stream.read(cap + 1 - total):
            chunks.append(chunk)
            total += len(chunk)
            if total > cap:
                return None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        stream.close()


def _length(response: Mapping[str, Any]) -> int | None:
    length = response.get("ContentLength")
    return length if isinstance(length, int) else None


def _error_code(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return code if code else status


def _stale_message(key: str, if_match: str | None) -> str:
    seen = f"ETag {if_match}" if if_match else "no object"
    return (
        f"stale plan: s3 object {key} is no longer what the plan saw ({seen}); "
        "nothing was written. Run `pipeline-sync plan` again and approve the new plan."
    )
