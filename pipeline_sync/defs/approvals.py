"""Which approval events count: a person's approval run, or the stack policy's reconcile run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg

from pipeline_sync.approvers import ApproverPolicy, judge
from pipeline_sync.engine import AUTO_APPROVER, is_reserved_approver
from pipeline_sync.names import is_partition_key
from pipeline_sync.plan import PlanEntry
from pipeline_sync.signing import SignedApproval, SigningError, now_utc, parse_signed, store_identity
from pipeline_sync.status import AUTO_APPROVABLE
from pipeline_sync.store import Store

from .operator import run_refusal
from .partitions import PARTITIONS_NAME
from .state import PLAN_ASSET

__all__ = [
    "APPROVAL_ASSET",
    "AUTO_APPROVER",
    "PUBLISHED_ASSET",
    "RecordedApproval",
    "Refusal",
    "is_reserved_approver",
    "judge_record",
    "policy_may_approve",
    "recorded_approval",
    "signatures_pending",
    "signed_approval_metadata",
    "signed_statements",
]

APPROVAL_ASSET = dg.AssetKey("approval")
PUBLISHED_ASSET = dg.AssetKey("published_pipeline")
# Step keys of the only two steps that may record an approval; tests pin them to the assets.
APPROVAL_STEP = "approval"
POLICY_STEP = "fleet_plan"
_PAGE = 200


@dataclass(frozen=True)
class RecordedApproval:
    """An approval event that may be published: who approved which digest of which partition."""

    key: str
    digest: str
    approver: str
    storage_id: int
    run_id: str
    by_policy: bool


@dataclass(frozen=True)
class Refusal:
    """Why an approval event (or the lack of one) does not let a partition be published."""

    key: str | None
    reason: str


def policy_may_approve(entry: PlanEntry) -> bool:
    """A stack policy approves creates and updates of its stacks, never adoptions, drift or deletes."""
    return entry.policy_approvable


def recorded_approval(
    instance: dg.DagsterInstance, key: str, digest: str, storage_id: int | None = None
) -> RecordedApproval | Refusal:
    """The approval event storage_id, or else the newest one, that lets key be published at digest."""
    if storage_id is not None:
        record = next(_records(instance, APPROVAL_ASSET, key, storage_ids=[storage_id]), None)
        if record is None:
            return Refusal(
                key,
                f"there is no approval event {storage_id} for {key}; approve the plan with approval_job "
                "and let approval_sensor publish it.",
            )
        named = _text_metadata(record).get("plan_digest")
        if named is not None and named != digest:
            return Refusal(
                key, f"approval event {storage_id} for {key} approves digest {named[:12]}, not {digest[:12]}."
            )
        return judge_record(instance, record)
    first: Refusal | None = None
    for record in _records(instance, APPROVAL_ASSET, key):
        if _text_metadata(record).get("plan_digest") != digest:
            continue
        verdict = judge_record(instance, record)
        if isinstance(verdict, RecordedApproval):
            return verdict
        first = first or verdict
    return first or Refusal(
        key,
        f"no approval of {key} at plan digest {digest[:12]} is recorded; materialize the approval "
        "asset of this partition with that digest (approval_job or pipeline-sync approve) first.",
    )


def judge_record(instance: dg.DagsterInstance, record: dg.EventLogRecord) -> RecordedApproval | Refusal:
    """Whether one approval materialization is a recorded approval, or why it is not."""
    sid, key = record.storage_id, record.partition_key
    if key is None:
        return Refusal(None, f"approval event {sid} names no partition, so it approves nothing.")
    if not is_partition_key(key):
        return Refusal(
            None, f"approval event {sid} names {key!r}, which is not a service/stack/template key."
        )
    if not instance.has_dynamic_partition(PARTITIONS_NAME, key):
        return Refusal(
            key, f"approval event {sid} names {key}, which is not a known {PARTITIONS_NAME} partition."
        )
    values = _text_metadata(record)
    digest, approver = values.get("plan_digest"), values.get("approver")
    if not digest or not approver:
        return Refusal(key, f"approval event {sid} for {key} has no text plan_digest and approver metadata.")
    source = _source_problem(instance, record, key, approver)
    if source is not None:
        return Refusal(key, source)
    by_policy = record.event_log_entry.step_key == POLICY_STEP
    plan = _plan_before(instance, key, digest, sid)
    if plan is None:
        return Refusal(
            key,
            f"approval event {sid} for {key} names digest {digest[:12]}, which no plan of this partition "
            "recorded before it; plan, then approve the digest the plan shows.",
        )
    if by_policy and not _policy_covers(record, plan):
        return Refusal(
            key,
            f"policy approval event {sid} for {key} covers a plan the stack policy may not approve "
            "(only creates and updates that adopt nothing); a person must approve it.",
        )
    used = _published_after(instance, key, digest, sid)
    if used is not None:
        return Refusal(
            key,
            f"approval event {sid} for {key} at digest {digest[:12]} was already published by run "
            f"{used}; approve again to publish again.",
        )
    return RecordedApproval(key, digest, approver, sid, record.run_id, by_policy)


def _source_problem(
    instance: dg.DagsterInstance, record: dg.EventLogRecord, key: str, approver: str
) -> str | None:
    """Why the event did not come from the approval asset's step or the policy's reconcile step."""
    sid, step = record.storage_id, record.event_log_entry.step_key
    if not record.run_id:
        return (
            f"approval event {sid} for {key} was reported without a run (runless event), so it approves "
            "nothing; materialize the approval asset with approval_job instead."
        )
    if instance.get_run_by_id(record.run_id) is None:
        return f"approval event {sid} for {key} belongs to run {record.run_id}, unknown to this instance."
    if step == POLICY_STEP:
        if approver != AUTO_APPROVER:
            return (
                f"approval event {sid} for {key} came from {POLICY_STEP} with approver {approver!r}, "
                f"not {AUTO_APPROVER}."
            )
        return None
    if step != APPROVAL_STEP:
        return f"approval event {sid} for {key} was logged by step {step!r}, not by the approval asset."
    if is_reserved_approver(approver):
        return (
            f"approval event {sid} for {key} names the reserved approver {approver!r}, which only the "
            f"{POLICY_STEP} stack policy may use."
        )
    return None


def _policy_covers(record: dg.EventLogRecord, plan: dg.EventLogRecord) -> bool:
    plan_values = _plain_metadata(plan)
    adopt = _plain_metadata(record).get("adopt")
    return (
        plan_values.get("status") in {str(s) for s in AUTO_APPROVABLE}
        and plan_values.get("approval_policy") == "auto"
        and adopt is False
    )


def _plan_before(
    instance: dg.DagsterInstance, key: str, digest: str, before: int
) -> dg.EventLogRecord | None:
    """The newest plan of key with this digest, recorded by a run before storage id `before`."""
    for record in _records(instance, PLAN_ASSET, key, before=before):
        if record.run_id and _text_metadata(record).get("plan_digest") == digest:
            return record
    return None


def _published_after(instance: dg.DagsterInstance, key: str, digest: str, after: int) -> str | None:
    """The run that already published digest after the approval `after`, if any."""
    for record in _records(instance, PUBLISHED_ASSET, key, after=after):
        if _text_metadata(record).get("plan_digest") == digest:
            return record.run_id
    return None


def _records(
    instance: dg.DagsterInstance,
    asset: dg.AssetKey,
    key: str,
    *,
    before: int | None = None,
    after: int | None = None,
    storage_ids: list[int] | None = None,
) -> Iterator[dg.EventLogRecord]:
    """Materializations of one partition, newest first, read page by page as the caller goes."""
    records_filter = dg.AssetRecordsFilter(
        asset_key=asset,
        asset_partitions=[key],
        before_storage_id=before,
        after_storage_id=after,
        storage_ids=storage_ids,
    )
    cursor: str | None = None
    while True:
        page = instance.fetch_materializations(records_filter, limit=_PAGE, cursor=cursor)
        yield from page.records
        if not page.has_more:
            return
        cursor = page.cursor


def _plain_metadata(record: dg.EventLogRecord) -> dict[str, object]:
    materialization = record.asset_materialization
    if materialization is None:
        return {}
    return {k: v.value for k, v in materialization.metadata.items()}


def _text_metadata(record: dg.EventLogRecord) -> dict[str, str]:
    return {k: v for k, v in _plain_metadata(record).items() if isinstance(v, str)}


# -- signed approvals --------------------------------------------------------------------------


def signed_approval_metadata(
    policy: ApproverPolicy, store: Store, key: str, digest: str, text: str, approver: str
) -> dict[str, Any]:
    """The approval metadata of one signed approval of (key, digest), verified against key's
    approvers; a one-line Failure when it is missing, for something else, or does not verify."""

    def refuse(reason: str) -> dg.Failure:
        return run_refusal(f"Approval refused for {key}: {reason} Nothing was approved.")

    if not text.strip():
        raise refuse(
            f"its stack requires {policy.describe()}, and this approval is unsigned. Run `pipeline-sync "
            f"approve {key} --digest {digest} --sign KEYFILE` (or paste its --print output into "
            "signed_statement)."
        )
    try:
        signed = parse_signed(text, source="signed_statement")
    except SigningError as exc:
        raise refuse(str(exc)) from None
    statement = signed.statement
    if statement.key != key:
        raise refuse(f"the signed statement approves {statement.key}, not {key}.")
    if approver.strip() and approver != statement.principal:
        raise refuse(
            f"approver {approver!r} is not the signed statement's principal {statement.principal!r}."
        )
    judgement = judge(policy, [signed], key=key, digest=digest, store=store_identity(store), now=now_utc())
    if not judgement.approvers:
        raise refuse("; ".join(judgement.problems) + ".")
    [counted] = judgement.approvers
    return {
        "approver": counted.principal,
        "principal": counted.principal,
        "fingerprint": counted.fingerprint,
        "signed_statement": signed.text(),
        "approvals_required": policy.approvals,
    }


def signed_statements(instance: dg.DagsterInstance, key: str, digest: str) -> list[SignedApproval]:
    """Every signed approval recorded by a qualifying approval event of (key, digest), newest first:
    the publish run hands them all to the engine, which verifies each and counts distinct people."""
    found: list[SignedApproval] = []
    for record in _records(instance, APPROVAL_ASSET, key):
        values = _text_metadata(record)
        if values.get("plan_digest") != digest or not values.get("signed_statement"):
            continue
        if not isinstance(judge_record(instance, record), RecordedApproval):
            continue
        try:
            found.append(
                parse_signed(values["signed_statement"], source=f"approval event {record.storage_id}")
            )
        except SigningError:
            continue  # the engine counts only what verifies; an unreadable one counts for nothing
    return found


def signatures_pending(
    instance: dg.DagsterInstance, record: dg.EventLogRecord, key: str, digest: str
) -> str | None:
    """Why a signed approval event should not start a publish run yet: fewer distinct people have
    signed approvals of (key, digest) than its stack requires. None when enough have (the publish
    run's engine verifies them all again)."""
    required = _plain_metadata(record).get("approvals_required")
    if not isinstance(required, int) or required <= 1:
        return None
    people = {s.statement.principal for s in signed_statements(instance, key, digest)}
    if len(people) >= required:
        return None
    return (
        f"{key} at digest {digest[:12]} has signed approvals from {len(people)} of the {required} distinct "
        f"people its stack requires ({', '.join(sorted(people)) or 'none'}); waiting for more."
    )
