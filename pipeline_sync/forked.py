"""Many independent calls shared out to forked processes, one per core, each reading what it inherited."""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

WORKERS_VARIABLE = "PIPELINE_SYNC_RENDER_WORKERS"
_inherited: Sequence[Callable[[], Any]] | None = None  # the calls forked workers read (copy-on-write)


def fork_workers(environ: Mapping[str, str] | None = None) -> int:
    """How many processes render and diff: PIPELINE_SYNC_RENDER_WORKERS, else one per core this
    process may use; 1 does everything in this process."""
    env = os.environ if environ is None else environ
    text = env.get(WORKERS_VARIABLE, "").strip()
    if text.isdigit() and int(text) > 0:
        return int(text)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def call_forked(calls: Sequence[Callable[[], T]], *, minimum: int, chunk: int, spare: int = 0) -> list[T]:
    """[call() for call in calls], in order. With at least `minimum` calls (and `minimum // 2` per
    process), forked processes make them, chunk calls at a time: a call itself is never pickled,
    each process finds it in the list it inherited; only results come back. Fewer calls, one
    worker, or no fork: this process makes them.

    spare: processes beyond fork_workers(), for calls that wait (on a file lock, on fsync) for
    part of their time, so the cores are busy meanwhile; none when fork_workers() is 1.

    The heap is frozen for the cyclic GC while the workers run, so their collections don't touch
    (and copy) every inherited page."""
    cores = fork_workers()
    workers = min(cores + spare if cores > 1 else 1, max(1, len(calls) // max(1, minimum // 2)))
    if workers < 2 or len(calls) < minimum or "fork" not in multiprocessing.get_all_start_methods():
        return [call() for call in calls]
    global _inherited
    freeze = gc.get_freeze_count() == 0
    _inherited = calls
    if freeze:
        gc.freeze()
    try:
        ranges = [(start, min(start + chunk, len(calls))) for start in range(0, len(calls), chunk)]
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            return [result for part in pool.map(_call_range, ranges) for result in part]
    finally:
        _inherited = None
        if freeze:
            gc.unfreeze()


def _call_range(bounds: tuple[int, int]) -> list[Any]:
    """In a forked worker: make the inherited calls start to stop."""
    calls = _inherited
    assert calls is not None, "workers are forked from call_forked"
    start, stop = bounds
    return [calls[i]() for i in range(start, stop)]
