"""Test only: a fresh database per test holding Front50's SQL tables, from DDL matching its changelogs.

Front50 owns its schema (Liquibase, front50-sql/src/main/resources/db/changelog-master.yml);
pipeline-sync never creates it. This DDL is what those changelogs leave behind on PostgreSQL,
for the tables pipeline-sync reads and writes (docs/sql-store.md).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

POSTGRES_URL_VARIABLE = "PIPELINE_SYNC_TEST_POSTGRES_URL"

POSTGRES_DDL = [
    # changelog/20190415-initial-pipelines-schema.yml (create-pipelines-table), with `id` made
    # varchar(255) by changelog/20191112-modify-char-columns-postgres.yml; longtext is text.
    """CREATE TABLE pipelines (
        id varchar(255) NOT NULL PRIMARY KEY,
        name char(255) NOT NULL,
        application char(255) NOT NULL,
        body text NOT NULL,
        created_at bigint NOT NULL,
        last_modified_at bigint NOT NULL,
        last_modified_by varchar(255) NOT NULL,
        is_deleted boolean NOT NULL DEFAULT false
    )""",
    # changelog/20190415-initial-pipelines-schema.yml (create-pipelines-history-table), `id` as above.
    """CREATE TABLE pipelines_history (
        id varchar(255) NOT NULL,
        body text NOT NULL,
        body_sig char(32) NOT NULL,
        last_modified_at bigint NOT NULL,
        recorded_at bigint NOT NULL,
        PRIMARY KEY (id, body_sig, last_modified_at)
    )""",
    # changelog/20190415-initial-applications-schema.yml (create-applications-table), `id` as above.
    """CREATE TABLE applications (
        id varchar(255) NOT NULL PRIMARY KEY,
        body text NOT NULL,
        created_at bigint NOT NULL,
        last_modified_at bigint NOT NULL,
        last_modified_by varchar(255) NOT NULL,
        is_deleted boolean NOT NULL DEFAULT false
    )""",
    # changelog/20190415-initial-applications-schema.yml (create-applications-history-table).
    """CREATE TABLE applications_history (
        id varchar(255) NOT NULL,
        body text NOT NULL,
        body_sig char(32) NOT NULL,
        last_modified_at bigint NOT NULL,
        recorded_at bigint NOT NULL,
        PRIMARY KEY (id, body_sig, last_modified_at)
    )""",
    # changelog/20190530-add-is-deleted-indexes-postgres.yml
    "CREATE INDEX is_deleted_pipelines_idx ON pipelines (is_deleted)",
    "CREATE INDEX is_deleted_applications_idx ON applications (is_deleted)",
    # changelog/20230420-add-last-modified-at-indexes.yml
    "CREATE INDEX last_modified_at_pipelines_idx ON pipelines (last_modified_at)",
    "CREATE INDEX last_modified_at_applications_idx ON applications (last_modified_at)",
]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def server_url(variable: str, start: str) -> str:
    """The test server's URL; without one the test skips, but fails under CI=true."""
    url = os.environ.get(variable, "")
    if not url:
        reason = f"{variable} is not set; start a server with `bash {start} ENV_FILE` and source ENV_FILE"
        if in_ci():
            pytest.fail(f"CI must run the SQL store tests, but {reason}")
        pytest.skip(reason)
    return url


def connect(url: str, **options: Any) -> Any:
    import psycopg

    return psycopg.connect(url, **options)


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """The URL of a new, empty database, dropped after the test."""
    server = server_url(POSTGRES_URL_VARIABLE, ".ci/start-postgres.sh")
    name = f"front50_{uuid.uuid4().hex[:12]}"
    with connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def front50_postgres(postgres_database: str) -> str:
    """The URL of a new database holding Front50's tables, as its changelogs make them."""
    with connect(postgres_database, autocommit=True) as db:
        for statement in POSTGRES_DDL:
            db.execute(statement)
    return postgres_database
