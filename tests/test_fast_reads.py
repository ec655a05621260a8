"""Bulk reads through obstore (pipeline_sync.store.fast_reads) are only a speed-up: a plan made
with them equals one made through botocore alone, and a body obstore brings back counts only at
the ETag botocore listed, whatever server obstore reached or however it failed."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import boto3
import pytest
from botocore.config import Config
from dagster_dev import moto_server
from s3support import workspace_of
from test_fleet_summary import apply_all, change_description, fleet

from pipeline_sync import engine
from pipeline_sync.errors import StoreError
from pipeline_sync.live import LiveLimits, LiveObject
from pipeline_sync.store import fast_reads
from pipeline_sync.store.fast_reads import (
    MIN_BATCH,
    ObstoreReader,
    reach_of,
    reader_setting,
    stand_in_blocker,
)
from pipeline_sync.store.s3 import RequestCounter, S3Settings, S3Store, make_s3_client, s3_session

pytestmark = pytest.mark.e2e
OBJECTS = 40


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def served(
    endpoint: str, monkeypatch: pytest.MonkeyPatch, aws_env: None, request: pytest.FixtureRequest
) -> str:
    """A fresh bucket on the moto server over HTTP; stores made from settings read through obstore."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    monkeypatch.setenv("PIPELINE_SYNC_S3_READER", "auto")
    name = re.sub(r"[^a-z0-9]+", "-", request.node.originalname.lower()).strip("-")
    case = re.sub(r"[^a-z0-9]+", "-", request.node.name[len(request.node.originalname) :].lower()).strip("-")
    bucket = f"fast-{name[: 56 - len(case)]}-{case}".rstrip("-")  # parametrized cases: a bucket each
    boto3.client("s3").create_bucket(Bucket=bucket)
    return bucket


class Observed:
    """Requests obstore made, by operation, and botocore's GetObjects on the shared session."""

    def __init__(self) -> None:
        self.obstore: list[str] = []
        self.botocore = RequestCounter()
        self._lock = threading.Lock()

    def __call__(self, operation: str) -> None:
        with self._lock:
            self.obstore.append(operation)


@pytest.fixture
def observed() -> Iterator[Observed]:
    seen = Observed()
    fast_reads.REQUEST_OBSERVERS.append(seen)
    s3_session().events.register("before-call.s3.GetObject", seen.botocore)
    try:
        yield seen
    finally:
        fast_reads.REQUEST_OBSERVERS.remove(seen)
        s3_session().events.unregister("before-call.s3.GetObject", seen.botocore)


def pipeline_key(pipeline_id: str) -> str:
    return f"front50/pipelines/{pipeline_id}/pipeline-metadata.json"


def seed(bucket: str, count: int = OBJECTS, note: str = "") -> dict[str, str]:
    """count pipeline objects; {key: ETag}."""
    client = boto3.client("s3")
    etags = {}
    for i in range(count):
        body = json.dumps({"id": f"p{i}", "name": f"n{i}{note}", "application": "app", "stages": []})
        key = pipeline_key(f"p{i}")
        etags[key] = client.put_object(Bucket=bucket, Key=key, Body=body.encode())["ETag"]
    return etags


def settings(bucket: str, tmp_path: Path, **changes: Any) -> S3Settings:
    return replace(S3Settings(bucket=bucket, use_cache=False, cache_dir=tmp_path / "cache"), **changes)


def view(live: dict[str, Any]) -> dict[str, Any]:
    return {pid: (obj.etag, obj.summary, obj.problem, obj.document) for pid, obj in live.items()}


def test_a_full_read_through_obstore_equals_botocore_with_one_get_each(
    served: str, tmp_path: Path, observed: Observed, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(served)
    fast = S3Store(settings(served, tmp_path))
    through_obstore = view(fast.read_live())
    assert observed.obstore == ["GetObject"] * OBJECTS
    assert observed.botocore.counts == {}
    monkeypatch.setenv("PIPELINE_SYNC_S3_READER", "botocore")
    through_botocore = view(S3Store(settings(served, tmp_path)).read_live())
    assert through_obstore == through_botocore
    assert observed.botocore.counts == {"GetObject": OBJECTS}


def test_each_body_obstore_reads_is_handed_over_as_soon_as_it_is_read(served: str, tmp_path: Path) -> None:
    """get_many's each(key, found): called from the reading threads, once for every key read, with
    what get_many returns for it (a plan's read-ahead hands each body to the entry waiting for it)."""
    listed = seed(served, MIN_BATCH + 3)
    changed = pipeline_key("p1")
    boto3.client("s3").put_object(Bucket=served, Key=changed, Body=b'{"id": "p1", "name": "later"}')
    handed: dict[str, Any] = {}
    threads: set[int] = set()

    def each(key: str, found: Any) -> None:
        assert key not in handed
        handed[key] = found
        threads.add(threading.get_ident())

    found = S3Store(settings(served, tmp_path))._fast_get_many(listed, each=each)
    assert len(found) == MIN_BATCH + 2 and changed not in found  # not at its listed ETag: not read
    assert handed == found
    assert threading.main_thread().ident not in threads


@pytest.mark.parametrize("changed_since_listing", [0, 3])
def test_each_body_obstore_reads_is_parsed_once_as_it_arrives(
    served: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, changed_since_listing: int
) -> None:
    """A full read parses each body obstore brings in the reading thread that brought it, while the
    other reads are still out, and never again; one changed since the listing (read through
    botocore at its new ETag) is parsed after the reads. Either way the objects are botocore's."""
    seed(served)
    store = S3Store(settings(served, tmp_path))
    listed = store.list_pipeline_objects

    def listing_then_edits(*, fast: bool = False) -> Any:
        found = listed(fast=fast)
        seed(served, changed_since_listing, note=" edited")
        return found

    monkeypatch.setattr(store, "list_pipeline_objects", listing_then_edits)
    parsed_in: list[str] = []
    read_now = LiveObject.read_now.__func__  # type: ignore[attr-defined]

    def counted(cls: type[LiveObject], *args: Any, **kwargs: Any) -> LiveObject:
        parsed_in.append(threading.current_thread().name)
        return read_now(cls, *args, **kwargs)

    monkeypatch.setattr(LiveObject, "read_now", classmethod(counted))
    through_obstore = view(store.read_live())
    here = threading.current_thread().name
    assert len(parsed_in) == OBJECTS
    assert parsed_in.count(here) == changed_since_listing
    monkeypatch.setenv("PIPELINE_SYNC_S3_READER", "botocore")
    assert through_obstore == view(S3Store(settings(served, tmp_path)).read_live())


def test_a_body_over_the_limit_is_left_unread_as_through_botocore(
    served: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listing's size keeps a big object from being read at all; one that grew past the
    limit since is read as far as its length and left without a body, as botocore's reads do."""
    listed = seed(served, MIN_BATCH)
    big = pipeline_key("p0")
    limited = settings(served, tmp_path, limits=LiveLimits(max_body_bytes=20))
    fast = S3Store(limited)._get_many(listed)
    monkeypatch.setenv("PIPELINE_SYNC_S3_READER", "botocore")
    assert fast == S3Store(limited)._get_many(listed)
    assert fast[big][1] is None and fast[big][2] == len(
        json.dumps({"id": "p0", "name": "n0", "application": "app", "stages": []})
    )


def test_an_object_changed_since_the_listing_is_read_through_botocore(
    served: str, tmp_path: Path, observed: Observed
) -> None:
    """If-Match refuses the ETag the caller saw: the key goes to botocore, which reads it as it is now."""
    listed = seed(served)
    changed = seed(served, 3, note=" edited")
    store = S3Store(settings(served, tmp_path))
    found = store._get_many(listed)
    assert {key: found[key][0] for key in changed} == changed
    assert observed.botocore.counts == {"GetObject": 3}
    assert len(observed.obstore) == OBJECTS
    assert store._fast_reader() is not None  # three misses of forty: still in use


def test_obstore_reaching_another_bucket_never_supplies_a_body(
    served: str, tmp_path: Path, observed: Observed
) -> None:
    """As if obstore's own AWS_* settings sent it elsewhere: same keys, other bodies. Every answer
    is refused at the ETag botocore listed, botocore reads them all, and obstore is dropped."""
    listed = seed(served)
    other = f"{served[:50]}-other"
    boto3.client("s3").create_bucket(Bucket=other)
    seed(other, note=" from elsewhere")
    store = S3Store(settings(served, tmp_path))
    credentials = s3_session().get_credentials()
    store._obstore_reader = ObstoreReader.for_client(
        make_s3_client(settings(other, tmp_path)), other, credentials, 4
    )
    found = store._get_many(listed)
    assert {key: etag for key, (etag, _, _) in found.items()} == listed
    assert all(b"elsewhere" not in (body or b"") for _, body, _ in found.values())
    assert observed.botocore.counts == {"GetObject": OBJECTS}
    assert store._fast_reader() is None  # stopped: more misses than a moment's edits explain


def reading_from_nowhere(
    bucket: str, endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[S3Store, ObstoreReader]:
    """A store on the moto server whose obstore reader was made for an endpoint nobody answers."""
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    store = S3Store(settings(bucket, tmp_path, endpoint_url=endpoint))
    nowhere = boto3.client(
        "s3", endpoint_url="http://127.0.0.1:9", config=Config(retries={"max_attempts": 1})
    )
    reader = ObstoreReader.for_client(nowhere, bucket, s3_session().get_credentials(), 4)
    assert reader is not None
    store._obstore_reader = reader
    return store, reader


def test_an_unreachable_obstore_endpoint_falls_back_to_botocore(
    served: str, endpoint: str, tmp_path: Path, observed: Observed, monkeypatch: pytest.MonkeyPatch
) -> None:
    listed = seed(served)
    store, reader = reading_from_nowhere(served, endpoint, tmp_path, monkeypatch)
    found = store._get_many(listed)
    assert {key: etag for key, (etag, _, _) in found.items()} == listed
    assert reader.stopped is not None and "127.0.0.1" not in reader.stopped
    assert observed.botocore.counts == {"GetObject": OBJECTS}


def test_obstore_stays_out_where_aws_endpoint_url_s3_would_send_it_elsewhere(
    served: str, endpoint: str, tmp_path: Path
) -> None:
    """obstore prefers AWS_ENDPOINT_URL_S3 to the endpoint it is given; botocore does not."""
    assert S3Store(settings(served, tmp_path))._fast_reader() is not None
    assert S3Store(settings(served, tmp_path, endpoint_url=endpoint + "/"))._fast_reader() is not None
    elsewhere = S3Store(settings(served, tmp_path, endpoint_url=endpoint.replace("127.0.0.1", "localhost")))
    assert elsewhere._fast_reader() is None


def test_a_server_that_ignores_if_match_is_not_believed(
    served: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body whose response names another ETag than the one asked for is not taken."""
    listed = seed(served)
    reader = S3Store(settings(served, tmp_path))._fast_reader()
    assert reader is not None

    class Answer:
        meta: ClassVar[dict[str, Any]] = {"e_tag": '"0123"', "size": 2}

        def bytes(self) -> bytes:
            return b"{}"

    monkeypatch.setattr("obstore.get", lambda *args, **kwargs: Answer())
    assert reader.get_many(dict(list(listed.items())[:3]), 1 << 20) == {}


def test_a_plan_through_obstore_with_vouchers_equals_the_plan_from_every_body(
    served: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, observed: Observed
) -> None:
    """First plan, apply, a template change, then a fresh pod that reads vouchers and fetches
    the bodies its diffs open (prefetch): the same plan as botocore's reads of every body."""
    monkeypatch.setenv("PIPELINE_SYNC_BUCKET", served)
    project = fleet(tmp_path / "p", 6)
    key = b"k" * 32
    base = settings(served, tmp_path, summary_key=key, vouch_min=1)
    apply_all(project, S3Store(replace(base, cache_dir=tmp_path / "first", use_cache=True)))
    change_description(project)
    workspace = workspace_of(project)
    pod = S3Store(replace(base, cache_dir=tmp_path / "pod", use_cache=True))
    observed.obstore.clear()
    through_obstore = engine.plan(workspace, pod)
    assert observed.obstore, "the fresh pod's changed bodies were read ahead through obstore"
    monkeypatch.setenv("PIPELINE_SYNC_S3_READER", "botocore")
    every_body = S3Store(replace(base, summary_key=None))
    every_body.read_live_summarised = None  # type: ignore[assignment,method-assign]
    truth = engine.plan(workspace, every_body)
    assert {k: (e.status, e.digest) for k, e in through_obstore.entries.items()} == {
        k: (e.status, e.digest) for k, e in truth.entries.items()
    }
    assert any(e.actionable for e in truth.entries.values())


ODD_IDS = ("a b", "ü-ñ", "x%20y", "p+q", "a&b", "lt<gt>", "dot.", "q?x", "h#x", "star*", "semi;x", "emoji😀")


@pytest.fixture
def short_pages(monkeypatch: pytest.MonkeyPatch) -> int:
    """Listing pages of 7 keys at the client: a fleet plan's first page through botocore, the rest
    through obstore in chunks of 7 (each reported as one request), with a few dozen objects."""
    monkeypatch.setattr("pipeline_sync.store.s3.LIST_PAGE_KEYS", 7)
    monkeypatch.setattr(fast_reads, "LIST_PAGE_KEYS", 7)
    return 7


def seed_keys(bucket: str, keys: list[str]) -> None:
    client = boto3.client("s3")
    for key in keys:
        client.put_object(Bucket=bucket, Key=key, Body=b'{"id": "x", "name": "x", "application": "app"}')


def listing_of(store: S3Store, *, fast: bool) -> tuple[list[tuple[str, str, int, str]], dict[str, str]]:
    """Every object under the pipelines prefix as _list gives it, and the newest time it noted."""
    items = [
        (i["Key"], i["ETag"], i["Size"], i["LastModified"])
        for i in store._list("front50/pipelines/", fast=fast)
    ]
    return items, dict(store._newest_listed)


def botocore_listing(bucket: str, tmp_path: Path) -> tuple[list[tuple[str, str, int, str]], dict[str, str]]:
    store = S3Store(settings(bucket, tmp_path))
    store._obstore_reader = None  # type: ignore[assignment]
    return listing_of(store, fast=True)


def test_a_fleet_plans_listing_through_obstore_is_botocores_listing(
    served: str, tmp_path: Path, observed: Observed, short_pages: int
) -> None:
    """Keys with spaces, non-ASCII, percent signs, plus and ampersand, over several pages: the
    same keys, ETags, sizes and LastModified texts, in the same order, as botocore lists them."""
    seed(served, 30)
    seed_keys(served, [pipeline_key(i) for i in ODD_IDS])
    store = S3Store(settings(served, tmp_path))
    counter = RequestCounter()
    store.client.meta.events.register("before-call.s3", counter)
    fast = listing_of(store, fast=True)
    assert fast == botocore_listing(served, tmp_path)
    assert len(fast[0]) == 30 + len(ODD_IDS)
    assert counter.counts == {"ListObjectsV2": 1}  # the first page; obstore listed the rest
    assert observed.obstore == ["ListObjectsV2"] * -(-(len(fast[0]) - short_pages) // short_pages)
    assert store.list_pipeline_objects(fast=True) == store.list_pipeline_objects()


def test_an_empty_first_page_that_says_more_follow_is_listed_whole_through_botocore(
    served: str, tmp_path: Path, observed: Observed, short_pages: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No key to start obstore after: nothing is skipped, botocore lists from the beginning."""
    seed(served, 20)
    store = S3Store(settings(served, tmp_path))
    real = store.client.list_objects_v2
    answers = iter([{"IsTruncated": True}])  # the first page only; the paginator's are real

    def first_page_empty(**kwargs: Any) -> dict[str, Any]:
        return next(answers, None) or real(**kwargs)

    monkeypatch.setattr(store.client, "list_objects_v2", first_page_empty)
    assert listing_of(store, fast=True) == botocore_listing(served, tmp_path)
    assert "ListObjectsV2" not in observed.obstore


def test_a_write_decisions_listing_never_goes_through_obstore(
    served: str, tmp_path: Path, observed: Observed, short_pages: int
) -> None:
    seed(served, 20)
    store = S3Store(settings(served, tmp_path))
    assert store._fast_reader() is not None
    store.read_live()
    store.list_pipeline_etags()
    assert "ListObjectsV2" not in observed.obstore
    store.read_live_summarised()
    assert "ListObjectsV2" in observed.obstore


@pytest.mark.parametrize(
    "odd_key",
    [
        "front50/pipelines//empty-segment/pipeline-metadata.json",  # object_store cannot parse it
        "front50/pipelines/zz/../pipeline-metadata.json",
        pipeline_key("p5") + "/",  # listed by object_store as p5's own key: a twin, out of order
    ],
    ids=["empty-segment", "dot-dot", "trailing-slash-twin"],
)
def test_keys_obstore_cannot_list_as_they_are_send_the_listing_back_to_botocore(
    served: str, tmp_path: Path, observed: Observed, short_pages: int, odd_key: str
) -> None:
    seed(served, 20)
    seed_keys(served, [odd_key])
    store = S3Store(settings(served, tmp_path))
    fast = listing_of(store, fast=True)
    assert fast == botocore_listing(served, tmp_path)
    assert odd_key in [key for key, *_ in fast[0]]
    assert store._fast_reader() is not None  # a listing it gave back does not stop its GETs


def test_a_lone_trailing_slash_key_is_what_the_plan_alone_may_see(
    served: str, tmp_path: Path, short_pages: int
) -> None:
    """The case the listing's checks cannot catch (see fast_reads): object_store lists a lone
    `.../pipeline-metadata.json/` as the pipeline object it names. Only a plan's read sees it; the
    listing every write decision reads, botocore's, does not."""
    seed(served, 20)
    seed_keys(served, [pipeline_key("zz-phantom") + "/"])
    store = S3Store(settings(served, tmp_path))
    assert "zz-phantom" in store.list_pipeline_objects(fast=True)
    assert "zz-phantom" not in store.list_pipeline_objects()
    assert "zz-phantom" not in store.read_live()


def test_an_obstore_listing_that_fails_is_botocores_and_stops_obstore(
    served: str, endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, short_pages: int
) -> None:
    seed(served, 20)
    store, reader = reading_from_nowhere(served, endpoint, tmp_path, monkeypatch)
    fast = listing_of(store, fast=True)
    assert len(fast[0]) == 20
    assert [key for key, *_ in fast[0]] == sorted(pipeline_key(f"p{i}") for i in range(20))
    assert reader.stopped is not None and "listing" in reader.stopped


def test_the_setting_and_the_cases_obstore_stays_out(
    served: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert reader_setting({}) == "auto"
    assert reader_setting({"PIPELINE_SYNC_S3_READER": " BotoCore "}) == "botocore"
    with pytest.raises(StoreError, match="PIPELINE_SYNC_S3_READER"):
        reader_setting({"PIPELINE_SYNC_S3_READER": "curl"})
    assert S3Store(settings(served, tmp_path))._fast_reader() is not None
    handed_in = boto3.client("s3")
    assert S3Store(settings(served, tmp_path), client=handed_in)._fast_reader() is None
    monkeypatch.setenv("PIPELINE_SYNC_S3_READER", "botocore")
    assert S3Store(settings(served, tmp_path))._fast_reader() is None
    monkeypatch.setenv("PIPELINE_SYNC_S3_READER", "auto")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert S3Store(settings(served, tmp_path))._fast_reader() is None
    monkeypatch.delenv("HTTPS_PROXY")
    client = boto3.client("s3")
    assert stand_in_blocker(client, {}) is None
    unverified = boto3.client("s3", verify=False)
    assert stand_in_blocker(unverified, {}) == "the client does not verify TLS"


def test_a_fork_of_a_process_that_used_obstore_reads_through_botocore(served: str, tmp_path: Path) -> None:
    """obstore's runtime threads do not survive fork, and a GET in the child would wait forever,
    even through a store the child makes itself: the child's plans read through botocore."""
    listed = seed(served, MIN_BATCH)
    parent = S3Store(settings(served, tmp_path))
    assert len(parent._get_many(listed)) == MIN_BATCH
    assert parent._fast_reader() is not None
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's verdict is its exit code
        signal.alarm(20)  # a hang fails the test instead of stalling it
        child = S3Store(settings(served, tmp_path))
        found = child._get_many(listed)
        ok = child._fast_reader() is None and parent._fast_reader() is None and len(found) == MIN_BATCH
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_where_a_get_goes_is_read_from_botocore_itself(aws_env: None) -> None:
    """Path style on a custom endpoint; virtual hosts on AWS; a dotted bucket on AWS in path style."""
    local = boto3.client("s3", endpoint_url="http://127.0.0.1:9", region_name="us-east-1")
    reach = reach_of(local, "bucket-a")
    assert reach is not None and (reach.endpoint, reach.virtual_hosted) == ("http://127.0.0.1:9", False)
    aws = boto3.client("s3", region_name="eu-west-1")
    hosted = reach_of(aws, "bucket-a")
    assert hosted is not None and hosted.virtual_hosted and hosted.endpoint.startswith("https://bucket-a.s3")
    dotted = reach_of(aws, "my.dotted.bucket")
    assert dotted is not None and not dotted.virtual_hosted


def test_credentials_come_from_botocore_each_time_and_stay_out_of_repr() -> None:
    class Rotating:
        def __init__(self) -> None:
            self.calls = 0

        def get_frozen_credentials(self) -> Any:
            self.calls += 1
            return type(
                "Frozen", (), {"access_key": f"AK{self.calls}", "secret_key": "hunter2", "token": None}
            )

    source = Rotating()
    provide = fast_reads._CredentialsFrom(source)
    assert provide()["access_key_id"] == "AK1"
    assert provide()["access_key_id"] == "AK2"
    assert "hunter2" not in repr(provide)
