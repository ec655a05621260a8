"""The installed `pipeline-sync` command (pipeline_sync.command.run): the output and exit status
of the CLI exactly as Python's ordinary exit leaves them (pipeline_sync.cli.main called as the
script did before), with only the interpreter's teardown skipped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_sync.command import exit_status

ROOT = Path(__file__).resolve().parents[1]
FAST = "import sys; from pipeline_sync.command import run; sys.argv[0] = 'pipeline-sync'; run()"
ORDINARY = "import sys; from pipeline_sync.cli import main; sys.argv[0] = 'pipeline-sync'; sys.exit(main())"


def both(*args: str, prelude: str = "", cwd: Path | None = None) -> tuple[tuple[int, str, str], ...]:
    """(status, stdout, stderr) of the command through run(), then through main() alone."""
    found = []
    for script in (FAST, ORDINARY):
        done = subprocess.run(
            [sys.executable, "-c", prelude + script, *args],
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=120,
        )
        found.append((done.returncode, done.stdout, done.stderr))
    return tuple(found)


@pytest.mark.parametrize(
    ("code", "status"), [(None, 0), (0, 0), (2, 2), (256, 0), (-1, 255), (True, 1), ("stopped", 1)]
)
def test_the_status_is_the_one_sys_exit_gives(code: object, status: int) -> None:
    assert exit_status(code) == status
    ordinary = subprocess.run([sys.executable, "-c", f"import sys; sys.exit({code!r})"], capture_output=True)
    assert ordinary.returncode == status


@pytest.mark.parametrize("args", [("--help",), ("no-such-verb",), ("plan", "--no-such-option")])
def test_help_and_usage_errors_are_as_before(args: tuple[str, ...]) -> None:
    fast, ordinary = both(*args)
    assert fast == ordinary
    assert fast[1] or fast[2]


def test_a_validate_of_the_example_and_of_a_broken_catalog_are_as_before(tmp_path: Path) -> None:
    example = both("validate", cwd=ROOT)
    assert example[0] == example[1]
    assert example[0][0] == 0 and "targets" in example[0][1] + example[0][2]
    shutil.copytree(ROOT / "catalog", tmp_path / "catalog")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    (tmp_path / "catalog" / "services" / "broken.yaml").write_text("service: [unclosed\n")
    broken = both("validate", cwd=tmp_path)
    assert broken[0] == broken[1]
    assert broken[0][0] != 0 and "broken.yaml" in broken[0][1] + broken[0][2]


def test_exit_handlers_run_and_buffered_output_is_flushed_after_the_cli_ends() -> None:
    """An exit handler registered before the CLI runs, writing to a buffered stdout, is seen."""
    prelude = "import atexit; atexit.register(lambda: print('handler ran', end=''));"
    fast, ordinary = both("--help", prelude=prelude)
    assert fast == ordinary
    assert fast[1].endswith("handler ran")


def test_a_stdout_whose_reader_is_gone_gives_the_status_python_gives() -> None:
    """A pipe closed at its reading end before the command starts: every write fails."""
    statuses = []
    for script in (FAST, ORDINARY):
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            child = subprocess.run(
                [sys.executable, "-c", script, "--help"],
                stdout=write_end,
                stderr=subprocess.DEVNULL,
                timeout=120,
            )
        finally:
            os.close(write_end)
        statuses.append(child.returncode)
    assert statuses[0] == statuses[1]
    assert statuses[0] != 0
