"""Test only: a fresh database per test holding Front50's SQL tables, from DDL matching its changelogs.

Front50 owns its schema (Liquibase, front50-sql/src/main/resources/db/changelog-master.yml);
pipeline-sync never creates it. This DDL is what those changelogs leave behind on PostgreSQL and on
MySQL/MariaDB, for the tables pipeline-sync reads and writes (docs/sql-store.md).

A pytest plugin (pytest_plugins) whose helpers tests also import: PYTEST_DONT_REWRITE (no asserts here).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import pytest

POSTGRES_URL_VARIABLE = "PIPELINE_SYNC_TEST_POSTGRES_URL"
MYSQL_URL_VARIABLE = "PIPELINE_SYNC_TEST_MYSQL_URL"
KINDS = ("postgresql", "mysql")

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


# On MySQL, Liquibase's `boolean` became BIT(1) before Liquibase 4.24, TINYINT(1) in 4.24 and TINYINT
# from 4.25.1 on (liquibase/liquibase#4090, #5069): an installation keeps the type of the Liquibase
# its Front50 first ran. MySQL's own BOOLEAN is TINYINT(1), the default here; tests also use bit(1).
MYSQL_TABLE_OPTIONS = "engine innodb DEFAULT CHARSET=utf8mb4 COLLATE utf8mb4_unicode_ci"


def mysql_ddl(boolean: str = "tinyint(1)") -> list[str]:
    """Front50's tables as its changelogs make them on MySQL/MariaDB (no changelog changes the char
    columns there: `id`, `name` and `application` stay char(255)); `boolean` is is_deleted's type."""
    return [
        # changelog/20190415-initial-pipelines-schema.yml (create-pipelines-table), with its
        # modifySql for mysql appending the engine and character set; longtext is LONGTEXT.
        f"""CREATE TABLE pipelines (
            id char(255) NOT NULL PRIMARY KEY,
            name char(255) NOT NULL,
            application char(255) NOT NULL,
            body longtext NOT NULL,
            created_at bigint NOT NULL,
            last_modified_at bigint NOT NULL,
            last_modified_by varchar(255) NOT NULL,
            is_deleted {boolean} NOT NULL DEFAULT 0
        ) {MYSQL_TABLE_OPTIONS}""",
        # changelog/20190415-initial-pipelines-schema.yml (create-pipelines-history-table).
        f"""CREATE TABLE pipelines_history (
            id char(255) NOT NULL,
            body longtext NOT NULL,
            body_sig char(32) NOT NULL,
            last_modified_at bigint NOT NULL,
            recorded_at bigint NOT NULL,
            PRIMARY KEY (id, body_sig, last_modified_at)
        ) {MYSQL_TABLE_OPTIONS}""",
        # changelog/20190415-initial-applications-schema.yml (create-applications-table).
        f"""CREATE TABLE applications (
            id char(255) NOT NULL PRIMARY KEY,
            body longtext NOT NULL,
            created_at bigint NOT NULL,
            last_modified_at bigint NOT NULL,
            last_modified_by varchar(255) NOT NULL,
            is_deleted {boolean} NOT NULL DEFAULT 0
        ) {MYSQL_TABLE_OPTIONS}""",
        # changelog/20190415-initial-applications-schema.yml (create-applications-history-table).
        f"""CREATE TABLE applications_history (
            id char(255) NOT NULL,
            body longtext NOT NULL,
            body_sig char(32) NOT NULL,
            last_modified_at bigint NOT NULL,
            recorded_at bigint NOT NULL,
            PRIMARY KEY (id, body_sig, last_modified_at)
        ) {MYSQL_TABLE_OPTIONS}""",
        # changelog/20190530-add-is-deleted-indexes.yml (mysql only; one name, per table)
        "CREATE INDEX is_deleted_idx ON pipelines (is_deleted)",
        "CREATE INDEX is_deleted_idx ON applications (is_deleted)",
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


def kind_of(url: str) -> str:
    """postgresql or mysql: which server a URL names."""
    return "mysql" if urlsplit(url).scheme.startswith("mysql") else "postgresql"


def connect(url: str, *, autocommit: bool = False) -> Any:
    """A DB-API connection (psycopg or PyMySQL) to the database url names."""
    if kind_of(url) == "mysql":
        import pymysql

        parts = urlsplit(url)
        return pymysql.connect(
            host=parts.hostname,
            port=parts.port or 3306,
            user=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            database=unquote(parts.path.lstrip("/")) or None,
            charset="utf8mb4",
            autocommit=autocommit,
        )
    import psycopg

    return psycopg.connect(url, autocommit=autocommit)


class Session:
    """One connection with execute(sql, params) -> rows, the same on both servers."""

    def __init__(self, url: str, *, autocommit: bool = False) -> None:
        self.db = connect(url, autocommit=autocommit)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.db.cursor() as cursor:
            cursor.execute(sql, tuple(params) or None)
            return [tuple(row) for row in cursor.fetchall()] if cursor.description else []

    def commit(self) -> None:
        self.db.commit()

    def rollback(self) -> None:
        self.db.rollback()

    def close(self) -> None:
        self.db.close()


@contextmanager
def session(url: str, *, autocommit: bool = False) -> Iterator[Session]:
    """A Session committed when the block ends (rolled back on an error), then closed."""
    opened = Session(url, autocommit=autocommit)
    try:
        yield opened
        opened.commit()
    except BaseException:
        opened.rollback()
        raise
    finally:
        opened.close()


def rows(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with session(url) as db:
        return db.execute(sql, params)


def create_front50_tables(url: str, ddl: list[str] | None = None) -> None:
    """Front50's tables in the (empty) database url names, as its changelogs make them."""
    statements = ddl if ddl is not None else (mysql_ddl() if kind_of(url) == "mysql" else POSTGRES_DDL)
    with session(url, autocommit=True) as db:
        for statement in statements:
            db.execute(statement)


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped after the test."""
    server = server_url(POSTGRES_URL_VARIABLE, ".ci/start-postgres.sh")
    name = f"front50_{uuid.uuid4().hex[:12]}"
    with session(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield _with_database(server, name)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def mysql_database() -> Iterator[str]:
    """The URL of a new, empty MySQL/MariaDB database (Front50's character set, database-mysql.sql),
    dropped after the test."""
    server = server_url(MYSQL_URL_VARIABLE, ".ci/start-mysql.sh")
    name = f"front50_{uuid.uuid4().hex[:12]}"
    with session(server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE `{name}` DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        try:
            yield _with_database(server, name)
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture(params=KINDS)
def sql_database(request: pytest.FixtureRequest) -> str:
    """The URL of a new, empty database on each SQL server in turn."""
    url: str = request.getfixturevalue(f"{'postgres' if request.param == 'postgresql' else 'mysql'}_database")
    return url


@pytest.fixture
def front50_postgres(postgres_database: str) -> str:
    """The URL of a new PostgreSQL database holding Front50's tables, as its changelogs make them."""
    create_front50_tables(postgres_database)
    return postgres_database


@pytest.fixture
def front50_mysql(mysql_database: str) -> str:
    """The URL of a new MySQL/MariaDB database holding Front50's tables, as its changelogs make them."""
    create_front50_tables(mysql_database)
    return mysql_database


@pytest.fixture
def front50_sql(sql_database: str) -> str:
    """The URL of a new database holding Front50's tables, on each SQL server in turn."""
    create_front50_tables(sql_database)
    return sql_database
