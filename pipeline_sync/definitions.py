"""The Dagster code location: one explicit Definitions (workspace.yaml points here)."""

from __future__ import annotations

import dagster as dg

from pipeline_sync.defs.assets import (
    approval,
    catalog_source,
    fleet_plan,
    front50_live,
    pipeline_plan,
    published_pipeline,
    rendered_pipeline,
    templates_source,
)
from pipeline_sync.defs.jobs import approval_job, plan_job, publish_job, reconcile_job
from pipeline_sync.defs.resources import CatalogResource, Front50Resource
from pipeline_sync.defs.schedules import nightly_reconcile_schedule
from pipeline_sync.defs.sensors import approval_sensor, catalog_sensor

defs = dg.Definitions(
    assets=[
        catalog_source,
        templates_source,
        front50_live,
        rendered_pipeline,
        pipeline_plan,
        approval,
        published_pipeline,
        fleet_plan,
    ],
    jobs=[plan_job, approval_job, publish_job, reconcile_job],
    schedules=[nightly_reconcile_schedule],
    sensors=[catalog_sensor, approval_sensor],
    resources={"catalog": CatalogResource(), "front50": Front50Resource()},
)
