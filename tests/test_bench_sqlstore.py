"""The bench's Front50 SQL tables hold each pipeline exactly as the SQL store (and so Front50) writes it."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from bench import sqlstore
from pipeline_sync.store.front50 import now_ms
from pipeline_sync.store.select import open_store
from pipeline_sync.store.sql import SqlStore, body_token

pytest_plugins = ("front50_schema",)

COLUMNS = "id, name, application, body, created_at, last_modified_at, last_modified_by, is_deleted"


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as db:
        return [tuple(r) for r in db.execute(sql).fetchall()]


def body(pipeline_id: str, **extra: Any) -> bytes:
    document = {"id": pipeline_id, "application": "App", "name": "deploy", "stages": [], **extra}
    return json.dumps(document, sort_keys=True).encode()


@pytest.fixture
def seeded_database(front50_postgres: str) -> Iterator[str]:
    """An empty database made by the bench's own helper (the server of front50_postgres), dropped after."""
    server = os.environ["PIPELINE_SYNC_TEST_POSTGRES_URL"]
    name = f"bench_test_{uuid.uuid4().hex[:10]}"
    yield sqlstore.create_database(server, name)
    sqlstore.drop_database(server, name)


def test_seeded_rows_are_the_rows_the_sql_store_writes(seeded_database: str, front50_postgres: str) -> None:
    written = body("Pipe-1", updateTs=str(now_ms()), lastModifiedBy="carol")  # the store keeps a current one
    sqlstore.seed(seeded_database, {"front50/pipelines/Pipe-1/pipeline-metadata.json": written})
    store = open_store(front50_postgres, {})
    assert isinstance(store, SqlStore)
    store.put_pipeline("Pipe-1", written, if_match=None)
    store.close()
    for table, columns in (
        ("pipelines", COLUMNS),
        ("pipelines_history", "id, body, body_sig, last_modified_at"),
    ):
        seeded = rows(seeded_database, f"SELECT {columns} FROM {table}")
        assert seeded == rows(front50_postgres, f"SELECT {columns} FROM {table}"), table
        assert len(seeded) == 1
    assert rows(seeded_database, "SELECT id, last_modified_by FROM applications") == [
        ("app", "pipeline-sync")
    ]
    seeded = open_store(seeded_database, {})  # the schema check passes on the bench's tables
    assert isinstance(seeded, SqlStore)
    assert seeded.read_live()["pipe-1"].etag == body_token(written.decode())
    seeded.close()


def test_the_change_marker_and_other_objects_are_not_rows() -> None:
    bodies = {
        "front50/pipelines/last-modified.json": b'{"lastModified": 1}',
        "front50/pipelines/p/pipeline-metadata.json": body("p", updateTs="5"),
        "front50/applications/app/application-metadata.json": b"{}",
    }
    assert [r[0] for r in sqlstore.pipeline_rows(bodies)] == ["p"]
