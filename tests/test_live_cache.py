"""Live summaries: computed once per (key, ETag), cached with the body, the document parsed on demand."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest

from pipeline_sync import live
from pipeline_sync.live import LiveObject, LiveSummary, parse_live, summarise
from pipeline_sync.provenance import MARKER_FIELD, content_digest
from pipeline_sync.store.s3 import ContentCache, RequestCounter, S3Store, default_cache_path

MANAGED = {
    "id": "p1",
    "application": "checkout",
    "name": "Deploy",
    "stages": [],
    MARKER_FIELD: {"key": "checkout/dev/deploy", "renderDigest": "d"},
}


def _put(store: S3Store, pipeline_id: str, document: dict[str, object]) -> None:
    store.put_pipeline(pipeline_id, json.dumps(document).encode(), if_match=None)


def test_summary_holds_what_a_plan_reads() -> None:
    summary = summarise(MANAGED, None)
    assert summary == LiveSummary(
        problem=None,
        has_document=True,
        application="checkout",
        name="Deploy",
        marker={"key": "checkout/dev/deploy", "renderDigest": "d"},
        content_digest=content_digest(MANAGED),
    )
    assert LiveSummary.from_json(summary.to_json()) == summary
    assert summarise({"id": "x", "name": 3}, None).name is None  # not a string: no name
    assert summarise(None, "not a JSON object") == LiveSummary("not a JSON object", has_document=False)


@pytest.mark.parametrize(
    "text", ["", "[]", '{"problem": 1}', '{"problem": null, "has_document": true, "marker": 3}']
)
def test_a_stored_summary_that_is_not_one_is_ignored(text: str) -> None:
    assert LiveSummary.from_json(text) is None


def test_a_lazy_object_parses_its_body_on_first_read_only() -> None:
    body = json.dumps(MANAGED).encode()
    summary = summarise(MANAGED, None)
    obj = LiveObject.from_body("p1", "k", '"e"', body, summary)
    assert obj.summary is summary and obj.problem is None
    first = obj.document
    assert first == MANAGED and obj.document is first


def test_nan_and_infinity_are_not_json() -> None:
    obj = parse_live("p1", "k", '"e"', b'{"id": "p1", "x": NaN}')
    assert obj.document is None and "NaN is not JSON" in (obj.problem or "")
    assert not obj.summary.has_document


def test_second_read_takes_summaries_from_the_cache(store: S3Store) -> None:
    _put(store, "p1", MANAGED)
    _put(store, "p2", {"id": "p2", "application": "a", "name": "n"})
    first = store.read_live()
    again = store.read_live()
    assert {k: v.summary for k, v in again.items()} == {k: v.summary for k, v in first.items()}
    assert again["p1"]._summary is not None  # from the cache, not computed from the document
    assert again["p1"]._body is not None  # and not parsed yet
    assert again["p1"].document == MANAGED


def test_summaries_of_other_code_are_recomputed(store: S3Store, monkeypatch: pytest.MonkeyPatch) -> None:
    _put(store, "p1", MANAGED)
    store.read_live()
    monkeypatch.setattr(live, "SUMMARY_FINGERPRINT", "another version of the code")
    again = store.read_live()
    assert again["p1"]._body is None  # parsed afresh: the stored summary was not trusted
    assert again["p1"].summary == summarise(MANAGED, None)
    cache = ContentCache(default_cache_path(store.settings))
    try:
        (stored,) = cache.get_many({store.pipeline_key("p1"): again["p1"].etag}).values()
    finally:
        cache.close()
    assert stored.summary == summarise(MANAGED, None)  # stored again, under the running code


def test_a_corrupt_summary_is_recomputed(store: S3Store) -> None:
    _put(store, "p1", MANAGED)
    store.read_live()
    with sqlite3.connect(default_cache_path(store.settings)) as db:
        db.execute(f"UPDATE {ContentCache.TABLE} SET summary = 'garbage'")
    again = store.read_live()
    assert again["p1"].summary == summarise(MANAGED, None)


def test_a_cache_of_the_old_format_is_replaced(store: S3Store) -> None:
    path = default_cache_path(store.settings)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE objects (key TEXT PRIMARY KEY, etag TEXT NOT NULL, body BLOB NOT NULL)")
        db.execute("INSERT INTO objects VALUES ('front50/pipelines/p1/pipeline-metadata.json', 'x', 'y')")
    _put(store, "p1", MANAGED)
    assert store.read_live()["p1"].document == MANAGED
    with sqlite3.connect(path) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {ContentCache.TABLE}


def test_a_corrupt_cache_file_is_replaced(store: S3Store) -> None:
    _put(store, "p1", MANAGED)
    path = default_cache_path(store.settings)
    path.write_bytes(b"this is not a sqlite database" * 100)
    assert store.read_live()["p1"].document == MANAGED
    with sqlite3.connect(path) as db:  # made again, and holding the object
        assert db.execute(f"SELECT count(*) FROM {ContentCache.TABLE}").fetchone() == (1,)


def test_a_cache_that_cannot_be_made_only_costs_reads(store: S3Store, tmp_path: Path) -> None:
    _put(store, "p1", MANAGED)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory should be")
    settings = dataclasses.replace(store.settings, cache_dir=blocker / "cache")
    counter = RequestCounter()
    store.client.meta.events.register("before-call.s3", counter)
    for _ in range(2):
        assert S3Store(settings, client=store.client).read_live()["p1"].document == MANAGED
    assert counter.counts == {"ListObjectsV2": 2, "GetObject": 2}


def test_a_document_that_cannot_be_digested_is_unreadable() -> None:
    obj = parse_live("p1", "k", '"e"', b'{"id": "p1", "name": "\\ud800"}')  # a lone surrogate
    assert obj.document is not None  # valid JSON, but not text that can be encoded and hashed
    assert not obj.summary.has_document
    assert (obj.problem or "").startswith("cannot be compared")
