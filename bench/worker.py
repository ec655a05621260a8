"""One measurement in a child process of its own, so its peak RSS is its own.

`python -m bench.worker naive|dagster --out RESULT.json ...`; the parent reads RESULT.json.
S3 requests are counted here at the client too (botocore's before-call hook on the default
session, and on pipeline-sync's own session: every client made afterwards inherits it; obstore's
bulk GETs through fast_reads.REQUEST_OBSERVERS), as a cross-check of the server's count.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import boto3

from pipeline_sync.store import fast_reads
from pipeline_sync.store.s3 import RequestCounter, s3_session


def _counted_session() -> RequestCounter:
    counter = RequestCounter()
    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("before-call.s3", counter)
    s3_session().events.register("before-call.s3", counter)
    fast_reads.REQUEST_OBSERVERS.append(counter.add)  # obstore's bulk GETs
    return counter


def run_naive(args: argparse.Namespace) -> dict[str, Any]:
    from bench.naive import naive_plan

    counter = _counted_session()
    client = boto3.client("s3")
    started = time.perf_counter()
    result = naive_plan(Path(args.catalog), Path(args.templates), client, args.bucket)
    return {
        "seconds": time.perf_counter() - started,
        "client_requests": dict(counter.counts),
        **result.to_json(),
    }


def event_partition(entry: Any) -> str | None:
    """The partition an event-log record is about. Dagster's DagsterEvent.partition knows
    materializations and observations only; a check evaluation carries its own partition."""
    event = entry.dagster_event
    if event is None:
        return None
    if event.event_type_value == "ASSET_CHECK_EVALUATION":
        return event.asset_check_evaluation_data.partition
    return event.partition


def run_dagster(args: argparse.Namespace) -> dict[str, Any]:
    import dagster as dg

    from pipeline_sync.definitions import defs
    from pipeline_sync.defs.resources import CatalogResource, Front50Resource
    from pipeline_sync.defs.state import PLAN_STATE_PREFIX, read_plan_state
    from pipeline_sync.rendering import Sources

    counter = _counted_session()
    instance = dg.DagsterInstance.get()
    prior: dict[str, str] = {}
    if args.restore_state:
        keys = Sources.load(Path(args.catalog), Path(args.templates)).catalog.targets
        prior = read_plan_state(instance, keys)
    resources = {
        "catalog": CatalogResource(catalog_dir=args.catalog, templates_dir=args.templates),
        "front50": Front50Resource(bucket=args.bucket, cache_dir=args.cache_dir),
    }
    job = defs.resolve_job_def("reconcile_job")
    started = time.perf_counter()
    result = job.execute_in_process(instance=instance, resources=resources, raise_on_error=False)
    seconds = time.perf_counter() - started
    requests = dict(counter.counts)
    entries = instance.all_logs(result.run_id)
    by_type = Counter(e.dagster_event.event_type_value if e.dagster_event else "LOG_MESSAGE" for e in entries)
    per_partition = sum(1 for e in entries if event_partition(e))
    summary: dict[str, Any] = {}
    for materialization in result.asset_materializations_for_node("fleet_plan"):
        if materialization.asset_key == dg.AssetKey("fleet_plan"):
            summary = {
                k: v.value for k, v in materialization.metadata.items() if isinstance(v.value, int | float)
            }
    if prior:
        items = [(PLAN_STATE_PREFIX + k, v) for k, v in prior.items()]
        for start in range(0, len(items), 500):
            instance.run_storage.set_cursor_values(dict(items[start : start + 500]))
    return {
        "seconds": seconds,
        "success": result.success,
        "run_id": result.run_id,
        "events": len(entries),
        "events_by_type": dict(sorted(by_type.items())),
        "partition_events": per_partition,
        "summary": summary,
        "client_requests": requests,
        "restored_state": len(prior),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["naive", "dagster"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--templates", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--cache-dir")
    parser.add_argument(
        "--restore-state",
        action="store_true",
        help="Put the instance's per-partition plan state back as it was before the run.",
    )
    args = parser.parse_args(argv)
    outcome = run_naive(args) if args.kind == "naive" else run_dagster(args)
    Path(args.out).write_text(json.dumps(outcome, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
