"""The nightly reconcile: one run over every pipeline."""

from __future__ import annotations

import dagster as dg

from .jobs import reconcile_job

nightly_reconcile_schedule = dg.ScheduleDefinition(
    name="nightly_reconcile_schedule",
    job=reconcile_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Plan every pipeline at 02:00 UTC in a single run; auto-approve stacks with approval: auto.",
)
