"""Local cache files: removing a corrupt sqlite file so that it can be made again."""

from __future__ import annotations

from pathlib import Path

SQLITE_SIDE_FILES = ("", "-wal", "-shm", "-journal")


def discard_sqlite_file(path: Path) -> bool:
    """Remove a corrupt sqlite file and its side files (WAL, shared memory, journal); True when gone."""
    try:
        for suffix in SQLITE_SIDE_FILES:
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    except OSError:
        return False
    return True
