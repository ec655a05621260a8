"""Sensors: keep partitions equal to the catalog, and turn approvals into publish runs."""

from collections.abc import Iterator

import dagster as dg

from pipeline_sync.names import is_partition_key

from .assets import approval
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
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Publishes each approval whose digest is still the latest plan of its pipeline.",
)
def approval_sensor(context: dg.SensorEvaluationContext) -> Iterator[dg.RunRequest | dg.SkipReason]:
    after = int(context.cursor) if context.cursor else None
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=approval.key, after_storage_id=after),
        limit=MAX_APPROVALS_PER_TICK,
        ascending=True,
    ).records
    if not records:
        yield dg.SkipReason("no new approvals")
        return
    for record in records:
        key = record.partition_key
        materialization = record.asset_materialization
        if key is None or materialization is None:
            continue
        digest = materialization.metadata["plan_digest"].value
        approver = materialization.metadata["approver"].value
        latest = latest_metadata(context.instance, PLAN_ASSET, key).get("plan_digest")
        if digest != latest:
            context.log.warning(
                f"approval of {key} by {approver} names digest {str(digest)[:12]}, but the latest "
                f"plan is {str(latest)[:12]}: not publishing (stale approval)"
            )
            continue
        yield dg.RunRequest(
            run_key=f"publish:{key}:{digest}",
            partition_key=key,
            run_config={
                "ops": {"published_pipeline": {"config": {"plan_digest": digest, "approver": approver}}}
            },
            tags={
                "pipeline_sync/approver": str(approver),
                "pipeline_sync/plan_digest": str(digest),
            },
        )
    context.update_cursor(str(records[-1].storage_id))
