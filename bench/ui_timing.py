"""Time the operator's two waits on the demo through the Dagster webserver's GraphQL API.

1. click -> success: what the UI's Materialize button on one pipeline_plan partition sends
   (launchPipelineExecution of the implicit asset job with the partition tag), until the run
   succeeds;
2. approval -> published: approval_job launched with the prefilled launchpad config, until the
   publish_job run approval_sensor starts for that partition succeeds.

It starts `python -m pipeline_sync.demo` (moto S3, seeded bucket, first reconcile, dagster dev)
in a scratch home, times --samples partitions of each, writes bench/results/ui-timing.md, and
stops the demo. Usage: python -m bench.ui_timing [--samples 2] [--out bench/results/ui-timing.md]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOCATION = "pipeline_sync.definitions"
REPOSITORY = "__repository__"
READY = "pipeline-sync demo is running"
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
  }
}"""
RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) { ... on Run { runId status creationTime startTime endTime } }
}"""
RUNS = """
query Runs($filter: RunsFilter!) {
  runsOrError(filter: $filter) {
    ... on Runs { results { runId status creationTime startTime endTime } }
  }
}"""
PLAN = """
query Plan($partition: String!) {
  assetOrError(assetKey: {path: ["pipeline_plan"]}) {
    ... on Asset {
      assetMaterializations(partitions: [$partition], limit: 1) {
        metadataEntries { label ... on TextMetadataEntry { text } }
      }
    }
  }
}"""
CHECKS = """
query Checks {
  assetNodeOrError(assetKey: {path: ["pipeline_plan"]}) {
    ... on AssetNode {
      assetChecksOrError {
        ... on AssetChecks {
          checks {
            name
            partitionStatuses {
              ... on AssetCheckDefaultPartitionStatuses { succeededPartitions failedPartitions }
            }
          }
        }
      }
    }
  }
}"""


class BenchError(Exception):
    """The bench could not measure; the message says what happened."""


@dataclass(frozen=True)
class Run:
    run_id: str
    status: str
    created: float
    started: float | None
    ended: float | None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GraphQL:
    def __init__(self, url: str) -> None:
        self.url = url + "/graphql"

    def __call__(self, query: str, variables: Mapping[str, Any]) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.load(response)
        if answer.get("errors"):
            raise BenchError(f"GraphQL error: {answer['errors'][0].get('message')}")
        return dict(answer["data"])

    def launch(self, job: str, key: str, run_config: Mapping[str, Any], assets: list[str] | None) -> str:
        selector: dict[str, Any] = {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
            "pipelineName": job,
        }
        if assets is not None:
            selector["assetSelection"] = [{"path": [a]} for a in assets]
        params = {
            "selector": selector,
            "runConfigData": dict(run_config),
            "mode": "default",
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": key}]},
        }
        result = self(LAUNCH, {"params": params})["launchPipelineExecution"]
        if result["__typename"] != "LaunchRunSuccess":
            raise BenchError(f"launching {job} for {key} failed: {json.dumps(result)}")
        return str(result["run"]["runId"])

    def run(self, run_id: str) -> Run:
        return _run(self(RUN, {"runId": run_id})["runOrError"])

    def runs(self, job: str, key: str) -> list[Run]:
        flt = {"pipelineName": job, "tags": [{"key": "dagster/partition", "value": key}]}
        return [_run(r) for r in self(RUNS, {"filter": flt})["runsOrError"]["results"]]

    def check_statuses(self) -> dict[str, tuple[int, int]]:
        """What the UI shows per status check of pipeline_plan: (passed, failed) partitions."""
        node = self(CHECKS, {})["assetNodeOrError"]
        found = {}
        for check in node["assetChecksOrError"]["checks"]:
            statuses = check.get("partitionStatuses") or {}
            passed, failed = statuses.get("succeededPartitions", []), statuses.get("failedPartitions", [])
            found[check["name"]] = (len(passed), len(failed))
        return found

    def plan_digest(self, key: str) -> str:
        asset = self(PLAN, {"partition": key})["assetOrError"]
        entries = asset["assetMaterializations"][0]["metadataEntries"]
        return str(next(e["text"] for e in entries if e["label"] == "plan_digest"))


def _run(data: Mapping[str, Any]) -> Run:
    return Run(data["runId"], data["status"], data["creationTime"], data["startTime"], data["endTime"])


def wait_for(what: str, probe: Any, timeout: float, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(every)
    raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")


@contextmanager
def demo(home: Path, port: int, s3_port: int, log: Path) -> Iterator[str]:
    """The demo, up; stopped (its whole process group) however the block ends."""
    argv = [sys.executable, "-m", "pipeline_sync.demo", "--home", str(home), "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "wb") as out:
        child = subprocess.Popen(
            [*argv, "--s3-port", str(s3_port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        wait_for("the demo's banner", lambda: child.poll() is not None or READY in log.read_text(), 400, 1)
        if child.poll() is not None:
            raise BenchError(f"the demo exited with {child.returncode}; see {log}")
        yield f"http://127.0.0.1:{port}"
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGINT)  # the demo stops everything it started
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()


def pending_keys(home: Path, count: int) -> list[str]:
    """Partitions whose plan waits for a person (the demo's prod stacks are approved by hand)."""
    import dagster as dg

    from pipeline_sync.defs.partitions import PARTITIONS_NAME
    from pipeline_sync.defs.state import PLAN_ASSET, latest_metadata

    instance = dg.DagsterInstance.from_config(str(home / "dagster_home"))
    keys = [
        k
        for k in instance.get_dynamic_partitions(PARTITIONS_NAME)
        if "pending approval" in str(latest_metadata(instance, PLAN_ASSET, k).get("display_status", ""))
    ]
    if len(keys) < count:
        raise BenchError(f"only {len(keys)} partitions wait for approval; asked for {count}")
    return keys[:count]


def click_to_success(api: GraphQL, key: str) -> dict[str, float]:
    clicked = time.time()
    run_id = api.launch("__ASSET_JOB", key, {}, ["pipeline_plan"])
    run = wait_for(f"the plan run of {key}", lambda: _finished(api.run(run_id)), 300)
    done = time.time()
    if run.status != "SUCCESS":
        raise BenchError(f"the plan run {run_id} of {key} ended {run.status}")
    return {
        "total": done - clicked,
        "queued": (run.started or done) - clicked,
        "running": (run.ended or done) - (run.started or done),
    }


def approval_to_published(api: GraphQL, key: str) -> dict[str, float]:
    from pipeline_sync.defs.operator import approval_run_config

    digest = api.plan_digest(key)
    before = {r.run_id for r in api.runs("publish_job", key)}
    approved_at = time.time()
    run_id = api.launch("approval_job", key, approval_run_config(digest, "bench"), None)
    approval = wait_for(f"the approval run of {key}", lambda: _finished(api.run(run_id)), 300)
    if approval.status != "SUCCESS":
        raise BenchError(f"the approval run {run_id} of {key} ended {approval.status}")

    def published() -> Run | None:
        runs = [r for r in api.runs("publish_job", key) if r.run_id not in before]
        return next((r for r in runs if r.status in TERMINAL), None)

    publish = wait_for(f"the publish run of {key}", published, 300, 0.5)
    done = time.time()
    if publish.status != "SUCCESS":
        raise BenchError(f"the publish run {publish.run_id} of {key} ended {publish.status}")
    return {
        "total": done - approved_at,
        "approval run": (approval.ended or done) - approved_at,
        "until the sensor's run": publish.created - (approval.ended or done),
        "publish run": (publish.ended or done) - publish.created,
    }


def _finished(run: Run) -> Run | None:
    return run if run.status in TERMINAL else None


def report(
    clicks: list[dict[str, float]],
    approvals: list[dict[str, float]],
    load: str,
    checks: Mapping[str, tuple[int, int]],
) -> str:
    def rows(samples: list[dict[str, float]]) -> list[str]:
        out = []
        for part in samples[0]:
            values = [s[part] for s in samples]
            out.append(
                f"| {part} | {statistics.median(values):.1f} s | {max(values):.1f} s | "
                + ", ".join(f"{v:.1f}" for v in values)
                + " |"
            )
        return out

    head = ["| step | median | worst | each sample (s) |", "|---|---|---|---|"]
    return "\n".join(
        [
            "# Dagster UI timings on the demo",
            "",
            f"`python -m bench.ui_timing` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
            f"{os.cpu_count()} CPUs, load average {load} when it started). Each sample drives the "
            "webserver's GraphQL API as the UI does. Targets: click -> success under 15 s; "
            "approval -> published under 30 s.",
            "",
            "Before (measured by hand for issue 17): 62 s from click to success (18 s in the run "
            "queue, 17 s starting a step subprocess, 5 s of work) and about 2 minutes from approval "
            "to published. What changed: every job and the UI's Materialize button run steps "
            "in process, the demo's run queue dequeues every second instead of every 5 s, and "
            "approval_sensor ticks every 5 s instead of every 15 s.",
            "",
            "## Click -> success (Materialize one pipeline_plan partition)",
            "",
            *head,
            *rows(clicks),
            "",
            "## Approval -> published (approval_job, then approval_sensor's publish_job)",
            "",
            *head,
            *rows(approvals),
            "",
            "## Status checks the UI showed after the demo's first reconcile",
            "",
            "From the same API (`AssetCheck.partitionStatuses`): partitions per check of pipeline_plan.",
            "",
            "| check | passed | failed |",
            "|---|---|---|",
            *(f"| {name} | {passed} | {failed} |" for name, (passed, failed) in sorted(checks.items())),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--samples", type=int, default=2)  # the demo has 2 pending
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ui-timing.md")
    args = parser.parse_args(argv)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="ui-timing-") as scratch:
        home, log = Path(scratch) / "demo", Path(scratch) / "demo.log"
        try:
            with demo(home, free_port(), free_port(), log) as url:
                api = GraphQL(url)
                keys = pending_keys(home, args.samples)
                checks = api.check_statuses()
                clicks = [click_to_success(api, key) for key in keys]
                approvals = [approval_to_published(api, key) for key in keys]
        except BenchError as exc:
            print(f"error: {exc}\n--- demo log (last lines) ---", file=sys.stderr)
            print("\n".join(log.read_text(errors="replace").splitlines()[-30:]), file=sys.stderr)
            return 1
    text = report(clicks, approvals, load, checks)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
