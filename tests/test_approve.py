"""`pipeline-sync approve`: a refusal is one line, the reason the approval asset gave."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from pipeline_sync.approve import approve_in_dagster
from pipeline_sync.defs.partitions import PARTITIONS_NAME

KEY = "checkout/prod/deploy"


@pytest.mark.parametrize(
    ("approver", "digest", "reason"),
    [
        (
            "policy:approval=auto",
            "0" * 64,
            f"Approval refused for {KEY}: approver 'policy:approval=auto' must name a person; names "
            "starting with 'policy:' are reserved for the stack policy. Nothing was approved.",
        ),
        (
            "alice",
            "0" * 64,
            f"Approval refused for {KEY}: digest 000000000000 is not the latest plan (none yet). "
            "Materialize pipeline_plan for this partition, read its diff, and approve the digest it "
            "shows. Nothing was published.",
        ),
    ],
)
def test_a_refused_approval_prints_only_its_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, approver: str, digest: str, reason: str
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(PARTITIONS_NAME, [KEY])
    ok, message = approve_in_dagster(KEY, digest, approver)
    assert not ok
    assert message == reason
