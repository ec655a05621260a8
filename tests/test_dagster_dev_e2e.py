"""`dagster dev` against moto's HTTP server: what the UI serves, and the approval flow under the daemon.

One `dagster dev` for the module, started as the demo starts it, with every partition but one
already added (catalog_sensor must add that one) and no plan yet.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster_dev import DemoLike, demo_like, wait_until

from pipeline_sync.demo_seed import MISSING_KEY
from pipeline_sync.store.s3 import S3Settings, S3Store

pytestmark = pytest.mark.e2e

LEFT_OUT = "catalog-api/dev/deploy"
LOCATION = {"repositoryLocationName": "pipeline_sync.definitions", "repositoryName": "__repository__"}

ASSET_NODES = "{ assetNodes { assetKey { path } isPartitioned } }"
SENSORS = """
query ($repo: RepositorySelector!) {
  sensorsOrError(repositorySelector: $repo) { ... on Sensors { results { name sensorState { status } } } }
}
"""
LAUNCH = """
mutation ($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""
RUN_STATUS = "query ($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
RUNS_OF_JOB = """
query ($job: String!) {
  runsOrError(filter: {pipelineName: $job}) {
    ... on Runs { results { runId status tags { key value } } }
  }
}
"""
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoLike]:
    with demo_like(tmp_path_factory.mktemp("e2e"), reconcile=False, leave_out=(LEFT_OUT,)) as setup:
        yield setup


def plan_metadata(demo: DemoLike, key: str) -> dict[str, str]:
    return demo.server.latest_metadata("pipeline_plan", key)


def run_status(demo: DemoLike, run_id: str) -> str | None:
    status: str = demo.server.graphql(RUN_STATUS, {"id": run_id})["runOrError"]["status"]
    return status if status in FINISHED else None


def runs_for(demo: DemoLike, job: str, key: str) -> list[dict[str, Any]]:
    runs = demo.server.graphql(RUNS_OF_JOB, {"job": job})["runsOrError"]["results"]
    return [r for r in runs if {"key": "dagster/partition", "value": key} in r["tags"]]


def with_key(keys: list[str], key: str) -> list[str] | None:
    return keys if key in keys else None


def test_ui_serves_every_asset(demo: DemoLike) -> None:
    nodes = demo.server.graphql(ASSET_NODES)["assetNodes"]
    partitioned = {"/".join(n["assetKey"]["path"]): n["isPartitioned"] for n in nodes}
    assert partitioned == {
        "catalog_source": False,
        "templates_source": False,
        "front50_live": True,
        "rendered_pipeline": True,
        "pipeline_plan": True,
        "approval": True,
        "published_pipeline": True,
        "fleet_plan": False,
    }


def test_sensors_run_by_default_and_catalog_sensor_adds_the_missing_partition(demo: DemoLike) -> None:
    sensors = demo.server.graphql(SENSORS, {"repo": LOCATION})["sensorsOrError"]["results"]
    assert {s["name"]: s["sensorState"]["status"] for s in sensors} == {
        "approval_sensor": "RUNNING",
        "catalog_sensor": "RUNNING",
    }
    assert LEFT_OUT in demo.keys
    keys = wait_until(
        f"catalog_sensor adding {LEFT_OUT}",
        lambda: with_key(demo.server.partition_keys("pipeline_plan"), LEFT_OUT),
        60,
        every=1,
    )
    assert sorted(keys) == demo.keys


def test_plan_approve_and_the_sensor_publishes(demo: DemoLike) -> None:
    key = MISSING_KEY
    store = S3Store(S3Settings.from_env())
    params = {
        "selector": {**LOCATION, "jobName": "plan_job"},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": key}]},
        "runConfigData": {},
    }
    launched = demo.server.graphql(LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    assert wait_until(f"plan run {run_id}", lambda: run_status(demo, run_id), 60) == "SUCCESS"
    plan = plan_metadata(demo, key)
    assert plan["status"] == "create" and len(plan["plan_digest"]) == 64
    assert store.read_pipeline(plan["pipeline_id"]) is None

    cli = str(Path(sys.executable).parent / "pipeline-sync")
    approve = subprocess.run(
        [cli, "approve", key, "--digest", plan["plan_digest"], "--approver", "e2e"],
        cwd=demo.home,  # the demo's settings name the catalog by absolute path
        env=demo.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert approve.returncode == 0, approve.stderr[-3000:]
    assert f"Approved {key} at digest {plan['plan_digest'][:12]} as e2e" in approve.stdout

    publish = wait_until(
        "approval_sensor launching publish_job", lambda: runs_for(demo, "publish_job", key), 60
    )
    assert len(publish) == 1
    tags = {t["key"]: t["value"] for t in publish[0]["tags"]}
    assert tags["dagster/sensor_name"] == "approval_sensor"
    assert tags["pipeline_sync/plan_digest"] == plan["plan_digest"]
    publish_id = publish[0]["runId"]
    assert wait_until(f"publish run {publish_id}", lambda: run_status(demo, publish_id), 90) == "SUCCESS"

    live = store.read_pipeline(plan["pipeline_id"])
    assert live is not None and live.document is not None
    assert live.document["application"] == "search" and live.document["name"] == "deploy-prod"
    assert plan_metadata(demo, key)["status"] == "in-sync"
