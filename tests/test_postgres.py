"""The nightly reconcile on a Dagster instance whose storage is PostgreSQL (dagster-postgres)."""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import pytest
from s3support import BUCKET, workspace_of

from pipeline_sync.definitions import defs
from pipeline_sync.defs.partitions import PARTITIONS_NAME
from pipeline_sync.defs.resources import CatalogResource, Front50Resource
from pipeline_sync.defs.state import read_plan_state
from pipeline_sync.store.s3 import S3Store

URL_VARIABLE = "PIPELINE_SYNC_TEST_POSTGRES_URL"

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        not os.environ.get(URL_VARIABLE),
        reason=f"{URL_VARIABLE} is not set; start a server with `bash .ci/start-postgres.sh` and export it",
    ),
]


def _with_driver(url: str) -> str:
    """Name psycopg2 in the URL: SQLAlchemy 2.1 maps postgresql:// to psycopg 3, which is not installed."""
    parts = urlsplit(url)
    scheme = "postgresql+psycopg2" if parts.scheme in {"postgres", "postgresql"} else parts.scheme
    return urlunsplit(parts._replace(scheme=scheme))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A database of its own for each test, dropped afterwards."""
    import psycopg2  # type: ignore[import-untyped]

    server = os.environ[URL_VARIABLE]
    name = f"pipeline_sync_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(server)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        yield _with_driver(urlunsplit(urlsplit(server)._replace(path=f"/{name}")))
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


@pytest.fixture
def instance(postgres_url: str) -> Iterator[dg.DagsterInstance]:
    config = {"postgres_url": postgres_url}
    overrides = {
        kind: {"module": f"dagster_postgres.{module}", "class": cls, "config": config}
        for kind, module, cls in (
            ("run_storage", "run_storage", "PostgresRunStorage"),
            ("event_log_storage", "event_log", "PostgresEventLogStorage"),
            ("schedule_storage", "schedule_storage", "PostgresScheduleStorage"),
        )
    }
    with dg.instance_for_test(overrides=overrides) as pg_instance:
        yield pg_instance


def reconcile(
    instance: dg.DagsterInstance, resources: dict[str, Any]
) -> tuple[dg.ExecuteInProcessResult, Counter[str]]:
    result = defs.resolve_job_def("reconcile_job").execute_in_process(instance=instance, resources=resources)
    assert result.success
    entries = instance.all_logs(result.run_id)
    per_partition = Counter(
        e.dagster_event.event_type_value for e in entries if e.dagster_event and e.dagster_event.partition
    )
    return result, per_partition


def test_reconcile_on_postgres_writes_partition_events_only_when_plans_change(
    instance: dg.DagsterInstance, store: S3Store, project: Path, tmp_path: Path
) -> None:
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    keys = sorted(workspace_of(project).catalog.targets)
    resources = {
        "catalog": CatalogResource(
            catalog_dir=str(project / "catalog"), templates_dir=str(project / "templates")
        ),
        "front50": Front50Resource(bucket=BUCKET, cache_dir=str(tmp_path / "cache")),
    }

    _, first = reconcile(instance, resources)
    assert first["ASSET_OBSERVATION"] == 0  # one event per changed partition: its plan
    assert first["ASSET_MATERIALIZATION"] >= len(keys)  # one plan each, plus auto-approvals
    assert set(instance.get_dynamic_partitions(PARTITIONS_NAME)) >= set(keys)
    assert set(read_plan_state(instance, keys)) == set(keys)

    second, again = reconcile(instance, resources)
    assert again == Counter()  # nothing changed: no per-partition events at all
    summary = next(
        m
        for m in second.asset_materializations_for_node("fleet_plan")
        if m.asset_key == dg.AssetKey("fleet_plan")
    )
    assert summary.metadata["changed_since_last_run"].value == 0
    assert summary.metadata["pipelines"].value == len(keys)
