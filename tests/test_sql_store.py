"""The SQL store on real PostgreSQL and MariaDB: rows exactly as Front50 writes them, the schema check, faults, the CLI."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from click.testing import CliRunner, Result
from front50_schema import Session, create_front50_tables, kind_of, mysql_ddl, rows, session

from pipeline_sync.cli import main
from pipeline_sync.errors import StalePlanError, StoreError
from pipeline_sync.store.front50 import now_ms
from pipeline_sync.store.select import open_store
from pipeline_sync.store.sql import SqlSettings, SqlStore, body_sig, body_token, murmur3_128

pytest_plugins = ("front50_schema",)

PROJECT = Path(__file__).resolve().parent.parent
KEY = "checkout/prod/deploy"


# -- Front50's body signature (no database needed) ----------------------------------------------


@pytest.mark.parametrize(
    ("seed", "h1", "h2", "text"),
    [  # Guava's Murmur3Hash128Test known values
        (0, 0x629942693E10F867, 0x92DB0B82BAEB5347, "hell"),
        (1, 0xA78DDFF5ADAE8D10, 0x128900EF20900135, "hello"),
        (2, 0x8A486B23F422E826, 0xF962A2C58947765F, "hello "),
        (3, 0x2EA59F466F6BED8C, 0xC610990ACC428A17, "hello w"),
        (4, 0x79F6305A386C572C, 0x46305AED3483B94E, "hello wo"),
        (5, 0xC2219D213EC1F1B5, 0xA1D8E2E0A52785BD, "hello wor"),
        (0, 0xE34BBC7BBC071B6C, 0x7A433CA9C49A9347, "The quick brown fox jumps over the lazy dog"),
        (0, 0x658CA970FF85269A, 0x43FEE3EAA68E5C3E, "The quick brown fox jumps over the lazy cog"),
        (0, 0x09A3B843BEE83FAA, 0x95C27D677EFE322C, "中文查询参数-\U0001f680"),
    ],
)
def test_murmur3_128_matches_guava(seed: int, h1: int, h2: int, text: str) -> None:
    assert murmur3_128(text.encode("utf-8"), seed) == (h1, h2)


def test_body_sig_is_printed_as_guava_prints_a_hash_code() -> None:
    assert body_sig("The quick brown fox jumps over the lazy dog") == "6c1b07bc7bbc4be347939ac4a93c437a"


# -- helpers ------------------------------------------------------------------------------------


def padded(url: str, text: str) -> str:
    """A char(255) value as the server returns it: blank-padded on PostgreSQL, trimmed on MySQL."""
    return text if kind_of(url) == "mysql" else text.ljust(255)


def stamped(name: str, *, by: str = "pipeline-sync", **extra: Any) -> bytes:
    document = {
        "id": "pipe-1",
        "application": "app",
        "name": name,
        "stages": [],
        "updateTs": str(now_ms()),
        "lastModifiedBy": by,
        **extra,
    }
    return json.dumps(document, sort_keys=True).encode()


def sql_store(url: str) -> SqlStore:
    store = open_store(url, {})
    assert isinstance(store, SqlStore)
    return store


# -- rows exactly as Front50 writes them --------------------------------------------------------


def test_a_create_writes_the_row_and_history_row_front50_writes(front50_sql: str) -> None:
    store = sql_store(front50_sql)
    body = stamped("deploy", by="carol")
    written = store.put_pipeline("Pipe-1", body, if_match=None)
    [row] = rows(
        front50_sql,
        "SELECT id, name, application, body, created_at, last_modified_at, last_modified_by, is_deleted "
        "FROM pipelines",
    )
    update_ts = int(json.loads(body)["updateTs"])
    assert row == (
        "pipe-1",
        padded(front50_sql, "deploy"),
        padded(front50_sql, "app"),
        body.decode(),
        update_ts,
        update_ts,
        "carol",
        False,
    )
    [history] = rows(
        front50_sql, "SELECT id, body, body_sig, last_modified_at, recorded_at FROM pipelines_history"
    )
    assert history[:4] == ("pipe-1", body.decode(), body_sig(body.decode()), update_ts)
    assert abs(history[4] - now_ms()) < 60_000
    assert written.version_id == f"{update_ts}-{body_sig(body.decode())}"
    assert written.key == "pipelines row pipe-1"


def test_an_update_keeps_created_at_and_adds_a_history_row(front50_sql: str) -> None:
    store = sql_store(front50_sql)
    first = store.put_pipeline("pipe-1", stamped("one"), if_match=None)
    [(created, modified)] = rows(front50_sql, "SELECT created_at, last_modified_at FROM pipelines")
    body = stamped("two", email="a@example.com")
    store.put_pipeline("pipe-1", body, if_match=first.etag)
    [(created_after, modified_after, name, text)] = rows(
        front50_sql, "SELECT created_at, last_modified_at, name, body FROM pipelines"
    )
    assert created_after == created
    assert modified_after > modified
    assert (name.rstrip(), text) == ("two", body.decode())
    assert len(rows(front50_sql, "SELECT 1 FROM pipelines_history")) == 2


def test_a_write_is_stamped_past_every_row_so_front50_refreshes_see_it(front50_sql: str) -> None:
    ahead = now_ms() + 10 * 60_000  # another writer's clock runs ten minutes ahead
    with session(front50_sql) as db:
        db.execute(
            "INSERT INTO pipelines VALUES ('other', 'n', 'a', '{}', %s, %s, 'x', false)", (ahead, ahead)
        )
    sql_store(front50_sql).put_pipeline("pipe-1", stamped("one"), if_match=None)
    [(modified,)] = rows(front50_sql, "SELECT last_modified_at FROM pipelines WHERE id = 'pipe-1'")
    assert modified == ahead + 1


def test_a_delete_is_soft_as_front50_does_it(front50_sql: str) -> None:
    store = sql_store(front50_sql)
    body = stamped("one")
    written = store.put_pipeline("pipe-1", body, if_match=None)
    assert written.etag is not None
    [(before,)] = rows(front50_sql, "SELECT last_modified_at FROM pipelines")
    store.delete_pipeline("pipe-1", if_match=written.etag)
    [(text, deleted, after)] = rows(front50_sql, "SELECT body, is_deleted, last_modified_at FROM pipelines")
    assert (text, deleted) == (body.decode(), True)
    assert after > before
    assert len(rows(front50_sql, "SELECT 1 FROM pipelines_history")) == 1
    # A create over the deleted row brings it back, as Front50's upsert does; created_at is kept.
    [(created,)] = rows(front50_sql, "SELECT created_at FROM pipelines")
    store.put_pipeline("pipe-1", stamped("again"), if_match=None)
    assert rows(front50_sql, "SELECT is_deleted, created_at FROM pipelines") == [(False, created)]


def test_an_application_row_is_what_front50_writes(front50_sql: str) -> None:
    assert sql_store(front50_sql).ensure_application("Checkout", "team@example.com") is True
    [(app_id, text, created, modified, by, deleted)] = rows(
        front50_sql,
        "SELECT id, body, created_at, last_modified_at, last_modified_by, is_deleted FROM applications",
    )
    body = json.loads(text)
    assert (app_id, by, deleted, created) == ("checkout", "pipeline-sync", False, modified)
    assert body == {
        "name": "CHECKOUT",
        "email": "team@example.com",
        "createTs": str(modified),
        "updateTs": str(modified),
        "lastModifiedBy": "pipeline-sync",
        "cloudProviders": "",
    }
    assert rows(front50_sql, "SELECT id, body_sig, last_modified_at FROM applications_history") == [
        ("checkout", body_sig(text), modified)
    ]


def test_the_token_is_the_sha256_of_the_body_text_on_every_server(front50_sql: str) -> None:
    store = sql_store(front50_sql)
    body = stamped("déploiement 中文 \U0001f680", description="tab\there")
    written = store.put_pipeline("pipe-1", body, if_match=None)
    expected = hashlib.sha256(body).hexdigest()
    assert written.etag == body_token(body.decode()) == expected
    assert sql_store(front50_sql).read_live()["pipe-1"].etag == expected  # computed by the server
    assert [v.etag for v in sql_store(front50_sql).pipeline_versions("pipe-1")] == [expected]
    assert rows(front50_sql, "SELECT body FROM pipelines") == [(body.decode(),)]


def test_a_history_row_front50_already_has_is_skipped_not_an_error(front50_sql: str) -> None:
    body = stamped("one")
    text, update_ts = body.decode(), int(json.loads(body)["updateTs"])
    with session(front50_sql) as db:  # the very row this write will record, already there
        db.execute(
            "INSERT INTO pipelines_history VALUES ('pipe-1', %s, %s, %s, 1)",
            (text, body_sig(text), update_ts),
        )
    sql_store(front50_sql).put_pipeline("pipe-1", body, if_match=None)
    assert rows(front50_sql, "SELECT body, recorded_at FROM pipelines_history") == [(text, 1)]
    assert rows(front50_sql, "SELECT body, last_modified_at FROM pipelines") == [(text, update_ts)]


@pytest.mark.parametrize("boolean", ["tinyint(1)", "tinyint", "bit(1)", "boolean"])
def test_every_mysql_type_liquibase_gave_is_deleted_works(mysql_database: str, boolean: str) -> None:
    create_front50_tables(mysql_database, mysql_ddl(boolean))
    store = sql_store(mysql_database)
    first = store.put_pipeline("pipe-1", stamped("one"), if_match=None)
    second = store.put_pipeline("pipe-1", stamped("two"), if_match=first.etag)
    assert second.etag is not None
    assert list(sql_store(mysql_database).read_live()) == ["pipe-1"]
    store.delete_pipeline("pipe-1", if_match=second.etag)
    assert sql_store(mysql_database).read_live() == {}
    assert rows(mysql_database, "SELECT is_deleted = 1 FROM pipelines") == [(1,)]
    with pytest.raises(StalePlanError):
        store.put_pipeline("pipe-1", stamped("three"), if_match=second.etag)  # deleted: not what it saw
    again = store.put_pipeline("pipe-1", stamped("again"), if_match=None)
    assert sql_store(mysql_database).read_live()["pipe-1"].etag == again.etag
    assert rows(mysql_database, "SELECT is_deleted = 0 FROM pipelines") == [(1,)]
    assert store.ensure_application("Checkout", None) is True
    assert sql_store(mysql_database).ensure_application("checkout", None) is False


def test_a_body_over_the_size_limit_is_left_alone_unread(front50_sql: str) -> None:
    sql_store(front50_sql).put_pipeline("pipe-1", stamped("one", huge="x" * 2000), if_match=None)
    small = open_store(front50_sql, {"PIPELINE_SYNC_MAX_BODY_BYTES": "1000"})
    obj = small.read_live()["pipe-1"]
    assert obj.problem is not None and obj.problem.startswith("is 2,")
    assert obj.problem.endswith(
        "bytes, over the 1,000 bytes limit; raise PIPELINE_SYNC_MAX_BODY_BYTES to read it"
    )


# -- the schema check and credentials ------------------------------------------------------------


def test_an_empty_database_is_refused_naming_what_is_missing(sql_database: str) -> None:
    with pytest.raises(StoreError) as caught:
        open_store(sql_database, {})
    where = urlunsplit(urlsplit(sql_database)._replace(netloc=urlsplit(sql_database).netloc.split("@")[-1]))
    assert str(caught.value) == (
        f"{where} does not hold Front50's SQL schema: table pipelines is missing; table pipelines_history "
        "is missing; table applications is missing; table applications_history is missing. pipeline-sync "
        "never creates or migrates Front50's tables: point --store at the database Front50 itself uses, "
        "after Front50 has started once and run its migrations."
    )
    schema = "DATABASE()" if kind_of(sql_database) == "mysql" else "current_schema()"
    tables = f"SELECT table_name FROM information_schema.tables WHERE table_schema = {schema}"
    assert rows(sql_database, tables) == []  # nothing was created


def test_a_missing_column_is_named(front50_sql: str) -> None:
    with session(front50_sql) as db:
        db.execute("ALTER TABLE pipelines DROP COLUMN is_deleted")
        # MySQL will not drop a primary key column while the key names it.
        unkey = "DROP PRIMARY KEY, " if kind_of(front50_sql) == "mysql" else ""
        db.execute(f"ALTER TABLE pipelines_history {unkey}DROP COLUMN body_sig, DROP COLUMN recorded_at")
    with pytest.raises(
        StoreError,
        match=r": table pipelines lacks column is_deleted; table pipelines_history lacks columns body_sig, recorded_at\. ",
    ):
        open_store(front50_sql, {})


def test_credentials_are_never_shown(front50_sql: str) -> None:
    parts = urlsplit(front50_sql)
    kind = kind_of(front50_sql)
    store = open_store(front50_sql, {})
    assert store.describe() == f"{kind}://{parts.hostname}:{parts.port}{parts.path}"
    refused = urlunsplit(parts._replace(netloc=f"front50:hunter2@{parts.hostname}:1"))
    with pytest.raises(StoreError) as caught:
        open_store(refused, {})
    assert str(caught.value).startswith(f"cannot connect to {kind}://{parts.hostname}:1{parts.path}: ")
    assert "hunter2" not in str(caught.value)


def test_a_mysql_password_comes_from_the_url_mysql_pwd_or_my_cnf(front50_mysql: str, tmp_path: Path) -> None:
    parts = urlsplit(front50_mysql)
    password = parts.password or ""
    assert password  # the test server's user has one
    bare = urlunsplit(parts._replace(netloc=f"{parts.username}@{parts.hostname}:{parts.port}"))
    home = tmp_path / "home"
    home.mkdir()
    with pytest.raises(StoreError) as caught:
        open_store(bare, {"HOME": str(home)})
    assert str(caught.value).startswith(
        f"cannot connect to mysql://{parts.hostname}:{parts.port}{parts.path}: "
    )
    assert "Access denied" in str(caught.value)
    assert open_store(bare, {"MYSQL_PWD": password}).read_live() == {}
    (home / ".my.cnf").write_text(f"[client]\npassword={password}\n")
    assert open_store(bare, {"HOME": str(home)}).read_live() == {}
    wrong = urlunsplit(parts._replace(netloc=f"{parts.username}:hunter2@{parts.hostname}:{parts.port}"))
    with pytest.raises(StoreError) as caught:  # the URL's password wins over MYSQL_PWD and the file
        open_store(wrong, {"HOME": str(home), "MYSQL_PWD": password})
    assert "Access denied" in str(caught.value) and "hunter2" not in str(caught.value)
    assert password not in str(caught.value)


# -- faults ---------------------------------------------------------------------------------------


def test_a_connection_dropped_mid_transaction_writes_nothing_and_a_rerun_converges(
    front50_sql: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = sql_store(front50_sql)
    first = store.put_pipeline("pipe-1", stamped("one"), if_match=None)
    before = rows(front50_sql, "SELECT * FROM pipelines")
    real = SqlStore._record_history

    def drop_then_record(self: SqlStore, cursor: Any, *args: Any) -> str:
        with session(front50_sql, autocommit=True) as admin:
            if kind_of(front50_sql) == "mysql":
                admin.execute(f"KILL {int(self.db.thread_id())}")
            else:
                admin.execute("SELECT pg_terminate_backend(%s)", (self.db.info.backend_pid,))
        return real(self, cursor, *args)

    monkeypatch.setattr(SqlStore, "_record_history", drop_then_record)
    with pytest.raises(StoreError, match=rf"^cannot write pipelines row pipe-1 in {kind_of(front50_sql)}://"):
        store.put_pipeline("pipe-1", stamped("two"), if_match=first.etag)
    assert rows(front50_sql, "SELECT * FROM pipelines") == before  # the row is old, not half-new
    assert len(rows(front50_sql, "SELECT 1 FROM pipelines_history")) == 1
    monkeypatch.setattr(SqlStore, "_record_history", real)
    body = stamped("two")
    store.put_pipeline("pipe-1", body, if_match=first.etag)  # the same store reconnects
    assert rows(front50_sql, "SELECT body FROM pipelines") == [(body.decode(),)]
    assert len(rows(front50_sql, "SELECT 1 FROM pipelines_history")) == 2


QUICK_LOCK_TIMEOUT = {
    "postgresql": "SET LOCAL lock_timeout = '300ms'",
    "mysql": "SET SESSION innodb_lock_wait_timeout = 1",  # whole seconds only
}


def test_a_lock_timeout_writes_nothing_and_a_rerun_converges(front50_sql: str) -> None:
    dialect = sql_store(front50_sql).dialect
    quick = dataclasses.replace(dialect, lock_timeout_sql=QUICK_LOCK_TIMEOUT[dialect.name])
    store = SqlStore(SqlSettings(front50_sql, quick))
    first = store.put_pipeline("pipe-1", stamped("one"), if_match=None)
    before = rows(front50_sql, "SELECT * FROM pipelines")
    holder = Session(front50_sql)
    try:
        holder.execute("SELECT 1 FROM pipelines WHERE id = 'pipe-1' FOR UPDATE")
        with pytest.raises(
            StoreError, match=r"^cannot write pipelines row pipe-1 in .*: another writer held the row"
        ):
            store.put_pipeline("pipe-1", stamped("two"), if_match=first.etag)
    finally:
        holder.rollback()
        holder.close()
    assert rows(front50_sql, "SELECT * FROM pipelines") == before
    store.put_pipeline("pipe-1", stamped("two"), if_match=first.etag)
    assert len(rows(front50_sql, "SELECT 1 FROM pipelines_history")) == 2


def test_a_writer_waits_for_the_lock_then_sees_the_plan_is_stale(front50_sql: str) -> None:
    store = sql_store(front50_sql)
    first = store.put_pipeline("pipe-1", stamped("one"), if_match=None)
    holder = Session(front50_sql)
    holder.execute('UPDATE pipelines SET body = \'{"id": "pipe-1", "edited": true}\' WHERE id = \'pipe-1\'')
    outcome: list[BaseException | None] = []

    def write() -> None:
        try:
            sql_store(front50_sql).put_pipeline("pipe-1", stamped("two"), if_match=first.etag)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    thread.join(timeout=1)
    assert thread.is_alive()  # blocked on the row lock, not writing past it
    holder.commit()
    holder.close()
    thread.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], StalePlanError)
    assert rows(front50_sql, "SELECT body FROM pipelines") == [('{"id": "pipe-1", "edited": true}',)]


def test_a_create_racing_another_create_does_not_wait_for_it_and_is_refused_as_stale(
    front50_sql: str,
) -> None:
    """A sits between its check (no row) and its insert while B creates the row: B is not held up
    (no gap lock, as MySQL's REPEATABLE READ would take), and A's insert then finds B's row: stale."""
    store_a, store_b = sql_store(front50_sql), sql_store(front50_sql)
    checked, b_done = threading.Event(), threading.Event()
    real_stamp = store_a._stamp

    def pause_then_stamp(*args: Any) -> int:
        checked.set()
        b_done.wait(timeout=15)
        return real_stamp(*args)

    store_a._stamp = pause_then_stamp  # type: ignore[method-assign]
    outcomes: dict[str, BaseException | None] = {}

    def create(name: str, store: SqlStore) -> None:
        try:
            store.put_pipeline("pipe-1", stamped(name), if_match=None)
            outcomes[name] = None
        except BaseException as exc:
            outcomes[name] = exc

    thread_a = threading.Thread(target=create, args=("a", store_a))
    thread_a.start()
    assert checked.wait(timeout=15)
    thread_b = threading.Thread(target=create, args=("b", store_b))
    thread_b.start()
    thread_b.join(timeout=5)
    b_finished = not thread_b.is_alive()
    b_done.set()
    thread_a.join(timeout=30)
    thread_b.join(timeout=30)
    assert b_finished, "B waited for A's check: a gap lock"
    assert outcomes["b"] is None
    assert isinstance(outcomes["a"], StalePlanError)
    assert [json.loads(body)["name"] for (body,) in rows(front50_sql, "SELECT body FROM pipelines")] == ["b"]


# -- end to end through the CLI --------------------------------------------------------------------


def cli(work: Path, url: str, *args: str) -> Result:
    options = ["--catalog", str(work / "catalog"), "--templates", str(work / "templates"), "--store", url]
    return CliRunner().invoke(main, [*options, *args])


def test_plan_apply_drift_stale_unmanaged_through_the_cli(front50_sql: str, tmp_path: Path) -> None:
    url = front50_sql
    work = tmp_path / "work"
    shutil.copytree(PROJECT / "catalog", work / "catalog")
    shutil.copytree(PROJECT / "templates", work / "templates")
    unmanaged = '{"id": "legacy-1", "application": "legacy", "name": "by-hand", "stages": []}'
    with session(url) as db:
        db.execute(
            "INSERT INTO pipelines VALUES ('legacy-1', 'by-hand', 'legacy', %s, 1, 1, 'dave', false)",
            (unmanaged,),
        )
    legacy_before = rows(url, "SELECT * FROM pipelines WHERE id = 'legacy-1'")

    first = cli(work, url, "plan", "--out", str(work / "plan.json"))
    assert first.exit_code == 2, first.output
    assert "Summary: 13 create" in first.output
    applied = cli(work, url, "apply", str(work / "plan.json"), "--approver", "carol")
    assert applied.exit_code == 0, applied.output
    assert "13 applied, 0 refused or failed (approver: carol)" in applied.output

    # Every row as Front50 writes it: id lower-case, name/application from the body, both stamps
    # the body's updateTs, last_modified_by its lastModifiedBy, one history row with its body_sig.
    written = rows(
        url,
        "SELECT id, name, application, body, created_at, last_modified_at, last_modified_by, is_deleted "
        "FROM pipelines WHERE id <> 'legacy-1'",
    )
    assert len(written) == 13
    for row_id, name, application, text, created, modified, by, deleted in written:
        body = json.loads(text)
        assert row_id == body["id"].lower()
        assert (name.rstrip(), application.rstrip()) == (body["name"], body["application"])
        assert created == modified == int(body["updateTs"])
        assert (by, deleted) == (body["lastModifiedBy"], False)
        assert body["pipelineSync"]["approvedBy"] == "carol"
        assert rows(
            url, "SELECT body, body_sig, last_modified_at FROM pipelines_history WHERE id = %s", row_id
        ) == [(text, body_sig(text), modified)]
    apps = rows(url, "SELECT id, body FROM applications ORDER BY id")
    assert [a for a, _ in apps] == ["catalog-api", "checkout", "notifications", "search"]
    assert json.loads(dict(apps)["checkout"])["name"] == "CHECKOUT"

    quiet = cli(work, url, "plan", "--json")
    assert quiet.exit_code == 0, quiet.output
    entries = json.loads(quiet.output)["entries"]
    assert {e["status"] for e in entries} == {"in-sync"}
    pipeline_id = next(e["pipeline_id"] for e in entries if e["key"] == KEY)

    # Plan a catalog change, then a person edits the pipeline in Deck (Front50 writes the row).
    defaults = work / "catalog" / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace("values_branch: release", "values_branch: release-2"))
    planned = cli(work, url, "plan", "--select", KEY, "--out", str(work / "stale.json"))
    assert planned.exit_code == 2, planned.output
    [(text,)] = rows(url, "SELECT body FROM pipelines WHERE id = %s", pipeline_id)
    edited = {**json.loads(text), "description": "emergency fix by dave", "lastModifiedBy": "dave"}
    edited_text = json.dumps(edited)
    stamp = now_ms() + 5
    with session(url) as db:
        db.execute(
            "UPDATE pipelines SET body = %s, last_modified_at = %s, last_modified_by = 'dave' WHERE id = %s",
            (edited_text, stamp, pipeline_id),
        )
        db.execute(
            "INSERT INTO pipelines_history VALUES (%s, %s, %s, %s, %s)",
            (pipeline_id, edited_text, body_sig(edited_text), stamp, stamp),
        )

    drift = cli(work, url, "plan", "--select", KEY, "--json")
    assert drift.exit_code == 2, drift.output
    [entry] = json.loads(drift.output)["entries"]
    assert entry["status"] == "drift"
    assert entry["drift_fields"] == ["root['description']"]  # from history: what dave changed

    stale = cli(work, url, "apply", str(work / "stale.json"))
    assert stale.exit_code == 1
    assert f"stale: {KEY}: " in stale.output
    assert rows(url, "SELECT body FROM pipelines WHERE id = %s", pipeline_id) == [(edited_text,)]
    assert rows(url, "SELECT * FROM pipelines WHERE id = 'legacy-1'") == legacy_before
    assert rows(url, "SELECT 1 FROM pipelines_history WHERE id = 'legacy-1'") == []


def test_rollback_restores_an_earlier_row_from_pipelines_history_through_the_cli(
    front50_sql: str, tmp_path: Path
) -> None:
    url = front50_sql
    work = tmp_path / "work"
    shutil.copytree(PROJECT / "catalog", work / "catalog")
    shutil.copytree(PROJECT / "templates", work / "templates")
    assert cli(work, url, "plan", "--select", KEY, "--out", str(work / "one.json")).exit_code == 2
    assert cli(work, url, "apply", str(work / "one.json")).exit_code == 0
    defaults = work / "catalog" / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace("values_branch: release", "values_branch: release-2"))
    assert cli(work, url, "plan", "--select", KEY, "--out", str(work / "two.json")).exit_code == 2
    assert cli(work, url, "apply", str(work / "two.json")).exit_code == 0
    pipeline_id = json.loads((work / "two.json").read_text())["entries"][0]["pipeline_id"]
    [(current,)] = rows(url, "SELECT body FROM pipelines WHERE id = %s", pipeline_id)
    assert "release-2" in current

    listed = cli(work, url, "rollback", KEY, "--list")
    assert listed.exit_code == 0, listed.output
    assert len(listed.output.strip().splitlines()) == 2
    planned = cli(work, url, "rollback", KEY, "--out", str(work / "rb.json"))
    assert planned.exit_code == 0, planned.output
    applied = cli(work, url, "apply", str(work / "rb.json"), "--approver", "erin")
    assert applied.exit_code == 0, applied.output
    [(restored,)] = rows(url, "SELECT body FROM pipelines WHERE id = %s", pipeline_id)
    body = json.loads(restored)
    assert "release-2" not in restored and body["pipelineSync"]["approvedBy"] == "erin"
    assert "restoredFrom" in body["pipelineSync"]
    assert rows(url, "SELECT count(*) FROM pipelines_history WHERE id = %s", pipeline_id) == [(3,)]
