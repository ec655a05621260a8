"""What the Dagster UI shows an operator: per-partition status checks, and ready-to-paste approvals.

Status: four asset checks on pipeline_plan, evaluated per partition whenever a plan is recorded,
so the asset's Checks tab and each partition page show valid / no_conflict / no_drift /
no_pending_change as passed or failed, and can be filtered by check and outcome. A fleet run
records, per partition whose plan changed, the failing check only, all four, or none: the
resource setting front50.status_checks (PIPELINE_SYNC_STATUS_CHECKS), failing by default; and none
at all once more than front50.status_checks_max (PIPELINE_SYNC_STATUS_CHECKS_MAX, 100) partitions
would get them, so a large batch writes one event per changed partition.

Approval: a pending plan carries its launchpad config, a launchpad link with partition and
config filled in, and the CLI command, so approving is paste (or click) and launch.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.parse
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData as CheckTarget,
)
from dagster._core.events import DagsterEventType

from pipeline_sync.names import is_partition_key
from pipeline_sync.plan import PlanEntry
from pipeline_sync.report import display_status
from pipeline_sync.status import ACTIONABLE, Status

from .partitions import pipeline_partitions
from .state import PLAN_ASSET

# The code location name Dagster gives workspace.yaml's python_module entry; a deployment that
# names its code location otherwise sets PIPELINE_SYNC_DAGSTER_LOCATION so the links still work.
DEFAULT_LOCATION = "pipeline_sync.definitions"
APPROVER_PLACEHOLDER = "you"
# What a fleet run (reconcile_job) records of the status checks; the first is the default.
FLEET_STATUS_CHECKS = ("failing", "all", "none")
STATUS_CHECKS_ENV = "PIPELINE_SYNC_STATUS_CHECKS"
# Above this many changed partitions with check events, a fleet run records none (issue 19).
STATUS_CHECKS_MAX_ENV = "PIPELINE_SYNC_STATUS_CHECKS_MAX"
DEFAULT_STATUS_CHECKS_MAX = 100
_CHUNK = 500


@dataclass(frozen=True)
class StatusCheck:
    """One question every plan answers: which statuses fail it, and how loudly."""

    name: str
    description: str
    fails: frozenset[Status]
    severity: dg.AssetCheckSeverity


STATUS_CHECKS: tuple[StatusCheck, ...] = (
    StatusCheck(
        "valid",
        "The pipeline renders and passes validation, and its catalog file loads.",
        frozenset({Status.INVALID, Status.UNKNOWN}),
        dg.AssetCheckSeverity.ERROR,
    ),
    StatusCheck(
        "no_conflict",
        "No unmanaged pipeline, or another catalog's, holds this pipeline's id or name.",
        frozenset({Status.CONFLICT}),
        dg.AssetCheckSeverity.ERROR,
    ),
    StatusCheck(
        "no_drift",
        "Nobody edited the live pipeline in Deck since pipeline-sync wrote it.",
        frozenset({Status.DRIFT}),
        dg.AssetCheckSeverity.WARN,
    ),
    # Drift also waits for a person, but fails no_drift only: one failing check per status
    # keeps a fleet run at one check event per partition that needs a person.
    StatusCheck(
        "no_pending_change",
        "No create, update or delete waits for approval (drift: see no_drift).",
        frozenset(ACTIONABLE - {Status.DRIFT}),
        dg.AssetCheckSeverity.WARN,
    ),
)

STATUS_CHECK_SPECS = [
    dg.AssetCheckSpec(c.name, asset=PLAN_ASSET, description=c.description, partitions_def=pipeline_partitions)
    for c in STATUS_CHECKS
]


def _outcome(check: StatusCheck, entry: PlanEntry) -> tuple[bool, str]:
    if entry.status not in check.fails:
        return True, f"{entry.key}: {display_status(entry)}"
    reason = next(iter(entry.messages), "")
    return False, f"{entry.key}: {display_status(entry)}" + (f"; {reason}" if reason else "")


def status_check_results(entry: PlanEntry) -> list[dg.AssetCheckResult]:
    """The four results of one plan, for pipeline_plan's own MaterializeResult."""
    results = []
    for check in STATUS_CHECKS:
        passed, text = _outcome(check, entry)
        results.append(
            dg.AssetCheckResult(
                check_name=check.name,
                passed=passed,
                severity=check.severity,
                description=text,
                metadata={"status": str(entry.status)},
            )
        )
    return results


def status_check_events(
    entry: PlanEntry, target: CheckTarget | None, *, failing_only: bool = False
) -> Iterator[dg.AssetCheckEvaluation]:
    """The same results as events, for runs that record plans of other partitions.

    target is the plan materialization they judge: Dagster shows a partition's check status only
    while its result targets the partition's latest materialization, so a new plan clears the
    old results by itself. With failing_only (fleet runs), only the failing check: one event per
    partition that needs a person, none for the rest, whose checks show as not evaluated."""
    if not is_partition_key(entry.key):
        return
    for check in STATUS_CHECKS:
        passed, text = _outcome(check, entry)
        if failing_only and passed:
            continue
        yield dg.AssetCheckEvaluation(
            asset_key=PLAN_ASSET,
            check_name=check.name,
            passed=passed,
            severity=check.severity,
            description=text,
            metadata={"status": str(entry.status)},
            partition=entry.key,
            target_materialization_data=target,
        )


def fleet_status_checks(setting: str | None, environ: Mapping[str, str]) -> str:
    """Which status check results a fleet run records for each partition whose plan changed:
    the resource's status_checks, else PIPELINE_SYNC_STATUS_CHECKS, else "failing".

    "failing": the one failing check (one more event per partition that needs a person; the
    Checks tab lists them); "all": all four results (four more events per changed partition;
    passing checks show as passed too); "none": no check events (one event per changed partition;
    a partition's checks show as not evaluated until a one-partition plan or a publish records
    them). Dagster shows a check result only while it targets the partition's latest plan, so
    no setting can show status with fewer events (docs/dagster-events.md)."""
    value = setting if setting else environ.get(STATUS_CHECKS_ENV, "")
    where = "front50.status_checks" if setting else STATUS_CHECKS_ENV
    value = value.strip() or FLEET_STATUS_CHECKS[0]
    if value not in FLEET_STATUS_CHECKS:
        raise run_refusal(
            f"{where} is {value!r}; set it to one of {', '.join(FLEET_STATUS_CHECKS)} "
            f"({FLEET_STATUS_CHECKS[0]} when unset). Nothing was planned."
        )
    return value


def fleet_status_checks_max(setting: int | None, environ: Mapping[str, str]) -> int:
    """The most changed partitions a fleet run records status check events for: the resource's
    status_checks_max, else PIPELINE_SYNC_STATUS_CHECKS_MAX, else 100. Above it the run records
    none (as with status_checks none): one event per changed partition however large the batch,
    everyday runs keep their per-partition status in the Checks tab (docs/dagster-events.md)."""
    where = "front50.status_checks_max" if setting is not None else STATUS_CHECKS_MAX_ENV
    value: int | str = setting if setting is not None else environ.get(STATUS_CHECKS_MAX_ENV, "").strip()
    if value == "":
        return DEFAULT_STATUS_CHECKS_MAX
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, str) or value < 0:
        raise run_refusal(
            f"{where} is {value!r}; set it to a whole number of changed partitions, 0 or more "
            f"({DEFAULT_STATUS_CHECKS_MAX} when unset). Nothing was planned."
        )
    return value


def checked_partitions(entries: Iterable[PlanEntry], mode: str) -> list[str]:
    """The partitions of entries that a fleet run with this status_checks mode records check
    events for: none; with failing, those failing a check; with all, every one."""
    if mode == "none":
        return []
    return [
        e.key
        for e in entries
        if is_partition_key(e.key) and (mode == "all" or any(e.status in c.fails for c in STATUS_CHECKS))
    ]


def fleet_check_events(
    entries: Iterable[PlanEntry], targets: Mapping[str, CheckTarget], mode: str
) -> Iterator[dg.AssetCheckEvaluation]:
    """The check results a fleet run records for entries (see fleet_status_checks for mode)."""
    if mode == "none":
        return
    for entry in entries:
        yield from status_check_events(entry, targets.get(entry.key), failing_only=mode == "failing")


def plan_targets(instance: dg.DagsterInstance, run_id: str, keys: Iterable[str]) -> dict[str, CheckTarget]:
    """The latest plan materialization of each key (just written by this run), to target."""
    wanted = sorted(set(keys))
    now = time.time()
    targets = {}
    for start in range(0, len(wanted), _CHUNK):
        latest = instance.event_log_storage.get_latest_storage_id_by_partition(
            PLAN_ASSET, DagsterEventType.ASSET_MATERIALIZATION, set(wanted[start : start + _CHUNK])
        )
        targets.update(
            {
                key: CheckTarget(storage_id=storage_id, run_id=run_id, timestamp=now)
                for key, storage_id in latest.items()
            }
        )
    return targets


# -- approving ---------------------------------------------------------------------------------


def location_path() -> str:
    """The UI path of this code location, e.g. /locations/pipeline_sync.definitions."""
    location = os.environ.get("PIPELINE_SYNC_DAGSTER_LOCATION") or DEFAULT_LOCATION
    return "/locations/" + urllib.parse.quote(location, safe="")


def approval_run_config(digest: str, approver: str = APPROVER_PLACEHOLDER) -> dict[str, Any]:
    return {"ops": {"approval": {"config": {"approver": approver, "plan_digest": digest}}}}


def approval_config_yaml(digest: str, approver: str = APPROVER_PLACEHOLDER) -> str:
    """The launchpad config of approval_job, as the launchpad's editor shows it."""
    return f"ops:\n  approval:\n    config:\n      approver: {approver}\n      plan_digest: {digest}\n"


def approval_command(key: str, digest: str, approver: str = APPROVER_PLACEHOLDER) -> str:
    return f"pipeline-sync approve {key} --digest {digest} --approver {approver}"


def approval_launchpad_url(key: str, digest: str) -> str:
    """approval_job's launchpad with this partition and digest filled in (a path on the UI's host)."""
    query = urllib.parse.urlencode(
        [
            ("config", approval_config_yaml(digest)),
            ("tags[0][key]", "dagster/partition"),
            ("tags[0][value]", key),
        ]
    )
    return f"{location_path()}/jobs/approval_job/playground/setup?{query}"


def partition_path(key: str, asset: str = "pipeline_plan") -> str:
    """The UI path of one partition of an asset."""
    query = urllib.parse.urlencode({"view": "partitions", "partition": key})
    return f"/assets/{asset}?{query}"


def approval_metadata(entry: PlanEntry) -> dict[str, Any]:
    """For a plan waiting for a person: the launchpad link, config and CLI command; else {}."""
    if entry.status not in ACTIONABLE or entry.policy_approvable or not is_partition_key(entry.key):
        return {}
    return {
        "approve_in_launchpad": dg.MetadataValue.url(approval_launchpad_url(entry.key, entry.digest)),
        "approve_config": dg.MetadataValue.md(
            "Launchpad config of `approval_job` (partition "
            f"`{entry.key}`), replace `you` with your name:\n\n```yaml\n"
            f"{approval_config_yaml(entry.digest)}```"
        ),
        "approve_command": approval_command(entry.key, entry.digest),
    }


def approval_log_lines(entry: PlanEntry) -> list[str]:
    """The same, for the run log of a single-partition plan run."""
    if not approval_metadata(entry):
        return []
    return [
        f"To approve {entry.key} at this plan, open approval_job's launchpad with partition "
        f"{entry.key} and paste:\n{approval_config_yaml(entry.digest)}",
        f"or run: {approval_command(entry.key, entry.digest)}",
    ]


def partition_links_markdown(keys: list[str], limit: int = 200) -> str:
    """A Markdown list linking each key to its pipeline_plan partition page."""
    lines = [f"- [{key}]({partition_path(key)})" for key in keys[:limit]]
    if len(keys) > limit:
        lines.append(f"- ... and {len(keys) - limit} more (filter the checks of pipeline_plan)")
    return "\n".join(lines) or "none"


# -- refusing ----------------------------------------------------------------------------------


class _TracebackLimit:
    """sys.tracebacklimit is 0 while any refusal is alive, and as it was once the last one is released
    (counted, so refusals released in any order restore it exactly once)."""

    def __init__(self) -> None:
        self.alive = 0
        self.saved: int | None = None

    def hold(self, failure: dg.Failure) -> None:
        if self.alive == 0:
            self.saved = getattr(sys, "tracebacklimit", None)
        self.alive += 1
        sys.tracebacklimit = 0
        weakref.finalize(failure, self.release)

    def release(self) -> None:
        self.alive -= 1
        if self.alive > 0:
            return
        if self.saved is not None:
            sys.tracebacklimit = self.saved
        elif hasattr(sys, "tracebacklimit"):
            del sys.tracebacklimit


_LIMIT = _TracebackLimit()


def run_refusal(description: str) -> dg.Failure:
    """A Failure that ends the run with its one-line description and no stack trace.

    Dagster stores a step failure's stack with traceback.TracebackException, which honours
    sys.tracebacklimit; the limit is 0 from here until every such exception is released (after
    Dagster has recorded it), so a refusal shows its reason, not Dagster's frames. Raise it at once.
    """
    failure = dg.Failure(description=description, allow_retries=False)
    _LIMIT.hold(failure)
    return failure
