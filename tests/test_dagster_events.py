"""What a fleet run writes to the Dagster instance: the status_checks setting, slim in-sync plans,
and the Dagster behaviour that rules out one event per partition with its status shown."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import test_dagster
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData as CheckTarget,
)
from dagster._core.events import DagsterEventType
from dagster._core.storage.event_log.sqlite import sqlite_event_log
from sqlalchemy.pool import NullPool
from test_dagster import BUCKET, KEY, plan_partition, run_reconcile
from test_dagster_ui import latest_checks

from bench.worker import event_partition
from pipeline_sync.definitions import defs
from pipeline_sync.defs import eventlog
from pipeline_sync.defs.assets import plan_metadata
from pipeline_sync.defs.operator import (
    DEFAULT_STATUS_CHECKS_MAX,
    FLEET_STATUS_CHECKS,
    STATUS_CHECKS_ENV,
    STATUS_CHECKS_MAX_ENV,
    fleet_status_checks,
    fleet_status_checks_max,
)
from pipeline_sync.defs.resources import Front50Resource
from pipeline_sync.defs.state import PLAN_ASSET, PLAN_STATE_PREFIX, read_plan_state
from pipeline_sync.forked import WORKERS_VARIABLE
from pipeline_sync.plan import PlanEntry
from pipeline_sync.status import Status

env = test_dagster.env  # a moto bucket, a test instance, the example project (13 creates)

ALL_FOUR = {"valid": "SUCCEEDED", "no_conflict": "SUCCEEDED", "no_drift": "SUCCEEDED"}


def with_checks(env: dict[str, Any], setting: str | None, checks_max: int | None = None) -> dict[str, Any]:
    front50 = env["resources"]["front50"]
    resource = Front50Resource(
        bucket=BUCKET, cache_dir=front50.cache_dir, status_checks=setting, status_checks_max=checks_max
    )
    return {**env, "resources": {**env["resources"], "front50": resource}}


@pytest.mark.parametrize(
    ("setting", "environ", "expected"),
    [
        (None, {}, "failing"),
        ("", {}, "failing"),
        (None, {STATUS_CHECKS_ENV: "all"}, "all"),
        (None, {STATUS_CHECKS_ENV: " none "}, "none"),
        ("none", {STATUS_CHECKS_ENV: "all"}, "none"),  # the resource beats the environment
        ("all", {}, "all"),
    ],
)
def test_the_setting_comes_from_the_resource_then_the_environment(
    setting: str | None, environ: dict[str, str], expected: str
) -> None:
    assert fleet_status_checks(setting, environ) == expected
    assert FLEET_STATUS_CHECKS[0] == "failing"  # the default is what issue 17 shipped


@pytest.mark.parametrize(
    ("setting", "checks", "shown"),
    [
        # 13 creates: each fails no_pending_change and passes the other three.
        ("failing", 13, {"no_pending_change": "FAILED"}),
        ("all", 4 * 13, {**ALL_FOUR, "no_pending_change": "FAILED"}),
        ("none", 0, {}),
    ],
)
def test_a_fleet_run_records_the_status_checks_the_setting_asks_for(
    env: dict[str, Any], setting: str, checks: int, shown: dict[str, str]
) -> None:
    configured = with_checks(env, setting)
    _, counts = run_reconcile(configured)
    assert counts["ASSET_CHECK_EVALUATION"] == checks
    assert counts["ASSET_MATERIALIZATION"] == 13 + 1 + 4  # plans, summary, dev auto-approvals
    assert latest_checks(env["instance"], KEY) == shown
    _, again = run_reconcile(configured)
    assert again["ASSET_CHECK_EVALUATION"] == 0  # nothing changed: nothing recorded
    # Whatever the setting, a one-partition plan records all four for its partition.
    plan_partition(env, KEY)
    assert latest_checks(env["instance"], KEY) == {**ALL_FOUR, "no_pending_change": "FAILED"}


@pytest.mark.parametrize(("setting", "checks_per_key"), [("failing", 1), ("all", 4), ("none", 0)])
def test_the_bench_counts_a_check_evaluation_as_an_event_of_the_partition_it_judges(
    env: dict[str, Any], setting: str, checks_per_key: int
) -> None:
    """The bench's "O(changed) + constant" line: the 13 creates' checks are theirs, not the run's."""
    result, counts = run_reconcile(with_checks(env, setting))
    entries = env["instance"].all_logs(result.run_id)
    by_partition = Counter(event_partition(e) for e in entries)
    assert by_partition[KEY] == 1 + checks_per_key  # its plan (prod: no auto-approval), its checks
    assert sum(n for key, n in by_partition.items() if key) == 13 + 4 + 13 * checks_per_key
    assert counts["ASSET_CHECK_EVALUATION"] == 13 * checks_per_key
    assert by_partition[None] == 13  # the run's own, whatever the setting: no check among them


def test_the_environment_setting_applies_when_the_resource_leaves_it_empty(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STATUS_CHECKS_ENV, "none")
    _, counts = run_reconcile(env)
    assert counts["ASSET_CHECK_EVALUATION"] == 0 and counts["ASSET_MATERIALIZATION"] == 13 + 1 + 4


@pytest.mark.parametrize(
    ("setting", "environ", "message"),
    [
        (
            "some",
            None,
            "front50.status_checks is 'some'; set it to one of failing, all, none (failing when unset). "
            "Nothing was planned.",
        ),
        (
            None,
            "ALL",
            f"{STATUS_CHECKS_ENV} is 'ALL'; set it to one of failing, all, none (failing when unset). "
            "Nothing was planned.",
        ),
    ],
)
def test_a_wrong_setting_fails_the_run_before_anything_is_planned(
    env: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    setting: str | None,
    environ: str | None,
    message: str,
) -> None:
    if environ is not None:
        monkeypatch.setenv(STATUS_CHECKS_ENV, environ)
    result = defs.resolve_job_def("reconcile_job").execute_in_process(
        instance=env["instance"], resources=with_checks(env, setting)["resources"], raise_on_error=False
    )
    assert not result.success
    [failure] = [e.step_failure_data for e in result.all_events if e.is_step_failure]
    assert failure.user_failure_data.description == message
    assert not env["instance"].get_materialized_partitions(PLAN_ASSET)


# -- status_checks_max: one event per changed partition in a large batch (issue 19) -------------

KEYS_13 = 13
SKIP_LINE = (
    "Recorded no status check events for the {n} changed partitions that would get them: more than "
    "status_checks_max ({max}; front50.status_checks_max or PIPELINE_SYNC_STATUS_CHECKS_MAX), so this "
    "run writes one event per changed partition. Each plan's metadata and this run's summary show "
    "their status; a one-partition plan of pipeline_plan records its checks."
)


def fleet_run(env: dict[str, Any]) -> tuple[dict[str, Counter[str]], int, list[str]]:
    """One reconcile: its events by partition (event type, pipeline_plan or not), fleet_plan's
    status_checks_skipped, and the run's log lines."""
    result, _ = run_reconcile(env)
    entries = env["instance"].all_logs(result.run_id)
    per_key: dict[str, Counter[str]] = {}
    for e in entries:
        key = event_partition(e)
        if key:
            asset = " approval" if e.dagster_event.asset_key == dg.AssetKey("approval") else ""
            per_key.setdefault(key, Counter())[e.dagster_event.event_type_value + asset] += 1
    [summary] = [
        m for m in result.asset_materializations_for_node("fleet_plan") if m.asset_key.path == ["fleet_plan"]
    ]
    lines = [e.user_message for e in entries if e.dagster_event is None]
    return per_key, summary.metadata["status_checks_skipped"].value, lines


@pytest.mark.parametrize(
    ("setting", "environ", "expected"),
    [
        (None, {}, DEFAULT_STATUS_CHECKS_MAX),
        (None, {STATUS_CHECKS_MAX_ENV: " "}, DEFAULT_STATUS_CHECKS_MAX),
        (None, {STATUS_CHECKS_MAX_ENV: " 7 "}, 7),
        (None, {STATUS_CHECKS_MAX_ENV: "0"}, 0),
        (5, {STATUS_CHECKS_MAX_ENV: "7"}, 5),  # the resource beats the environment
        (0, {STATUS_CHECKS_MAX_ENV: "7"}, 0),  # 0 on the resource is a setting, not "unset"
    ],
)
def test_the_bound_comes_from_the_resource_then_the_environment(
    setting: int | None, environ: dict[str, str], expected: int
) -> None:
    assert fleet_status_checks_max(setting, environ) == expected
    assert DEFAULT_STATUS_CHECKS_MAX == 100


BOUND_HINT = (
    "set it to a whole number of changed partitions, 0 or more (100 when unset). Nothing was planned."
)


@pytest.mark.parametrize(
    ("setting", "environ", "message"),
    [
        (-1, None, f"front50.status_checks_max is -1; {BOUND_HINT}"),
        (-1, "5", f"front50.status_checks_max is -1; {BOUND_HINT}"),  # no fallback from a wrong one
        (None, "many", f"{STATUS_CHECKS_MAX_ENV} is 'many'; {BOUND_HINT}"),
        (None, "-5", f"{STATUS_CHECKS_MAX_ENV} is '-5'; {BOUND_HINT}"),
        (None, "1.5", f"{STATUS_CHECKS_MAX_ENV} is '1.5'; {BOUND_HINT}"),
        (None, "1e3", f"{STATUS_CHECKS_MAX_ENV} is '1e3'; {BOUND_HINT}"),
        (None, "\u0663", f"{STATUS_CHECKS_MAX_ENV} is '\u0663'; {BOUND_HINT}"),  # an Arabic-Indic 3
    ],
)
def test_a_wrong_bound_fails_the_run_before_anything_is_planned(
    env: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    setting: int | None,
    environ: str | None,
    message: str,
) -> None:
    if environ is not None:
        monkeypatch.setenv(STATUS_CHECKS_MAX_ENV, environ)
    result = defs.resolve_job_def("reconcile_job").execute_in_process(
        instance=env["instance"], resources=with_checks(env, None, setting)["resources"], raise_on_error=False
    )
    assert not result.success
    [failure] = [e.step_failure_data for e in result.all_events if e.is_step_failure]
    assert failure.user_failure_data.description == message
    assert not env["instance"].get_materialized_partitions(PLAN_ASSET)


def test_a_bound_that_is_not_a_number_is_refused_by_the_resource_itself() -> None:
    with pytest.raises(ValueError, match="status_checks_max\n  Input should be a valid integer"):
        Front50Resource(bucket=BUCKET, status_checks_max="many")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("setting", "checks_max", "checks_per_key", "shown"),
    [
        ("failing", None, 1, {"no_pending_change": "FAILED"}),  # 13 under the default 100
        ("failing", 13, 1, {"no_pending_change": "FAILED"}),  # at the bound: recorded
        ("failing", 12, 0, {}),  # above it: one event per changed partition
        ("all", 13, 4, {**ALL_FOUR, "no_pending_change": "FAILED"}),
        ("all", 12, 0, {}),
        ("none", 0, 0, {}),  # nothing to record, so nothing skipped
    ],
)
def test_a_fleet_run_records_status_checks_only_up_to_the_bound(
    env: dict[str, Any], setting: str, checks_max: int | None, checks_per_key: int, shown: dict[str, str]
) -> None:
    configured = with_checks(env, setting, checks_max)
    per_key, skipped, lines = fleet_run(configured)
    assert len(per_key) == KEYS_13
    dev = {k for k, c in per_key.items() if c["ASSET_MATERIALIZATION approval"]}
    assert len(dev) == 4  # stack policy approves dev: its approval is the partition's second event
    for key, counts in per_key.items():
        expected = {"ASSET_MATERIALIZATION": 1, "ASSET_CHECK_EVALUATION": checks_per_key}
        expected["ASSET_MATERIALIZATION approval"] = int(key in dev)
        assert +counts == +Counter(expected), key
        assert latest_checks(env["instance"], key) == shown, key
    over = setting != "none" and checks_max is not None and checks_max < KEYS_13
    assert skipped == (KEYS_13 if over else 0)
    assert [line for line in lines if "status_checks_max" in line] == (
        [SKIP_LINE.format(n=KEYS_13, max=checks_max)] if over else []
    )
    # Whatever the bound, a one-partition plan records all four for its partition.
    plan_partition(env, KEY)
    assert latest_checks(env["instance"], KEY) == {**ALL_FOUR, "no_pending_change": "FAILED"}


@pytest.mark.parametrize(
    ("setting", "environ", "checks"),
    [
        (None, "12", 0),  # the environment's bound applies when the resource leaves it empty
        (13, "12", 13),  # the resource's beats it
        (12, "100", 0),
    ],
)
def test_the_bound_of_a_run_comes_from_the_resource_then_the_environment(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, setting: int | None, environ: str, checks: int
) -> None:
    monkeypatch.setenv(STATUS_CHECKS_MAX_ENV, environ)
    _, counts = run_reconcile(with_checks(env, None, setting))
    assert counts["ASSET_CHECK_EVALUATION"] == checks
    assert counts["ASSET_MATERIALIZATION"] == 13 + 1 + 4


def publish_each(env: dict[str, Any], requests: Any) -> None:
    """Run publish_job for each run request (the approval sensor's), each a success."""
    for request in requests:
        publish = defs.resolve_job_def("publish_job").execute_in_process(
            instance=env["instance"],
            partition_key=request.partition_key,
            run_config=request.run_config,
            resources=env["resources"],
        )
        assert publish.success


@pytest.mark.parametrize(
    ("setting", "checks_max", "checks", "skipped"),
    [
        ("failing", 0, 0, 0),  # four plans back in sync fail no check: nothing to bound
        ("all", 4, 16, 0),
        ("all", 3, 0, 4),
    ],
)
def test_the_bound_counts_the_partitions_that_would_get_check_events(
    env: dict[str, Any], setting: str, checks_max: int, checks: int, skipped: int
) -> None:
    """After the four dev pipelines are published, a reconcile records their four in-sync plans:
    with failing they get no check event, so even a bound of 0 skips nothing."""
    instance = env["instance"]
    run_reconcile(env)
    requests = test_dagster.sensor_tick(instance).run_requests  # the dev auto-approvals
    dev = [r.partition_key for r in requests]
    created = read_plan_state(instance, dev)
    publish_each(env, requests)
    # As if published outside Dagster: the reconcile still remembers their creates.
    instance.run_storage.set_cursor_values({PLAN_STATE_PREFIX + k: v for k, v in created.items()})
    per_key, recorded_skipped, lines = fleet_run(with_checks(env, setting, checks_max))
    assert sorted(per_key) == sorted(dev)
    assert sum(c["ASSET_CHECK_EVALUATION"] for c in per_key.values()) == checks
    assert all(c["ASSET_MATERIALIZATION"] == 1 for c in per_key.values())
    assert recorded_skipped == skipped
    assert len([line for line in lines if "status_checks_max" in line]) == (1 if skipped else 0)


# -- plan metadata -----------------------------------------------------------------------------


def entry(status: Status, *, messages: tuple[str, ...] = (), unified: str = "") -> PlanEntry:
    return PlanEntry(key=KEY, status=status, digest="d" * 64, messages=messages, unified=unified)


SUMMARY = {"status", "display_status", "plan_digest", "pipeline_id", "application", "name", "live_etag"}


@pytest.mark.parametrize(
    ("planned", "keys"),
    [
        # Most of a first reconcile's events: nothing to show beyond the summary.
        (entry(Status.IN_SYNC), SUMMARY | {"approval_policy"}),
        (entry(Status.IN_SYNC, messages=("adopted",)), SUMMARY | {"approval_policy", "messages"}),
        (entry(Status.ORPHAN), SUMMARY | {"approval_policy", "messages", "diff"}),
        (
            entry(Status.UPDATE, messages=("why",), unified="-a\n+b"),
            SUMMARY
            | {"approval_policy", "messages", "diff"}
            | {"approve_in_launchpad", "approve_config"}
            | {"approve_command"},
        ),
    ],
)
def test_an_in_sync_plan_records_no_empty_diff_or_messages(planned: PlanEntry, keys: set[str]) -> None:
    assert set(plan_metadata(planned)) == keys


def test_a_first_reconcile_records_slim_in_sync_plans(env: dict[str, Any]) -> None:
    """Published dev pipelines, then a reconcile that has no plan state (a first run): their
    in-sync plans are recorded by that run, without a diff block."""
    instance = env["instance"]
    run_reconcile(env)
    requests = test_dagster.sensor_tick(instance).run_requests  # the dev auto-approvals
    publish_each(env, requests)
    dev = sorted(r.partition_key for r in requests)
    assert len(dev) == 4
    instance.run_storage.set_cursor_values({PLAN_STATE_PREFIX + key: "" for key in dev})
    result, counts = run_reconcile(env)
    assert counts["ASSET_MATERIALIZATION"] == 4 + 1  # the four plans, the summary
    for key in dev:
        [record] = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=PLAN_ASSET, asset_partitions=[key]), limit=1
        ).records
        assert record.run_id == result.run_id, key
        metadata = {k: v.value for k, v in record.asset_materialization.metadata.items()}
        assert metadata["status"] == "in-sync" and "diff" not in metadata, key


# -- why not one event per partition -----------------------------------------------------------


def _materialize_plan(instance: dg.DagsterInstance, digest: str) -> int:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(PLAN_ASSET, partition=KEY, metadata={"plan_digest": digest})
    )
    latest = instance.event_log_storage.get_latest_storage_id_by_partition(
        PLAN_ASSET, DagsterEventType.ASSET_MATERIALIZATION, {KEY}
    )
    return latest[KEY]


def _fail_check(instance: dg.DagsterInstance, target: int | None) -> None:
    judged = CheckTarget(storage_id=target, run_id="", timestamp=time.time()) if target else None
    evaluation = dg.AssetCheckEvaluation(
        asset_key=PLAN_ASSET,
        check_name="no_pending_change",
        passed=False,
        partition=KEY,
        target_materialization_data=judged,
    )

    @dg.asset(name="emitter")
    def emitter(context) -> None:  # type: ignore[no-untyped-def]  # Dagster rejects a string annotation
        context.log_event(evaluation)  # in a run of its own, as fleet_plan logs its checks

    assert dg.materialize([emitter], instance=instance).success


def test_dagster_shows_a_check_only_while_it_targets_the_latest_plan(env: dict[str, Any]) -> None:
    """Why a fleet run cannot show a changed partition's status with one event: the result must
    target the new plan's materialization, which exists only once written. If this fails, Dagster
    changed, and docs/dagster-events.md must be revisited."""
    instance = env["instance"]
    instance.add_dynamic_partitions("pipelines", [KEY])
    first = _materialize_plan(instance, "one")
    _fail_check(instance, first)
    assert latest_checks(instance, KEY) == {"no_pending_change": "FAILED"}
    second = _materialize_plan(instance, "two")
    assert latest_checks(instance, KEY) == {}  # a new plan hides the old result
    _fail_check(instance, first)
    assert latest_checks(instance, KEY) == {}  # a result judging an older plan never shows
    _fail_check(instance, None)
    assert latest_checks(instance, KEY) == {}  # nor one judging no plan, once a plan exists
    _fail_check(instance, second)
    assert latest_checks(instance, KEY) == {"no_pending_change": "FAILED"}  # only the latest


def test_a_first_reconcile_writes_no_event_for_pipelines_already_in_sync(env: dict[str, Any]) -> None:
    """A fleet pipeline-sync already manages (published by the CLI) meets its first Dagster
    reconcile: nothing asks anything of anyone, so no partition gets an event (10,000 would cost
    about 80 s on sqlite); their state is kept, so the run after a change records just that one."""
    from pipeline_sync import engine
    from pipeline_sync.store.s3 import S3Store

    instance, front50 = env["instance"], env["resources"]["front50"]
    workspace = env["resources"]["catalog"].workspace(front50.caches())
    store = S3Store(front50.settings())
    plan = engine.plan(workspace, store)
    approved = {k: e.digest for k, e in plan.entries.items() if e.actionable}
    assert len(approved) == 13
    assert {r.outcome for r in engine.apply(workspace, store, approved, approver="alice")} == {"applied"}
    _, first = run_reconcile(env)
    assert first["ASSET_MATERIALIZATION"] == 1  # the fleet summary only
    assert first["ASSET_CHECK_EVALUATION"] == 0
    states = instance.run_storage.get_cursor_values({PLAN_STATE_PREFIX + k for k in approved})
    assert len(states) == 13 and all(states.values())  # every state kept for the next run
    defaults = env["root"] / "catalog" / "defaults.yaml"
    defaults.write_text(defaults.read_text() + "\n")  # no change to any render: still nothing
    _, second = run_reconcile(env)
    assert second["ASSET_MATERIALIZATION"] == 1
    store.client.delete_object(Bucket=BUCKET, Key=store.pipeline_key(plan.entries[KEY].pipeline_id or ""))
    _, third = run_reconcile(env)  # the pipeline was deleted in Deck: a create, recorded
    assert third["ASSET_MATERIALIZATION"] == 1 + 1
    assert latest_checks(instance, KEY) == {"no_pending_change": "FAILED"}


# -- writing the events on both cores (sqlite) -------------------------------------------------


def event_log(instance: dg.DagsterInstance, run_id: str) -> tuple[Counter[tuple[str, ...]], dict[str, Any]]:
    """A run's partition events as (event type, asset or check, partition, metadata) records, and
    per record kind the storage ids and pids, to tell who wrote what and in which order."""
    records: Counter[tuple[str, ...]] = Counter()
    seen: dict[str, Any] = {"pipeline_plan": {}, "approval": {}, "checks": []}
    seen.update(pids=set(), plan_pids=set())
    entries = instance.get_records_for_run(run_id, limit=10_000).records
    step_pid = next(
        r.event_log_entry.dagster_event.pid
        for r in entries
        if r.event_log_entry.dagster_event
        and r.event_log_entry.dagster_event.event_type_value == "STEP_START"
    )
    seen["step_pid"] = step_pid
    for record in entries:
        event = record.event_log_entry.dagster_event
        key = event_partition(record.event_log_entry)
        if event is None or not key:
            continue
        seen["pids"].add(event.pid)
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.asset_check_evaluation_data
            name, values = data.check_name, {**data.metadata, "passed": data.passed}
            seen["checks"].append((record.storage_id, key, data.target_materialization_data.storage_id))
        else:
            materialization = event.step_materialization_data.materialization
            name, values = materialization.asset_key.path[-1], materialization.metadata
            seen[name][key] = record.storage_id
            if name == "pipeline_plan":
                seen["plan_pids"].add(event.pid)
        text = tuple(sorted(f"{k}={getattr(v, 'value', v)!r}" for k, v in values.items()))
        records[(event.event_type_value, name, key, *text)] += 1
    return records, seen


def test_a_forked_run_writes_the_same_event_log_as_one_process(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 13 creates' plans, 4 policy approvals and 13 failing checks, written by forked processes
    (one per core and a spare; the threshold lowered from 32 partitions to 2) and by this one: the same records,
    each partition's approval after its plan, every check after the plan it targets and shown."""
    monkeypatch.setattr(eventlog, "FORK_MIN_GROUPS", 2)
    monkeypatch.setattr(eventlog, "_CHUNK", 2)  # the 13 partitions in 7 shares, every process busy
    instance = env["instance"]
    logs = {}
    for workers in ("2", "1"):
        monkeypatch.setenv(WORKERS_VARIABLE, workers)
        keys = read_plan_state(instance, instance.get_dynamic_partitions("pipelines"))
        if keys:  # the second run records all 13 again
            instance.run_storage.set_cursor_values({PLAN_STATE_PREFIX + k: "" for k in keys})
        result, _ = run_reconcile(env)
        logs[workers] = event_log(instance, result.run_id)
        if workers == "2":
            planned = set(logs["2"][1]["pipeline_plan"])
            assert all(latest_checks(instance, k) == {"no_pending_change": "FAILED"} for k in planned)
            plan_ids = instance.event_log_storage.get_latest_storage_id_by_partition(
                PLAN_ASSET, DagsterEventType.ASSET_MATERIALIZATION, planned
            )
            assert len(test_dagster.sensor_tick(instance).run_requests) == 4  # the approvals count
    (forked, seen), (in_process, alone) = logs["2"], logs["1"]
    assert forked == in_process
    assert sum(forked.values()) == 13 + 4 + 13
    assert alone["pids"] == {alone["step_pid"]}
    # children wrote them: one per core (2 here) and the spare writers, as the shares fell
    assert 1 < len(seen["plan_pids"]) <= 2 + eventlog.SPARE_WRITERS
    assert seen["step_pid"] not in seen["pids"]
    assert all(seen["pipeline_plan"][k] < sid for k, sid in seen["approval"].items())
    assert len(seen["approval"]) == 4
    assert {key: target for _, key, target in seen["checks"]} == plan_ids  # in the index shard
    assert min(sid for sid, _, _ in seen["checks"]) > max(seen["pipeline_plan"].values())


def test_each_forked_writer_makes_an_engine_once_per_database(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Dagster's sqlite event log asks for an engine for every statement: a forked writer gets the
    one it made before (eventlog.reuse_engines), so it compiles each statement once; this process's
    create_engine is left as it was. Counted at Dagster's own create_engine, by process."""
    monkeypatch.setattr(eventlog, "FORK_MIN_GROUPS", 2)
    monkeypatch.setattr(eventlog, "_CHUNK", 2)
    monkeypatch.setenv(WORKERS_VARIABLE, "2")
    made = tmp_path / "engines"
    original = sqlite_event_log.create_engine

    def counted(url: Any, **kwargs: Any) -> Any:
        with made.open("a") as out:  # children append too: a file, not a list
            out.write(f"{os.getpid()} {url}\n")
        return original(url, **kwargs)

    monkeypatch.setattr(sqlite_event_log, "create_engine", counted)
    result, _ = run_reconcile(env)
    assert sqlite_event_log.create_engine is counted  # the parent's is not wrapped
    _, seen = event_log(env["instance"], result.run_id)
    writers = seen["plan_pids"]
    assert len(writers) > 1
    by_writer = Counter(
        (int(pid), url) for pid, url in (line.split(" ", 1) for line in made.read_text().splitlines())
    )
    written = {pid for pid, _ in by_writer if pid in writers}
    assert written == writers
    assert all(n == 1 for (pid, _), n in by_writer.items() if pid in writers)  # once per database
    assert any(
        n > 2 for (pid, _), n in by_writer.items() if pid not in writers
    )  # this process: per statement


def test_forked_writers_commit_unsynced_and_the_run_syncs_every_event_once_they_are_done(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each forked writer's sqlite connections commit without a sync (synchronous=NORMAL, the event
    log being in WAL mode); this process's keep sqlite's sync at every commit. Once the writers
    are done, and before the run goes on, the WAL of both shards is synced with every plan
    event in them: counted in the file itself at each fsync this process makes."""
    monkeypatch.setattr(eventlog, "FORK_MIN_GROUPS", 2)
    monkeypatch.setattr(eventlog, "_CHUNK", 2)
    monkeypatch.setenv(WORKERS_VARIABLE, "2")
    modes = tmp_path / "modes"
    unsynced = eventlog.commit_unsynced

    def recorded(connection: Any, record: Any = None) -> None:
        unsynced(connection, record)
        (level,) = connection.execute("PRAGMA synchronous").fetchone()
        with modes.open("a") as out:  # the children append: a file, not a list
            out.write(f"{os.getpid()} {level}\n")

    monkeypatch.setattr(eventlog, "commit_unsynced", recorded)
    syncs: list[tuple[str, int]] = []
    fsync = os.fsync

    def plans_in(path: str) -> int:
        database = path.removesuffix("-wal")
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
            query = "SELECT count(*) FROM event_logs WHERE asset_key LIKE '%pipeline_plan%'"
            return int(connection.execute(query).fetchone()[0])

    def counted(descriptor: int) -> None:
        path = os.readlink(f"/proc/self/fd/{descriptor}")
        if os.getpid() == parent and path.endswith(".db-wal"):
            syncs.append((path, plans_in(path)))
        fsync(descriptor)

    parent = os.getpid()
    monkeypatch.setattr(os, "fsync", counted)
    result, _ = run_reconcile(env)
    _, seen = event_log(env["instance"], result.run_id)
    writers = seen["plan_pids"]
    assert len(writers) > 1 and parent not in writers
    levels = Counter(tuple(map(int, line.split())) for line in modes.read_text().splitlines())
    recorded = {pid for pid, _ in levels}
    assert writers <= recorded and parent not in recorded  # writers only (plans, then checks)
    assert {level for _, level in levels} == {1}  # every one of their connections NORMAL
    storage = env["instance"].event_log_storage
    shards = {
        storage.path_for_shard(result.run_id),
        storage.path_for_shard(sqlite_event_log.INDEX_SHARD_NAME),
    }
    synced = {path.removesuffix("-wal") for path, _ in syncs}
    assert shards <= synced  # the WAL of each (a database file itself is never opened)
    plans = len(seen["pipeline_plan"])
    assert plans == 13
    assert all(n == plans for path, n in syncs if path.removesuffix("-wal") in shards)


def test_commit_unsynced_leaves_a_database_that_is_not_in_wal_mode_syncing_every_commit(
    tmp_path: Path,
) -> None:
    for mode, level in (("wal", 1), ("delete", 2)):
        with contextlib.closing(sqlite3.connect(tmp_path / f"{mode}.db")) as connection:
            connection.execute(f"PRAGMA journal_mode={mode}")
            eventlog.commit_unsynced(connection)
            assert connection.execute("PRAGMA synchronous").fetchone()[0] == level


def wal_database_kept_open(path: Path) -> sqlite3.Connection:
    """A WAL database with a table t, and a connection to it left open (so its WAL stays)."""
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=wal")
    connection.execute("CREATE TABLE t (v INTEGER)")
    connection.commit()
    return connection


def test_synced_syncs_each_wal_and_its_folder_and_skips_a_database_without_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "run.db"
    kept = wal_database_kept_open(database)  # open: its WAL stays
    synced: list[str] = []
    opened: list[str] = []
    fsync, open_file = os.fsync, os.open

    def counted(descriptor: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        fsync(descriptor)

    def seen(name: str, flags: int, *args: Any) -> int:
        opened.append(name)
        return open_file(name, flags, *args)

    monkeypatch.setattr(os, "fsync", counted)
    monkeypatch.setattr(os, "open", seen)
    eventlog.synced([str(database), str(tmp_path / "absent.db")])
    monkeypatch.undo()
    kept.close()
    assert synced == [f"{database}-wal", str(tmp_path)]
    # never a database file: closing it would drop the locks this process's connections hold
    assert opened == [f"{database}-wal", str(tmp_path), f"{tmp_path / 'absent.db'}-wal"]


def test_synced_leaves_this_process_its_locks_so_another_process_never_deletes_a_wal_in_use(
    tmp_path: Path,
) -> None:
    """Why synced never opens a database file: closing any descriptor of it drops this process's
    locks on it, and another process's connection then finds itself the last one and deletes the
    WAL under the connection still open here (checked: opening and closing the database instead
    of its WAL makes this fail)."""
    database = tmp_path / "run.db"
    kept = wal_database_kept_open(database)
    kept.execute("SELECT * FROM t").fetchall()
    eventlog.synced([str(database)])
    write = f"import sqlite3; c = sqlite3.connect({str(database)!r}); c.execute('INSERT INTO t VALUES (1)'); c.commit(); c.close()"
    subprocess.run([sys.executable, "-c", write], check=True, timeout=60)
    assert (tmp_path / "run.db-wal").exists()  # the other process knew it was not the last
    assert kept.execute("SELECT v FROM t").fetchall() == [(1,)]
    kept.close()


def test_reuse_engines_keeps_only_engines_that_connect_afresh() -> None:
    made: list[tuple[Any, dict[str, Any]]] = []

    class Module:
        @staticmethod
        def create_engine(url: Any, **kwargs: Any) -> object:
            made.append((url, kwargs))
            return object()

    module = Module()
    assert eventlog.reuse_engines(module) and eventlog.reuse_engines(module)  # once wrapped, kept
    fresh = {"poolclass": NullPool, "connect_args": {"timeout": 30}}
    first = module.create_engine("sqlite:///a.db", **fresh)
    assert module.create_engine("sqlite:///a.db", **fresh) is first
    assert module.create_engine("sqlite:///b.db", **fresh) is not first
    assert (
        module.create_engine("sqlite:///a.db", poolclass=NullPool, connect_args={"timeout": 5}) is not first
    )
    pooled = module.create_engine("sqlite:///a.db")
    assert module.create_engine("sqlite:///a.db") is not pooled  # a pool is never handed out twice
    assert len(made) == 5
    assert not eventlog.reuse_engines(object())  # nothing to wrap: Dagster as it is


def test_an_instance_that_is_not_sqlite_is_written_by_this_process(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forked child's writes to an in-memory instance would be lost (and a PostgreSQL instance's
    pooled connections shared): only a sqlite event log is written by forked processes."""
    monkeypatch.setattr(eventlog, "FORK_MIN_GROUPS", 2)
    monkeypatch.setenv(WORKERS_VARIABLE, "2")
    with dg.DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("reconcile_job").execute_in_process(
            instance=instance, resources=env["resources"]
        )
        records, seen = event_log(instance, result.run_id)
    assert sum(records.values()) == 13 + 4 + 13
    assert seen["pids"] == {seen["step_pid"]}
