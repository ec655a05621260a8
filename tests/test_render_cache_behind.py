"""A fleet plan stores its new renders while it goes on (RenderCache.writes_behind): the write runs in
a thread of its own, no write outlives the plan, and what a write raised is not lost."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest
from test_plan_overlap import applied

from pipeline_sync import engine
from pipeline_sync.render_cache import TABLE, CachedRender, RenderCache
from pipeline_sync.store.s3 import S3Store

WAIT = 20.0  # seconds a test waits for another thread before calling it stuck
SLOW_WRITE = 0.3  # seconds a slowed write sleeps before writing


def row(number: int) -> tuple[str, CachedRender]:
    canonical = f'{{"application":"svc","id":"id-{number}","name":"deploy"}}'
    return f"key-{number}", CachedRender(
        pipeline_id=f"id-{number}", canonical=canonical, problems=(), references=()
    )


def rows_in(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {key for (key,) in db.execute(f"SELECT key FROM {TABLE}")}


def slowed(monkeypatch: pytest.MonkeyPatch, threads: list[str] | None = None) -> None:
    """Every write sleeps SLOW_WRITE seconds first, noting the thread it runs in."""
    original = RenderCache._store_now

    def slow(self: RenderCache, new: Mapping[str, CachedRender], used: Iterable[str]) -> None:
        if threads is not None:
            threads.append(threading.current_thread().name)
        time.sleep(SLOW_WRITE)
        original(self, new, used)

    monkeypatch.setattr(RenderCache, "_store_now", slow)


@pytest.fixture
def slow_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, RenderCache]:
    """A render cache file not made yet, and its cache, whose writes are slowed (slowed)."""
    path = tmp_path / "renders.sqlite"
    slowed(monkeypatch)
    return path, RenderCache(path)


def test_a_store_returns_at_once_and_leaving_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "renders.sqlite"
    cache = RenderCache(path)
    threads: list[str] = []
    slowed(monkeypatch, threads)
    with cache.writes_behind():
        started = time.monotonic()
        cache.store(dict([row(1), row(2)]))
        assert time.monotonic() - started < SLOW_WRITE  # returned before the write could end
        assert not path.exists() or rows_in(path) == set()
    assert rows_in(path) == {"key-1", "key-2"}  # written when the block ends, not later
    assert threads == ["pipeline-sync-render-cache"]


def test_outside_the_block_a_store_writes_before_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "renders.sqlite"
    threads: list[str] = []
    slowed(monkeypatch, threads)
    RenderCache(path).store(dict([row(1)]))
    assert rows_in(path) == {"key-1"}
    assert threads == [threading.current_thread().name]


def test_a_load_or_a_store_waits_for_the_writes_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = RenderCache(tmp_path / "renders.sqlite")
    slowed(monkeypatch)
    with cache.writes_behind():
        cache.store(dict([row(1)]))
        assert set(cache.load(["key-1", "key-9"])) == {"key-1"}
        cache.store(dict([row(2)]))
        cache.store(dict([row(3)]))
        assert set(cache.load(["key-1", "key-2", "key-3"])) == {"key-1", "key-2", "key-3"}


def test_what_a_write_raised_is_raised_on_leaving(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = RenderCache(tmp_path / "renders.sqlite")

    def broken(self: RenderCache, new: Mapping[str, CachedRender], used: Iterable[str]) -> None:
        raise RuntimeError("the write broke")

    monkeypatch.setattr(RenderCache, "_store_now", broken)
    with pytest.raises(RuntimeError, match="the write broke"), cache.writes_behind():
        cache.store(dict([row(1)]))
    monkeypatch.undo()
    with cache.writes_behind():  # raised once: the next block starts clean
        cache.store(dict([row(2)]))
    assert set(cache.load(["key-1", "key-2"])) == {"key-2"}


def test_an_error_inside_the_block_wins_and_the_write_still_ends(
    slow_cache: tuple[Path, RenderCache],
) -> None:
    path, cache = slow_cache
    with pytest.raises(KeyError, match="the plan broke"), cache.writes_behind():
        cache.store(dict([row(1)]))
        raise KeyError("the plan broke")
    assert rows_in(path) == {"key-1"}
    assert [t.name for t in threading.enumerate() if t.name == "pipeline-sync-render-cache"] == []


def test_a_block_inside_a_block_leaves_the_waiting_to_the_outer_one(
    slow_cache: tuple[Path, RenderCache],
) -> None:
    path, cache = slow_cache
    with cache.writes_behind():
        with cache.writes_behind():
            cache.store(dict([row(1)]))
        assert not path.exists() or rows_in(path) == set()  # still being written
    assert rows_in(path) == {"key-1"}


def test_while_one_thread_is_in_the_block_another_threads_store_writes_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the block's own thread writes behind: another thread sharing the cache stores before
    its store returns, and its own block neither waits for nor hides the first thread's writes."""
    path = tmp_path / "renders.sqlite"
    cache = RenderCache(path)
    threads: list[str] = []
    slowed(monkeypatch, threads)
    seen_by_other: list[set[str]] = []

    def other() -> None:
        with cache.writes_behind():
            cache.store(dict([row(2)]))
            seen_by_other.append(rows_in(path))

    with cache.writes_behind():
        cache.store(dict([row(1)]))
        worker = threading.Thread(target=other, name="other-thread")
        worker.start()
        worker.join(WAIT)
        assert not worker.is_alive()
    assert seen_by_other and "key-2" in seen_by_other[0]
    assert sorted(threads) == ["other-thread", "pipeline-sync-render-cache"]
    assert rows_in(path) == {"key-1", "key-2"}


def test_an_in_memory_cache_stores_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = RenderCache.in_memory()
    with cache.writes_behind():
        cache.store(dict([row(1)]))
        assert set(cache.load(["key-1"])) == {"key-1"}


def test_a_fleet_plan_writes_its_renders_behind_and_they_are_stored_when_it_returns(
    tmp_path: Path, store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan (engine.plan_loading, what `plan` and the Dagster reconcile run) stores its new
    renders from a thread of its own, and every row is in the file when the plan returns."""
    workspace = applied(tmp_path, store)  # the catalog changed since the last apply: new renders
    threads: list[str] = []
    slowed(monkeypatch, threads)
    the_plan = engine.plan(workspace, store)
    assert threads == ["pipeline-sync-render-cache"]
    path = workspace.cache.path
    assert path is not None
    stored = rows_in(path)
    assert len(stored) >= len(the_plan.entries) == 6
    assert {e.status.value for e in the_plan.entries.values()} == {"update"}
    fresh = type(workspace).load(tmp_path / "catalog", tmp_path / "templates")
    assert engine.plan(fresh, store).dumps() == the_plan.dumps()  # from the stored rows
