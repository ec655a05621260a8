"""The Dagster code location in process: partitions, plan metadata, approval, sensors, reconcile."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pytest
from moto import mock_aws
from s3support import PROJECT

from pipeline_sync.definitions import defs
from pipeline_sync.defs.assets import AUTO_APPROVER, approval, pipeline_plan, rendered_pipeline
from pipeline_sync.defs.partitions import PARTITIONS_NAME
from pipeline_sync.defs.resources import CatalogResource, Front50Resource
from pipeline_sync.defs.schedules import nightly_reconcile_schedule
from pipeline_sync.defs.sensors import approval_sensor, catalog_sensor
from pipeline_sync.defs.state import PLAN_ASSET, latest_metadata

BUCKET = "front50-dagster"
KEY = "checkout/prod/deploy"
DEV_KEY = "checkout/dev/deploy"


@pytest.fixture
def env(aws_env: None, tmp_path: Path) -> Iterator[dict[str, Any]]:
    root = tmp_path / "project"
    shutil.copytree(PROJECT / "catalog", root / "catalog")
    shutil.copytree(PROJECT / "templates", root / "templates")
    with mock_aws(), dg.instance_for_test() as instance:
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        resources = {
            "catalog": CatalogResource(
                catalog_dir=str(root / "catalog"), templates_dir=str(root / "templates")
            ),
            "front50": Front50Resource(bucket=BUCKET, cache_dir=str(tmp_path / "cache")),
        }
        yield {"instance": instance, "resources": resources, "root": root}


def add_partitions(instance: dg.DagsterInstance, root: Path) -> list[str]:
    from pipeline_sync.rendering import Sources

    keys = sorted(Sources.load(root / "catalog", root / "templates").catalog.targets)
    instance.add_dynamic_partitions(PARTITIONS_NAME, keys)
    return keys


def plan_partition(env: dict[str, Any], key: str) -> dict[str, Any]:
    result = dg.materialize(
        [rendered_pipeline, pipeline_plan],
        partition_key=key,
        instance=env["instance"],
        resources=env["resources"],
    )
    assert result.success
    return latest_metadata(env["instance"], PLAN_ASSET, key)


def approve(env: dict[str, Any], key: str, digest: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [approval],
        partition_key=key,
        instance=env["instance"],
        resources=env["resources"],
        run_config=dg.RunConfig(ops={"approval": {"config": {"approver": "erin", "plan_digest": digest}}}),
        raise_on_error=False,
    )


def sensor_tick(instance: dg.DagsterInstance, cursor: str | None = None) -> Any:
    context = dg.build_sensor_context(
        instance=instance, instance_ref=instance.get_ref(), definitions=defs, cursor=cursor
    )
    return approval_sensor.evaluate_tick(context)


def test_definitions_load() -> None:
    dg.Definitions.validate_loadable(defs)
    assert {j.name for j in defs.jobs if not j.name.startswith("__")} >= {
        "plan_job",
        "approval_job",
        "publish_job",
        "reconcile_job",
    }


def test_catalog_sensor_adds_and_removes_partitions(env: dict[str, Any]) -> None:
    instance = env["instance"]
    instance.add_dynamic_partitions(PARTITIONS_NAME, ["gone/dev/deploy"])
    context = dg.build_sensor_context(instance=instance, resources=env["resources"])
    result = catalog_sensor(context)
    assert isinstance(result, dg.SensorResult)
    adds = [r for r in result.dynamic_partitions_requests if isinstance(r, dg.AddDynamicPartitionsRequest)]
    deletes = [
        r for r in result.dynamic_partitions_requests if isinstance(r, dg.DeleteDynamicPartitionsRequest)
    ]
    assert len(adds[0].partition_keys) == 13 and KEY in adds[0].partition_keys
    assert deletes[0].partition_keys == ["gone/dev/deploy"]


def test_plan_partition_metadata(env: dict[str, Any]) -> None:
    add_partitions(env["instance"], env["root"])
    meta = plan_partition(env, KEY)
    assert meta["status"] == "create"
    assert meta["display_status"] == "changed (new pipeline), pending approval"
    assert len(meta["plan_digest"]) == 64
    assert meta["diff"].startswith("```diff\n") and "+name: deploy-prod" in meta["diff"]


def test_approval_then_sensor_publishes_once(env: dict[str, Any]) -> None:
    instance = env["instance"]
    add_partitions(instance, env["root"])
    digest = plan_partition(env, KEY)["plan_digest"]
    assert approve(env, KEY, digest).success
    tick = sensor_tick(instance)
    assert len(tick.run_requests) == 1
    request = tick.run_requests[0]
    [approved] = instance.fetch_materializations(approval.key, limit=1).records
    assert request.partition_key == KEY
    assert request.run_key == f"publish:{KEY}:{digest}:{approved.storage_id}"
    assert not sensor_tick(instance, tick.cursor).run_requests

    publish = defs.resolve_job_def("publish_job").execute_in_process(
        instance=instance,
        partition_key=KEY,
        run_config=request.run_config,
        resources=env["resources"],
    )
    assert publish.success
    assert latest_metadata(instance, PLAN_ASSET, KEY)["status"] == "in-sync"


def test_stale_approval_is_refused(env: dict[str, Any]) -> None:
    instance = env["instance"]
    add_partitions(instance, env["root"])
    digest = plan_partition(env, KEY)["plan_digest"]
    result = approve(env, KEY, "0" * 64)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "is not the latest plan" in failure.step_failure_data.error.message
    defaults = env["root"] / "catalog" / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace("values_branch: release", "values_branch: release-2"))
    stale = approve(env, KEY, digest)
    assert not stale.success
    assert not sensor_tick(instance).run_requests


def test_sensor_ignores_approval_superseded_by_new_plan(env: dict[str, Any]) -> None:
    instance = env["instance"]
    add_partitions(instance, env["root"])
    digest = plan_partition(env, KEY)["plan_digest"]
    assert approve(env, KEY, digest).success
    defaults = env["root"] / "catalog" / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace("values_branch: release", "values_branch: release-2"))
    plan_partition(env, KEY)
    assert not sensor_tick(instance).run_requests


def test_invalid_render_cannot_be_approved(env: dict[str, Any]) -> None:
    instance = env["instance"]
    add_partitions(instance, env["root"])
    (env["root"] / "templates" / "deploy.yaml.j2").write_text('name: "{{ nope }}"\nstages: []\n')
    result = dg.materialize(
        [rendered_pipeline, pipeline_plan],
        partition_key=KEY,
        instance=instance,
        resources=env["resources"],
        raise_on_error=False,
    )
    assert not result.success  # the blocking check stops the plan
    checks = [e for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert checks and checks[0].event_specific_data.passed is False


def test_schedule_requests_one_reconcile_run(env: dict[str, Any]) -> None:
    context = dg.build_schedule_context(instance=env["instance"])
    request = nightly_reconcile_schedule.evaluate_tick(context).run_requests
    assert len(request) == 1 and request[0].partition_key is None


def run_reconcile(env: dict[str, Any]) -> tuple[dg.ExecuteInProcessResult, Counter[str]]:
    result = defs.resolve_job_def("reconcile_job").execute_in_process(
        instance=env["instance"], resources=env["resources"]
    )
    assert result.success
    counts = Counter(
        e.dagster_event.event_type_value for e in env["instance"].all_logs(result.run_id) if e.dagster_event
    )
    return result, counts


def test_reconcile_one_run_events_only_for_changed_and_auto_approval(env: dict[str, Any]) -> None:
    instance = env["instance"]
    _, first = run_reconcile(env)
    assert first["ASSET_MATERIALIZATION"] == 13 + 1 + 4  # plans + summary + dev auto-approvals
    assert first["ASSET_OBSERVATION"] == 0  # one event per changed partition: its plan
    assert set(instance.get_dynamic_partitions(PARTITIONS_NAME)) >= {KEY, DEV_KEY}
    approval_meta = latest_metadata(instance, approval.key, DEV_KEY)
    assert approval_meta["approver"] == AUTO_APPROVER
    assert latest_metadata(instance, approval.key, KEY) == {}  # prod stays manual
    tick = sensor_tick(instance)
    assert sorted(r.partition_key for r in tick.run_requests) == sorted(
        k for k in instance.get_dynamic_partitions(PARTITIONS_NAME) if "/dev/" in k
    )

    _, second = run_reconcile(env)
    assert second["ASSET_MATERIALIZATION"] == 1 and second["ASSET_OBSERVATION"] == 0

    defaults = env["root"] / "catalog" / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace("values_branch: release", "values_branch: release-2"))
    result, third = run_reconcile(env)
    changed_prod = 4  # every prod deploy reads the prod values branch
    assert third["ASSET_MATERIALIZATION"] == 1 + changed_prod
    [summary_event] = [
        m
        for m in result.asset_materializations_for_node("fleet_plan")
        if m.asset_key == dg.AssetKey("fleet_plan")
    ]
    summary = summary_event.metadata
    assert summary["changed_since_last_run"].value == changed_prod
    assert "summary" in summary
