"""`make test`'s closing block (tests/skip_report.py): every skipped test counted, with its reason, last."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

SKIPPING = """\
import pytest

def test_runs():
    pass

@pytest.mark.skip(reason="needs a thing")
def test_marked():
    pass

@pytest.mark.parametrize("n", [1, 2])
def test_skips_itself(n):
    pytest.skip("needs /usr/bin/chromium: run bash .ci/install-browser.sh")

@pytest.mark.xfail(reason="an expected failure is not a skip")
def test_xfail():
    assert False
"""
MODULE = 'import pytest\npytest.skip("no server", allow_module_level=True)\n'


def run_pytest(folder: Path) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    args = [sys.executable, "-m", "pytest", "-q", "-p", "skip_report", "-p", "no:cacheprovider", str(folder)]
    done = subprocess.run(args, cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    return done.stdout.splitlines()


def test_skips_are_listed_by_file_and_reason_after_everything_else(tmp_path: Path) -> None:
    (tmp_path / "test_some.py").write_text(SKIPPING)
    (tmp_path / "test_module.py").write_text(MODULE)
    lines = run_pytest(tmp_path)
    start = next(i for i, line in enumerate(lines) if "skipped by this run" in line)
    assert "1 passed, 4 skipped, 1 xfailed" in lines[start - 1]  # after pytest's own totals
    assert lines[start + 1 :] == [
        "4 tests skipped:",
        "     1 in test_module.py: no server",
        "     2 in test_some.py: needs /usr/bin/chromium: run bash .ci/install-browser.sh",
        "     1 in test_some.py: needs a thing",
        "These did not run. The browser test needs `bash .ci/install-browser.sh`; the PostgreSQL tests a",
        'server: `eval "$(bash .ci/start-postgres.sh)"`. Under CI=true (.ci/run) the browser and SQL',
        "store tests fail instead of skipping.",
    ]


def test_a_run_without_skips_adds_nothing(tmp_path: Path) -> None:
    (tmp_path / "test_fine.py").write_text("def test_runs():\n    pass\n")
    lines = run_pytest(tmp_path)
    assert "1 passed" in lines[-1] and not any("skipped" in line for line in lines)
