"""Opening a local cache's sqlite file (pipeline_sync.cachefiles): two connections making one new
file at once both get to use it; an error waiting cannot mend costs no wait."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline_sync import cachefiles
from pipeline_sync.cachefiles import BUSY_TIMEOUT_S, guarded_sqlite

SCHEMA = ("CREATE TABLE IF NOT EXISTS rows (key TEXT PRIMARY KEY)",)
TRIALS = 100


def error(message: str, code: int) -> sqlite3.OperationalError:
    raised = sqlite3.OperationalError(message)
    raised.sqlite_errorcode = code  # type: ignore[attr-defined]  # as sqlite3 sets it when it raises
    return raised


class SwitchingDb:
    """A connection whose switches to WAL raise the errors given, in turn, then succeed."""

    def __init__(self, *errors: sqlite3.OperationalError) -> None:
        self.errors = list(errors)
        self.mode = "delete"
        self.switches = 0

    def execute(self, statement: str) -> Any:
        if statement == "PRAGMA journal_mode=WAL":
            self.switches += 1
            if self.errors:
                raise self.errors.pop(0)
            self.mode = "wal"
        assert statement.startswith("PRAGMA journal_mode")
        return sqlite3.connect(":memory:").execute("SELECT ?", (self.mode,))


def test_two_connections_making_one_new_cache_file_at_once_both_write(tmp_path: Path) -> None:
    """Both switch the new file to WAL at once: sqlite answers one of them SQLITE_BUSY without
    waiting (1 to 3 times in 100 before the switch was tried again), and that one's write was lost."""
    lost = []
    for trial in range(TRIALS):
        path = tmp_path / f"cache-{trial}.sqlite"
        start = threading.Barrier(2)

        def write(key: str, path: Path = path, start: threading.Barrier = start) -> None:
            start.wait()

            def insert(db: sqlite3.Connection) -> bool:
                with db:
                    db.execute("INSERT INTO rows (key) VALUES (?)", (key,))
                return True

            if not guarded_sqlite(path, SCHEMA, insert, False):
                lost.append((path.name, key))

        threads = [threading.Thread(target=write, args=(key,)) for key in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert lost == []


def test_a_busy_switch_to_wal_is_tried_again() -> None:
    busy = error("database is locked", sqlite3.SQLITE_BUSY)
    db = SwitchingDb(busy, busy)
    cachefiles._in_wal_mode(db)  # type: ignore[arg-type]
    assert (db.mode, db.switches) == ("wal", 3)


def test_any_other_error_of_the_switch_is_raised_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    read_only = error("attempt to write a readonly database", sqlite3.SQLITE_READONLY)
    db = SwitchingDb(read_only)
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        cachefiles._in_wal_mode(db)  # type: ignore[arg-type]
    assert db.switches == 1 and time.monotonic() - started < BUSY_TIMEOUT_S / 2


def test_a_switch_busy_for_longer_than_the_timeout_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cachefiles, "BUSY_TIMEOUT_S", 0.05)
    db = SwitchingDb(*[error("database is locked", sqlite3.SQLITE_BUSY)] * 1000)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        cachefiles._in_wal_mode(db)  # type: ignore[arg-type]
    assert 1 < db.switches < 1000
