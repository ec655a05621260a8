"""Real servers for end-to-end tests: moto's S3 on a thread, `dagster dev` in a process group of its own.

`demo_like` brings up what `make demo` does (the seeded bucket, a Dagster home with the pipeline
partitions, `dagster dev`) under a temporary folder, with the demo's own helpers, and on the way
out checks that no process using that Dagster home is left.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from moto.server import ThreadedMotoServer

from pipeline_sync import demo

PROJECT = demo.PROJECT
T = TypeVar("T")

LATEST_METADATA_QUERY = """
query ($path: [String!]!, $key: String!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode {
      assetMaterializations(partitions: [$key], limit: 1) {
        metadataEntries { label ... on TextMetadataEntry { text } }
      }
    }
  }
}
"""
PARTITION_KEYS_QUERY = """
query ($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode { partitionKeysByDimension { partitionKeys } }
  }
}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((demo.HOST, 0))
        return int(sock.getsockname()[1])


def wait_until(what: str, probe: Callable[[], T | None], seconds: float, every: float = 0.5) -> T:
    """probe() until it returns something true (a status, a non-empty list); fail after seconds."""
    deadline = time.monotonic() + seconds
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {seconds:.0f} s")
        time.sleep(every)


@contextmanager
def moto_server() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per S3 request
    port = free_port()
    server = ThreadedMotoServer(ip_address=demo.HOST, port=port, verbose=False)
    server.start()
    url = f"http://{demo.HOST}:{port}"
    # moto keeps its buckets per process, not per server: start and leave with none.
    reset = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
    urllib.request.urlopen(reset, timeout=10).close()
    try:
        yield url
    finally:
        urllib.request.urlopen(reset, timeout=10).close()
        server.stop()


def processes_using(dagster_home: Path) -> list[str]:
    """Live processes (but this one) whose environment has DAGSTER_HOME=dagster_home: pid and command."""
    wanted = f"DAGSTER_HOME={dagster_home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if wanted not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if stat[stat.rindex(")") + 2] != "Z":
            found.append(f"{entry.name} {command[:160]}")
    return found


def assert_nothing_left(dagster_home: Path, seconds: float = 15) -> None:
    wait_until(
        f"processes still using {dagster_home}: {processes_using(dagster_home)}",
        lambda: not processes_using(dagster_home),
        seconds,
    )


@dataclass
class DagsterDev:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            result: dict[str, Any] = json.loads(response.read())
        assert "errors" not in result, result
        data: dict[str, Any] = result["data"]
        return data

    def partition_keys(self, asset: str) -> list[str]:
        node = self.graphql(PARTITION_KEYS_QUERY, {"path": [asset]})["assetNodeOrError"]
        keys: list[str] = node["partitionKeysByDimension"][0]["partitionKeys"]
        return keys

    def latest_metadata(self, asset: str, key: str) -> dict[str, str]:
        """The text metadata of one partition's newest materialization ({} if none)."""
        node = self.graphql(LATEST_METADATA_QUERY, {"path": [asset], "key": key})["assetNodeOrError"]
        records = node["assetMaterializations"]
        return {e["label"]: e.get("text", "") for e in records[0]["metadataEntries"]} if records else {}


@contextmanager
def dagster_dev(log: Path) -> Iterator[DagsterDev]:
    """`dagster dev` from the project, as the demo starts it: in a session of its own (SIGTERM then
    reaches every child, whatever job control there is), with this process's environment, SIGTERMed
    by the kernel if pytest dies; stopped by process group."""
    port = free_port()
    url = f"http://{demo.HOST}:{port}"
    process = demo.start_group(demo.dagster_dev_argv(port), log)
    try:
        demo.wait_for(f"{url}/server_info", demo.START_SECONDS, lambda: process.poll() is None)
        yield DagsterDev(url, process, log)
    except demo.DemoError as exc:
        raise AssertionError(f"{exc}\n{demo.log_tail(log)}") from None
    finally:
        demo.stop_group(process)
        assert not demo.group_members(process.pid), "dagster dev's process group outlived SIGKILL"


@dataclass
class DemoLike:
    """What a test may look at in a running demo-like setup."""

    home: Path
    env: dict[str, str]
    server: DagsterDev
    arranged: dict[str, str]
    keys: list[str] = field(default_factory=list)

    @property
    def dagster_home(self) -> Path:
        return Path(self.env["DAGSTER_HOME"])


@contextmanager
def demo_like(home: Path, *, reconcile: bool, leave_out: tuple[str, ...] = ()) -> Iterator[DemoLike]:
    """The demo's state under home, then `dagster dev` on it.

    reconcile: plan every pipeline first (as the demo does), else only add the partitions, minus
    leave_out (for catalog_sensor to add). The demo's settings are this process's environment
    while the block runs.
    """
    import dagster as dg

    from pipeline_sync.defs.partitions import PARTITIONS_NAME
    from pipeline_sync.rendering import Sources

    with pytest.MonkeyPatch.context() as patch, moto_server() as s3_url:
        settings = demo.demo_env(home, s3_url)
        for name in [n for n in os.environ if n.startswith(demo.FOREIGN_PREFIXES)]:
            patch.delenv(name)
        for name, value in settings.items():
            patch.setenv(name, value)
        demo.write_home_files(home, settings)
        arranged = demo.seed_bucket()
        keys = sorted(Sources.load(PROJECT / "catalog", PROJECT / "templates").catalog.targets)
        with dg.DagsterInstance.get() as instance:
            if reconcile:
                demo.first_reconcile(instance)
            else:
                instance.add_dynamic_partitions(PARTITIONS_NAME, [k for k in keys if k not in leave_out])
        try:
            with dagster_dev(home / "dagster-dev.log") as server:
                yield DemoLike(home, dict(os.environ), server, arranged, keys)
        finally:
            assert_nothing_left(Path(settings["DAGSTER_HOME"]))
