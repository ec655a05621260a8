"""`pipeline-sync approve`: materialise the approval asset of one partition on the Dagster instance."""

from __future__ import annotations

import os
from typing import Any

from pipeline_sync.names import is_partition_key


def approve_in_dagster(key: str, digest: str, approver: str, signed_statement: str = "") -> tuple[bool, str]:
    """Run approval_job for key on DAGSTER_HOME's instance; (ok, message). signed_statement is a
    signed approval (pipeline_sync.signing), required where the stack has approvers."""
    if not is_partition_key(key):
        return False, f"{key!r} is not a partition key (service/stack/template, lower-case)."
    if not os.environ.get("DAGSTER_HOME"):
        return False, "DAGSTER_HOME is not set: point it at the Dagster instance the daemon uses."
    import dagster as dg

    from pipeline_sync.definitions import defs
    from pipeline_sync.defs.partitions import PARTITIONS_NAME

    try:
        instance = dg.DagsterInstance.get()
    except dg.DagsterInvariantViolationError as exc:
        return False, f"cannot open the Dagster instance: {exc}"
    if not instance.has_dynamic_partition(PARTITIONS_NAME, key):
        return False, f"{key} is not a known partition; wait for catalog_sensor or check the key."
    result = defs.resolve_job_def("approval_job").execute_in_process(
        instance=instance,
        partition_key=key,
        run_config={
            "ops": {
                "approval": {
                    "config": {
                        "approver": approver,
                        "plan_digest": digest,
                        "signed_statement": signed_statement,
                    }
                }
            },
            # The run's events are stored as always; the terminal gets only this command's verdict.
            "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
        },
        raise_on_error=False,
        tags={"pipeline_sync/approver": approver},
    )
    if result.success:
        return True, (
            f"Approved {key} at digest {digest[:12]} as {approver}{' (signed)' if signed_statement else ''} "
            f"(run {result.run_id}). approval_sensor publishes it once its stack's approvals are in."
        )
    failures = [_reason(event) for event in result.all_events if event.is_step_failure]
    return False, next((f for f in failures if f), f"approval run {result.run_id} failed")


def _reason(event: Any) -> str:
    """The one-line reason the approval asset gave (dg.Failure's description), else the error."""
    data = event.step_failure_data
    if data is None:
        return ""
    if data.user_failure_data is not None and data.user_failure_data.description:
        return str(data.user_failure_data.description).strip()
    return data.error.message.strip() if data.error else ""
