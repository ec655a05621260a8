"""Many events of one step written to a sqlite instance by forked processes, one per core.

On sqlite each event costs 8 to 10 ms of CPU in Dagster's own store_event (docs/dagster-events.md),
one event after another; the reconcile's plan events are independent of each other, so forked
processes write shares of them. Only SqliteEventLogStorage: it opens a new engine (NullPool) for
every statement, so a child never shares a connection with its parent; a PostgreSQL instance pools
connections, which a fork would share, and is fast enough one event after another; an in-memory
instance would lose what a child writes. Each forked writer keeps the engines it makes
(reuse_engines), its commits are not synced one by one (commit_unsynced) but all at once when the
writers are done (synced), the files stay open while they write (kept_open), and the asset
events of each share are stored together, in one transaction per shard (stored_together).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any
from urllib.parse import quote

from dagster._core.errors import DagsterInvariantViolationError
from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS, EVENT_TYPE_TO_PIPELINE_RUN_STATUS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite import sqlite_event_log
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._core.storage.sqlalchemy_compat import db_result
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from pipeline_sync.forked import call_forked

# Fewer groups than this are written in this process: forking costs more than it saves.
FORK_MIN_GROUPS = 32
_CHUNK = 32  # groups a worker takes at a time, and stores together (stored_together)
# Writers beyond one per core: each commit waits on sqlite's file lock and fsync for part of its
# time, which another writer fills (1,066 events: 5.85 s with 2 writers, 5.10 s with 3, 5.02 s with 4).
SPARE_WRITERS = 1


def log_groups(context: Any, groups: Sequence[Sequence[Any]]) -> None:
    """context.log_event of every event of groups, each group in order by one process (a
    partition's plan before its approval: the approval sensor wants the plan first).

    With FORK_MIN_GROUPS or more groups, a sqlite event log and PIPELINE_SYNC_RENDER_WORKERS not
    1, forked processes write them, one per core and SPARE_WRITERS more
    (pipeline_sync.forked.call_forked), in shares of _CHUNK groups; every call returns once all
    are stored, so a later write (a check targeting a plan) comes after them. The instance's event
    log then holds the same records as when this process writes them; only the in-process result
    object (ExecuteInProcessResult.all_events) does not list those a child wrote."""
    storage = context.instance.event_log_storage
    if not isinstance(storage, SqliteEventLogStorage):
        _log_all(context, groups)
        return
    shards = [storage.path_for_shard(context.run.run_id), storage.path_for_shard(INDEX_SHARD_NAME)]
    parent = os.getpid()
    shares = [groups[start : start + _CHUNK] for start in range(0, len(groups), _CHUNK)]
    calls = [partial(_log_all, context, share, parent=parent) for share in shares]
    forking = len(groups) >= FORK_MIN_GROUPS
    with kept_open(shards if forking else []):
        try:
            if forking:
                call_forked(calls, minimum=2, chunk=1, spare=SPARE_WRITERS)
            else:
                for call in calls:
                    call()
        finally:
            if forking:
                synced(shards)  # every commit of the writers on disk before anything reads on


@contextmanager
def kept_open(paths: Sequence[str]) -> Iterator[None]:
    """One idle connection to each sqlite file that exists, held while the block writes to them.

    Dagster's sqlite event log opens and closes a connection for every statement. The close of the
    last connection to a database in WAL mode checkpoints the log into the database, syncs it and
    deletes the -wal and -shm files, which the next statement makes again. An idle reader open
    elsewhere keeps every other close from being the last: 400 events took 6.2 to 8.2 ms each
    against 10.2 (tmp scratch script, one run shard and the index). Nothing else changes: commits
    are synced as before, and the block's end checkpoints once. A file is never created here
    (mode=rw), and one that cannot be opened is simply not kept.
    """
    kept: list[sqlite3.Connection] = []
    try:
        for path in paths:
            if not os.path.isfile(path):
                continue
            try:
                connection = sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True, timeout=1)
                connection.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            except sqlite3.Error:
                continue
            kept.append(connection)
        yield
    finally:
        for connection in kept:
            with contextlib.suppress(sqlite3.Error):
                connection.close()


def synced(paths: Sequence[str]) -> None:
    """fsync the write-ahead log of each sqlite database of paths, and its folder: every
    transaction committed there without a sync (commit_unsynced) is on disk when this returns,
    as if each commit had synced.

    The WAL alone: a commit lives in the WAL until a checkpoint copies it into the database, and a
    checkpoint syncs the WAL before and the database after it, in every synchronous mode but OFF.
    The database file itself is never opened here: closing any descriptor of a file drops every
    POSIX lock this process holds on it, among them the shared lock by which sqlite's WAL
    connections tell that they are not the last one. The folder, as sqlite syncs it when a WAL it
    created is first synced. A WAL that is not there (checkpointed and deleted by the last
    connection to close) is skipped. An error of the sync itself is raised, as a commit's would be."""
    for path in paths:
        for name in (f"{path}-wal", os.path.dirname(os.path.abspath(path))):
            try:
                descriptor = os.open(name, os.O_RDONLY)
            except OSError:
                break  # no WAL: nothing committed there that a checkpoint has not synced
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)


def commit_unsynced(connection: Any, _record: Any = None) -> None:
    """A sqlite connection (SQLAlchemy's connect event) of a forked writer: in WAL mode, its commits
    are not synced one by one (synchronous=NORMAL), which sqlite keeps consistent across a power
    loss; the writers' last commits are then durable once log_groups has synced the files. Any
    other journal mode keeps sqlite's default, a sync at every commit.

    Each event is two commits (the run's shard and the index), and a commit holds sqlite's write
    lock while it syncs, so the writers took turns on the disk: the 1,066 events of a template
    change at N = 10,000 were written in 10.2 and 10.7 s against 6.3 and 6.5 s this way (the
    bench's reconcile, four alternated runs; docs/dagster-events.md)."""
    mode = connection.execute("PRAGMA journal_mode").fetchone()
    if mode is not None and str(mode[0]).lower() == "wal":
        connection.execute("PRAGMA synchronous=NORMAL")


def _log_all(context: Any, groups: Sequence[Sequence[Any]], *, parent: int | None = None) -> None:
    """context.log_event of each event of groups, in order; in a process forked from parent,
    through engines kept for the writer's life (reuse_engines), committing unsynced
    (commit_unsynced), and storing the asset events of the share together (stored_together)."""
    forked = parent is not None and os.getpid() != parent
    if forked:
        reuse_engines()
    with stored_together(context.instance.event_log_storage) if forked else contextlib.nullcontext():
        for group in groups:
            for event in group:
                context.log_event(event)


@contextmanager
def stored_together(storage: SqliteEventLogStorage) -> Iterator[None]:
    """While the block runs, storage keeps the asset events it is given (a materialization or an
    observation, store_event's ASSET_EVENTS) and stores them together, in order, when the block
    ends or before any other event: the rows store_event writes for each, in one transaction of
    the run's shard and one of the index (store_batch). Only for a forked writer, whose storage
    object nothing else uses: the events are stored when its share is done, before call_forked
    returns.

    Each event stored alone opens, commits and closes a connection to each shard, and checks the
    asset key table's columns again: 300 plan events cost 7.1 to 8.1 ms of CPU each alone against
    3.6 to 4.4 ms in shares of 16 (tmp scratch script, alternated); log_groups of the bench's
    template change at N = 10,000 (1,066 events) took 3.0 to 3.7 s against 6.0 to 6.3 s."""
    alone = storage.store_event
    waiting: list[EventLogEntry] = []

    def flush() -> None:
        if waiting:
            store_batch(storage, list(waiting))
            waiting.clear()

    def keep(event: EventLogEntry) -> None:
        if _asset_event(event):
            waiting.append(event)
            return
        flush()
        alone(event)

    own = vars(storage).get("store_event")
    storage.store_event = keep  # type: ignore[method-assign]
    try:
        yield
    finally:
        if own is None:
            del storage.store_event  # the class's own again
        else:
            storage.store_event = own  # type: ignore[method-assign]
        flush()


def _asset_event(event: EventLogEntry) -> bool:
    """What SqliteEventLogStorage.store_event writes to the run's shard and, with its asset key
    and tags, to the index, and nothing else: an asset event that is no check or run event."""
    kind = event.dagster_event_type if event.is_dagster_event else None
    return (
        kind in ASSET_EVENTS
        and kind not in ASSET_CHECK_EVENTS
        and kind not in EVENT_TYPE_TO_PIPELINE_RUN_STATUS
        and event.get_dagster_event().asset_key is not None
    )


def store_batch(storage: SqliteEventLogStorage, events: Sequence[EventLogEntry]) -> None:
    """SqliteEventLogStorage.store_event of each asset event (_asset_event) of one run, in order:
    the same statements, in one transaction of the run's shard, then one of the index."""
    inserts = [storage.prepare_insert_event(event) for event in events]
    with storage.run_connection(events[0].run_id) as connection:
        for insert in inserts:
            connection.execute(insert)
    with storage.index_transaction() as connection:
        for event, insert in zip(events, inserts, strict=True):
            with db_result(connection, insert) as result:
                event_id = result.inserted_primary_key[0]
            if event_id is None:
                raise DagsterInvariantViolationError("Cannot store asset event tags for null event id.")
            storage._store_asset_event_tags(connection, [event], [event_id])
            storage._store_asset_event(connection, event, event_id)


def reuse_engines(module: Any = sqlite_event_log) -> bool:
    """Have module's create_engine (Dagster's sqlite event log's) give back the engine it made
    before for the same database and arguments, where each connection is made afresh (NullPool).
    True when it does (now or already); False where module has no create_engine to wrap.

    Only for a forked writer, which ends with its share of the events: Dagster's sqlite event log
    makes an engine for every statement, and SQLAlchemy compiles each statement again for every
    new engine (its compiled cache is kept on the engine, and keyed by the engine's dialect).
    Each statement still opens, commits and closes its own sqlite connection, as before; it is
    compiled once per writer instead of once per statement (400 events: 5.4 to 8.3 ms of CPU each
    against 8.7 to 12.6 without; tmp scratch script, the writer's second run of each). The
    connections of a kept engine commit without a sync each (commit_unsynced).
    """
    create = getattr(module, "create_engine", None)
    if not callable(create):
        return False
    if getattr(create, "reuses_engines", False):
        return True
    made: dict[tuple[str, str], Any] = {}

    def reused(url: Any, **kwargs: Any) -> Any:
        if kwargs.get("poolclass") is not NullPool:
            return create(url, **kwargs)  # a pooled engine holds connections: never handed out twice
        key = (str(url), repr(sorted(kwargs.items(), key=lambda item: item[0])))
        engine = made.get(key)
        if engine is None:
            engine = made[key] = create(url, **kwargs)
            if isinstance(engine, Engine):
                sqlalchemy_event.listen(engine, "connect", commit_unsynced)
        return engine

    reused.reuses_engines = True  # type: ignore[attr-defined]
    module.create_engine = reused
    return True
