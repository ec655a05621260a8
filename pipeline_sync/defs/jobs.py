"""Jobs: plan one partition, approve it, publish it, or reconcile the whole fleet in one run.

Each runs its steps in the run's own process (in_process_executor): a one-partition run is a
second of work, and a step subprocess would cost several times that to start.
"""

from __future__ import annotations

import dagster as dg

from .assets import approval, fleet_plan, pipeline_plan, published_pipeline, rendered_pipeline

plan_job = dg.define_asset_job(
    "plan_job",
    selection=[rendered_pipeline, pipeline_plan],
    description="Render and plan one pipeline.",
    executor_def=dg.in_process_executor,
)
approval_job = dg.define_asset_job(
    "approval_job",
    selection=[approval],
    description="Approve one pipeline's plan digest.",
    executor_def=dg.in_process_executor,
)
publish_job = dg.define_asset_job(
    "publish_job",
    selection=[published_pipeline],
    description="Publish one approved plan to Front50.",
    executor_def=dg.in_process_executor,
)
reconcile_job = dg.define_asset_job(
    "reconcile_job",
    selection=[fleet_plan],
    description="Plan every pipeline in one run.",
    executor_def=dg.in_process_executor,
)
