"""The code location discovers what defs/ defines: nothing added there is silently left out."""

from __future__ import annotations

import dagster as dg

from pipeline_sync.definitions import defs


def test_everything_in_defs_is_loaded_with_the_resources_it_needs() -> None:
    dg.Definitions.validate_loadable(defs)
    assets = {node.key.to_user_string() for node in defs.resolve_asset_graph().asset_nodes}
    assert assets == {
        "approval",
        "catalog_source",
        "fleet_plan",
        "front50_live",
        "pipeline_plan",
        "published_pipeline",
        "rendered_pipeline",
        "templates_source",
    }
    assert sorted(job.name for job in defs.jobs or []) == [
        "approval_job",
        "plan_job",
        "publish_job",
        "reconcile_job",
    ]
    assert sorted(sensor.name for sensor in defs.sensors or []) == ["approval_sensor", "catalog_sensor"]
    assert [schedule.name for schedule in defs.schedules or []] == ["nightly_reconcile_schedule"]
    assert sorted((defs.resources or {}).keys()) == ["catalog", "front50"]
