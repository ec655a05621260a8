"""`make demo`'s program for real: it starts, says where to go, and Ctrl-C leaves nothing behind.

Each demo runs in a process group of its own, as a terminal's foreground job would, and gets
SIGINT the way Ctrl-C sends it: to that group.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster_dev import PROJECT, assert_nothing_left, free_port, processes_using, wait_until

from pipeline_sync import demo as demo_module
from pipeline_sync.demo_seed import CONFLICT_KEY, DRIFT_KEY, MISSING_KEY

pytestmark = pytest.mark.e2e

START_SECONDS = 180


@dataclass
class Demo:
    process: subprocess.Popen[bytes]
    home: Path
    port: int
    s3_port: int
    out: Path
    err: Path

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster_home"

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_for_output(self, text: str, seconds: float = START_SECONDS) -> str:
        def seen() -> str | None:
            assert self.process.poll() is None, (
                f"the demo exited early:\n{self.stdout()}\n{self.err.read_text()}"
            )
            return self.stdout() if text in self.stdout() else None

        return wait_until(f"{text!r} on the demo's stdout", seen, seconds)

    def ctrl_c(self) -> int:
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout=60)


def demo_argv(port: int, s3_port: int, home: Path) -> list[str]:
    options = ["--port", str(port), "--s3-port", str(s3_port), "--home", str(home)]
    return [sys.executable, "-m", "pipeline_sync.demo", *options]


@contextmanager
def running_demo(tmp_path: Path, home: Path, port: int, s3_port: int, name: str = "demo") -> Iterator[Demo]:
    out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        process = subprocess.Popen(
            demo_argv(port, s3_port, home),
            cwd=PROJECT,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    demo = Demo(process, home, port, s3_port, out, err)
    try:
        yield demo
    finally:
        if process.poll() is None:  # the test failed midway: leave nothing running
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        assert_nothing_left(demo.dagster_home, seconds=30)


def assert_stopped_cleanly(demo: Demo) -> None:
    assert demo.ctrl_c() == 0, demo.err.read_text()
    assert "Stopping the demo" in demo.err.read_text()
    assert_nothing_left(demo.dagster_home)
    assert demo_module.port_free(demo.port) and demo_module.port_free(demo.s3_port)


def test_demo_starts_twice_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    home, port, s3_port = tmp_path / "home", free_port(), free_port()
    for attempt in ("first", "second"):  # the second run reuses the home and the ports
        with running_demo(tmp_path, home, port, s3_port, attempt) as demo:
            text = demo.wait_for_output(f"pipeline-sync demo is running: http://127.0.0.1:{port}")
            assert f"drift     {DRIFT_KEY}" in text and f"create    {MISSING_KEY}" in text
            assert f"conflict  {CONFLICT_KEY}" in text
            approve = re.search(
                rf"pipeline-sync approve {MISSING_KEY} --digest ([0-9a-f]{{64}}) --approver", text
            )
            assert approve, text
            assert f"source {home / 'env.sh'}" in text
            assert len(processes_using(demo.dagster_home)) >= 4  # the demo, dagster dev and its servers
            if attempt == "first":
                busy = subprocess.run(
                    demo_argv(free_port(), free_port(), home), cwd=PROJECT, capture_output=True, text=True
                )
                assert busy.returncode == 1
                assert f"another demo (pid {demo.process.pid}) is running from {home}" in busy.stderr
            assert_stopped_cleanly(demo)


def test_demo_interrupted_while_starting_leaves_nothing(tmp_path: Path) -> None:
    with running_demo(tmp_path, tmp_path / "home", free_port(), free_port()) as demo:
        demo.wait_for_output("Starting dagster dev")
        time.sleep(1)  # dagster dev is importing, or starting its code server
        assert_stopped_cleanly(demo)
        assert "demo is running" not in demo.stdout()


@pytest.mark.parametrize("busy_option", ["--port", "--s3-port"])
def test_a_busy_port_gives_a_clear_message(tmp_path: Path, busy_option: str) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        port, s3_port = (busy, free_port()) if busy_option == "--port" else (free_port(), busy)
        result = subprocess.run(
            demo_argv(port, s3_port, tmp_path / "home"),
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    option = "--port / DEMO_PORT" if busy_option == "--port" else "--s3-port / DEMO_S3_PORT"
    assert result.stderr == (
        f"error: port {busy} on 127.0.0.1 is already in use; free it or choose another with {option}.\n"
    )
    assert not (tmp_path / "home").exists(), "nothing is set up before the ports are checked"
