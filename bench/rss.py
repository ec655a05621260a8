"""Run a command from a small process, and record its wall time, CPU time and its own peak RSS.

    python -m bench.rss RESULT.json -- COMMAND [ARG...]

Linux carries a process's high-water RSS over into the program it execs (the kernel keeps the
old address space's peak), and a child forked from a large parent starts from the parent's
pages. A child started straight from the bench (which holds a whole rendered fleet) would so
report at least the bench's RSS. Started from this small launcher instead, wait4's ru_maxrss
is the command's own, give or take the launcher's few MiB. Its CPU time (user + system) counts
the processes it forked and waited for too (render and diff workers).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    out, command = argv[0], argv[2:]
    started = time.perf_counter()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    with open(out, "w") as handle:
        json.dump(
            {
                "seconds": seconds,
                "cpu_seconds": usage.ru_utime + usage.ru_stime,
                "maxrss_kib": usage.ru_maxrss,
                "returncode": process.returncode,
            },
            handle,
        )
    return process.returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
