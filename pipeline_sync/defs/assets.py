# Dagster reads the context annotations at definition time, so no postponed annotations here.
"""Assets: catalog and templates -> rendered pipeline -> plan (vs live Front50) -> approval -> published."""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from pipeline_sync import engine
from pipeline_sync.engine import Selection
from pipeline_sync.names import is_partition_key
from pipeline_sync.plan import Plan, PlanEntry, fleet_summary, plan_digest
from pipeline_sync.rendering import Sources, render_all
from pipeline_sync.report import (
    change_lines,
    diff_markdown,
    display_status,
    entry_summary,
    fleet_markdown,
)
from pipeline_sync.status import Status

from .approvals import (
    APPROVAL_ASSET,
    AUTO_APPROVER,
    RecordedApproval,
    is_reserved_approver,
    policy_may_approve,
    recorded_approval,
    signed_approval_metadata,
    signed_statements,
)
from .eventlog import log_groups
from .operator import (
    STATUS_CHECK_SPECS,
    STATUS_CHECKS_MAX_ENV,
    approval_log_lines,
    approval_metadata,
    checked_partitions,
    fleet_check_events,
    partition_path,
    plan_targets,
    run_refusal,
    status_check_events,
    status_check_results,
)
from .partitions import PARTITIONS_NAME, pipeline_partitions
from .resources import CatalogResource, Front50Resource
from .state import (
    PLAN_ASSET,
    latest_metadata,
    read_plan_state,
    state_value,
    write_leftover_keys,
    write_plan_state,
)

catalog_source = dg.AssetSpec(
    "catalog_source",
    description="The catalog/ YAML files: services, stacks, variables (edited in git).",
    group_name="inputs",
    kinds={"yaml"},
)
templates_source = dg.AssetSpec(
    "templates_source",
    description="The templates/ Jinja2 + YAML pipeline templates (edited in git).",
    group_name="inputs",
    kinds={"jinja"},
)
front50_live = dg.AssetSpec(
    "front50_live",
    description="The pipeline as Front50 holds it, in its bucket or SQL database (observed when plans run).",
    group_name="inputs",
    partitions_def=pipeline_partitions,
    kinds={"s3"},
)


def plan_metadata(entry: PlanEntry) -> dict[str, Any]:
    """What a plan materialization shows. An in-sync plan with nothing to show carries no diff
    block and no empty messages: most of a first reconcile's events are such plans."""
    values: dict[str, Any] = entry_summary(entry)
    if entry.status is Status.IN_SYNC and not entry.unified:
        if not entry.messages:
            del values["messages"]
        return values
    changes = change_lines(entry)
    if changes:  # the same summary the CLI and the Markdown report print above the diff
        values["change"] = "\n".join(changes)
    values["diff"] = dg.MetadataValue.md(diff_markdown(entry))
    if entry.drift_fields:
        values["drift_fields"] = ", ".join(entry.drift_fields)
    values.update(approval_metadata(entry))
    return values


def live_observation(entry: PlanEntry) -> dg.AssetObservation:
    version = entry.live_etag or "absent"
    return dg.AssetObservation(
        front50_live.key,
        partition=entry.key,
        metadata={"etag": version, "pipeline_id": entry.pipeline_id or ""},
        tags={"dagster/data_version": version},
    )


@dg.asset(
    partitions_def=pipeline_partitions,
    deps=[catalog_source, templates_source],
    group_name="pipelines",
    kinds={"python"},
    check_specs=[dg.AssetCheckSpec("pipeline_is_valid", asset="rendered_pipeline", blocking=True)],
)
def rendered_pipeline(
    context: dg.AssetExecutionContext, catalog: CatalogResource, front50: Front50Resource
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    """Render one pipeline from its catalog entry and template, and validate it."""
    key = context.partition_key
    workspace = catalog.workspace(front50.caches())
    if key not in workspace.catalog.targets:
        note = "not in the catalog (any live copy is an orphan or delete entry of the plan)"
        return dg.MaterializeResult(
            metadata={"in_catalog": False, "note": note},
            check_results=[dg.AssetCheckResult(passed=True, metadata={"note": note})],
        )
    outcome = render_all(workspace, [key])[key]
    problems = "\n".join(outcome.problems)
    for problem in outcome.problems:
        context.log.error(problem)
    metadata: dict[str, Any] = {"in_catalog": True, "valid": outcome.valid, "problems": problems}
    if outcome.rendered is not None:
        metadata.update(
            pipeline_id=outcome.rendered.pipeline_id,
            render_digest=outcome.rendered.digest,
            name=str(outcome.rendered.document.get("name", "")),
        )
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                passed=outcome.valid,
                metadata={"problems": problems or "none"},
                description=problems or "the rendered pipeline is valid",
            )
        ],
    )


# Not downstream of rendered_pipeline: the plan renders for itself, so materialising one
# partition of it alone raises no "upstream data missing" warning in the UI.
@dg.asset(
    partitions_def=pipeline_partitions,
    deps=[catalog_source, templates_source, front50_live],
    group_name="pipelines",
    kinds={"python"},
    check_specs=STATUS_CHECK_SPECS,
)
def pipeline_plan(
    context: dg.AssetExecutionContext, catalog: CatalogResource, front50: Front50Resource
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    """Diff one pipeline against Front50's live copy: status, plan digest, and the diff."""
    key = context.partition_key
    with front50.opened() as store:
        plan = engine.plan(catalog.workspace(front50.caches()), store, Selection.of([key]))
    entry = plan.entries.get(key) or _gone(key)
    context.log.info(f"{key}: {display_status(entry)} (plan digest {entry.digest})")
    for message in entry.messages:
        context.log.info(message)
    if entry.unified:  # what `pipeline-sync plan` prints: the change, then the unified diff
        context.log.info("\n".join([f"diff of {key}:", *change_lines(entry), entry.unified]))
    if entry.diff_yaml:
        context.log.debug(f"DeepDiff of {key} (stages keyed by refId):\n{entry.diff_yaml}")
    for line in approval_log_lines(entry):
        context.log.info(line)
    context.log_event(live_observation(entry))
    # The plan read exactly this live version: Dagster fetched its inputs' versions when the step
    # started, so forget them and let the plan record the one just observed, or every plan that
    # sees a new live version would be marked "Unsynced" by its own observation.
    context.get_step_execution_context().wipe_input_asset_version_info(front50_live.key)
    write_plan_state(context.instance, [entry])
    return dg.MaterializeResult(metadata=plan_metadata(entry), check_results=status_check_results(entry))


def _gone(key: str) -> PlanEntry:
    return PlanEntry(
        key=key,
        status=Status.IN_SYNC,
        digest=plan_digest(key, None, None),
        messages=("neither in the catalog nor in the bucket: nothing to do",),
    )


class ApprovalConfig(dg.Config):
    """Approve exactly one plan: the digest shown in the plan's metadata. Where the stack has
    approvers, paste the output of `pipeline-sync approve KEY --digest D --sign KEYFILE --print`
    into signed_statement (a YAML block: `signed_statement: |`); approver may then stay empty."""

    plan_digest: str
    approver: str = ""
    signed_statement: str = ""


@dg.asset(
    partitions_def=pipeline_partitions,
    deps=[pipeline_plan],
    group_name="pipelines",
    kinds={"python"},
)
def approval(
    context: dg.AssetExecutionContext,
    config: ApprovalConfig,
    catalog: CatalogResource,
    front50: Front50Resource,
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    """A person's approval of exactly one plan digest of this pipeline."""
    key = context.partition_key
    workspace = catalog.workspace(front50.caches())
    policy = workspace.catalog.approver_policy(key)
    signed: dict[str, Any] = {}
    if policy is not None:
        with front50.opened() as store:
            signed = signed_approval_metadata(
                policy, store, key, config.plan_digest, config.signed_statement, config.approver
            )
    approver = str(signed.get("approver", config.approver))
    if not approver.strip() or is_reserved_approver(approver):
        raise run_refusal(
            f"Approval refused for {key}: approver {config.approver!r} must name a person; "
            "names starting with 'policy:' are reserved for the stack policy. Nothing was approved.",
        )
    latest = latest_metadata(context.instance, PLAN_ASSET, key)
    latest_digest = latest.get("plan_digest")
    if latest_digest != config.plan_digest:
        raise run_refusal(
            f"Approval refused for {key}: digest {config.plan_digest[:12]} is not the latest "
            f"plan ({str(latest_digest)[:12] if latest_digest else 'none yet'}). Materialize pipeline_plan "
            "for this partition, read its diff, and approve the digest it shows. Nothing was published."
        )
    with front50.opened() as store:
        entry = engine.plan(workspace, store, Selection.of([key])).entries.get(key)
    refusal = engine.approval_refusal(
        entry, key, config.plan_digest, approver=approver, policy=False, approvers=policy
    )
    if refusal is None and entry is not None and entry.status is Status.IN_SYNC:
        refusal = engine.Refusal("failed", f"{key}: already in sync; there is nothing to approve")
    if refusal is not None or entry is None:
        reason = refusal.message if refusal is not None else f"{key}: not planned"
        raise run_refusal(f"Approval refused: {reason} Nothing was approved.")
    context.log.info(f"{approver} approved {key} at plan digest {entry.digest}")
    return dg.MaterializeResult(
        metadata={
            "approver": approver,
            "plan_digest": entry.digest,
            "status": str(entry.status),
            **signed,
        }
    )


class PublishConfig(dg.Config):
    """Filled in by the approval sensor: the digest to publish and the approval event that allows it."""

    plan_digest: str
    # The storage id of the approval event; without it, the newest qualifying approval of the digest.
    approval_storage_id: int | None = None
    # Ignored, kept so older run configs still load: the approver comes from the approval event.
    approver: str | None = None


@dg.asset(
    partitions_def=pipeline_partitions,
    deps=[approval],
    group_name="pipelines",
    kinds={"s3"},
)
def published_pipeline(
    context: dg.AssetExecutionContext,
    config: PublishConfig,
    catalog: CatalogResource,
    front50: Front50Resource,
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    """The pipeline written to Front50's store (bucket or SQL database), after its exact plan was approved."""
    key = context.partition_key
    approved = _approval_to_publish(context, key, config)
    workspace = catalog.workspace(front50.caches())
    signed = signed_statements(context.instance, key, approved.digest)
    with front50.opened() as store:
        result = engine.apply(
            workspace,
            store,
            {key: approved.digest},
            approver=approved.approver,
            policy=approved.by_policy,
            signed=signed,
        )[0]
        where = store.describe()
    if result.outcome != "applied":
        raise dg.Failure(description=f"Not published: {result.message}", allow_retries=False)
    context.log.info(result.message)
    after = result.after or _gone(key)  # what a re-plan would show, without listing the store again
    context.log_event(
        dg.AssetMaterialization(
            PLAN_ASSET,
            partition=key,
            metadata={**plan_metadata(after), "display_status": f"published by {approved.approver}"},
        )
    )
    targets = plan_targets(context.instance, context.run.run_id, [key])
    for check in status_check_events(after, targets.get(key)):
        context.log_event(check)
    write_plan_state(context.instance, [after])
    return dg.MaterializeResult(
        metadata={
            "approver": result.approver or approved.approver,
            "signed_by": result.signed_by or "unsigned",
            "plan_digest": approved.digest,
            "approval_storage_id": approved.storage_id,
            "approval_run_id": approved.run_id,
            "operation": result.status or "",
            "store": where,  # never credentials
            # The store's precondition token and version (named s3_* since the first, S3-only
            # release; on SQL the body's SHA-256 and <last_modified_at>-<body_sig>).
            "s3_etag": result.etag or "",
            "s3_version_id": result.version_id or "",
            "display_status": "published",
        }
    )


def _approval_to_publish(
    context: dg.AssetExecutionContext, key: str, config: PublishConfig
) -> RecordedApproval:
    """The recorded approval this run publishes under; a one-line Failure when there is none."""
    found = recorded_approval(context.instance, key, config.plan_digest, config.approval_storage_id)
    if not isinstance(found, RecordedApproval):
        raise dg.Failure(
            description=f"Not published: {found.reason} Nothing was written.", allow_retries=False
        )
    if config.approver is not None and config.approver != found.approver:
        context.log.warning(
            f"publish config names approver {config.approver!r}; ignored, the approval event "
            f"{found.storage_id} records {found.approver!r}."
        )
    context.log.info(
        f"{key}: publishing digest {found.digest} approved by {found.approver} "
        f"(approval event {found.storage_id}, run {found.run_id})."
    )
    return found


@dg.asset(
    deps=[catalog_source, templates_source, front50_live],
    group_name="fleet",
    kinds={"python"},
)
def fleet_plan(
    context: dg.AssetExecutionContext, catalog: CatalogResource, front50: Front50Resource
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    """Reconcile every pipeline in one run; record only partitions whose plan changed."""
    checks = front50.fleet_status_checks()  # a wrong setting fails before anything is planned
    checks_max = front50.fleet_status_checks_max()

    def load() -> Sources:  # its errors logged before the plan, which may fail
        loaded = catalog.workspace(front50.caches())
        for error in loaded.catalog.errors:
            context.log.error(str(error))
        return loaded

    with front50.opened() as store:
        # the store is read while the catalog loads and renders (engine.plan_loading)
        workspace, plan = engine.plan_loading(load, store)
        _ensure_partitions(context, plan)
        previous = read_plan_state(context.instance, plan.entries)
        changed = [e for e in plan.entries.values() if previous.get(e.key) != state_value(e)]
        auto = {e.key: e.digest for e in changed if is_partition_key(e.key) and policy_may_approve(e)}
        refusals = engine.policy_refusals(workspace, store, auto)
    # A pipeline first seen in sync asks nothing of anyone: its state is kept for the next run,
    # but no event is written for it (10,000 of them would cost a first run on sqlite about 80 s:
    # docs/dagster-events.md); its partition shows a plan once its plan changes, or when planned.
    recorded = [e for e in changed if e.key in previous or e.status is not Status.IN_SYNC]
    log_groups(context, list(_partition_events(recorded, refusals, context.log)))
    # After the plans they judge (a result shows only while it targets the latest plan).
    judged = checked_partitions(recorded, checks)
    skipped = _skipped_checks(context, judged, checks_max)
    if skipped:
        judged = []
    targets = plan_targets(context.instance, context.run.run_id, judged)
    judged_keys = set(judged)
    checked = [e for e in recorded if e.key in judged_keys]
    log_groups(context, [list(fleet_check_events([e], targets, checks)) for e in checked])
    write_plan_state(context.instance, changed)
    write_leftover_keys(
        context.instance,
        [k for k, e in plan.entries.items() if e.status in {Status.ORPHAN, Status.DELETE, Status.UNKNOWN}],
    )
    summary = fleet_summary(plan)
    text = fleet_markdown(summary, plan, len(changed), link=partition_path)
    context.log.info(text)
    return dg.MaterializeResult(
        metadata={
            "pipelines": len(plan.entries),
            "changed_since_last_run": len(changed),
            "partitions_recorded": len(recorded),
            "status_checks_skipped": skipped,
            **{f"count_{status}": n for status, n in summary["counts"].items()},
            "summary": dg.MetadataValue.md(text),
            "drift": ", ".join(summary["drift"]) or "none",
            "conflict": ", ".join(summary["conflict"]) or "none",
            "pending": ", ".join(summary["pending"]) or "none",
        }
    )


def _skipped_checks(context: dg.AssetExecutionContext, judged: list[str], checks_max: int) -> int:
    """How many partitions' status checks this run leaves unrecorded: all of judged when there
    are more than checks_max (one event per changed partition in a large batch), else none."""
    if len(judged) <= checks_max:
        return 0
    context.log.info(
        f"Recorded no status check events for the {len(judged)} changed partitions that would get "
        f"them: more than status_checks_max ({checks_max}; front50.status_checks_max or "
        f"{STATUS_CHECKS_MAX_ENV}), so this run writes one event per changed partition. Each "
        "plan's metadata and this run's summary show their status; a one-partition plan of "
        "pipeline_plan records its checks."
    )
    return len(judged)


def _ensure_partitions(context: dg.AssetExecutionContext, plan: Plan) -> None:
    have = set(context.instance.get_dynamic_partitions(PARTITIONS_NAME))
    missing = sorted(k for k in plan.entries if k not in have and is_partition_key(k))
    if missing:
        context.instance.add_dynamic_partitions(PARTITIONS_NAME, missing)


def _partition_events(
    changed: list[PlanEntry], refusals: dict[str, str | None], log: Any
) -> Iterator[list[dg.AssetMaterialization]]:
    """Each changed partition's events, in the order they must be written: its plan, then any
    policy approval of it (an approval counts only after a plan of its digest)."""
    for entry in changed:
        if not is_partition_key(entry.key):
            continue
        # One event per changed partition: the plan's metadata carries the live ETag, so the
        # reconcile writes no front50_live observation beside it (pipeline_plan still does).
        events = [dg.AssetMaterialization(PLAN_ASSET, partition=entry.key, metadata=plan_metadata(entry))]
        if entry.key in refusals:  # one stack policy may approve
            refusal = refusals[entry.key]  # from a fresh render and read: no cache decides
            if refusal is not None:
                log.warning(f"not auto-approved: {refusal}")
            else:
                events.append(_policy_approval(entry))
        yield events


def _policy_approval(entry: PlanEntry) -> dg.AssetMaterialization:
    return dg.AssetMaterialization(
        APPROVAL_ASSET,
        partition=entry.key,
        metadata={
            "approver": AUTO_APPROVER,
            "plan_digest": entry.digest,
            "status": str(entry.status),
            "adopt": entry.adopt,
        },
    )
