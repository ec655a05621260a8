"""The Dagster code location against Front50's PostgreSQL database, unchanged: the nightly reconcile,
one partition's plan, approval, sensor and publish, drift and staleness, and unmanaged rows."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import psycopg
import pytest
from s3support import PROJECT
from test_dagster import DEV_KEY, KEY, add_partitions, approve, plan_partition, run_reconcile, sensor_tick

from pipeline_sync import engine
from pipeline_sync.definitions import defs
from pipeline_sync.defs.approvals import APPROVAL_ASSET, AUTO_APPROVER
from pipeline_sync.defs.partitions import PARTITIONS_NAME
from pipeline_sync.defs.resources import CatalogResource, Front50Resource
from pipeline_sync.defs.state import PLAN_ASSET, latest_metadata
from pipeline_sync.provenance import MARKER_FIELD
from pipeline_sync.store.front50 import WRITER, now_ms
from pipeline_sync.store.s3 import S3Store
from pipeline_sync.store.sql import SqlStore, body_sig

pytest_plugins = ("front50_schema",)

# A pipeline someone made by hand in Deck: not in the catalog, so pipeline-sync must never write it.
LEGACY = '{"id": "legacy-1", "application": "legacy", "name": "by-hand", "stages": []}'
ROW = "id, name, application, body, created_at, last_modified_at, last_modified_by, is_deleted"


@pytest.fixture
def env(front50_postgres: str, aws_env: None, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The example catalog, a Dagster instance, and Front50's database (one hand-made row) as the store."""
    root = tmp_path / "project"
    shutil.copytree(PROJECT / "catalog", root / "catalog")
    shutil.copytree(PROJECT / "templates", root / "templates")
    with psycopg.connect(front50_postgres) as db:
        db.execute(
            "INSERT INTO pipelines VALUES ('legacy-1', 'by-hand', 'legacy', %s, 1, 1, 'dave', false)",
            (LEGACY,),
        )
    with dg.instance_for_test() as instance:
        resources = {
            "catalog": CatalogResource(
                catalog_dir=str(root / "catalog"), templates_dir=str(root / "templates")
            ),
            "front50": Front50Resource(store_url=front50_postgres, cache_dir=str(tmp_path / "cache")),
        }
        yield {"instance": instance, "resources": resources, "root": root, "url": front50_postgres}


# -- helpers ---------------------------------------------------------------------------------


def rows(env: dict[str, Any], sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(env["url"]) as db:
        return [tuple(row) for row in db.execute(sql, params).fetchall()]


def publish(env: dict[str, Any], request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """Run publish_job exactly as the sensor's run request asks."""
    return defs.resolve_job_def("publish_job").execute_in_process(
        instance=env["instance"],
        partition_key=request.partition_key,
        run_config=request.run_config,
        resources=env["resources"],
        raise_on_error=False,
    )


def pipeline_id_of(env: dict[str, Any], key: str) -> str:
    workspace = env["resources"]["catalog"].workspace()
    return str(workspace.catalog.pipeline_id(key)).lower()


def assert_written_as_front50_writes(env: dict[str, Any], key: str, approver: str) -> dict[str, Any]:
    """The row and its one history row are what Front50's SqlStorageService writes for this body,
    with the approver as lastModifiedBy (body) and last_modified_by (row); the body as parsed."""
    pipeline_id = pipeline_id_of(env, key)
    [(row_id, name, application, text, created, modified, by, deleted)] = rows(
        env, f"SELECT {ROW} FROM pipelines WHERE id = %s", pipeline_id
    )
    body = json.loads(text)
    assert row_id == body["id"].lower() == pipeline_id
    assert (name, application) == (body["name"].ljust(255), body["application"].ljust(255))
    assert created == modified == int(body["updateTs"])
    assert (by, body["lastModifiedBy"], deleted) == (approver, approver, False)
    assert body[MARKER_FIELD]["approvedBy"] == approver and body[MARKER_FIELD]["key"] == key
    assert rows(
        env, "SELECT body, body_sig, last_modified_at FROM pipelines_history WHERE id = %s", pipeline_id
    ) == [(text, body_sig(text), modified)]
    return dict(body)


def front50_save(env: dict[str, Any], pipeline_id: str, user: str, **change: Any) -> str:
    """A person's edit in Deck, as Front50 stores it: the body with lastModifiedBy and updateTs set,
    the row's stamps and last_modified_by, and a history row. The new body text."""
    [(text,)] = rows(env, "SELECT body FROM pipelines WHERE id = %s", pipeline_id)
    stamp = now_ms() + 5
    edited = json.dumps({**json.loads(text), **change, "lastModifiedBy": user, "updateTs": str(stamp)})
    with psycopg.connect(env["url"]) as db:
        db.execute(
            "UPDATE pipelines SET body = %s, last_modified_at = %s, last_modified_by = %s WHERE id = %s",
            (edited, stamp, user, pipeline_id),
        )
        db.execute(
            "INSERT INTO pipelines_history VALUES (%s, %s, %s, %s, %s)",
            (pipeline_id, edited, body_sig(edited), stamp, stamp),
        )
    return edited


def newest_approval_requests(instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    """What the approval sensor asks for the newest approval event alone."""
    [newest] = instance.fetch_materializations(APPROVAL_ASSET, limit=1).records
    return list(sensor_tick(instance, str(newest.storage_id - 1)).run_requests)


def summary_of(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    [event] = [
        m for m in result.asset_materializations_for_node("fleet_plan") if m.asset_key.path == ["fleet_plan"]
    ]
    return {k: v.value for k, v in event.metadata.items()}


# -- the nightly reconcile -------------------------------------------------------------------


def test_reconcile_plans_every_pipeline_and_the_policy_publishes_the_auto_stack(env: dict[str, Any]) -> None:
    instance = env["instance"]
    legacy = rows(env, "SELECT * FROM pipelines WHERE id = 'legacy-1'")
    result, first = run_reconcile(env)
    assert first["ASSET_MATERIALIZATION"] == 13 + 1 + 4  # plans + summary + dev auto-approvals
    assert first["ASSET_OBSERVATION"] == 0  # one event per changed partition: its plan
    summary = summary_of(result)
    assert (summary["pipelines"], summary["count_create"]) == (13, 13)
    assert latest_metadata(instance, APPROVAL_ASSET, DEV_KEY)["approver"] == AUTO_APPROVER
    assert latest_metadata(instance, APPROVAL_ASSET, KEY) == {}  # prod stays manual

    tick = sensor_tick(instance)
    requests = tick.run_requests
    dev = sorted(k for k in instance.get_dynamic_partitions(PARTITIONS_NAME) if "/dev/" in k)
    assert sorted(r.partition_key for r in requests) == dev and len(dev) == 4
    for request in requests:
        assert publish(env, request).success
    for key in dev:
        assert_written_as_front50_writes(env, key, AUTO_APPROVER)
    assert rows(env, "SELECT count(*) FROM pipelines") == [(1 + 4,)]  # no prod row, no other row
    assert [a for (a,) in rows(env, "SELECT id FROM applications ORDER BY id")] == [
        "catalog-api",
        "checkout",
        "notifications",
        "search",
    ]

    result, second = run_reconcile(env)  # nothing changed since the publishes: only the summary
    assert second["ASSET_MATERIALIZATION"] == 1 and second["ASSET_OBSERVATION"] == 0
    assert (summary_of(result)["count_in-sync"], summary_of(result)["count_create"]) == (4, 9)
    assert sensor_tick(instance, tick.cursor).skip_message == "no new approvals"
    assert rows(env, "SELECT * FROM pipelines WHERE id = 'legacy-1'") == legacy


# -- one partition: plan, a person's approval, the sensor, publish ----------------------------


def test_one_partition_publishes_the_approved_plan_then_is_in_sync(env: dict[str, Any]) -> None:
    instance = env["instance"]
    add_partitions(instance, env["root"])
    meta = plan_partition(env, KEY)
    assert meta["status"] == "create"
    assert rows(env, "SELECT count(*) FROM pipelines") == [(1,)]  # planning wrote nothing
    digest = meta["plan_digest"]
    assert approve(env, KEY, digest).success  # erin, a person
    assert rows(env, "SELECT count(*) FROM pipelines") == [(1,)]  # approving wrote nothing
    tick = sensor_tick(instance)
    [request] = tick.run_requests
    assert request.partition_key == KEY
    result = publish(env, request)
    assert result.success
    body = assert_written_as_front50_writes(env, KEY, "erin")
    assert body[MARKER_FIELD]["planDigest"] == digest
    [event] = [
        m
        for m in result.asset_materializations_for_node("published_pipeline")
        if m.asset_key.path == ["published_pipeline"]
    ]
    [(token,)] = rows(
        env,
        "SELECT encode(sha256(convert_to(body, 'UTF8')), 'hex') FROM pipelines WHERE id = %s",
        pipeline_id_of(env, KEY),
    )
    assert (event.metadata["approver"].value, event.metadata["s3_etag"].value) == ("erin", token)
    with env["resources"]["front50"].opened() as store:
        assert event.metadata["store"].value == store.describe()
    assert "@" not in event.metadata["store"].value  # never the credentials

    assert latest_metadata(instance, PLAN_ASSET, KEY)["status"] == "in-sync"  # as publish recorded it
    replanned = plan_partition(env, KEY)  # and as a fresh plan against the row finds it
    assert (replanned["status"], replanned["display_status"]) == ("in-sync", "in sync")
    assert sensor_tick(instance, tick.cursor).run_requests == []


def test_a_row_edited_through_front50_is_drift_and_a_stale_approval_writes_nothing(
    env: dict[str, Any],
) -> None:
    instance = env["instance"]
    add_partitions(instance, env["root"])
    assert approve(env, KEY, plan_partition(env, KEY)["plan_digest"]).success
    first = sensor_tick(instance)
    [request] = first.run_requests
    assert publish(env, request).success
    pipeline_id = pipeline_id_of(env, KEY)

    front50_save(env, pipeline_id, "dave", description="emergency fix by dave")
    drift = plan_partition(env, KEY)
    assert drift["status"] == "drift"
    assert drift["drift_fields"] == "root['description']"  # from pipelines_history: what dave changed

    # erin approves overwriting dave's edit, but carol edits again before the publish runs.
    assert approve(env, KEY, drift["plan_digest"]).success
    [stale_request] = sensor_tick(instance, first.cursor).run_requests
    carol = front50_save(env, pipeline_id, "carol", description="carol's fix")
    history = rows(env, "SELECT * FROM pipelines_history WHERE id = %s ORDER BY recorded_at", pipeline_id)
    stale = publish(env, stale_request)
    assert not stale.success
    [failure] = [e for e in stale.all_events if e.is_step_failure]
    assert "stale plan" in failure.step_failure_data.user_failure_data.description
    assert rows(env, "SELECT body, last_modified_by FROM pipelines WHERE id = %s", pipeline_id) == [
        (carol, "carol")
    ]
    assert (
        rows(env, "SELECT * FROM pipelines_history WHERE id = %s ORDER BY recorded_at", pipeline_id)
        == history
    )


# -- unmanaged rows ----------------------------------------------------------------------------


def test_unmanaged_rows_are_never_written(env: dict[str, Any]) -> None:
    """A hand-made row outside the catalog, and a hand-made row at a catalog pipeline's own id in the
    auto stack (an adoption: only a person may approve it), stay byte for byte as they were."""
    instance = env["instance"]
    dev_id = pipeline_id_of(env, DEV_KEY)
    hand_made = json.dumps({"id": dev_id, "application": "checkout", "name": "deploy-dev", "stages": []})
    with psycopg.connect(env["url"]) as db:
        db.execute(
            "INSERT INTO pipelines VALUES (%s, 'deploy-dev', 'checkout', %s, 2, 2, 'dave', false)",
            (dev_id, hand_made),
        )
    before = rows(env, "SELECT * FROM pipelines ORDER BY id")
    run_reconcile(env)
    plan = latest_metadata(instance, PLAN_ASSET, DEV_KEY)
    conflict = (
        f"the live object at this pipeline's id {dev_id} is not managed by pipeline-sync; it is left "
        "alone. Pin a different id or adopt it."
    )
    assert (plan["status"], plan["messages"]) == ("conflict", conflict)
    assert latest_metadata(instance, APPROVAL_ASSET, DEV_KEY) == {}  # the policy never approves it
    refused = approve(env, DEV_KEY, plan["plan_digest"])  # nor can a person, short of adopting it
    [failure] = [e for e in refused.all_events if e.is_step_failure]
    assert failure.step_failure_data.user_failure_data.description == (
        f"Approval refused: {DEV_KEY}: conflict entries cannot be applied: {conflict} Nothing was approved."
    )
    for request in sensor_tick(instance).run_requests:
        assert request.partition_key != DEV_KEY
        assert publish(env, request).success
    after = {r[0]: r for r in rows(env, "SELECT * FROM pipelines ORDER BY id")}
    assert [after[r[0]] for r in before] == before
    assert rows(env, "SELECT id FROM pipelines_history WHERE id IN ('legacy-1', %s)", dev_id) == []


# -- who the row names -----------------------------------------------------------------------


def test_only_a_store_that_records_the_modifier_gets_the_approver_as_last_modified_by(
    env: dict[str, Any], store: S3Store
) -> None:
    with env["resources"]["front50"].opened() as sql:
        assert isinstance(sql, SqlStore)
        assert engine.modifier_of(sql, "erin") == "erin"
    assert engine.modifier_of(store, "erin") == WRITER  # S3: the bytes stay as they always were

    class Claims:
        records_modifier = "yes"  # not True: no claim

    assert engine.modifier_of(Claims(), "erin") == WRITER  # type: ignore[arg-type]


def test_a_step_closes_the_database_connection_it_opened(env: dict[str, Any]) -> None:
    with env["resources"]["front50"].opened() as sql:
        assert isinstance(sql, SqlStore)
        connection = sql.db
        assert not connection.closed
    assert connection.closed


# -- the database role deploy/README.md grants -------------------------------------------------

DEPLOY_README = PROJECT / "deploy" / "README.md"


def readme_grants() -> list[str]:
    """The statements of deploy/README.md's grant block, as a deployment would run them."""
    text = DEPLOY_README.read_text()
    block = text.split("```sql\n", 1)[1].split("```", 1)[0]
    lines = [line.split("--")[0].strip() for line in block.splitlines()]
    return [s.strip() for s in " ".join(line for line in lines if line).split(";") if s.strip()]


@pytest.fixture
def restricted_url(env: dict[str, Any]) -> Iterator[str]:
    """env's database as a role holding exactly the grants deploy/README.md names, no more."""
    url = env["url"]
    role = f"ps_{uuid.uuid4().hex[:10]}"
    database = urlsplit(url).path.lstrip("/")
    with psycopg.connect(url, autocommit=True) as db:
        for statement in readme_grants():
            db.execute(statement.replace("pipeline_sync", role).replace("front50", f'"{database}"'))
    parts = urlsplit(url)
    yield urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}"))
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f"DROP OWNED BY {role}")
        db.execute(f"DROP ROLE {role}")


def test_the_grants_deploy_readme_names_are_enough_and_needed(
    env: dict[str, Any], restricted_url: str
) -> None:
    assert readme_grants()[0].startswith("CREATE ROLE pipeline_sync LOGIN")
    instance = env["instance"]
    env["resources"]["front50"] = Front50Resource(store_url=restricted_url)
    run_reconcile(env)  # the schema check and the read, as the role
    for request in sensor_tick(instance).run_requests:  # creates: pipelines, applications, history
        assert publish(env, request).success
    pipeline_id = pipeline_id_of(env, DEV_KEY)
    [(published,)] = rows(env, "SELECT body FROM pipelines WHERE id = %s", pipeline_id)
    front50_save(env, pipeline_id, "dave", description="by dave")
    drift = plan_partition(env, DEV_KEY)
    assert drift["drift_fields"] == "root['description']"  # pipelines_history read as the role
    assert approve(env, DEV_KEY, drift["plan_digest"]).success
    [request] = newest_approval_requests(instance)
    assert publish(env, request).success  # an update under the row lock
    [(text, by)] = rows(env, "SELECT body, last_modified_by FROM pipelines WHERE id = %s", pipeline_id)
    body = json.loads(text)
    assert (by, body["lastModifiedBy"]) == ("erin", "erin")
    assert body["description"] == json.loads(published)["description"] != "by dave"

    with psycopg.connect(env["url"], autocommit=True) as db:  # one grant fewer: nothing is written
        db.execute(f"REVOKE UPDATE ON pipelines FROM {urlsplit(restricted_url).username}")
    before = rows(env, "SELECT * FROM pipelines ORDER BY id")
    front50_save(env, pipeline_id, "dave", description="by dave, again")
    edited = rows(env, "SELECT * FROM pipelines ORDER BY id")
    again = plan_partition(env, DEV_KEY)
    assert approve(env, DEV_KEY, again["plan_digest"]).success
    [request] = newest_approval_requests(instance)
    refused = publish(env, request)
    assert not refused.success
    [failure] = [e for e in refused.all_events if e.is_step_failure]
    assert "permission denied for table pipelines" in failure.step_failure_data.user_failure_data.description
    assert rows(env, "SELECT * FROM pipelines ORDER BY id") == edited != before
