"""kept_open (pipeline_sync.defs.eventlog) holds an idle reader on Dagster's sqlite event-log files
while many events are written: it never creates a file, never holds a lock a writer waits on, and
leaves nothing open after the block."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pipeline_sync.defs.eventlog import kept_open


def wal_database(path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE t (v INTEGER)")
    connection.commit()
    connection.close()


def write_one(path: Path, value: int) -> None:
    """As Dagster's sqlite storage does for every statement: open, write, commit, close."""
    connection = sqlite3.connect(path, timeout=1)
    connection.execute("INSERT INTO t VALUES (?)", (value,))
    connection.commit()
    connection.close()


def test_a_kept_reader_saves_each_close_its_checkpoint_and_blocks_no_writer(tmp_path: Path) -> None:
    database = tmp_path / "run.db"
    wal_database(database)
    write_one(database, 0)
    assert not (tmp_path / "run.db-wal").exists()  # the last close checkpointed and deleted it
    with kept_open([str(database)]):
        for value in range(1, 6):
            write_one(database, value)  # the kept reader takes no lock a writer waits on
            assert (tmp_path / "run.db-wal").exists()  # not the last connection: no checkpoint
    write_one(database, 6)
    assert not (tmp_path / "run.db-wal").exists()  # nothing kept open after the block
    rows = sqlite3.connect(database).execute("SELECT v FROM t ORDER BY v").fetchall()
    assert [v for (v,) in rows] == list(range(7))


def test_a_missing_or_unusable_file_is_not_created_nor_kept(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-run.db"
    not_sqlite = tmp_path / "index.db"
    not_sqlite.write_bytes(b"this is not a database" * 100)
    with kept_open([str(missing), str(not_sqlite), str(tmp_path)]):
        pass
    assert not missing.exists()
    assert not_sqlite.read_bytes() == b"this is not a database" * 100


def test_a_path_with_uri_characters_is_opened_as_itself(tmp_path: Path) -> None:
    """A DAGSTER_HOME with '?' or '#' in it: the file URI quotes them, so the kept file is that one."""
    folder = tmp_path / "odd?name#1"
    folder.mkdir()
    database = folder / "run.db"
    wal_database(database)
    with kept_open([str(database)]):
        write_one(database, 1)
        assert (folder / "run.db-wal").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd?name#1"]
