"""`make demo`'s program: it starts, prints where to go, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster_dev import PROJECT, free_port, group_alive

pytestmark = pytest.mark.e2e


def start_demo(tmp_path: Path, port: int, s3_port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PIPELINE_SYNC_", "DAGSTER_"))}
    with open(log, "wb") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline_sync.demo",
                "--port",
                str(port),
                "--s3-port",
                str(s3_port),
                "--home",
                str(tmp_path / "demo"),
            ],
            cwd=PROJECT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def test_demo_starts_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    port = free_port()
    demo = start_demo(tmp_path, port, free_port(), log)
    try:
        deadline = time.monotonic() + 180
        while b"demo is running" not in log.read_bytes():
            assert demo.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the demo did not start in 180 s"
            time.sleep(1)
        text = log.read_text()
        assert f"http://127.0.0.1:{port}" in text
        assert "drift     checkout/prod/deploy" in text and "create    search/prod/deploy" in text
        assert "pipeline-sync approve search/prod/deploy --digest" in text
        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        assert demo.wait(timeout=60) == 0
        deadline = time.monotonic() + 30
        while group_alive(demo.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not group_alive(demo.pid)
        children = subprocess.run(
            ["pgrep", "-f", str(tmp_path / "demo")], capture_output=True, text=True
        ).stdout
        assert children.strip() == "", f"left behind: {children}"
    finally:
        if group_alive(demo.pid):
            os.killpg(demo.pid, signal.SIGKILL)


def test_busy_port_gives_a_clear_message(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "pipeline_sync.demo", "--port", str(port), "--home", str(tmp_path / "d")],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
