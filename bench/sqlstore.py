"""Front50's SQL store for the bench: a PostgreSQL database per N holding the synthetic fleet as rows.

Each database gets Front50's tables (the DDL of tests/front50_schema.py, which follows Front50's
changelogs) and, for every pipeline object of the S3 baseline, the row and history row Front50's
SqlStorageService writes for that body (docs/sql-store.md): id lower-cased, name and application
from the body, created_at = last_modified_at = the body's updateTs, last_modified_by = its
lastModifiedBy, body_sig = Guava's murmur3_128 of the text. Applications get their rows too.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench import synth
from pipeline_sync.store.front50 import application_document
from pipeline_sync.store.s3 import PIPELINE_FILE
from pipeline_sync.store.sql import body_sig

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "tests" / "front50_schema.py"
_PIPELINE_KEY = re.compile(rf"^{synth.ROOT}/pipelines/([^/]+)/{re.escape(PIPELINE_FILE)}$")
SEED_STAMP_MS = 1_700_000_000_000  # for a body without a numeric updateTs (Front50 always writes one)


def front50_ddl() -> list[str]:
    """Front50's PostgreSQL tables, from the test helper that documents each changelog."""
    spec = importlib.util.spec_from_file_location("bench_front50_schema", SCHEMA_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.POSTGRES_DDL)


def database_url(server_url: str, database: str) -> str:
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{database}"))


def create_database(server_url: str, database: str) -> str:
    """A new, empty database on the server (dropped first if the bench left one); its URL."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{database}"')
    return database_url(server_url, database)


def drop_database(server_url: str, database: str) -> None:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def pipeline_rows(bodies: Mapping[str, bytes]) -> Iterator[tuple[Any, ...]]:
    """(id, name, application, body, created_at, last_modified_at, last_modified_by, is_deleted)
    for every pipeline object of an S3 baseline, as Front50 writes the row for that body."""
    for key, raw in sorted(bodies.items()):
        found = _PIPELINE_KEY.match(key)
        if found is None:
            continue  # the change marker: SQL has none
        text = raw.decode("utf-8")
        document = json.loads(text)
        stamp = _stamp(document)
        by = document.get("lastModifiedBy") or "anonymous"
        yield (
            found.group(1).lower(),
            document["name"],
            document["application"],
            text,
            stamp,
            stamp,
            by,
            False,
        )


def _stamp(document: Mapping[str, Any]) -> int:
    value = str(document.get("updateTs", ""))
    return int(value) if value.isdigit() else SEED_STAMP_MS


def seed(url: str, bodies: Mapping[str, bytes]) -> int:
    """Front50's tables in the (empty) database at url, holding the baseline's pipelines, one
    history row each, and their applications; how many pipeline rows."""
    import psycopg

    rows = list(pipeline_rows(bodies))
    applications = sorted({str(r[2]).lower(): str(r[2]) for r in rows}.items())
    with psycopg.connect(url) as db:
        for statement in front50_ddl():
            db.execute(statement)
        with db.cursor() as cursor:
            with cursor.copy(
                "COPY pipelines (id, name, application, body, created_at, last_modified_at, "
                "last_modified_by, is_deleted) FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
            with cursor.copy(
                "COPY pipelines_history (id, body, body_sig, last_modified_at, recorded_at) FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row((row[0], row[3], body_sig(row[3]), row[5], row[5]))
            with cursor.copy(
                "COPY applications (id, body, created_at, last_modified_at, last_modified_by, is_deleted) "
                "FROM STDIN"
            ) as copy:
                for app_id, name in applications:
                    document = application_document(name, None)
                    document["createTs"] = document["updateTs"] = str(SEED_STAMP_MS)
                    copy.write_row(
                        (app_id, json.dumps(document), SEED_STAMP_MS, SEED_STAMP_MS, "pipeline-sync", False)
                    )
        db.execute("ANALYZE")
    return len(rows)


def put_bodies(url: str, bodies: Mapping[str, bytes]) -> None:
    """Rewrite some pipeline rows (a Deck edit, or putting them back) as Front50 would: the row's
    body, stamps and last_modified_by, and a history row."""
    import psycopg

    with psycopg.connect(url) as db:
        for row in pipeline_rows(bodies):
            pipeline_id, _, _, text, stamp, _, by, _ = row
            db.execute(
                "UPDATE pipelines SET body = %s, last_modified_at = %s, last_modified_by = %s WHERE id = %s",
                (text, stamp, by, pipeline_id),
            )
            db.execute(
                "INSERT INTO pipelines_history VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (pipeline_id, text, body_sig(text), stamp, stamp),
            )


def transactions(server_url: str, database: str) -> int | None:
    """Transactions committed in database so far (pg_stat_database), or None when not readable."""
    import psycopg

    try:
        with psycopg.connect(server_url, autocommit=True) as admin:
            row = admin.execute(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (database,)
            ).fetchone()
    except psycopg.Error:
        return None
    return int(row[0]) if row is not None else None
