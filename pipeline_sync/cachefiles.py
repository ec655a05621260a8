"""Local caches, in one place: where they live, how their sqlite files are opened, what code made them.

Every cache here is only a speed-up: a corrupt file is deleted and made again, a locked or
unwritable one costs the speed-up and nothing else, and nothing in a cache decides a write.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import platformdirs

SQLITE_SIDE_FILES = ("", "-wal", "-shm", "-journal")
BUSY_TIMEOUT_S = 5.0
_WAL_RETRY_S = 0.01  # between tries of a switch to WAL that another connection's blocks
_T = TypeVar("_T")


@dataclass(frozen=True)
class CacheSettings:
    """Where both caches (live objects, renders) live, or None when caching is off."""

    directory: Path | None

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, directory: str | None = None
    ) -> CacheSettings:
        """PIPELINE_SYNC_CACHE=off disables both; PIPELINE_SYNC_CACHE_DIR (or directory, which wins)
        moves both; else the user cache directory."""
        env = os.environ if environ is None else environ
        if env.get("PIPELINE_SYNC_CACHE", "on").lower() in {"off", "0", "false"}:
            return cls(None)
        chosen = directory or env.get("PIPELINE_SYNC_CACHE_DIR")
        return cls(Path(chosen) if chosen else Path(platformdirs.user_cache_dir("pipeline-sync")))

    def file(self, name: str) -> Path | None:
        """The path of one cache file, or None when caching is off."""
        return None if self.directory is None else self.directory / name


def discard_sqlite_file(path: Path) -> bool:
    """Remove a corrupt sqlite file and its side files (WAL, shared memory, journal); True when gone."""
    try:
        for suffix in SQLITE_SIDE_FILES:
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    except OSError:
        return False
    return True


def guarded_sqlite(
    path: Path, schema: Iterable[str], action: Callable[[sqlite3.Connection], _T], fallback: _T
) -> _T:
    """Run action on a fresh WAL connection to path, after the schema statements.

    A corrupt file is deleted and the action retried once on a new one; any other sqlite or
    file-system failure (locked, read-only, no directory, a full disk) gives fallback.
    """
    for attempt in range(2):
        try:
            db = _connect(path, schema)
            try:
                return action(db)
            finally:
                db.close()
        except sqlite3.OperationalError:
            return fallback  # locked, read-only, cannot open: not a reason to delete anything
        except sqlite3.DatabaseError:
            if attempt == 1 or not discard_sqlite_file(path):
                return fallback
        except OSError:
            return fallback
    return fallback


def _connect(path: Path, schema: Iterable[str]) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S)
    try:
        _in_wal_mode(db)
        with db:
            for statement in schema:
                db.execute(statement)
    except BaseException:
        db.close()
        raise
    return db


def _in_wal_mode(db: sqlite3.Connection) -> None:
    """Put db's file in WAL mode, waiting for another connection's switch as a busy timeout would.

    Two connections switching a new file at once (two threads or processes making the same
    cache) can get SQLITE_BUSY at once: sqlite does not call the busy handler where waiting could
    deadlock. The other switch soon ends, so the switch is tried again until BUSY_TIMEOUT_S has
    passed; any other error (a read-only file) is raised at once."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        try:
            db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(_WAL_RETRY_S)
