"""Many GETs of one bucket at once through obstore (Rust), each at the ETag the caller expects,
and the rest of a long plan-time listing.

botocore spends about 1.5 ms of CPU on every GetObject on this machine, most of it matching the
response's headers against the fifty members of GetObject's output shape; obstore spends about
0.3 ms, and waits without the GIL. A plan that must read thousands of bodies (the first one
against a bucket, a rebuilt fleet summary) reads them here.

It is only ever a speed-up of reads botocore would make, never a second opinion:

- every GET carries If-Match with the ETag the caller listed (through botocore), and a body
  counts only when the response shows that same ETag, so whatever server obstore reached, a
  body it returns is byte for byte the one botocore's listing named;
- anything else (absent, changed since, an error, a server that ignored If-Match) is left out
  of the result, and the caller reads those keys through botocore as before;
- it is configured from the botocore client itself (the URL a presigned GET of this bucket
  has, the region, the CA bundle it verifies TLS with, the session's credentials, refreshed
  through botocore), and not used at all when that client reaches S3 through something obstore
  would not copy (a proxy, unverified TLS), in a fork of a process that has used obstore (its
  runtime's threads are not there: a GET would wait forever), or when
  PIPELINE_SYNC_S3_READER=botocore;
- after an error that is not about one object (unreachable, refused, throttled for good), or
  when too many objects come back absent or changed for a listing moments old (a different
  server: obstore reads AWS_* variables botocore may not), it stops for the rest of the run.

A fleet plan's listing (S3Store.read_live_summarised, never a write decision's) takes its first
page through botocore and, when there are more, the rest through obstore (list_after): botocore
spends about 70 us of CPU on each listed key, holding the GIL the plan's own thread needs; obstore
about 10 us, waiting without it. Its keys must be what botocore would list, so the whole rest is
listed again through botocore when they are not strictly ascending after the first page's last
key and under the prefix (a key object_store cannot parse, `a//b` or `..`, fails its listing and
lands here too), or an ETag is missing. object_store drops a key's trailing `/`: a key ending in
`pipeline-metadata.json/` would be listed as the pipeline object it names when that one is absent.
Such a key is not a pipeline to Front50 either, and a plan from that listing binds nothing: every
write decision lists through botocore (engine.fresh_plan), so its plan differs, and is refused.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from pipeline_sync.errors import StoreError

if TYPE_CHECKING:
    from obstore.store import S3Credential

log = logging.getLogger(__name__)

READER_ENV = "PIPELINE_SYNC_S3_READER"
READERS = ("auto", "botocore")
# Below this many bodies botocore's threads cost less than setting obstore up.
MIN_BATCH = 8
# Keys in one page of a listing: S3's maximum and default. obstore's pages are not visible to its
# caller; each LIST_PAGE_KEYS keys it lists (at least one page) are reported as one request.
LIST_PAGE_KEYS = 1000
# Absent or changed answers tolerated in one batch before obstore is taken to reach another server.
MAX_MISSES = 8
MISS_FRACTION = 0.05
CREDENTIALS_TTL = timedelta(seconds=60)
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
_PROBE_KEY = "pipeline-sync-probe"

# (ETag, body or None when over the cap, size): what S3Store._get_many gives for one key.
Fetched = tuple[str, bytes | None, int | None]
# Observers of each request obstore makes (the bench counts them beside botocore's own hook).
REQUEST_OBSERVERS: list[Callable[[str], None]] = []
# The process whose obstore runtime is running: its threads do not survive fork, and a forked
# child that used obstore, even through a store of its own, would wait for them forever.
_runtime_pid: int | None = None


def runs_here() -> bool:
    """Whether obstore can be used in this process: not a fork of one that has used it."""
    return _runtime_pid is None or _runtime_pid == os.getpid()


def _started_here() -> None:
    global _runtime_pid
    if _runtime_pid is None:
        _runtime_pid = os.getpid()


def reader_setting(environ: Mapping[str, str] | None = None) -> str:
    """PIPELINE_SYNC_S3_READER: auto (obstore for large batches where it can stand in) or botocore."""
    env = os.environ if environ is None else environ
    value = env.get(READER_ENV, "auto").strip().lower() or "auto"
    if value not in READERS:
        raise StoreError(f"{READER_ENV}={value!r} is not one of {', '.join(READERS)}")
    return value


@dataclass(frozen=True)
class Reach:
    """Where a botocore client sends a GET of this bucket: obstore's endpoint and addressing."""

    endpoint: str
    virtual_hosted: bool
    region: str


def reach_of(client: Any, bucket: str) -> Reach | None:
    """The endpoint a GET of bucket goes to, read from a presigned URL (no request is made), or
    None when its shape is not one obstore can be told (an access point, an odd host)."""
    try:
        url = client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": _PROBE_KEY}, ExpiresIn=60
        )
    except Exception:  # no credentials, a bucket botocore refuses: botocore decides
        return None
    parts = urlsplit(url)
    region = client.meta.region_name or "us-east-1"
    endpoint = f"{parts.scheme}://{parts.netloc}"
    path = unquote(parts.path)
    if path == f"/{bucket}/{_PROBE_KEY}":
        return Reach(endpoint, False, region)
    if path == f"/{_PROBE_KEY}" and parts.netloc.startswith(f"{bucket}."):
        return Reach(endpoint, True, region)
    return None


def stand_in_blocker(client: Any, environ: Mapping[str, str] | None = None) -> str | None:
    """Why obstore could not reach S3 as this client does (a proxy, TLS unverified), or None."""
    env = os.environ if environ is None else environ
    if getattr(client.meta.config, "proxies", None):
        return "the client uses a proxy"
    if any(env.get(name) for name in PROXY_VARIABLES):
        return "a proxy variable is set"
    overriding = env.get("AWS_ENDPOINT_URL_S3", "").rstrip("/")
    if overriding and overriding != (client.meta.endpoint_url or "").rstrip("/"):
        # obstore takes AWS_ENDPOINT_URL_S3 over the endpoint it is given; botocore does not
        return "AWS_ENDPOINT_URL_S3 names another endpoint than the client's"
    if _verify_of(client) is False:
        return "the client does not verify TLS"
    return None


def ca_bundle_of(client: Any) -> bytes | None:
    """The CA bundle botocore verifies TLS with (AWS_CA_BUNDLE, REQUESTS_CA_BUNDLE, ca_bundle in
    the AWS config), for obstore to trust too; None for botocore's default roots."""
    verify = _verify_of(client)
    if not isinstance(verify, str):
        return None
    try:
        return Path(verify).read_bytes()
    except OSError:
        return None


def _verify_of(client: Any) -> object:
    endpoint = getattr(client, "_endpoint", None)
    return getattr(getattr(endpoint, "http_session", None), "_verify", True)


class ObstoreReader:
    """GETs at known ETags through one obstore S3Store, made from a botocore client."""

    def __init__(self, store: Any, workers: int) -> None:
        self._store = store
        self._workers = workers
        self._lock = threading.Lock()
        self.stopped: str | None = None  # why it stopped for this run, once it has

    @classmethod
    def for_client(cls, client: Any, bucket: str, credentials: Any, workers: int) -> ObstoreReader | None:
        """A reader standing in for client on bucket, or None where it cannot (see the module)."""
        if credentials is None or not runs_here() or stand_in_blocker(client) is not None:
            return None
        bundle = ca_bundle_of(client)
        reach = reach_of(client, bucket)
        if reach is None:
            return None
        try:
            from obstore.store import S3Store as ObjectStore
        except ImportError:
            return None
        store = ObjectStore(
            bucket,
            endpoint=reach.endpoint,
            region=reach.region,
            virtual_hosted_style_request=reach.virtual_hosted,
            credential_provider=_CredentialsFrom(credentials),
            client_options={
                "allow_http": reach.endpoint.startswith("http://"),
                "connect_timeout": timedelta(seconds=5),
                "timeout": timedelta(seconds=30),
                "pool_max_idle_per_host": str(workers + 4),
                **({"root_certificate": bundle} if bundle else {}),
            },
            retry_config={
                "max_retries": 2,
                "retry_timeout": timedelta(seconds=10),
                "backoff": {
                    "init_backoff": timedelta(milliseconds=100),
                    "max_backoff": timedelta(seconds=2),
                    "base": 2,
                },
            },
        )
        return cls(store, workers)

    @property
    def usable(self) -> bool:
        return self.stopped is None and runs_here()

    def get_many(
        self, wanted: Mapping[str, str], cap: int, each: Callable[[str, Fetched], None] | None = None
    ) -> dict[str, Fetched]:
        """{key: (ETag, body, size)} for each key of wanted read at the ETag given for it; the
        rest (absent, changed, failed, or all of them once stopped) is left out. each(key, found)
        is called, from the reading thread, as soon as a key is read."""
        if not wanted or not self.usable:
            return {}
        misses = _Misses(max(MAX_MISSES, int(len(wanted) * MISS_FRACTION)))

        def get(item: tuple[str, str]) -> tuple[str, Fetched | None]:
            key, etag = item
            if not self.usable or misses.exceeded:
                return key, None
            found = self._get(key, etag, cap)
            if found is None:
                misses.add()
            elif each is not None:
                each(key, found)
            return key, found

        with ThreadPoolExecutor(max_workers=self._workers) as pool:
            results = list(pool.map(get, wanted.items()))
        if misses.exceeded:
            self._stop(f"{misses.count} of {len(wanted)} objects were not at their listed ETag")
        return {key: found for key, found in results if found is not None}

    def _get(self, key: str, etag: str, cap: int) -> Fetched | None:
        import obstore
        from obstore.exceptions import PreconditionError

        _report("GetObject")
        _started_here()
        try:
            result = obstore.get(self._store, key, options={"if_match": etag})
            meta = result.meta
            if meta.get("e_tag") != etag:
                return None  # a server that ignored If-Match
            size = meta.get("size")
            if isinstance(size, int) and size > cap:
                return etag, None, size
            body = bytes(result.bytes())
        except (FileNotFoundError, PreconditionError):
            return None
        except Exception as exc:  # botocore reads it instead, and says what is wrong
            self._stop(f"obstore raised {type(exc).__name__}")  # its text may name the endpoint
            return None
        if len(body) > cap:
            return etag, None, len(body)
        return etag, body, len(body)

    def list_after(self, prefix: str, start_after: str) -> list[dict[str, Any]] | None:
        """Every object under prefix after start_after (S3's StartAfter) as botocore lists it
        ({"Key", "ETag", "Size", "LastModified"}, the time as S3's ISO 8601 text), or None for
        botocore to list them instead (see the module: keys out of order, outside the prefix,
        a key object_store cannot parse, an ETag missing, an error)."""
        if not self.usable:
            return None
        import obstore
        from obstore.exceptions import InvalidPathError

        _started_here()
        found: list[dict[str, Any]] = []
        try:
            chunks = obstore.list(self._store, prefix=prefix, offset=start_after, chunk_size=LIST_PAGE_KEYS)
            for chunk in chunks:
                _report("ListObjectsV2")
                found.extend(_listed(meta) for meta in chunk)
        except InvalidPathError:
            log.info("listing through botocore: object_store cannot represent a key under %s", prefix)
            return None
        except Exception as exc:  # botocore lists it instead, and says what is wrong
            self._stop(f"obstore raised {type(exc).__name__} listing")
            return None
        if not found:
            _report("ListObjectsV2")  # a listing of nothing is still a request
        return found if _as_botocore_lists(found, prefix, start_after) else None

    def _stop(self, why: str) -> None:
        with self._lock:
            if self.stopped is None:
                self.stopped = why
                log.info("reading through botocore for the rest of this run: %s", why)


def _report(operation: str) -> None:
    """Tell REQUEST_OBSERVERS of one request obstore makes."""
    for observe in REQUEST_OBSERVERS:
        observe(operation)


def _listed(meta: Mapping[str, Any]) -> dict[str, Any]:
    """obstore's ObjectMeta in the shape of a botocore listing's item (LastModified as S3's text)."""
    when = meta["last_modified"]
    stamp = f"{when.astimezone(UTC):%Y-%m-%dT%H:%M:%S}.{when.microsecond // 1000:03d}Z"
    return {"Key": meta["path"], "ETag": meta["e_tag"], "Size": meta["size"], "LastModified": stamp}


def _as_botocore_lists(items: list[dict[str, Any]], prefix: str, start_after: str) -> bool:
    """Whether items can be what S3 lists after start_after under prefix: every key under the
    prefix, strictly ascending in S3's order (UTF-8 bytes) from start_after on, with an ETag."""
    previous = start_after.encode("utf-8", "surrogatepass")
    for item in items:
        key = item["Key"]
        encoded = key.encode("utf-8", "surrogatepass")
        if not key.startswith(prefix) or encoded <= previous or not item["ETag"]:
            return False
        previous = encoded
    return True


class _Misses:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.count += 1

    @property
    def exceeded(self) -> bool:
        return self.count > self.limit


class _CredentialsFrom:
    """obstore's credential provider over botocore's credentials: botocore refreshes them (an
    assumed role, web identity); obstore asks again after CREDENTIALS_TTL."""

    def __init__(self, credentials: Any) -> None:
        self._credentials = credentials

    def __call__(self) -> S3Credential:
        frozen = self._credentials.get_frozen_credentials()
        return {
            "access_key_id": frozen.access_key,
            "secret_access_key": frozen.secret_key,
            "token": frozen.token,
            "expires_at": datetime.now(UTC) + CREDENTIALS_TTL,
        }

    def __repr__(self) -> str:
        return "_CredentialsFrom(<botocore credentials>)"
