"""What an operator sees in the Dagster UI: status checks per partition, no false upstream
warnings, ready-to-paste approvals, links, in-process runs, and a quiet `approve`."""

from __future__ import annotations

import gc
import sys
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import test_dagster
import yaml
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest
from test_dagster import KEY, add_partitions, approve, plan_partition, run_reconcile, sensor_tick

from pipeline_sync.approve import approve_in_dagster
from pipeline_sync.definitions import defs
from pipeline_sync.defs.assets import approval
from pipeline_sync.defs.operator import (
    STATUS_CHECKS,
    approval_launchpad_url,
    run_refusal,
    status_check_events,
    status_check_results,
)
from pipeline_sync.defs.partitions import PARTITIONS_NAME
from pipeline_sync.defs.state import PLAN_ASSET, latest_metadata
from pipeline_sync.plan import PlanEntry
from pipeline_sync.status import Status

env = test_dagster.env  # the same fixture: a moto bucket, a test instance, the example project

CHECK_NAMES = ["valid", "no_conflict", "no_drift", "no_pending_change"]


def latest_checks(instance: dg.DagsterInstance, key: str) -> dict[str, str]:
    """check name -> SUCCEEDED / FAILED, as the UI shows a partition's checks: only results that
    judge the partition's latest plan materialization count."""
    infos = instance.event_log_storage.get_asset_check_partition_info(
        [dg.AssetCheckKey(PLAN_ASSET, name) for name in CHECK_NAMES], partition_keys=[key]
    )
    return {i.check_key.name: i.latest_execution_status.value for i in infos if i.is_current}


@pytest.mark.parametrize(
    ("status", "failing"),
    [
        (Status.CREATE, {"no_pending_change"}),
        (Status.UPDATE, {"no_pending_change"}),
        (Status.IN_SYNC, set()),
        (Status.DRIFT, {"no_drift"}),
        (Status.CONFLICT, {"no_conflict"}),
        (Status.INVALID, {"valid"}),
        (Status.DELETE, {"no_pending_change"}),
        (Status.ORPHAN, set()),
        (Status.UNKNOWN, {"valid"}),
    ],
)
def test_each_status_fails_exactly_its_checks(status: Status, failing: set[str]) -> None:
    entry = PlanEntry(key=KEY, status=status, digest="d" * 64, messages=("why it is so",))
    results = {r.check_name: r for r in status_check_results(entry)}
    assert [c.name for c in STATUS_CHECKS] == CHECK_NAMES
    assert {name for name, r in results.items() if not r.passed} == failing
    for name in failing:
        assert results[name].description == f"{KEY}: {_words(entry)}; why it is so"


def _words(entry: PlanEntry) -> str:
    from pipeline_sync.report import display_status

    return display_status(entry)


@pytest.mark.parametrize("status", list(Status))
def test_a_fleet_run_records_at_most_the_one_failing_check(status: Status) -> None:
    entry = PlanEntry(key=KEY, status=status, digest="d" * 64)
    events = list(status_check_events(entry, None, failing_only=True))
    failing = [r.check_name for r in status_check_results(entry) if not r.passed]
    assert [e.check_name for e in events] == failing and len(failing) <= 1
    assert all(not e.passed and e.partition == KEY for e in events)
    assert len(list(status_check_events(entry, None))) == 4  # without failing_only: all four


def check_events(counts: Counter[str]) -> int:
    return counts["ASSET_CHECK_EVALUATION"]


def test_check_events_of_a_fleet_run_grow_with_what_changed_not_with_the_fleet(env: dict[str, Any]) -> None:
    _, first = run_reconcile(env)
    assert check_events(first) == 13  # 13 creates: no_pending_change fails once each
    _, second = run_reconcile(env)
    assert check_events(second) == 0  # nothing changed
    defaults = env["root"] / "catalog" / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace("values_branch: release", "values_branch: release-2"))
    _, third = run_reconcile(env)
    # 4 prod creates read the values branch: each new plan gets its failing check again.
    assert third["ASSET_MATERIALIZATION"] == 1 + 4 and check_events(third) == 4


def test_a_planned_partition_shows_its_status_as_checks(env: dict[str, Any]) -> None:
    add_partitions(env["instance"], env["root"])
    plan_partition(env, KEY)
    assert latest_checks(env["instance"], KEY) == {
        "valid": "SUCCEEDED",
        "no_conflict": "SUCCEEDED",
        "no_drift": "SUCCEEDED",
        "no_pending_change": "FAILED",
    }


def test_reconcile_and_publish_keep_the_checks_current(env: dict[str, Any]) -> None:
    instance = env["instance"]
    run_reconcile(env)  # every partition is a create: only the failing check is recorded
    assert latest_checks(instance, KEY) == {"no_pending_change": "FAILED"}
    digest = latest_metadata(instance, PLAN_ASSET, KEY)["plan_digest"]
    assert approve(env, KEY, digest).success
    [request] = [r for r in sensor_tick(instance).run_requests if r.partition_key == KEY]
    publish = defs.resolve_job_def("publish_job").execute_in_process(
        instance=instance, partition_key=KEY, run_config=request.run_config, resources=env["resources"]
    )
    assert publish.success
    assert set(latest_checks(instance, KEY).values()) == {"SUCCEEDED"}  # published: all clear


def test_pipeline_plan_has_no_upstream_that_could_be_missing() -> None:
    """The UI warns 'upstream data missing' for materializable parents that have no data."""
    graph = defs.resolve_asset_graph()
    parents = graph.get(PLAN_ASSET).parent_keys
    assert parents == {
        dg.AssetKey("catalog_source"),
        dg.AssetKey("templates_source"),
        dg.AssetKey("front50_live"),
    }
    assert not any(graph.get(key).is_materializable for key in parents)


def stale(instance: dg.DagsterInstance, asset: str, key: str) -> StaleStatus:
    graph = defs.resolve_asset_graph()
    resolver = CachingStaleStatusResolver(instance, graph, LoadingContextForTest(instance))
    return resolver.get_status(dg.AssetKey(asset), key)


def test_plans_are_never_unsynced_after_reconcile_single_run_publish_and_replan(
    env: dict[str, Any],
) -> None:
    """The UI's "Unsynced" badge: a plan is never stale by its own reading of the live object."""
    instance = env["instance"]
    run_reconcile(env)
    digest = plan_partition(env, KEY)["plan_digest"]
    for key in instance.get_dynamic_partitions(PARTITIONS_NAME):
        assert stale(instance, "pipeline_plan", key) is StaleStatus.FRESH, key
    assert approve(env, KEY, digest).success
    [request] = [r for r in sensor_tick(instance).run_requests if r.partition_key == KEY]
    defs.resolve_job_def("publish_job").execute_in_process(
        instance=instance, partition_key=KEY, run_config=request.run_config, resources=env["resources"]
    )
    assert stale(instance, "pipeline_plan", KEY) is StaleStatus.FRESH
    assert plan_partition(env, KEY)["status"] == "in-sync"  # reads the new live version
    assert stale(instance, "pipeline_plan", KEY) is StaleStatus.FRESH
    assert stale(instance, "published_pipeline", KEY) is StaleStatus.FRESH
    # True, and documented: the approved plan is no longer the latest one.
    assert stale(instance, "approval", KEY) is StaleStatus.STALE


def test_a_pending_plan_carries_a_working_launchpad_config_link_and_command(env: dict[str, Any]) -> None:
    add_partitions(env["instance"], env["root"])
    meta = plan_partition(env, KEY)
    digest = meta["plan_digest"]
    assert meta["approve_command"] == f"pipeline-sync approve {KEY} --digest {digest} --approver you"
    pasted = meta["approve_config"].split("```yaml\n")[1].split("```")[0]
    config = yaml.safe_load(pasted.replace("approver: you", "approver: erin"))
    assert config == {"ops": {"approval": {"config": {"approver": "erin", "plan_digest": digest}}}}
    # The link opens approval_job's launchpad with this partition and the same config.
    link = urllib.parse.urlsplit(meta["approve_in_launchpad"])
    assert link.path == "/locations/pipeline_sync.definitions/jobs/approval_job/playground/setup"
    query = dict(urllib.parse.parse_qsl(link.query))
    assert query == {
        "config": pasted,
        "tags[0][key]": "dagster/partition",
        "tags[0][value]": KEY,
    }
    assert meta["approve_in_launchpad"] == approval_launchpad_url(KEY, digest)
    # Pasted as is (with a name), it approves that partition.
    result = defs.resolve_job_def("approval_job").execute_in_process(
        instance=env["instance"], partition_key=KEY, run_config=config, resources=env["resources"]
    )
    assert result.success
    assert latest_metadata(env["instance"], approval.key, KEY)["approver"] == "erin"


def test_an_in_sync_plan_offers_nothing_to_approve(env: dict[str, Any]) -> None:
    instance = env["instance"]
    add_partitions(instance, env["root"])
    digest = plan_partition(env, KEY)["plan_digest"]
    assert approve(env, KEY, digest).success
    [request] = sensor_tick(instance).run_requests
    defs.resolve_job_def("publish_job").execute_in_process(
        instance=instance, partition_key=KEY, run_config=request.run_config, resources=env["resources"]
    )
    meta = plan_partition(env, KEY)
    assert meta["status"] == "in-sync"
    assert not {"approve_command", "approve_config", "approve_in_launchpad"} & set(meta)


def test_fleet_summary_links_each_key_to_its_partition_page(env: dict[str, Any]) -> None:
    result, _ = run_reconcile(env)
    [summary] = [
        m.metadata["summary"].value
        for m in result.asset_materializations_for_node("fleet_plan")
        if m.asset_key == dg.AssetKey("fleet_plan")
    ]
    link = "/assets/pipeline_plan?" + urllib.parse.urlencode({"view": "partitions", "partition": KEY})
    assert f"[`{KEY}`]({link})" in summary
    assert f"`{KEY}`," not in summary.replace(f"[`{KEY}`]", "")  # no key left without its link


def test_every_run_executes_in_process() -> None:
    jobs = [defs.resolve_job_def(n) for n in ("plan_job", "approval_job", "publish_job", "reconcile_job")]
    jobs.append(defs.resolve_implicit_global_asset_job_def())  # what the UI's Materialize button runs
    assert {job.name: job.executor_def.name for job in jobs} == {job.name: "in_process" for job in jobs}


def test_approve_prints_no_dagster_debug_lines(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(PARTITIONS_NAME, [KEY])
    ok, message = approve_in_dagster(KEY, "0" * 64, "alice")
    assert not ok and message.startswith(f"Approval refused for {KEY}: digest 000000000000")
    out, err = capfd.readouterr()
    assert "DEBUG" not in out + err and "STEP_FAILURE" not in out + err


@pytest.mark.parametrize(
    ("approver", "reason"),
    [
        ("erin", f"Approval refused for {KEY}: digest 000000000000 is not the latest plan ("),
        ("policy:approval=auto", f"Approval refused for {KEY}: approver 'policy:approval=auto' must name"),
    ],
)
def test_a_refused_approval_fails_the_run_with_one_line_and_no_stack(
    env: dict[str, Any], approver: str, reason: str
) -> None:
    add_partitions(env["instance"], env["root"])
    plan_partition(env, KEY)
    result = dg.materialize(
        [approval],
        partition_key=KEY,
        instance=env["instance"],
        resources=env["resources"],
        run_config=dg.RunConfig(
            ops={"approval": {"config": {"approver": approver, "plan_digest": "0" * 64}}}
        ),
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e.step_failure_data for e in result.all_events if e.is_step_failure]
    assert failure.error.stack == [] and failure.error.cause is None
    assert failure.user_failure_data.description.startswith(reason)
    assert "\n" not in failure.user_failure_data.description
    del result, failure
    gc.collect()
    assert not hasattr(sys, "tracebacklimit")  # only that one failure lost its stack


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 0, 2)])
def test_refusals_released_in_any_order_restore_the_traceback_limit_once(order: tuple[int, ...]) -> None:
    gc.collect()
    assert not hasattr(sys, "tracebacklimit")
    refusals: list[dg.Failure | None] = [run_refusal(f"refused {n}") for n in range(3)]
    assert sys.tracebacklimit == 0
    for n in order[:-1]:
        refusals[n] = None
        gc.collect()
        assert sys.tracebacklimit == 0  # another refusal is still alive
    refusals[order[-1]] = None
    gc.collect()
    assert not hasattr(sys, "tracebacklimit")


@pytest.mark.parametrize(
    ("job", "assets", "title"),
    [
        ("publish_job", {"published_pipeline"}, "publish_job"),
        ("__ASSET_JOB", {"approval"}, "materialize approval"),
        (
            "__ASSET_JOB",
            {"rendered_pipeline", "pipeline_plan"},
            "materialize pipeline_plan, rendered_pipeline",
        ),
    ],
)
def test_the_demo_names_runs_after_what_they_do(job: str, assets: set[str], title: str) -> None:
    from pipeline_sync.demo import run_title

    run = dg.DagsterRun(job_name=job, asset_selection={dg.AssetKey(a) for a in assets})
    assert run_title(run) == title


def test_the_run_log_and_metadata_speak_the_cli_diff_language(env: dict[str, Any]) -> None:
    from pipeline_sync.defs.assets import pipeline_plan

    add_partitions(env["instance"], env["root"])
    result = dg.materialize(
        [pipeline_plan], partition_key=KEY, instance=env["instance"], resources=env["resources"]
    )
    meta = latest_metadata(env["instance"], PLAN_ASSET, KEY)
    assert (
        meta["change"]
        == "new pipeline 'deploy-prod' in application 'checkout': 3 stages (build, bake, deploy)"
    )
    logs = [
        e.user_message
        for e in env["instance"].all_logs(result.run_id)
        if e.level >= 20 and e.dagster_event is None  # INFO and above, from the asset
    ]
    [diff] = [m for m in logs if m.startswith(f"diff of {KEY}:")]
    assert diff.split("\n")[1] == meta["change"].split("\n")[0]
    assert "+name: deploy-prod" in diff and "old_value" not in diff
    assert not any("old_value" in m or "values_changed" in m for m in logs)  # DeepDiff only at DEBUG


def test_the_ui_timing_report_gives_median_worst_and_every_sample() -> None:
    from bench.ui_timing import report

    clicks = [{"total": 4.6, "queued": 3.4}, {"total": 5.2, "queued": 3.8}, {"total": 9.0, "queued": 1.0}]
    approvals = [{"total": 11.3}, {"total": 10.1}]
    text = report(clicks, approvals, "1.00, 2.00, 3.00", {"no_drift": (12, 1), "valid": (13, 0)})
    assert "| total | 5.2 s | 9.0 s | 4.6, 5.2, 9.0 |" in text
    assert "| queued | 3.4 s | 3.8 s | 3.4, 3.8, 1.0 |" in text
    assert "| total | 10.7 s | 11.3 s | 11.3, 10.1 |" in text
    assert "| no_drift | 12 | 1 |\n| valid | 13 | 0 |" in text
    assert "load average 1.00, 2.00, 3.00" in text
