"""A forked writer stores its share's asset events together (eventlog.stored_together, store_batch):
the same rows as Dagster's own store_event, in the same order, every event once."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import test_dagster
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from test_dagster import run_reconcile
from test_dagster_events import event_log

from pipeline_sync.defs import eventlog
from pipeline_sync.forked import WORKERS_VARIABLE

env = test_dagster.env  # a moto bucket, a test instance, the example project (13 creates)

# Columns filled with the time of the insert itself (or of the schema's setup), not from the event.
INSERT_TIME_COLUMNS = {"create_timestamp", "update_timestamp", "migration_completed"}


def run_events(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> list[EventLogEntry]:
    """Every event of one reconcile of the example project, written by this process."""
    monkeypatch.setenv(WORKERS_VARIABLE, "1")
    result, _ = run_reconcile(env)
    return [
        r.event_log_entry for r in env["instance"].get_records_for_run(result.run_id, limit=10_000).records
    ]


@pytest.fixture
def fresh_storage(tmp_path: Path) -> Iterator[Any]:
    """A new, empty sqlite instance's event log storage, per call."""
    made: list[dg.DagsterInstance] = []

    def make(name: str) -> SqliteEventLogStorage:
        (tmp_path / name).mkdir()
        instance = dg.DagsterInstance.local_temp(str(tmp_path / name))
        made.append(instance)
        storage = instance.event_log_storage
        assert isinstance(storage, SqliteEventLogStorage)
        return storage

    yield make
    for instance in made:
        instance.dispose()


def tables_of(path: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of a sqlite file, without the columns of the insert's own time."""
    with sqlite3.connect(path) as db:
        names = [
            n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        ]
        tables = {}
        for name in names:
            columns = [c[1] for c in db.execute(f'PRAGMA table_info("{name}")')]
            kept = [c for c in columns if c not in INSERT_TIME_COLUMNS]
            quoted = ", ".join(f'"{c}"' for c in kept)
            query = f'SELECT {quoted} FROM "{name}" ORDER BY rowid' if kept else None
            tables[name] = db.execute(query).fetchall() if query else []
    return tables


def test_store_batch_writes_the_rows_store_event_writes(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, fresh_storage: Any
) -> None:
    """The asset events of a real reconcile (13 plans, 4 approvals, the summary and what Dagster
    plans of it), stored one by
    one by Dagster and together by store_batch, into two new instances: every table of the run's
    shard and of the index holds the same rows, in the same order."""
    events = [e for e in run_events(env, monkeypatch) if eventlog._asset_event(e)]
    assert len(events) > 13 + 4
    alone, together = fresh_storage("alone"), fresh_storage("together")
    for event in events:
        alone.store_event(event)
    eventlog.store_batch(together, events)
    run_id = events[0].run_id
    for shard in (run_id, INDEX_SHARD_NAME):
        expected = tables_of(alone.path_for_shard(shard))
        assert tables_of(together.path_for_shard(shard)) == expected
        assert expected["event_logs"]  # the comparison saw the events
    assert len(tables_of(together.path_for_shard(INDEX_SHARD_NAME))["event_logs"]) == len(events)


def test_a_share_stores_its_asset_events_together_and_every_other_event_in_its_place(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within stored_together, asset events wait; any other event first stores those waiting,
    then itself; the block's end stores the rest, even when the block fails. The storage's own
    store_event is back afterwards."""
    events = run_events(env, monkeypatch)
    asset = [e for e in events if eventlog._asset_event(e)]
    other = [e for e in events if not eventlog._asset_event(e) and e.is_dagster_event]
    assert asset and other
    stored: list[Any] = []

    class Storage:
        def store_event(self, event: EventLogEntry) -> None:
            stored.append(("alone", event))

    monkeypatch.setattr(eventlog, "store_batch", lambda _, batch: stored.append(("together", list(batch))))
    storage = Storage()
    with eventlog.stored_together(storage):  # type: ignore[arg-type]
        for event in (asset[0], asset[1], other[0], asset[2]):
            storage.store_event(event)
        assert stored == [("together", [asset[0], asset[1]]), ("alone", other[0])]
    assert stored[-1] == ("together", [asset[2]])
    assert "store_event" not in vars(storage)
    stored.clear()
    with pytest.raises(RuntimeError), eventlog.stored_together(storage):  # type: ignore[arg-type]
        storage.store_event(asset[0])
        raise RuntimeError("the share failed")
    assert stored == [("together", [asset[0]])]  # what was logged before the failure is kept
    assert "store_event" not in vars(storage)


def test_forked_writers_store_their_plans_and_approvals_in_shares(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """In a forked reconcile every plan and approval goes through store_batch in a writer, in
    shares of more than one, and the event log is the one this process alone writes (the test
    of test_dagster_events checks it record by record); this process stores none that way."""
    monkeypatch.setattr(eventlog, "FORK_MIN_GROUPS", 2)
    monkeypatch.setattr(eventlog, "_CHUNK", 4)
    monkeypatch.setenv(WORKERS_VARIABLE, "2")
    shares = tmp_path / "shares"
    together = eventlog.store_batch

    def recorded(storage: SqliteEventLogStorage, events: Any) -> None:
        with shares.open("a") as out:  # the children append: a file, not a list
            out.write(f"{os.getpid()} {len(events)}\n")
        together(storage, events)

    monkeypatch.setattr(eventlog, "store_batch", recorded)
    result, _ = run_reconcile(env)
    _, seen = event_log(env["instance"], result.run_id)
    sizes = [tuple(map(int, line.split())) for line in shares.read_text().splitlines()]
    assert os.getpid() not in {pid for pid, _ in sizes}
    assert {pid for pid, _ in sizes} >= seen["plan_pids"]
    assert sum(n for _, n in sizes) == 13 + 4  # each plan and approval once
    assert max(n for _, n in sizes) > 1
    assert len(seen["pipeline_plan"]) == 13 and len(seen["approval"]) == 4
    assert all(seen["pipeline_plan"][k] < sid for k, sid in seen["approval"].items())
