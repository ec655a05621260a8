"""`make demo`: a local S3 endpoint seeded with Front50 pipelines, and the Dagster UI on top of it."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
BUCKET = "front50-demo"


class DemoError(Exception):
    """Something stops the demo from starting; the message says what to do."""


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for(url: str, seconds: float, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive():
            raise DemoError(f"the process serving {url} exited during start-up; see its output above")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except OSError:
            time.sleep(0.5)
    raise DemoError(f"{url} did not answer within {seconds:.0f} s")


class Processes:
    """Children started in their own process groups, all stopped on exit, whatever happens."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen[bytes]] = []

    def start(
        self, argv: Sequence[str], env: dict[str, str], log: Path | None = None
    ) -> subprocess.Popen[bytes]:
        out = open(log, "wb") if log else None  # noqa: SIM115 - closed with the process
        child = subprocess.Popen(
            argv,
            env=env,
            cwd=PROJECT,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
        )
        self.children.append(child)
        return child

    def stop_all(self) -> None:
        for child in reversed(self.children):
            _stop_group(child)
        self.children.clear()


def _stop_group(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is not None:
        return
    try:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=5)
    except ProcessLookupError:
        pass


def demo_env(home: Path, s3_port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID="demo",
        AWS_SECRET_ACCESS_KEY="demo",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{s3_port}",
        PIPELINE_SYNC_BUCKET=BUCKET,
        PIPELINE_SYNC_ROOT="front50",
        PIPELINE_SYNC_CACHE_DIR=str(home / "cache"),
        DAGSTER_HOME=str(home / "dagster_home"),
        DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS="true",
    )
    return env


def prepare(home: Path, s3_port: int, procs: Processes) -> dict[str, str]:
    """Start moto, seed the bucket, create a fresh Dagster home and run a first reconcile."""
    shutil.rmtree(home, ignore_errors=True)
    (home / "dagster_home").mkdir(parents=True)
    env = demo_env(home, s3_port)
    moto = procs.start(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
        env,
        home / "moto.log",
    )
    wait_for(f"http://127.0.0.1:{s3_port}/moto-api/", 30, lambda: moto.poll() is None)
    os.environ.update(env)  # the seed and first reconcile run in this process
    from pipeline_sync.demo_seed import seed
    from pipeline_sync.front50 import Front50Settings, Front50Store

    arranged = seed(Front50Store(Front50Settings.from_env()), PROJECT / "catalog", PROJECT / "templates")
    _first_reconcile()
    return arranged


def _first_reconcile() -> None:
    import dagster as dg

    from pipeline_sync.build import Workspace
    from pipeline_sync.definitions import defs
    from pipeline_sync.defs.partitions import PARTITIONS_NAME

    instance = dg.DagsterInstance.get()
    workspace = Workspace.load(PROJECT / "catalog", PROJECT / "templates")
    instance.add_dynamic_partitions(PARTITIONS_NAME, sorted(workspace.catalog.targets))
    os.chdir(PROJECT)
    result = defs.resolve_job_def("reconcile_job").execute_in_process(instance=instance, raise_on_error=False)
    if not result.success:
        raise DemoError("the first reconcile run failed; see the log above")


def banner(url: str, arranged: dict[str, str]) -> str:
    return f"""
pipeline-sync demo is running: {url}

The local S3 bucket '{BUCKET}' holds Front50 pipelines. The first reconcile found:
  drift     {arranged["drift"]}  (edited in "Deck": replicaCount raised by hand)
  create    {arranged["create"]}  (not in the bucket yet)
  conflict  {arranged["conflict"]}  (an unmanaged pipeline already has its name)
  untouched {arranged["unmanaged"]}  (unmanaged: pipeline-sync never writes it)

Three things to try:
  1. Open {url}/assets/pipeline_plan, pick the partition {arranged["create"]}, and read the
     diff and plan_digest in its latest materialization (or the fleet summary on fleet_plan).
  2. Approve it: Materialize the `approval` asset for that partition from the launchpad with
       ops: {{approval: {{config: {{approver: you, plan_digest: <digest>}}}}}}
     or from a shell here:
       export DAGSTER_HOME={os.environ.get("DAGSTER_HOME")}
       .venv/bin/pipeline-sync approve {arranged["create"]} --digest <digest> --approver you
  3. Watch approval_sensor start a publish_job run (Runs tab); the pipeline then appears in the bucket.

Press Ctrl-C to stop everything this demo started.
"""


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", "3000")))
    parser.add_argument("--s3-port", type=int, default=int(os.environ.get("DEMO_S3_PORT", "5055")))
    parser.add_argument("--home", type=Path, default=PROJECT / ".demo")
    args = parser.parse_args(argv)
    for port, flag in (
        (args.port, "--port / DEMO_PORT"),
        (args.s3_port, "--s3-port / DEMO_S3_PORT"),
    ):
        if not port_free(port):
            print(
                f"error: port {port} on 127.0.0.1 is already in use; free it or choose another with {flag}.",
                file=sys.stderr,
            )
            return 1
    procs = Processes()
    # Install handlers explicitly: a shell that starts us in the background without job
    # control leaves SIGINT ignored, and Ctrl-C must always stop everything we started.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        arranged = prepare(args.home, args.s3_port, procs)
        dagster = procs.start(
            [
                str(Path(sys.executable).parent / "dagster"),
                "dev",
                "-w",
                "workspace.yaml",
                "-h",
                "127.0.0.1",
                "-p",
                str(args.port),
            ],
            dict(os.environ),
        )
        url = f"http://127.0.0.1:{args.port}"
        wait_for(f"{url}/server_info", 120, lambda: dagster.poll() is None)
        print(banner(url, arranged), flush=True)
        while dagster.poll() is None:
            time.sleep(1)
        print("dagster dev exited; stopping the demo.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping the demo ...", file=sys.stderr)
        return 0
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
