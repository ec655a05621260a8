"""The `pipeline-sync` command: the CLI (pipeline_sync.cli.main), then an exit that skips freeing
the heap object by object.

After a plan of the bench's 10,000 pipelines has printed everything and its exit handlers have
run, the interpreter's teardown (clearing every module, freeing the plan's few hundred MiB one
object at a time) took another 0.32 to 0.35 s before the process ended (README, issue 19's ninth
round). Nothing is left to do then: every file a command writes is written through a context
manager or write_text and closed, every cache's transaction committed, every worker pool shut
down. So the exit handlers (atexit: logging's flush, concurrent.futures, tempfile's finalizers)
run as always, the standard streams are flushed, and the process ends with the status Python
would have given. An exception other than SystemExit (click turns errors and Ctrl-C into one)
takes Python's ordinary way out, traceback and teardown included.
"""

from __future__ import annotations

import atexit
import os
import sys

from pipeline_sync.cli import main

# Python's status when flushing standard output fails at exit (a closed pipe).
FLUSH_FAILED = 120


def run() -> None:
    """main() in click's standalone mode, which always ends in SystemExit; then exit_now."""
    try:
        main()
    except SystemExit as done:
        exit_now(done.code)
    exit_now(0)  # pragma: no cover - click's standalone main always raises SystemExit


def exit_now(code: object) -> None:
    """End the process as sys.exit(code) would, without the interpreter's teardown."""
    status = exit_status(code)
    if isinstance(code, str):
        print(code, file=sys.stderr)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe, a closed stream
            if stream is sys.stdout and status == 0:
                status = FLUSH_FAILED
    os._exit(status)


def exit_status(code: object) -> int:
    """The status sys.exit(code) gives: None is 0, an int itself (as the OS keeps it), else 1."""
    if code is None:
        return 0
    if isinstance(code, int):  # True is 1, as for sys.exit
        return int(code) & 0xFF
    return 1
