"""One partition's plan, approval and publish at fleet scale, warm and cold: CPU and S3 requests.

    python -m bench.single --sizes 2000            # while developing
    python -m bench.single --sizes 10000           # the figures in the README

For each N one moto S3 server (bench.s3server, counting requests at the server) holds the
bench's synthetic fleet (bench.synth). Each step runs in a child process of its own, as a
Dagster run does in production: `plan` (engine.plan of one key, what pipeline_plan runs),
`approve` (the same plan and the approval rule, what the approval asset runs) and `publish`
(engine.apply of the approved digest, what published_pipeline runs). With --sql the same steps
run against Front50's SQL store too (a PostgreSQL database holding the same fleet as Front50's
rows, bench.sqlstore; the server PIPELINE_SYNC_BENCH_SQL_URL or PIPELINE_SYNC_TEST_POSTGRES_URL
names, else a throwaway one), its requests counted as the database's transactions. "cold" starts each child
with an empty cache directory (no render cache, no content cache), "warm" with the one a full
`plan` left behind. CPU is the child's process time from loading the catalog to the end of
the step (imports left out); requests are counted at the server. Results go to
bench/results/single.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench import sqlstore, synth
from bench.naive import PROBE_TARGETS, REFERENCE_DATE, REFERENCE_NAIVE_RENDER_MS, render_probe
from bench.s3server import S3Server

PROJECT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT / "bench" / "results"
STEPS = ("plan", "approve", "publish")
CPU_TARGET_S = 1.0
REQUEST_TARGET = 15


def step(args: argparse.Namespace) -> dict[str, Any]:
    """One step in this (child) process; what it cost, as JSON on stdout."""
    from pipeline_sync import engine
    from pipeline_sync.cachefiles import CacheSettings
    from pipeline_sync.store.s3 import S3Settings, S3Store

    started_cpu, started = time.process_time(), time.perf_counter()
    workspace = engine.load_workspace(
        Path(args.catalog), Path(args.templates), CacheSettings.from_env(os.environ)
    )
    if os.environ.get("PIPELINE_SYNC_STORE"):
        from pipeline_sync.store.select import open_store

        store: Any = open_store(None)
    else:
        store = S3Store(S3Settings.from_env())
    loaded_cpu = time.process_time()
    outcome: dict[str, Any] = {}
    if args.step in {"plan", "approve"}:
        entry = engine.plan(workspace, store, engine.Selection.of([args.key])).entries[args.key]
        outcome = {"status": str(entry.status), "digest": entry.digest}
        if args.step == "approve":
            refusal = engine.approval_refusal(entry, args.key, entry.digest, approver="bench", policy=False)
            outcome["refusal"] = refusal.message if refusal else None
    else:
        result = engine.apply(workspace, store, {args.key: args.digest}, approver="bench")[0]
        outcome = {"outcome": result.outcome, "message": result.message}
    measured = {
        "cpu_s": time.process_time() - started_cpu,
        "load_cpu_s": loaded_cpu - started_cpu,
        "wall_s": time.perf_counter() - started,
    }
    # The machine's speed in the same process, just after: this machine's CPU time swings by half
    # from one minute to the next, so each step's figure comes with its own yardstick.
    return {**outcome, **measured, "probe_ms": render_probe(workspace.catalog, Path(args.templates))}


def _child(
    server: S3Server, env: dict[str, str], argv: list[str], sql: tuple[str, str] | None = None
) -> dict[str, Any]:
    server.reset()
    before = _transactions(sql)
    done = subprocess.run(
        [sys.executable, "-m", "bench.single", "--step", *argv],
        env=env,
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.single --step {' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    counts = server.counts()
    if sql is not None:
        counts = {"SQL transactions": _transactions(sql) - before}
    result["requests"] = sum(counts.values())
    result["requests_by_operation"] = counts
    return result


def _transactions(sql: tuple[str, str] | None) -> int:
    """The SQL database's transactions so far; pg_stat_database counts a session's when it ends,
    so this waits for the figure to settle."""
    if sql is None:
        return 0
    seen = sqlstore.transactions(*sql) or 0
    for _ in range(30):
        time.sleep(0.1)
        again = sqlstore.transactions(*sql) or 0
        if again == seen:
            break
        seen = again
    return seen


def measure(size: int, work: Path, server: S3Server, sql_server: str | None = None) -> list[dict[str, Any]]:
    fleet = synth.write_fleet(work / "project", size)
    os.environ["PIPELINE_SYNC_CACHE_DIR"] = str(work / "cache-synth")
    base = synth.baseline(fleet)
    bucket = f"single-{size}"
    synth.seed(synth.s3_client(server.url), bucket, base)
    key = sorted(k for k, role in base.roles.items() if role == "update")[0]
    env = {**server.client_env(), "PYTHONPATH": str(PROJECT), "PIPELINE_SYNC_BUCKET": bucket}
    common = ["--catalog", str(fleet.catalog_dir), "--templates", str(fleet.templates_dir), "--key", key]
    rows: list[dict[str, Any]] = []
    client = synth.s3_client(server.url)
    # Front50 knows the key's application (the seed writes pipelines only): publish updates one.
    application = fleet.workspace().catalog.targets[key].application.lower()
    document = {"name": application.upper(), "email": "bench@example.com", "cloudProviders": ""}
    client.put_object(
        Bucket=bucket,
        Key=f"{synth.ROOT}/applications/{application}/application-metadata.json",
        Body=json.dumps(document).encode(),
    )
    stores: list[tuple[str, dict[str, str], tuple[str, str] | None]] = [("S3", env, None)]
    sql_url = ""
    if sql_server is not None:
        database = f"bench_single_{size}"
        sql_url = sqlstore.create_database(sql_server, database)
        sqlstore.seed(sql_url, base.bodies)
        stores.append(("SQL", {**env, "PIPELINE_SYNC_STORE": sql_url}, (sql_server, database)))
    for store_name, store_env, sql in stores:
        rows += _measure_store(
            size, work / store_name.lower(), server, store_env, sql, common, key, base, bucket
        )
    return rows


def _measure_store(
    size: int,
    work: Path,
    server: S3Server,
    env: dict[str, str],
    sql: tuple[str, str] | None,
    common: list[str],
    key: str,
    base: synth.Baseline,
    bucket: str,
) -> list[dict[str, Any]]:
    client = synth.s3_client(server.url)
    rows: list[dict[str, Any]] = []
    store_name = "SQL" if sql is not None else "S3"
    warm_cache = work / "cache-warm"
    for cache in ("warm", "cold"):
        # The nightly reconcile first (a full plan): it leaves the fleet summary current and,
        # for the warm pass, the content and render caches.
        full = subprocess.run(
            [str(Path(sys.executable).parent / "pipeline-sync"), *common[:4], "plan"],
            env={**env, "PIPELINE_SYNC_CACHE_DIR": str(warm_cache)},
            cwd=PROJECT,
            capture_output=True,
            text=True,
            check=False,
        )
        if full.returncode not in (0, 2):
            raise RuntimeError(f"pipeline-sync plan failed:\n{full.stderr[-3000:]}")
        digest = ""
        for name in STEPS:
            cache_dir = warm_cache
            if cache == "cold":
                cache_dir = work / f"cache-cold-{name}"
                shutil.rmtree(cache_dir, ignore_errors=True)
            argv = [name, *common, "--digest", digest]
            result = _child(server, {**env, "PIPELINE_SYNC_CACHE_DIR": str(cache_dir)}, argv, sql)
            digest = result.get("digest", digest)
            rows.append(
                {"size": size, "store": store_name, "cache": cache, "step": name, "key": key, **result}
            )
            print(
                f"N={size} {store_name:<3} {cache:<4} {name:<8} cpu {result['cpu_s']:5.2f} s "
                f"(catalog {result['load_cpu_s']:4.2f} s)  {result['requests']:>5} requests  "
                f"{result.get('status') or result.get('outcome')}",
                flush=True,
            )
        # Put the published pipeline back as it was (object, then marker, as Front50 writes), so
        # the cold pass plans the same change.
        if sql is not None:
            sqlstore.put_bodies(env["PIPELINE_SYNC_STORE"], synth.original_bodies(base, [key]))
            continue
        synth.put_all(client, bucket, synth.original_bodies(base, [key]))
        marker = json.dumps({"lastModified": int(time.time() * 1000)}).encode()
        client.put_object(Bucket=bucket, Key=f"{synth.ROOT}/pipelines/last-modified.json", Body=marker)
    return rows


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    lines = [
        "# One partition at fleet scale",
        "",
        f"`{command}`, on {os.cpu_count()} cores. CPU: the step's process time from loading the",
        "catalog to its end (imports excluded). Requests: counted at the S3 server (S3), or the",
        "database's committed transactions (SQL, pg_stat_database; one query or write each). Targets: under",
        f"{CPU_TARGET_S:.0f} s of CPU and at most {REQUEST_TARGET} requests per step, warm and cold.",
        "*Seed's render*: the machine's speed, measured in the step's process just after it (the seed's",
        f"render of {PROBE_TARGETS} targets, pure CPU, bench.naive.render_probe), against",
        f"{REFERENCE_NAIVE_RENDER_MS} ms on {REFERENCE_DATE}, the run issue 19's targets came from; *at that",
        "speed*: the step's CPU scaled by the two. The verdict judges the CPU as measured.",
        "",
        "| N | store | cache | step | CPU (s) | of which catalog load (s) | wall (s) | requests "
        "| seed's render (ms) | CPU at that speed (s) | verdict |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        ok = row["cpu_s"] < CPU_TARGET_S and row["requests"] <= REQUEST_TARGET
        ops = ", ".join(f"{k} {v}" for k, v in sorted(row["requests_by_operation"].items()))
        probe = row.get("probe_ms")
        speed = f"{probe:.1f} | {row['cpu_s'] * REFERENCE_NAIVE_RENDER_MS / probe:.2f}" if probe else "— | —"
        lines.append(
            f"| {row['size']:,} | {row.get('store', 'S3')} | {row['cache']} | {row['step']} | "
            f"{row['cpu_s']:.2f} | "
            f"{row['load_cpu_s']:.2f} | {row['wall_s']:.2f} | {row['requests']} ({ops}) | {speed} | "
            f"{'meets' if ok else 'MISSES'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--step", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="2000", help="comma-separated fleet sizes")
    parser.add_argument("--out", default="single", help="results file stem under bench/results/")
    parser.add_argument("--sql", action="store_true", help="Also measure Front50's SQL store (PostgreSQL).")
    args = parser.parse_args(argv)
    if args.step:
        inner = argparse.ArgumentParser()
        inner.add_argument("step", choices=STEPS)
        for name in ("--catalog", "--templates", "--key", "--digest"):
            inner.add_argument(name, default="")
        print(json.dumps(step(inner.parse_args(args.step))))
        return 0
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-single-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        sql_server = stack.enter_context(_sql_server(work)) if args.sql else None
        with S3Server(work / "s3server.log") as server:
            for size in (int(s) for s in args.sizes.split(",")):
                rows += measure(size, work / f"n{size}", server, sql_server)
    command = "python -m bench.single " + " ".join(argv if argv is not None else sys.argv[1:])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(rows, indent=1, sort_keys=True))
    (RESULTS / f"{args.out}.md").write_text(markdown(rows, command.strip()))
    print(markdown(rows, command.strip()))
    return 0


@contextmanager
def _sql_server(work: Path) -> Iterator[str]:
    """The PostgreSQL server PIPELINE_SYNC_BENCH_SQL_URL or PIPELINE_SYNC_TEST_POSTGRES_URL names,
    else a throwaway one (.ci/start-postgres.sh), stopped afterwards."""
    from bench.reconcile import SQL_URL_VARIABLES, postgres_server

    named = next((os.environ[v] for v in SQL_URL_VARIABLES if os.environ.get(v)), None)
    if named:
        yield named
        return
    (work / "sql-server").mkdir()
    with postgres_server(work / "sql-server") as server:
        yield server.url


if __name__ == "__main__":
    sys.exit(main())
