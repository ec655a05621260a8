"""Start and stop real servers for end-to-end tests: moto's S3, `dagster dev`, the demo."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moto.server import ThreadedMotoServer

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_server() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def s3_env(endpoint: str, home: Path, bucket: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PIPELINE_SYNC_", "DAGSTER_"))}
    env.update(
        AWS_ACCESS_KEY_ID="e2e",
        AWS_SECRET_ACCESS_KEY="e2e",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL_S3=endpoint,
        PIPELINE_SYNC_BUCKET=bucket,
        PIPELINE_SYNC_CACHE_DIR=str(home / "cache"),
        DAGSTER_HOME=str(home / "dagster_home"),
    )
    (home / "dagster_home").mkdir(parents=True, exist_ok=True)
    return env


def wait_for_http(url: str, seconds: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server for {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {seconds} s")


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_group(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """TERM the whole process group, KILL what is left, and reap."""
    if group_alive(process.pid):
        os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while group_alive(process.pid) and time.monotonic() < deadline:
            process.poll()
            time.sleep(0.3)
        if group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@dataclass
class DagsterDev:
    url: str
    process: subprocess.Popen[bytes]

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            result: dict[str, Any] = json.loads(response.read())
        assert "errors" not in result, result
        return result["data"]


@contextmanager
def dagster_dev(env: dict[str, str], log: Path) -> Iterator[DagsterDev]:
    """`dagster dev` in its own session (so SIGTERM reaches every child), stopped by group id."""
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=PROJECT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/server_info", 120, process)
        yield DagsterDev(url, process)
    finally:
        stop_group(process)
