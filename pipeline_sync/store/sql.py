"""Front50's SQL tables (PostgreSQL, MySQL): rows read and written exactly as SqlStorageService does.

See docs/sql-store.md for the Front50 facts each statement follows. The precondition token (the
plan's live_etag) is the SHA-256 of a row's body text: a write happens only while the row still
holds exactly the body the plan saw, checked and written in one transaction.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from pipeline_sync.errors import StalePlanError, StoreError
from pipeline_sync.fleet_summary import Related
from pipeline_sync.live import DEFAULT_LIMITS, LiveLimits, LiveObject, parse_live
from pipeline_sync.redact import host_and_port, redact, redact_url
from pipeline_sync.store import ObjectVersion, WriteResult
from pipeline_sync.store.front50 import application_document, now_ms

PIPELINES = "pipelines"
APPLICATIONS = "applications"
# The tables and columns pipeline-sync reads or writes (the changelogs under
# front50-sql/src/main/resources/db/changelog/: 20190415-initial-pipelines-schema.yml and
# 20190415-initial-applications-schema.yml).
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "pipelines": (
        "id",
        "name",
        "application",
        "body",
        "created_at",
        "last_modified_at",
        "last_modified_by",
        "is_deleted",
    ),
    "pipelines_history": ("id", "body", "body_sig", "last_modified_at", "recorded_at"),
    "applications": ("id", "body", "created_at", "last_modified_at", "last_modified_by", "is_deleted"),
    "applications_history": ("id", "body", "body_sig", "last_modified_at", "recorded_at"),
}
LOCK_TIMEOUT_SECONDS = 10
# How far a body's updateTs may be from this machine's clock and still become last_modified_at.
STAMP_SKEW_MS = 60_000

# -- Front50's body signature -----------------------------------------------------------------

_MASK64 = (1 << 64) - 1
_C1 = 0x87C37B91114253D5
_C2 = 0x4CF5AD432745937F


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _MASK64


def _fmix(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & _MASK64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _MASK64
    return k ^ (k >> 33)


def murmur3_128(data: bytes, seed: int = 0) -> tuple[int, int]:
    """(h1, h2) of MurmurHash3 x64 128-bit: what Guava's Hashing.murmur3_128(seed) computes."""
    h1 = h2 = seed & _MASK64
    blocks = len(data) // 16
    for i in range(blocks):
        k1 = int.from_bytes(data[i * 16 : i * 16 + 8], "little")
        k2 = int.from_bytes(data[i * 16 + 8 : i * 16 + 16], "little")
        h1 ^= (_rotl((k1 * _C1) & _MASK64, 31) * _C2) & _MASK64
        h1 = (((_rotl(h1, 27) + h2) & _MASK64) * 5 + 0x52DCE729) & _MASK64
        h2 ^= (_rotl((k2 * _C2) & _MASK64, 33) * _C1) & _MASK64
        h2 = (((_rotl(h2, 31) + h1) & _MASK64) * 5 + 0x38495AB5) & _MASK64
    tail = data[blocks * 16 :]
    if len(tail) > 8:
        k2 = int.from_bytes(tail[8:], "little")
        h2 ^= (_rotl((k2 * _C2) & _MASK64, 33) * _C1) & _MASK64
    if tail:
        k1 = int.from_bytes(tail[:8], "little")
        h1 ^= (_rotl((k1 * _C1) & _MASK64, 31) * _C2) & _MASK64
    h1 ^= len(data)
    h2 ^= len(data)
    h1 = (h1 + h2) & _MASK64
    h2 = (h2 + h1) & _MASK64
    h1, h2 = _fmix(h1), _fmix(h2)
    h1 = (h1 + h2) & _MASK64
    h2 = (h2 + h1) & _MASK64
    return h1, h2


def body_sig(body: str) -> str:
    """pipelines_history.body_sig: murmur3_128 of the body's UTF-8 bytes as Guava's HashCode prints
    it (h1 then h2, each little-endian, lower-case hex)."""
    h1, h2 = murmur3_128(body.encode("utf-8"))
    return (h1.to_bytes(8, "little") + h2.to_bytes(8, "little")).hex()


def body_token(body: str) -> str:
    """The precondition token of a row: the SHA-256 of its body text's UTF-8 bytes."""
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


# -- dialects ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dialect:
    """What differs between PostgreSQL and MySQL: the driver, a few statements, the error codes."""

    name: str
    connect: Callable[[str, Mapping[str, str]], Any]
    token_sql: str  # the SHA-256 hex of body's UTF-8 bytes, computed by the server
    columns_sql: str  # (table_name, column_name) of the current schema's tables named by %s
    insert_ignore: str  # an INSERT that skips a row whose primary key exists: "{table}" "{columns}"
    lock_timeout_sql: str
    errors: Callable[[], tuple[type[BaseException], ...]]
    is_duplicate: Callable[[BaseException], bool]
    is_lock_timeout: Callable[[BaseException], bool]


def _postgres_connect(url: str, environ: Mapping[str, str]) -> Any:
    import psycopg  # type: ignore[import-not-found]  # (a dependency; an older venv may lack it)

    # libpq reads PGPASSWORD / PGPASSFILE / PGSERVICE itself for what the URL leaves out.
    return psycopg.connect(url, autocommit=False, connect_timeout=10)


def _postgres_errors() -> tuple[type[BaseException], ...]:
    import psycopg  # type: ignore[import-not-found]

    return (psycopg.Error,)


def _sqlstate(exc: BaseException) -> str:
    return str(getattr(exc, "sqlstate", "") or "")


POSTGRESQL = Dialect(
    name="postgresql",
    connect=_postgres_connect,
    token_sql="encode(sha256(convert_to(body, 'UTF8')), 'hex')",
    columns_sql=(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = ANY(%s)"
    ),
    insert_ignore="INSERT INTO {table} ({columns}) VALUES ({values}) ON CONFLICT DO NOTHING",
    lock_timeout_sql=f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_SECONDS}s'",
    errors=_postgres_errors,
    is_duplicate=lambda exc: _sqlstate(exc) == "23505",
    is_lock_timeout=lambda exc: _sqlstate(exc) in {"55P03", "40P01"},
)


def _mysql_connect(url: str, environ: Mapping[str, str]) -> Any:
    """A PyMySQL connection for mysql://USER[:PASSWORD]@HOST[:PORT]/DATABASE.

    The password comes from the URL, else MYSQL_PWD, else the [client] section of ~/.my.cnf (as the
    mysql client reads them). READ COMMITTED, as PostgreSQL's default: a create racing another
    waits on the other's row and then sees it, instead of deadlocking on a gap lock.
    """
    import pymysql  # type: ignore[import-untyped,import-not-found]  # (no stubs; an older venv may lack it)

    parts = urlsplit(url)
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database or parts.query or parts.fragment:
        raise StoreError(
            f"the store URL {redact_url(url)} must name one database and nothing after it: "
            "write it as mysql://HOST:PORT/DATABASE with the user in the URL."
        )
    home = environ.get("HOME", "")
    option_file = Path(home, ".my.cnf") if home else None
    return pymysql.connect(
        host=parts.hostname or "localhost",
        port=parts.port or 3306,
        user=unquote(parts.username or "") or None,
        password=unquote(parts.password or "") or environ.get("MYSQL_PWD", ""),
        database=database,
        read_default_file=str(option_file) if option_file is not None and option_file.is_file() else None,
        charset="utf8mb4",
        autocommit=False,
        connect_timeout=10,
        init_command="SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
    )


def _mysql_errors() -> tuple[type[BaseException], ...]:
    import pymysql  # type: ignore[import-untyped,import-not-found]  # (no stubs; an older venv may lack it)

    return (pymysql.err.MySQLError,)


def _mysql_code(exc: BaseException) -> int | None:
    """The server's error number of a PyMySQL error (its first argument), or None."""
    code = exc.args[0] if exc.args else None
    return code if isinstance(code, int) else None


MYSQL = Dialect(
    name="mysql",
    connect=_mysql_connect,
    # utf8mb4 is UTF-8: the same token as on PostgreSQL for the same body text.
    token_sql="SHA2(CONVERT(body USING utf8mb4), 256)",
    columns_sql=(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = DATABASE() AND table_name IN %s"
    ),
    insert_ignore="INSERT IGNORE INTO {table} ({columns}) VALUES ({values})",
    # innodb_lock_wait_timeout has no per-transaction form on MySQL; the connection is ours alone.
    lock_timeout_sql=f"SET SESSION innodb_lock_wait_timeout = {LOCK_TIMEOUT_SECONDS}",
    errors=_mysql_errors,
    is_duplicate=lambda exc: _mysql_code(exc) == 1062,  # ER_DUP_ENTRY
    is_lock_timeout=lambda exc: _mysql_code(exc) in {1205, 1213},  # lock wait timeout, deadlock
)

DIALECTS = {"postgresql": POSTGRESQL, "mysql": MYSQL}


# -- the store ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SqlSettings:
    """Where Front50's database is (url with credentials: never shown) and how much to read."""

    url: str
    dialect: Dialect
    limits: LiveLimits = DEFAULT_LIMITS
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)

    def describe(self) -> str:
        """The URL without credentials or parameters: scheme://host:port/database."""
        parts = urlsplit(self.url)
        return urlunsplit((self.dialect.name, host_and_port(parts, "localhost"), parts.path, "", ""))


def open_sql_store(url: str, dialect: str, environ: Mapping[str, str] | None = None) -> SqlStore:
    """The SQL store a postgresql:// or mysql:// URL names, connected and its schema checked."""
    env = os.environ if environ is None else environ
    if dialect not in DIALECTS:
        raise StoreError(
            f"the store URL {redact_url(url)} names a {dialect} database, which pipeline-sync "
            "cannot manage: use postgresql:// or mysql://."
        )
    return SqlStore(SqlSettings(url, DIALECTS[dialect], LiveLimits.from_env(env), env))


class SqlStore:
    """Reads and writes Front50's pipelines and applications tables as SqlStorageService does."""

    # The body's lastModifiedBy becomes the row's last_modified_by: the engine names the approver
    # there (engine.modifier_of), as Front50's API names the X-SPINNAKER-USER.
    records_modifier = True

    def __init__(self, settings: SqlSettings, connection: Any | None = None) -> None:
        self.settings = settings
        self.dialect = settings.dialect
        self._known_applications: set[str] = set()
        self._db = connection
        self.check_schema()

    def describe(self) -> str:
        return self.settings.describe()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- plumbing -----------------------------------------------------------
    @property
    def db(self) -> Any:
        """The connection, made on first use and again after a driver error dropped it."""
        if self._db is None:
            try:
                self._db = self.dialect.connect(self.settings.url, self.settings.environ)
            except self.dialect.errors() as exc:
                raise StoreError(f"cannot connect to {self.describe()}: {_reason(exc)}") from None
        return self._db

    @contextmanager
    def _transaction(self, what: str) -> Iterator[Any]:
        """One transaction: committed when the block ends, rolled back on any error.

        A driver error becomes a StoreError naming what was being done; nothing is half-written
        (the server rolls back what was not committed), and the next call connects afresh.
        """
        db = self.db
        try:
            with db.cursor() as cursor:
                yield cursor
            db.commit()
        except BaseException as exc:
            self._rollback_quietly(db)
            if isinstance(exc, self.dialect.errors()):
                self._drop(db)
                if self.dialect.is_lock_timeout(exc):
                    raise StoreError(
                        f"cannot {what} in {self.describe()}: another writer held the row for over "
                        f"{LOCK_TIMEOUT_SECONDS} s; nothing was written. Run it again."
                    ) from None
                raise StoreError(f"cannot {what} in {self.describe()}: {_reason(exc)}") from None
            raise

    def _rollback_quietly(self, db: Any) -> None:
        try:
            db.rollback()
        except self.dialect.errors():
            pass  # the connection is gone: the server rolled the transaction back

    def _drop(self, db: Any) -> None:
        """Forget a connection a driver error may have broken; the next call makes a new one."""
        try:
            db.close()
        except self.dialect.errors():
            pass
        if self._db is db:
            self._db = None

    def check_schema(self) -> None:
        """Stop unless every table and column pipeline-sync uses exists; never create or alter them."""
        with self._transaction("read the schema") as cursor:
            cursor.execute(self.dialect.columns_sql, (list(REQUIRED_COLUMNS),))
            found: dict[str, set[str]] = {}
            for table, column in cursor.fetchall():
                found.setdefault(str(table).lower(), set()).add(str(column).lower())
        problems = []
        for table, columns in REQUIRED_COLUMNS.items():
            if table not in found:
                problems.append(f"table {table} is missing")
                continue
            missing = [c for c in columns if c not in found[table]]
            if missing:
                problems.append(
                    f"table {table} lacks column{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
                )
        if problems:
            raise StoreError(
                f"{self.describe()} does not hold Front50's SQL schema: {'; '.join(problems)}. "
                "pipeline-sync never creates or migrates Front50's tables: point --store at the database "
                "Front50 itself uses, after Front50 has started once and run its migrations."
            )

    def _stamp(self, cursor: Any, table: str, wanted: int | None) -> int:
        """last_modified_at for a write: wanted (the body's updateTs, as Front50 writes it) when it is
        within a minute of now, else now; and past every value in the table, so both of Front50's
        refreshes see the write (docs/sql-store.md)."""
        cursor.execute(f"SELECT max(last_modified_at) FROM {table}")
        (newest,) = cursor.fetchone()
        now = now_ms()
        base = wanted if wanted is not None and abs(wanted - now) <= STAMP_SKEW_MS else now
        return max(base, int(newest) + 1) if newest is not None else base

    def _live_of(self, pipeline_id: str, token: str, body: str | None, size: int) -> LiveObject:
        limits = self.settings.limits
        key = _row_name(PIPELINES, pipeline_id)
        if body is None:
            return LiveObject.unreadable(pipeline_id, key, token, limits.too_big(size))
        return parse_live(pipeline_id, key, token, body.encode("utf-8"), limits)

    def _select_rows(self, table: str) -> str:
        """id, token, body (NULL when over the size limit) and its size in bytes."""
        return (
            f"SELECT id, {self.dialect.token_sql}, "
            "CASE WHEN octet_length(body) > %s THEN NULL ELSE body END, octet_length(body) "
            f"FROM {table} WHERE is_deleted = false"
        )

    # -- reads --------------------------------------------------------------
    def read_live(self) -> dict[str, LiveObject]:
        """Every pipeline row not deleted, by lower-case id, in one SELECT."""
        with self._transaction("read the pipelines") as cursor:
            cursor.execute(self._select_rows(PIPELINES), (self.settings.limits.max_body_bytes,))
            rows = cursor.fetchall()
        return self._live_rows(rows)

    def _live_rows(self, rows: Iterable[tuple[Any, ...]]) -> dict[str, LiveObject]:
        """Selected pipeline rows (id, token, body, size), by lower-case id."""
        live = {}
        for row_id, token, body, size in rows:
            pipeline_id = _clean_id(row_id)
            live[pipeline_id] = self._live_of(pipeline_id, token, body, size)
        return live

    def read_pipeline(self, pipeline_id: str) -> LiveObject | None:
        """One pipeline row, fresh, or None when absent or deleted."""
        pipeline_id = pipeline_id.lower()
        with self._transaction(f"read {_row_name(PIPELINES, pipeline_id)}") as cursor:
            cursor.execute(
                self._select_rows(PIPELINES) + " AND id = %s",
                (self.settings.limits.max_body_bytes, pipeline_id),
            )
            row = cursor.fetchone()
        if row is None:
            return None
        _, token, body, size = row
        return self._live_of(pipeline_id, token, body, size)

    def read_related(self, related: Related, *, listed: bool = False) -> dict[str, LiveObject]:
        """The rows a plan of a few keys needs, fresh, in one SELECT through the table's own
        columns: rows at related.ids, rows whose application and name (case-insensitively, the
        name trimmed, as Front50 compares) are one of related.names, and rows whose body mentions
        one of related.keys (a marker claiming it). With listed (a write that gives a pipeline a
        name) rows whose body mentions one of the names count too, so a name column out of step
        with its body hides nothing. Every row is parsed; the columns only choose which."""
        clauses: list[str] = []
        values: list[object] = [self.settings.limits.max_body_bytes]
        if related.ids:
            clauses.append(f"id IN ({', '.join(['%s'] * len(related.ids))})")
            values += sorted(related.ids)
        for application, name in sorted(related.names):
            clauses.append("(lower(application) = %s AND lower(trim(name)) = %s)")
            values += [application, name]
            if listed:
                clauses.append("lower(body) LIKE %s")
                values.append(f"%{_like_escaped(name)}%")
        for key in sorted(related.keys):
            clauses.append("body LIKE %s")
            values.append(f'%"{_like_escaped(key)}"%')
        if not clauses:
            return {}
        query = self._select_rows(PIPELINES) + f" AND ({' OR '.join(clauses)})"
        with self._transaction("read the pipelines a plan of a few keys needs") as cursor:
            cursor.execute(query, tuple(values))
            found = cursor.fetchall()
        return self._live_rows(found)

    # -- history ------------------------------------------------------------
    def keeps_history(self) -> bool:
        return True

    def pipeline_versions(self, pipeline_id: str) -> list[ObjectVersion]:
        """The pipelines_history rows of a pipeline, newest recorded first (Front50's order)."""
        pipeline_id = pipeline_id.lower()
        with self._transaction(f"read the history of {_row_name(PIPELINES, pipeline_id)}") as cursor:
            cursor.execute(
                f"SELECT {self.dialect.token_sql}, body_sig, last_modified_at FROM pipelines_history "
                "WHERE id = %s ORDER BY recorded_at DESC, last_modified_at DESC",
                (pipeline_id,),
            )
            rows = cursor.fetchall()
            cursor.execute(
                f"SELECT {self.dialect.token_sql} FROM pipelines WHERE id = %s AND is_deleted = false",
                (pipeline_id,),
            )
            current = cursor.fetchone()
        live_token = current[0] if current is not None else None
        return [
            ObjectVersion(
                version_id=f"{int(modified)}-{str(sig).strip()}",
                etag=str(token),
                last_modified=_iso(int(modified)),
                is_latest=index == 0 and token == live_token,
            )
            for index, (token, sig, modified) in enumerate(rows)
        ]

    def read_pipeline_version(self, pipeline_id: str, version_id: str) -> LiveObject:
        """One pipelines_history row, parsed like a live one; version_id is <last_modified_at>-<body_sig>."""
        pipeline_id = pipeline_id.lower()
        where = f"version {version_id} of {_row_name(PIPELINES, pipeline_id)}"
        modified, _, sig = version_id.partition("-")
        if not modified.isdigit() or len(sig) != 32:
            raise StoreError(f"cannot read {where}: a version id is <last_modified_at>-<body_sig>.")
        with self._transaction(f"read {where}") as cursor:
            cursor.execute(
                f"SELECT {self.dialect.token_sql}, "
                "CASE WHEN octet_length(body) > %s THEN NULL ELSE body END, octet_length(body) "
                "FROM pipelines_history WHERE id = %s AND body_sig = %s AND last_modified_at = %s",
                (self.settings.limits.max_body_bytes, pipeline_id, sig, int(modified)),
            )
            row = cursor.fetchone()
        if row is None:
            raise StoreError(f"cannot read {where}: {self.describe()} has no such history row.")
        token, body, size = row
        return self._live_of(pipeline_id, token, body, size)

    # -- writes -------------------------------------------------------------
    def put_pipeline(self, pipeline_id: str, body: bytes, *, if_match: str | None) -> WriteResult:
        """Write the row (and its history row) only while it still holds the body the plan saw
        (if_match), or is still absent or deleted (None): checked and written in one transaction.

        A failed check is a stale plan, unless the row now holds exactly these bytes: then an
        earlier attempt of this very write committed and only its answer was lost.
        """
        pipeline_id = pipeline_id.lower()
        row = _row_name(PIPELINES, pipeline_id)
        text, document = _decode(body, row)
        name, application = document.get("name"), document.get("application")
        if not isinstance(name, str) or not isinstance(application, str):
            raise StoreError(f"cannot write {row}: its body has no name or application (Front50 needs both).")
        by = document.get("lastModifiedBy")
        last_modified_by = by if isinstance(by, str) and by else "anonymous"
        token = body_token(text)
        outcome: tuple[int, str] | None = None
        try:
            with self._transaction(f"write {row}") as cursor:
                seen, exists = self._lock_row(cursor, pipeline_id)
                if seen != if_match:
                    if seen == token:
                        outcome = None  # already written by an earlier attempt
                    else:
                        raise StalePlanError(_stale_message(row, if_match))
                else:
                    stamp = self._stamp(cursor, PIPELINES, _update_ts(document))
                    values = (name, application, text, stamp, last_modified_by)
                    if not exists:
                        cursor.execute(
                            "INSERT INTO pipelines (name, application, body, last_modified_at, "
                            "last_modified_by, created_at, is_deleted, id) "
                            "VALUES (%s, %s, %s, %s, %s, %s, false, %s)",
                            (*values, stamp, pipeline_id),
                        )
                    else:
                        cursor.execute(
                            "UPDATE pipelines SET name = %s, application = %s, body = %s, "
                            "last_modified_at = %s, last_modified_by = %s, is_deleted = false WHERE id = %s",
                            (*values, pipeline_id),
                        )
                    sig = self._record_history(cursor, "pipelines_history", pipeline_id, text, stamp)
                    outcome = (stamp, sig)
        except StoreError:
            if if_match is None and self._holds(pipeline_id, token):
                return WriteResult(key=row, etag=token, version_id=None)  # a racing create was ours
            if if_match is None and self._exists(pipeline_id):
                raise StalePlanError(_stale_message(row, if_match)) from None
            raise
        version = f"{outcome[0]}-{outcome[1]}" if outcome is not None else None
        return WriteResult(key=row, etag=token, version_id=version)

    def _lock_row(self, cursor: Any, pipeline_id: str) -> tuple[str | None, bool]:
        """Lock the pipeline's row for this transaction (waiting at most the lock timeout):
        (its token, or None when there is no row or it is soft-deleted; whether a row exists)."""
        cursor.execute(self.dialect.lock_timeout_sql)
        cursor.execute(
            f"SELECT {self.dialect.token_sql}, is_deleted FROM pipelines WHERE id = %s FOR UPDATE",
            (pipeline_id,),
        )
        current = cursor.fetchone()
        if current is None:
            return None, False
        return (None if _flag(current[1]) else str(current[0])), True

    def delete_pipeline(self, pipeline_id: str, *, if_match: str) -> WriteResult:
        """Soft-delete the row (is_deleted = true, last_modified_at bumped, as Front50 does) only
        while it still holds the body the plan saw; a row already deleted or gone stays so."""
        pipeline_id = pipeline_id.lower()
        row = _row_name(PIPELINES, pipeline_id)
        with self._transaction(f"delete {row}") as cursor:
            seen, _ = self._lock_row(cursor, pipeline_id)
            if seen is None:
                return WriteResult(key=row, etag=None, version_id=None)  # already gone: same end state
            if seen != if_match:
                raise StalePlanError(_stale_message(row, if_match))
            stamp = self._stamp(cursor, PIPELINES, None)
            cursor.execute(
                "UPDATE pipelines SET is_deleted = true, last_modified_at = %s WHERE id = %s",
                (stamp, pipeline_id),
            )
        return WriteResult(key=row, etag=None, version_id=None)

    def _record_history(self, cursor: Any, table: str, row_id: str, text: str, stamp: int) -> str:
        """The history row Front50 writes beside every write; a duplicate is skipped, as Front50 does."""
        sig = body_sig(text)
        columns = ("id", "body", "body_sig", "last_modified_at", "recorded_at")
        cursor.execute(
            self.dialect.insert_ignore.format(
                table=table, columns=", ".join(columns), values=", ".join(["%s"] * len(columns))
            ),
            (row_id, text, sig, stamp, now_ms()),
        )
        return sig

    def _holds(self, pipeline_id: str, token: str) -> bool:
        try:
            obj = self.read_pipeline(pipeline_id)
        except StoreError:
            return False
        return obj is not None and obj.etag == token

    def _exists(self, pipeline_id: str) -> bool:
        try:
            return self.read_pipeline(pipeline_id) is not None
        except StoreError:
            return False

    def ensure_application(self, application: str, email: str | None) -> bool:
        """Create the applications row (and its history row) when Front50 has no live one: id the
        name lower-cased, the body's name upper-cased, as Front50 stores it. True when created."""
        app_id = application.lower()
        if app_id in self._known_applications:
            return False
        row = _row_name(APPLICATIONS, app_id)
        created = False
        try:
            with self._transaction(f"write {row}") as cursor:
                cursor.execute(self.dialect.lock_timeout_sql)
                cursor.execute("SELECT is_deleted FROM applications WHERE id = %s FOR UPDATE", (app_id,))
                current = cursor.fetchone()
                if current is None or _flag(current[0]):
                    stamp = self._stamp(cursor, APPLICATIONS, None)
                    document = application_document(application, email)
                    document["createTs"] = document["updateTs"] = str(stamp)
                    text = json.dumps(document, sort_keys=True)
                    by = str(document["lastModifiedBy"])
                    if current is None:
                        cursor.execute(
                            "INSERT INTO applications (id, body, created_at, last_modified_at, "
                            "last_modified_by, is_deleted) VALUES (%s, %s, %s, %s, %s, false)",
                            (app_id, text, stamp, stamp, by),
                        )
                    else:
                        cursor.execute(
                            "UPDATE applications SET body = %s, last_modified_at = %s, "
                            "last_modified_by = %s, is_deleted = false WHERE id = %s",
                            (text, stamp, by, app_id),
                        )
                    self._record_history(cursor, "applications_history", app_id, text, stamp)
                    created = True
        except StoreError:
            if not self._application_exists(app_id):
                raise
            created = False  # someone created it meanwhile: fine
        self._known_applications.add(app_id)
        return created

    def read_application(self, application: str) -> dict[str, Any] | None:
        """Front50's application object (its email, ...), or None when absent or not a JSON object."""
        with self._transaction("read the applications") as cursor:
            cursor.execute(
                "SELECT body FROM applications WHERE id = %s AND is_deleted = false", (application.lower(),)
            )
            row = cursor.fetchone()
        try:
            document = json.loads(row[0]) if row is not None else None
        except ValueError:
            return None
        return document if isinstance(document, dict) else None

    def _application_exists(self, app_id: str) -> bool:
        try:
            with self._transaction("read the applications") as cursor:
                cursor.execute("SELECT 1 FROM applications WHERE id = %s AND is_deleted = false", (app_id,))
                return cursor.fetchone() is not None
        except StoreError:
            return False

    def repair_change_signals(self) -> list[str]:
        """Nothing to repair: last_modified_at, Front50's change signal, is written with the body."""
        return []


def _like_escaped(text: str) -> str:
    """text as a LIKE pattern matching itself (backslash, the default escape of both servers)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _row_name(table: str, row_id: str) -> str:
    return f"{table} row {row_id}"


def _flag(value: object) -> bool:
    """An is_deleted value as read: a boolean (PostgreSQL), 0/1 (MySQL tinyint) or b'\\x00'/b'\\x01'
    (MySQL bit(1), what Liquibase before 4.24 made of a boolean column)."""
    if isinstance(value, bytes | bytearray):
        return any(value)
    return bool(value)


def _clean_id(row_id: object) -> str:
    """A row's id as pipeline-sync keys it: lower-case, without char(n) padding."""
    return str(row_id).rstrip(" ").lower()


def _decode(body: bytes, row: str) -> tuple[str, dict[str, Any]]:
    try:
        text = body.decode("utf-8")
        document = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise StoreError(f"cannot write {row}: its body is not UTF-8 JSON ({exc}).") from None
    if not isinstance(document, dict):
        raise StoreError(f"cannot write {row}: its body is not a JSON object.")
    return text, document


def _update_ts(document: Mapping[str, Any]) -> int | None:
    """The body's updateTs as epoch ms (Front50 writes it equal to last_modified_at), or None."""
    value = document.get("updateTs")
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    return int(text) if text.isascii() and text.isdigit() else None


def _iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def _reason(exc: BaseException) -> str:
    """A driver's message on one line, credentials masked."""
    return redact(" ".join(str(exc).split())) or type(exc).__name__


def _stale_message(row: str, if_match: str | None) -> str:
    seen = f"body sha256 {if_match}" if if_match else "no row"
    return (
        f"stale plan: {row} is no longer what the plan saw ({seen}); nothing was written. "
        "Run `pipeline-sync plan` again and approve the new plan."
    )
