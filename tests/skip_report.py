"""A pytest plugin for `make test` (`-p skip_report`): after the last line, what was skipped and why.

pytest's `-rs` lines sit above the totals among everything else; this block comes last, so a
machine without Chromium or PostgreSQL cannot pass `make test` with those tests silently left out.
"""

from __future__ import annotations

from collections import Counter

import pytest

HINT = (
    "These did not run. The browser test needs `bash .ci/install-browser.sh`; the PostgreSQL tests a\n"
    'server: `eval "$(bash .ci/start-postgres.sh)"`. Under CI=true (.ci/run) the browser and SQL\n'
    "store tests fail instead of skipping."
)


class SkipReport:
    """Counts skipped tests by file and reason; prints them when pytest is done."""

    def __init__(self) -> None:
        self.skipped: Counter[tuple[str, str]] = Counter()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._count(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._count(report)

    def _count(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
            self.skipped[(report.nodeid.split("::")[0], reason.removeprefix("Skipped: "))] += 1

    def lines(self) -> list[str]:
        total = sum(self.skipped.values())
        if not total:
            return []
        lines = [f"{total} test{'s' if total != 1 else ''} skipped:"]
        lines += [f"  {n:>4} in {where}: {why}" for (where, why), n in sorted(self.skipped.items())]
        return [*lines, HINT]


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SkipReport(), "skip_report_counts")


def pytest_unconfigure(config: pytest.Config) -> None:
    report = config.pluginmanager.get_plugin("skip_report_counts")
    lines = report.lines() if isinstance(report, SkipReport) else []
    if lines:
        writer = config.get_terminal_writer()
        writer.sep("=", "skipped by this run", yellow=True, bold=True)
        for line in lines:
            writer.line(line)
