"""The pure core imports no I/O library: planning can be reasoned about (and tested) without a store."""

from __future__ import annotations

import subprocess
import sys

import pytest

CORE = (
    "catalog",
    "render",
    "validate",
    "plan",
    "ownership",
    "status",
    "report",
    "diff",
    "provenance",
    "live",
    "identity",
    "store",
    "store.front50",
)
IO_LIBRARIES = ("boto3", "botocore", "dagster", "sqlite3", "platformdirs")


@pytest.mark.parametrize("module", CORE)
def test_core_module_loads_no_io_library(module: str) -> None:
    probe = (
        f"import sys, pipeline_sync.{module}; "
        f"print(','.join(m for m in {IO_LIBRARIES!r} if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == ""


def test_the_engine_reaches_stores_only_through_the_protocol() -> None:
    probe = "import sys, pipeline_sync.engine; print('boto3' in sys.modules, 'dagster' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.split() == ["False", "False"]
