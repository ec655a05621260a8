"""Hostile live objects: as deep as Front50 reads they plan; deeper or too big, they are left alone."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import sys
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner, Result
from s3support import BUCKET, workspace_of

from pipeline_sync import engine
from pipeline_sync.canonical import canonical_json
from pipeline_sync.cli import main
from pipeline_sync.diff import SHOWN_DEPTH, semantic_diff, shown, unified_diff
from pipeline_sync.engine import Selection
from pipeline_sync.errors import StalePlanError, StoreError
from pipeline_sync.live import LiveLimits, LiveObject, parse_body, parse_live, summarise
from pipeline_sync.nesting import nesting_depth, recursion_room
from pipeline_sync.plan import Plan
from pipeline_sync.provenance import MARKER_FIELD
from pipeline_sync.status import Status
from pipeline_sync.store.s3 import (
    ContentCache,
    RequestCounter,
    S3Settings,
    S3Store,
    default_cache_path,
    read_capped,
)

T = TypeVar("T")
KEY = "checkout/prod/deploy"
KIB = 1024
TOO_DEEP = "nests deeper than 1,000 levels; raise PIPELINE_SYNC_MAX_DEPTH to read it"


def nest(levels: int, leaf: str = "1") -> str:
    """JSON text of objects nested levels deep, written out (json.dumps would recurse)."""
    return '{"a":' * levels + leaf + "}" * levels


def pipeline_body(pipeline_id: str, depth: int, leaf: str = "1") -> bytes:
    """An unmanaged pipeline whose deepest value sits depth levels down (the pipeline is level 1)."""
    head = {"id": pipeline_id, "application": "legacy", "name": f"deep-{pipeline_id}", "stages": []}
    return (json.dumps(head)[:-1] + f', "deep": {nest(depth - 1, leaf)}}}').encode()


def deep_value(levels: int, leaf: object = 1) -> Any:
    value = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


def on_a_deep_stack(frames: int, call: Callable[[], T]) -> T:
    """call() run under frames more Python frames, as it is inside Dagster, click and pytest."""
    if frames == 0:
        return call()
    return on_a_deep_stack(frames - 1, call)


def put(store: S3Store, pipeline_id: str, body: bytes) -> None:
    store.client.put_object(Bucket=BUCKET, Key=store.pipeline_key(pipeline_id), Body=body)


def with_limits(store: S3Store, **env: str) -> S3Store:
    """The same bucket read under the limits env sets, as a run with those variables would."""
    settings = dataclasses.replace(store.settings, limits=LiveLimits.from_env(env))
    return S3Store(settings, client=store.client)


def counted(store: S3Store) -> RequestCounter:
    counter = RequestCounter()
    store.client.meta.events.register("before-call.s3", counter)
    return counter


class BytesRead:
    """Wraps every GetObject body so a test can see how many bytes were read from it."""

    def __init__(self) -> None:
        self.total = 0

    def hook(self, parsed: dict[str, Any], **_: Any) -> None:
        if "Body" in parsed:
            parsed["Body"] = _CountingStream(parsed["Body"], self)


class _CountingStream:
    def __init__(self, stream: Any, counter: BytesRead) -> None:
        self._stream, self._counter = stream, counter

    def read(self, amt: int | None = None) -> bytes:
        chunk: bytes = self._stream.read(amt)
        self._counter.total += len(chunk)
        return chunk

    def close(self) -> None:
        self._stream.close()


def bytes_read(store: S3Store) -> BytesRead:
    counter = BytesRead()
    store.client.meta.events.register("after-call.s3.GetObject", counter.hook)
    return counter


def cached_keys(store: S3Store) -> list[str]:
    with sqlite3.connect(default_cache_path(store.settings)) as db:
        return sorted(key for (key,) in db.execute(f"SELECT key FROM {ContentCache.TABLE}"))


@pytest.fixture
def recursion_limit_kept() -> Iterator[None]:
    before = sys.getrecursionlimit()
    yield
    assert sys.getrecursionlimit() == before  # raised only while a deep body is handled


# -- limits -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, LiveLimits(16 * 1024 * KIB, 1000)),
        ({"PIPELINE_SYNC_MAX_BODY_BYTES": "65536"}, LiveLimits(64 * KIB, 1000)),
        ({"PIPELINE_SYNC_MAX_DEPTH": " 2_000 "}, LiveLimits(16 * 1024 * KIB, 2000)),
        ({"PIPELINE_SYNC_MAX_BODY_BYTES": "", "PIPELINE_SYNC_MAX_DEPTH": ""}, LiveLimits()),
    ],
)
def test_limits_default_to_front50s_and_come_from_the_environment(
    env: dict[str, str], expected: LiveLimits
) -> None:
    assert S3Settings.from_env({"PIPELINE_SYNC_BUCKET": "b", **env}).limits == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"PIPELINE_SYNC_MAX_DEPTH": "lots"},
            "PIPELINE_SYNC_MAX_DEPTH is 'lots': set it to a whole number of levels from 1 to 10,000, "
            "or unset it for the default 1,000 (what Front50 itself reads).",
        ),
        (
            {"PIPELINE_SYNC_MAX_DEPTH": "20000"},
            "PIPELINE_SYNC_MAX_DEPTH is '20000': set it to a whole number of levels from 1 to 10,000, "
            "or unset it for the default 1,000 (what Front50 itself reads).",
        ),
        (
            {"PIPELINE_SYNC_MAX_BODY_BYTES": "16MiB"},
            "PIPELINE_SYNC_MAX_BODY_BYTES is '16MiB': set it to a whole number of bytes of at least 1 "
            "(a real pipeline is under 1 MiB), or unset it for the default 16 MiB.",
        ),
        (
            {"PIPELINE_SYNC_MAX_BODY_BYTES": "0"},
            "PIPELINE_SYNC_MAX_BODY_BYTES is '0': set it to a whole number of bytes of at least 1 "
            "(a real pipeline is under 1 MiB), or unset it for the default 16 MiB.",
        ),
    ],
)
def test_a_limit_that_is_not_a_number_in_range_is_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(StoreError) as raised:
        S3Settings.from_env({"PIPELINE_SYNC_BUCKET": "b", **env})
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("value", "depth"),
    [
        (1, 0),
        ("[[[", 0),
        ({}, 1),
        ([], 1),
        ({"a": [1, {"b": []}], "c": {}}, 4),
        (deep_value(1000), 1000),
        (deep_value(20_000), 10_001),  # stops one past MAX_ROOM
    ],
)
def test_nesting_depth_counts_open_objects_and_arrays_like_jackson(value: object, depth: int) -> None:
    assert nesting_depth(value) == depth


# -- parse and summarise ------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [990, 999, 1000])
@pytest.mark.parametrize("stack", [0, 300])
def test_a_body_as_deep_as_front50_reads_is_a_pipeline(
    depth: int, stack: int, recursion_limit_kept: None
) -> None:
    body = pipeline_body("p1", depth)
    obj = on_a_deep_stack(stack, lambda: parse_live("p1", "k", '"e"', body))
    summary = on_a_deep_stack(stack, lambda: obj.summary)
    assert (summary.problem, summary.has_document, summary.name) == (None, True, "deep-p1")
    assert obj.document is not None and nesting_depth(obj.document) == depth
    assert summary.content_digest == on_a_deep_stack(
        stack, lambda: summarise(obj.document, None).content_digest
    )
    lazy = LiveObject.from_body("p1", "k", '"e"', body, summary)  # as from the cache: parsed on first read
    assert on_a_deep_stack(stack, lambda: canonical_json(lazy.document)) == canonical_json(obj.document)


@pytest.mark.parametrize(
    "body",
    [
        pipeline_body("p1", 1001),
        pipeline_body("p1", 5000),
        b"[" * 1_000_000 + b"]" * 1_000_000,
        b"[" * 1_000_000,  # and never closed
    ],
)
def test_a_body_deeper_than_front50_reads_is_unreadable(body: bytes, recursion_limit_kept: None) -> None:
    obj = on_a_deep_stack(300, lambda: parse_live("p1", "k", '"e"', body))
    assert (obj.document, obj.problem, obj.summary.has_document) == (None, TOO_DEEP, False)


def test_the_depth_limit_is_exact_at_any_setting() -> None:
    limits = LiveLimits(max_depth=50)
    assert parse_body(pipeline_body("p1", 50), limits)[1] is None
    assert parse_body(pipeline_body("p1", 51), limits) == (
        None,
        "nests deeper than 50 levels; raise PIPELINE_SYNC_MAX_DEPTH to read it",
    )
    brackets_in_a_string = pipeline_body("p1", 2, leaf=json.dumps("[{" * 5000))
    assert parse_body(brackets_in_a_string, limits)[1] is None


def test_a_body_over_the_size_limit_is_not_parsed() -> None:
    limits = LiveLimits(max_body_bytes=64 * KIB)
    body = pipeline_body("p1", 2, leaf=json.dumps("x" * 64 * KIB))
    assert parse_body(body, limits) == (
        None,
        f"is {len(body):,} bytes, over the 64 KiB limit; raise PIPELINE_SYNC_MAX_BODY_BYTES to read it",
    )
    fine = pipeline_body("p1", 3)
    exactly = fine + b" " * (64 * KIB - len(fine))
    assert parse_body(exactly, limits) == (json.loads(fine), None)
    assert parse_body(exactly + b" ", limits)[1] == (
        "is 65,537 bytes, over the 64 KiB limit; raise PIPELINE_SYNC_MAX_BODY_BYTES to read it"
    )


def test_a_cached_summary_never_vouches_for_a_body_over_the_size_limit() -> None:
    fine = pipeline_body("p1", 3)
    summary = summarise(json.loads(fine), None)
    big = fine + b" " * 64 * KIB  # still the same JSON, now over the limit
    obj = LiveObject.from_body("p1", "k", '"e"', big, summary, LiveLimits(max_body_bytes=64 * KIB))
    assert obj.document is None and (obj.problem or "").endswith(
        "raise PIPELINE_SYNC_MAX_BODY_BYTES to read it"
    )


def test_a_deep_marker_is_not_kept_in_the_summary() -> None:
    body = json.dumps(
        {"id": "p1", MARKER_FIELD: {"key": "a/b/c", "renderDigest": "d", "x": {"y": 1}}}
    ).encode()
    deep = body[:-2] + b', "z": ' + nest(990).encode() + b"}}"
    summary = parse_live("p1", "k", '"e"', deep).summary
    assert summary.marker == {"key": "a/b/c", "renderDigest": "d"}
    assert len(summary.to_json()) < 400


def test_canonical_json_of_a_deep_document_is_its_compact_text(recursion_limit_kept: None) -> None:
    assert on_a_deep_stack(300, lambda: canonical_json(deep_value(1000))) == nest(1000)
    with pytest.raises(ValueError, match="nests deeper than 10,000 levels"):
        canonical_json(deep_value(20_000))


def test_recursion_room_is_shared_by_threads_and_given_back_by_the_last(recursion_limit_kept: None) -> None:
    before = sys.getrecursionlimit()
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with recursion_room(3000):
            inside.set()
            leave.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(10)
    with recursion_room(1000):
        assert sys.getrecursionlimit() >= before + 3000  # the other thread's room still holds
    assert sys.getrecursionlimit() >= before + 3000  # not given back while the other is inside
    leave.set()
    holder.join(10)
    assert sys.getrecursionlimit() == before


# -- diffs --------------------------------------------------------------------------------------


def test_a_diff_shows_a_deep_document_cut_where_it_is_too_deep_to_show(recursion_limit_kept: None) -> None:
    live = {"id": "p1", "deep": deep_value(998, leaf="old")}
    desired = {"id": "p1", "deep": deep_value(998, leaf="new")}
    diff = on_a_deep_stack(300, lambda: semantic_diff(live, desired))
    ((path, change),) = diff["values_changed"].items()
    assert path == "root['deep']" + "['a']" * (SHOWN_DEPTH - 1)
    old, new = change["old_value"], change["new_value"]
    assert old.startswith("<899 more levels, too deep to show; sha256 ") and old != new
    assert nesting_depth(diff) <= SHOWN_DEPTH + 3
    text = on_a_deep_stack(300, lambda: unified_diff(live, desired, KEY))
    changed = [line for line in text.splitlines()[2:] if line[0] in "+-"]
    assert [line[0] for line in changed] == ["-", "+"]  # one line each: the text is not split up
    for line, value in zip(changed, (old, new), strict=True):
        assert line[1:].strip() == f"a: {value}"
    assert nesting_depth(shown(live)) == SHOWN_DEPTH
    shallow = {"id": "p1", "stages": [{"refId": "1"}]}
    assert shown(shallow) is shallow


def test_a_diff_of_shallow_documents_is_unchanged() -> None:
    assert semantic_diff({"a": 1, "b": {"c": [1]}}, {"a": 2, "b": {"c": [1]}}) == {
        "values_changed": {"root['a']": {"new_value": 2, "old_value": 1}}
    }


# -- reads from the bucket ----------------------------------------------------------------------


class _Stream:
    """A response body that hands out data as botocore's StreamingBody does, counting what it gave."""

    def __init__(self, data: bytes) -> None:
        self.data, self.given, self.closed = data, 0, False

    def read(self, amt: int | None = None) -> bytes:
        chunk, self.data = (self.data, b"") if amt is None else (self.data[:amt], self.data[amt:])
        self.given += len(chunk)
        return chunk

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(
    ("length", "data", "cap", "expected", "read"),
    [
        (10, b"x" * 10, 10, b"x" * 10, 10),
        (None, b"x" * 10, 10, b"x" * 10, 10),
        (11, b"x" * 11, 10, None, 0),  # refused on its ContentLength: not read at all
        (None, b"x" * 1000, 10, None, 11),  # no length given: read one byte past the cap, no more
        (5, b"x" * 1000, 10, None, 11),  # a length that lies is no help
        (0, b"", 10, b"", 0),
    ],
)
def test_read_capped_reads_at_most_one_byte_past_the_cap(
    length: int | None, data: bytes, cap: int, expected: bytes | None, read: int
) -> None:
    stream = _Stream(data)
    response = {"Body": stream} if length is None else {"Body": stream, "ContentLength": length}
    assert read_capped(response, cap) == expected
    assert (stream.given, stream.closed) == (read, True)


@pytest.mark.parametrize(
    ("put_cap", "get_cap", "kept"), [(10, 1000, False), (1000, 10, False), (11, 11, True)]
)
def test_the_content_cache_neither_keeps_nor_returns_a_body_over_the_limit(
    tmp_path: Path, put_cap: int, get_cap: int, kept: bool
) -> None:
    path = tmp_path / "cache.sqlite"
    writer = ContentCache(path, LiveLimits(max_body_bytes=put_cap))
    writer.put_many([("k", '"e"', b"x" * 11, summarise({"id": "p1"}, None))])  # an 11-byte body
    writer.close()
    reader = ContentCache(path, LiveLimits(max_body_bytes=get_cap))
    try:
        assert ("k" in reader.get_many({"k": '"e"'})) is kept
    finally:
        reader.close()


def test_a_big_object_is_not_fetched_cached_or_parsed(store: S3Store) -> None:
    store = with_limits(store, PIPELINE_SYNC_MAX_BODY_BYTES="65536")
    big = pipeline_body("big", 2, leaf=json.dumps("x" * 200 * KIB))
    put(store, "big", big)
    put(store, "small", pipeline_body("small", 3))
    counter = counted(store)
    for _ in range(2):
        counter.counts.clear()
        live = store.read_live()
        assert live["big"].problem == (
            f"is {len(big):,} bytes, over the 64 KiB limit; raise PIPELINE_SYNC_MAX_BODY_BYTES to read it"
        )
        assert live["big"].document is None and live["small"].problem is None
        assert cached_keys(store) == [store.pipeline_key("small")]
    assert counter.counts == {"ListObjectsV2": 1}  # the second read: nothing fetched at all


def test_a_cached_body_is_not_used_once_the_listing_shows_it_over_the_limit(store: S3Store) -> None:
    big = pipeline_body("big", 2, leaf=json.dumps("x" * 100 * KIB))
    put(store, "big", big)
    assert store.read_live()["big"].problem is None  # cached whole under the default 16 MiB
    smaller = with_limits(store, PIPELINE_SYNC_MAX_BODY_BYTES="65536")
    counter = counted(smaller)
    assert (smaller.read_live()["big"].problem or "").startswith(f"is {len(big):,} bytes, over the 64 KiB")
    assert counter.counts == {"ListObjectsV2": 1}
    assert cached_keys(smaller) == []  # and dropped from the cache


def test_a_summary_cached_under_other_limits_is_not_reused(store: S3Store) -> None:
    put(store, "p1", pipeline_body("p1", 60))
    assert store.read_live()["p1"].problem is None
    stricter = with_limits(store, PIPELINE_SYNC_MAX_DEPTH="50")
    obj = stricter.read_live()["p1"]
    assert (obj.problem, obj.document) == (
        "nests deeper than 50 levels; raise PIPELINE_SYNC_MAX_DEPTH to read it",
        None,
    )


def test_an_object_that_grew_past_the_limit_since_the_listing_is_not_read_whole(
    store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = with_limits(store, PIPELINE_SYNC_MAX_BODY_BYTES="65536")
    put(store, "p1", pipeline_body("p1", 3))
    listed = store.list_pipeline_objects()
    put(store, "p1", pipeline_body("p1", 2, leaf=json.dumps("x" * 300 * KIB)))  # replaced meanwhile
    monkeypatch.setattr(store, "list_pipeline_objects", lambda *, fast=False: listed)
    read = bytes_read(store)
    obj = store.read_live()["p1"]
    assert (obj.problem or "").startswith("is 307,") and read.total == 0  # its ContentLength said so
    assert cached_keys(store) == []


@pytest.mark.parametrize("how", ["read_pipeline", "read_pipeline_version"])
def test_single_reads_check_the_length_before_reading(store: S3Store, how: str) -> None:
    store = with_limits(store, PIPELINE_SYNC_MAX_BODY_BYTES="65536")
    store.client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    big = pipeline_body("p1", 2, leaf=json.dumps("x" * 300 * KIB))
    put(store, "p1", big)
    read = bytes_read(store)
    if how == "read_pipeline":
        obj = store.read_pipeline("p1")
    else:
        obj = store.read_pipeline_version("p1", store.pipeline_versions("p1")[0].version_id)
    assert obj is not None and obj.document is None and read.total == 0
    assert obj.problem == (
        f"is {len(big):,} bytes, over the 64 KiB limit; raise PIPELINE_SYNC_MAX_BODY_BYTES to read it"
    )


def test_a_lost_write_check_reads_no_more_than_the_body_it_wrote(store: S3Store) -> None:
    put(store, "p1", b"x" * 300 * KIB)  # someone else's big object where the write meant to go
    read = bytes_read(store)
    with pytest.raises(StalePlanError):
        store.put_pipeline("p1", b'{"id": "p1"}', if_match='"what-the-plan-saw"')
    assert read.total == 0  # another length: not it, and not read


def test_a_big_object_costs_no_memory_to_leave_alone(store: S3Store) -> None:
    store = with_limits(store, PIPELINE_SYNC_MAX_BODY_BYTES="65536")
    put(store, "big", b"[" + b"1," * 4 * 1024 * KIB + b"1]")  # 8 MiB
    tracemalloc.start()
    try:
        live = store.read_live()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert live["big"].summary.has_document is False
    assert peak < 2 * 1024 * KIB


# -- plan, apply ------------------------------------------------------------------------------


def cli(project: Path, *args: str) -> Result:
    dirs = ["--catalog", str(project / "catalog"), "--templates", str(project / "templates")]
    return CliRunner().invoke(main, [*dirs, *args])


def test_plan_leaves_deep_and_big_objects_alone_and_plans_the_rest(
    project: Path, store: S3Store, monkeypatch: pytest.MonkeyPatch, recursion_limit_kept: None
) -> None:
    monkeypatch.setenv("PIPELINE_SYNC_BUCKET", BUCKET)
    monkeypatch.setenv("PIPELINE_SYNC_MAX_BODY_BYTES", "65536")
    for depth in (990, 1000, 1001, 5000):
        put(store, f"deep-{depth}", pipeline_body(f"deep-{depth}", depth))
    big = pipeline_body("big", 2, leaf=json.dumps("x" * 100 * KIB))
    put(store, "big", big)
    for _ in range(2):  # the second plan takes the summaries from the cache
        result = cli(project, "plan", "--out", str(project / "plan.json"))
        assert result.exit_code == 2, result.output
        assert "Summary: 13 create" in result.stdout
        key = "front50/pipelines/{}/pipeline-metadata.json"
        assert result.stderr.splitlines() == [
            f"warning: live object {key.format('big')} is unreadable (is {len(big):,} bytes, over the 64 KiB "
            "limit; raise PIPELINE_SYNC_MAX_BODY_BYTES to read it); left alone",
            f"warning: live object {key.format('deep-1001')} is unreadable ({TOO_DEEP}); left alone",
            f"warning: live object {key.format('deep-5000')} is unreadable ({TOO_DEEP}); left alone",
            "note: approvals of stacks dev, qa, stage, prod are unsigned (a typed name); declare `approvers:` "
            "in catalog/defaults.yaml to require SSH-signed approvals (README, Signed approvals).",
        ]
        saved = Plan.from_json(json.loads((project / "plan.json").read_text()))
        assert {str(e.status) for e in saved.entries.values()} == {"create"}


def test_a_pipeline_edited_into_a_deep_body_plans_as_drift_and_applies(
    project: Path, store: S3Store, monkeypatch: pytest.MonkeyPatch, recursion_limit_kept: None
) -> None:
    ws = workspace_of(project)
    plan = engine.plan(ws, store, Selection.of([KEY]))
    assert [r.outcome for r in engine.apply(ws, store, {KEY: plan.entries[KEY].digest}, approver="a")] == [
        "applied"
    ]
    pipeline_id = plan.entries[KEY].pipeline_id or ""
    live = store.read_pipeline(pipeline_id)
    assert live is not None and live.document is not None
    edited = json.dumps(live.document)[:-1] + f', "deep": {nest(998)}}}'  # 999 levels in all
    put(store, pipeline_id, edited.encode())

    monkeypatch.setenv("PIPELINE_SYNC_BUCKET", BUCKET)
    result = cli(project, "plan", "--select", KEY, "--out", str(project / "plan.json"))
    assert result.exit_code == 2, result.output
    assert f"drift: {KEY}" in result.stdout
    assert "changed in Deck since pipeline-sync wrote it; applying overwrites these fields: root['deep']" in (
        result.stdout
    )
    assert "<899 more levels, too deep to show; sha256 " in result.stdout
    saved = Plan.from_json(json.loads((project / "plan.json").read_text()))
    entry = saved.entries[KEY]
    assert (entry.status, entry.drift_fields) == (Status.DRIFT, ("root['deep']",))

    applied = cli(project, "apply", str(project / "plan.json"), "--approver", "carol")
    assert applied.exit_code == 0, applied.output
    after = store.read_pipeline(pipeline_id)
    assert after is not None and after.document is not None and "deep" not in after.document


def test_a_target_whose_id_holds_a_too_deep_object_is_a_conflict(project: Path, store: S3Store) -> None:
    ws = workspace_of(project)
    pipeline_id = engine.plan(ws, store, Selection.of([KEY])).entries[KEY].pipeline_id or ""
    put(store, pipeline_id, pipeline_body(pipeline_id, 1001))
    plan = engine.plan(ws, store, Selection.of(sorted(ws.catalog.targets)))
    assert plan.entries[KEY].status is Status.CONFLICT
    assert plan.entries[KEY].messages == (
        f"the live object at this pipeline's id {pipeline_id} is unreadable ({TOO_DEEP}); it is left "
        "alone. Pin a different id or adopt it.",
    )
    assert {str(e.status) for k, e in plan.entries.items() if k != KEY} == {"create"}
