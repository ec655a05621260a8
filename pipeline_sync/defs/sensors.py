"""Sensors: keep partitions equal to the catalog, and turn approvals into publish runs."""

import dagster as dg

from pipeline_sync.names import is_partition_key

from .approvals import APPROVAL_ASSET, RecordedApproval, judge_record, signatures_pending
from .jobs import publish_job
from .partitions import PARTITIONS_NAME, pipeline_partitions
from .resources import CatalogResource
from .state import PLAN_ASSET, latest_metadata, read_leftover_keys

MAX_APPROVALS_PER_TICK = 200


@dg.sensor(
    name="catalog_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Keeps the pipelines partitions equal to the catalog (plus leftovers awaiting delete).",
)
def catalog_sensor(
    context: dg.SensorEvaluationContext, catalog: CatalogResource
) -> dg.SensorResult | dg.SkipReason:
    workspace = catalog.workspace()
    want = set(workspace.catalog.targets) | set(read_leftover_keys(context.instance))
    if workspace.catalog.defaults_error is not None:
        return dg.SkipReason(f"catalog defaults failed to load: {workspace.catalog.defaults_error}")
    failed = workspace.catalog.failed_services
    bad = sorted(k for k in want if not is_partition_key(k))
    for key in bad:
        context.log.warning(f"not a valid partition key, skipped: {key!r}")
    want -= set(bad)
    have = set(context.instance.get_dynamic_partitions(PARTITIONS_NAME))
    # Partitions of a service whose file failed to load are unknown, not gone: keep them.
    removable = {k for k in have - want if k.split("/")[0] not in failed}
    requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
    if want - have:
        requests.append(pipeline_partitions.build_add_request(sorted(want - have)))
    if removable:
        requests.append(pipeline_partitions.build_delete_request(sorted(removable)))
    if not requests:
        return dg.SkipReason(f"{len(have)} partitions already match the catalog")
    return dg.SensorResult(dynamic_partitions_requests=requests)


@dg.sensor(
    name="approval_sensor",
    job=publish_job,
    # One indexed query per tick; the sensor daemon's loop runs every 5 s, so a tick every loop
    # keeps approval-to-publish short.
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Publishes each recorded approval whose digest is still the latest plan of its pipeline.",
)
def approval_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    after = int(context.cursor) if context.cursor else None
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=APPROVAL_ASSET, after_storage_id=after),
        limit=MAX_APPROVALS_PER_TICK,
        ascending=True,
    ).records
    if not records:
        return dg.SkipReason("no new approvals")
    requests = [r for r in (_publish_request(context, record) for record in records) if r is not None]
    # Past every record read, whatever became of it: one bad event must never jam the sensor.
    cursor = str(records[-1].storage_id)
    if not requests:
        skipped = f"{len(records)} approval events read, none to publish"
        return dg.SensorResult(skip_reason=skipped, cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)


def _publish_request(context: dg.SensorEvaluationContext, record: dg.EventLogRecord) -> dg.RunRequest | None:
    """A publish run for one approval event, or None (logged) when it is not one to publish."""
    found = judge_record(context.instance, record)
    if not isinstance(found, RecordedApproval):
        context.log.warning(f"skipped: {found.reason}")
        return None
    pending = signatures_pending(context.instance, record, found.key, found.digest)
    if pending is not None:
        context.log.info(f"not publishing yet: {pending}")
        return None
    latest = latest_metadata(context.instance, PLAN_ASSET, found.key).get("plan_digest")
    if found.digest != latest:
        context.log.warning(
            f"approval of {found.key} by {found.approver} names digest {found.digest[:12]}, but the latest "
            f"plan is {str(latest)[:12]}: not publishing (stale approval)"
        )
        return None
    return dg.RunRequest(
        # The approval event is part of the key: a re-approval after a failed publish publishes.
        run_key=f"publish:{found.key}:{found.digest}:{found.storage_id}",
        partition_key=found.key,
        run_config={
            "ops": {
                "published_pipeline": {
                    "config": {"plan_digest": found.digest, "approval_storage_id": found.storage_id}
                }
            }
        },
        tags={
            "pipeline_sync/approver": found.approver,
            "pipeline_sync/plan_digest": found.digest,
            "pipeline_sync/approval_storage_id": str(found.storage_id),
        },
    )
