"""Only a recorded approval publishes, and no approval event, however malformed, jams the sensor."""

from __future__ import annotations

import json
from typing import Any

import boto3
import dagster as dg
import pytest
import test_dagster as base
from test_dagster import BUCKET, KEY, add_partitions, approve, plan_partition, run_reconcile, sensor_tick

from pipeline_sync.definitions import defs
from pipeline_sync.defs.approvals import (
    APPROVAL_ASSET,
    APPROVAL_STEP,
    AUTO_APPROVER,
    POLICY_STEP,
    PUBLISHED_ASSET,
    RecordedApproval,
    Refusal,
    is_reserved_approver,
    judge_record,
    policy_may_approve,
    recorded_approval,
)
from pipeline_sync.defs.assets import approval, fleet_plan, published_pipeline
from pipeline_sync.defs.partitions import PARTITIONS_NAME
from pipeline_sync.defs.state import PLAN_ASSET, latest_metadata
from pipeline_sync.plan import PlanEntry, Status
from pipeline_sync.provenance import MARKER_FIELD

env = base.env  # the catalog copy, moto bucket and Dagster instance of test_dagster
FAILURE = "dagster._core.definitions.events.Failure: "


def test_step_constants_name_the_assets() -> None:
    assert approval.key == APPROVAL_ASSET and published_pipeline.key == PUBLISHED_ASSET
    assert approval.op.name == APPROVAL_STEP and fleet_plan.op.name == POLICY_STEP


# -- helpers ---------------------------------------------------------------------------------


def publish(env: dict[str, Any], config: dict[str, Any], key: str = KEY) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def("publish_job").execute_in_process(
        instance=env["instance"],
        partition_key=key,
        run_config={"ops": {"published_pipeline": {"config": config}}},
        resources=env["resources"],
        raise_on_error=False,
    )


def approve_as(env: dict[str, Any], approver: str, digest: str, key: str = KEY) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [approval],
        partition_key=key,
        instance=env["instance"],
        resources=env["resources"],
        run_config=dg.RunConfig(ops={"approval": {"config": {"approver": approver, "plan_digest": digest}}}),
        raise_on_error=False,
    )


def failure_of(result: dg.ExecuteInProcessResult) -> str:
    """The one-line reason of the failed step, checked to be what the run failure shows."""
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    data = failure.step_failure_data
    description = data.user_failure_data.description
    assert "\n" not in description
    assert data.error.message == f"{FAILURE}{description}\n" and data.error.cause is None
    return str(description)


def object_key(env: dict[str, Any], key: str = KEY) -> str:
    pipeline_id = latest_metadata(env["instance"], PLAN_ASSET, key)["pipeline_id"]
    return str(env["resources"]["front50"].store().pipeline_key(pipeline_id))


def live(env: dict[str, Any], key: str = KEY) -> tuple[str, bytes] | None:
    client = boto3.client("s3", region_name="us-east-1")
    try:
        response = client.get_object(Bucket=BUCKET, Key=object_key(env, key))
    except client.exceptions.NoSuchKey:
        return None
    return response["ETag"], response["Body"].read()


def put_live(env: dict[str, Any], body: bytes, key: str = KEY) -> str:
    client = boto3.client("s3", region_name="us-east-1")
    return str(client.put_object(Bucket=BUCKET, Key=object_key(env, key), Body=body)["ETag"])


def deck_edit(env: dict[str, Any], key: str = KEY) -> bytes:
    """A person's edit in Deck: the same pipeline with a changed description."""
    found = live(env, key)
    assert found is not None
    document = json.loads(found[1])
    document["description"] = "edited in Deck"
    body = json.dumps(document).encode()
    put_live(env, body, key)
    return body


def approval_records(instance: dg.DagsterInstance) -> list[dg.EventLogRecord]:
    return list(instance.fetch_materializations(APPROVAL_ASSET, limit=100, ascending=True).records)


def publish_now(env: dict[str, Any]) -> str:
    """Plan, approve and publish KEY the ordinary way; the digest that was published."""
    add_partitions(env["instance"], env["root"])
    digest = plan_partition(env, KEY)["plan_digest"]
    assert approve(env, KEY, digest).success
    [request] = sensor_tick(env["instance"]).run_requests
    assert publish(env, request.run_config["ops"]["published_pipeline"]["config"]).success
    return str(digest)


def forge(
    instance: dg.DagsterInstance, step: str, metadata: dict[str, Any], key: str = KEY
) -> dg.EventLogRecord:
    """An approval event logged by a real run of some op named `step` (code in the location)."""

    @dg.op(name=step)
    def forger(context) -> None:  # type: ignore[no-untyped-def]  # Dagster reads no string annotations
        context.log_event(dg.AssetMaterialization(APPROVAL_ASSET, partition=key, metadata=metadata))

    @dg.job(name=f"forge_{step}")
    def forge_job() -> None:
        forger()

    assert forge_job.execute_in_process(instance=instance).success
    return approval_records(instance)[-1]


# -- 1. only a recorded approval publishes ---------------------------------------------------


def drifted_prod(env: dict[str, Any]) -> tuple[str, str, tuple[str, bytes]]:
    """KEY published once, then edited in Deck and planned: (old digest, drift digest, live object)."""
    published = publish_now(env)
    deck_edit(env)
    drift = plan_partition(env, KEY)
    assert drift["status"] == "drift"
    before = live(env)
    assert before is not None
    return published, str(drift["plan_digest"]), before


@pytest.mark.parametrize("approver", ["the-cto", AUTO_APPROVER])
def test_publish_without_approval_fails_and_writes_nothing(env: dict[str, Any], approver: str) -> None:
    _, digest, before = drifted_prod(env)
    result = publish(env, {"plan_digest": digest, "approver": approver})
    assert failure_of(result) == (
        f"Not published: no approval of {KEY} at plan digest {digest[:12]} is recorded; materialize the "
        "approval asset of this partition with that digest (approval_job or pipeline-sync approve) "
        "first. Nothing was written."
    )
    assert live(env) == before
    assert latest_metadata(env["instance"], PLAN_ASSET, KEY)["status"] == "drift"


def test_publish_naming_an_approval_of_another_digest_fails(env: dict[str, Any]) -> None:
    old, digest, before = drifted_prod(env)
    first = approval_records(env["instance"])[0]
    result = publish(env, {"plan_digest": digest, "approval_storage_id": first.storage_id})
    assert failure_of(result) == (
        f"Not published: approval event {first.storage_id} for {KEY} approves digest {old[:12]}, "
        f"not {digest[:12]}. Nothing was written."
    )
    assert live(env) == before


def test_the_approver_written_is_the_recorded_one_not_the_config(env: dict[str, Any]) -> None:
    _, digest, _ = drifted_prod(env)
    assert approve_as(env, "alice", digest).success
    result = publish(env, {"plan_digest": digest, "approver": "the-cto"})
    assert result.success
    found = live(env)
    assert found is not None
    marker = json.loads(found[1])[MARKER_FIELD]
    assert marker["approvedBy"] == "alice" and marker["planDigest"] == digest
    [event] = [
        m
        for m in result.asset_materializations_for_node("published_pipeline")
        if m.asset_key == PUBLISHED_ASSET
    ]
    assert event.metadata["approver"].value == "alice"


@pytest.mark.parametrize(
    "approver",
    [AUTO_APPROVER, "policy:anything", "Policy:approval=auto", "  policy:approval=auto", "", "   "],
)
def test_approval_refuses_reserved_and_blank_approvers(env: dict[str, Any], approver: str) -> None:
    add_partitions(env["instance"], env["root"])
    digest = plan_partition(env, KEY)["plan_digest"]
    assert failure_of(approve_as(env, approver, digest)) == (
        f"Approval refused for {KEY}: approver {approver!r} must name a person; names starting with "
        "'policy:' are reserved for the stack policy. Nothing was approved."
    )
    assert approval_records(env["instance"]) == []


@pytest.mark.parametrize(
    ("name", "reserved"),
    [
        ("policy:x", True),
        ("POLICY:x", True),
        (" policy:x", True),
        ("alice", False),
        ("alice policy:x", False),
    ],
)
def test_is_reserved_approver(name: str, reserved: bool) -> None:
    assert is_reserved_approver(name) is reserved


def test_runless_approval_with_good_metadata_is_no_approval(env: dict[str, Any]) -> None:
    instance = env["instance"]
    add_partitions(instance, env["root"])
    digest = plan_partition(env, KEY)["plan_digest"]
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            "approval", partition=KEY, metadata={"plan_digest": digest, "approver": "alice"}
        )
    )
    [fake] = approval_records(instance)
    reason = (
        f"approval event {fake.storage_id} for {KEY} was reported without a run (runless event), so it "
        "approves nothing; materialize the approval asset with approval_job instead."
    )
    tick = sensor_tick(instance)
    assert tick.run_requests == [] and tick.cursor == str(fake.storage_id)
    for config in ({"plan_digest": digest, "approval_storage_id": fake.storage_id}, {"plan_digest": digest}):
        assert failure_of(publish(env, config)) == f"Not published: {reason} Nothing was written."
    assert live(env) is None


# -- which events count ----------------------------------------------------------------------


def bad_events(digest: str) -> list[tuple[str, dg.AssetMaterialization, str]]:
    """(name, event, reason after "approval event <storage id> ") for events that approve nothing."""
    runless = (
        "was reported without a run (runless event), so it approves nothing; materialize the "
        "approval asset with approval_job instead."
    )
    good = {"plan_digest": digest, "approver": "alice"}
    return [
        (
            "no metadata",
            dg.AssetMaterialization("approval", partition=KEY),
            f"for {KEY} has no text plan_digest and approver metadata.",
        ),
        (
            "bogus metadata",
            dg.AssetMaterialization(
                "approval", partition=KEY, metadata={"plan_digest": 42, "approver": {"a": 1}}
            ),
            f"for {KEY} has no text plan_digest and approver metadata.",
        ),
        (
            "good metadata",
            dg.AssetMaterialization("approval", partition=KEY, metadata=good),
            f"for {KEY} {runless}",
        ),
        (
            "no partition",
            dg.AssetMaterialization("approval", metadata=good),
            "names no partition, so it approves nothing.",
        ),
        (
            "unknown partition",
            dg.AssetMaterialization("approval", partition="ghost/prod/deploy", metadata=good),
            "names ghost/prod/deploy, which is not a known pipelines partition.",
        ),
        (
            "invalid partition",
            dg.AssetMaterialization("approval", partition="Ghost/../x", metadata=good),
            "names 'Ghost/../x', which is not a service/stack/template key.",
        ),
    ]


def test_sensor_skips_malformed_events_and_moves_past_all(env: dict[str, Any]) -> None:
    instance = env["instance"]
    add_partitions(instance, env["root"])
    digest = plan_partition(env, KEY)["plan_digest"]
    cases = bad_events(digest)
    for _, event, _ in cases:
        instance.report_runless_asset_event(event)
    bad = approval_records(instance)
    for record, (name, _, reason) in zip(bad, cases, strict=True):
        verdict = judge_record(instance, record)
        assert isinstance(verdict, Refusal), name
        assert verdict.reason == f"approval event {record.storage_id} {reason}", name

    only_bad = sensor_tick(instance)
    assert only_bad.run_requests == [] and only_bad.cursor == str(bad[-1].storage_id)
    assert only_bad.skip_message == f"{len(cases)} approval events read, none to publish"
    assert sensor_tick(instance, only_bad.cursor).skip_message == "no new approvals"

    for _, event, _ in cases:  # more bad events, then a real approval, in one tick
        instance.report_runless_asset_event(event)
    assert approve(env, KEY, digest).success
    real = approval_records(instance)[-1]
    tick = sensor_tick(instance, only_bad.cursor)
    [request] = tick.run_requests
    assert request.run_key == f"publish:{KEY}:{digest}:{real.storage_id}"
    assert tick.cursor == str(real.storage_id)
    assert request.run_config == {
        "ops": {
            "published_pipeline": {"config": {"plan_digest": digest, "approval_storage_id": real.storage_id}}
        }
    }
    assert publish(env, request.run_config["ops"]["published_pipeline"]["config"]).success


def test_sensor_moves_past_bad_events_after_the_last_good_one(env: dict[str, Any]) -> None:
    instance = env["instance"]
    add_partitions(instance, env["root"])
    digest = plan_partition(env, KEY)["plan_digest"]
    assert approve(env, KEY, digest).success
    instance.report_runless_asset_event(dg.AssetMaterialization("approval", partition=KEY))
    tick = sensor_tick(instance)
    assert len(tick.run_requests) == 1
    assert tick.cursor == str(approval_records(instance)[-1].storage_id)


def forged_cases(digest: str) -> list[tuple[str, dict[str, Any], str]]:
    return [
        (
            "forger",
            {"plan_digest": digest, "approver": "alice"},
            "was logged by step 'forger', not by the approval asset.",
        ),
        (
            APPROVAL_STEP,
            {"plan_digest": digest, "approver": AUTO_APPROVER},
            f"names the reserved approver {AUTO_APPROVER!r}, which only the fleet_plan stack policy may use.",
        ),
        (
            APPROVAL_STEP,
            {"plan_digest": digest, "approver": " Policy:approval=auto"},
            "names the reserved approver ' Policy:approval=auto', which only the fleet_plan stack policy may use.",
        ),
        (
            POLICY_STEP,
            {"plan_digest": digest, "approver": "alice", "adopt": False},
            f"came from fleet_plan with approver 'alice', not {AUTO_APPROVER}.",
        ),
    ]


@pytest.mark.parametrize("case", range(4))
def test_events_from_other_steps_or_reserved_names_are_no_approval(env: dict[str, Any], case: int) -> None:
    instance = env["instance"]
    add_partitions(instance, env["root"])
    digest = plan_partition(env, KEY)["plan_digest"]
    step, metadata, reason = forged_cases(digest)[case]
    record = forge(instance, step, metadata)
    assert record.run_id and record.event_log_entry.step_key == step
    verdict = judge_record(instance, record)
    assert isinstance(verdict, Refusal)
    assert verdict.reason == f"approval event {record.storage_id} for {KEY} {reason}"
    assert sensor_tick(instance).run_requests == []
    assert not publish(env, {"plan_digest": digest}).success
    assert live(env) is None


POLICY_REFUSED = (
    "covers a plan the stack policy may not approve (only creates and updates that adopt nothing); "
    "a person must approve it."
)


@pytest.mark.parametrize(
    ("key", "extra", "qualifies"),
    [
        ("checkout/dev/deploy", {"adopt": False}, True),
        ("checkout/dev/deploy", {"adopt": True}, False),
        ("checkout/dev/deploy", {}, False),  # says nothing about adoption
        (KEY, {"adopt": False}, False),  # prod is approval: manual
    ],
)
def test_policy_approval_counts_only_for_what_the_policy_may_approve(
    env: dict[str, Any], key: str, extra: dict[str, Any], qualifies: bool
) -> None:
    instance = env["instance"]
    add_partitions(instance, env["root"])
    digest = plan_partition(env, key)["plan_digest"]
    record = forge(instance, POLICY_STEP, {"plan_digest": digest, "approver": AUTO_APPROVER, **extra}, key)
    verdict = judge_record(instance, record)
    if qualifies:
        assert verdict == RecordedApproval(key, digest, AUTO_APPROVER, record.storage_id, record.run_id, True)
    else:
        assert verdict == Refusal(
            key, f"policy approval event {record.storage_id} for {key} {POLICY_REFUSED}"
        )


def test_drift_is_never_approved_by_policy(env: dict[str, Any]) -> None:
    instance = env["instance"]
    key = "checkout/dev/deploy"
    add_partitions(instance, env["root"])
    digest = plan_partition(env, key)["plan_digest"]
    assert approve(env, key, digest).success
    [request] = sensor_tick(instance).run_requests
    assert publish(env, request.run_config["ops"]["published_pipeline"]["config"], key).success
    deck_edit(env, key)
    drift = plan_partition(env, key)
    assert drift["status"] == "drift"
    record = forge(
        instance,
        POLICY_STEP,
        {"plan_digest": drift["plan_digest"], "approver": AUTO_APPROVER, "adopt": False},
        key,
    )
    assert judge_record(instance, record) == Refusal(
        key, f"policy approval event {record.storage_id} for {key} {POLICY_REFUSED}"
    )


@pytest.mark.parametrize(
    ("status", "policy", "adopt", "expected"),
    [
        (Status.CREATE, "auto", False, True),
        (Status.UPDATE, "auto", False, True),
        (Status.CREATE, "auto", True, False),
        (Status.UPDATE, "auto", True, False),
        (Status.DRIFT, "auto", False, False),
        (Status.DELETE, "auto", False, False),
        (Status.CREATE, "manual", False, False),
    ],
)
def test_policy_may_approve(status: Status, policy: str, adopt: bool, expected: bool) -> None:
    entry = PlanEntry(key=KEY, status=status, digest="d" * 64, approval=policy, adopt=adopt)
    assert policy_may_approve(entry) is expected


def test_reconcile_policy_approvals_publish_as_the_policy(env: dict[str, Any]) -> None:
    instance = env["instance"]
    run_reconcile(env)
    requests = sensor_tick(instance).run_requests
    assert requests and all("/dev/" in r.partition_key for r in requests)
    request = requests[0]
    key = request.partition_key
    assert publish(env, request.run_config["ops"]["published_pipeline"]["config"], key).success
    found = live(env, key)
    assert found is not None and json.loads(found[1])[MARKER_FIELD]["approvedBy"] == AUTO_APPROVER


# -- 2. the approval must come after the plan that produced its digest -----------------------


def test_approval_recorded_before_any_plan_of_its_digest_is_no_approval(env: dict[str, Any]) -> None:
    from pipeline_sync import engine

    instance = env["instance"]
    add_partitions(instance, env["root"])
    workspace, store = env["resources"]["catalog"].workspace(), env["resources"]["front50"].store()
    digest = (
        engine.plan(workspace, store, engine.Selection.of([KEY])).entries[KEY].digest
    )  # predicted, not yet planned
    instance.report_runless_asset_event(
        dg.AssetMaterialization("pipeline_plan", partition=KEY, metadata={"plan_digest": digest})
    )  # a hand-made plan event does not count either
    early = forge(instance, APPROVAL_STEP, {"plan_digest": digest, "approver": "alice"})
    assert plan_partition(env, KEY)["plan_digest"] == digest
    reason = (
        f"approval event {early.storage_id} for {KEY} names digest {digest[:12]}, which no plan of this "
        "partition recorded before it; plan, then approve the digest the plan shows."
    )
    assert judge_record(instance, early) == Refusal(KEY, reason)
    assert sensor_tick(instance).run_requests == []
    assert (
        failure_of(publish(env, {"plan_digest": digest})) == f"Not published: {reason} Nothing was written."
    )
    assert live(env) is None


def test_approval_still_counts_after_a_replan_with_the_same_digest(env: dict[str, Any]) -> None:
    # The rule is "after the first plan that recorded the digest": re-planning an unchanged
    # pipeline records the same digest again and must not void a pending approval.
    instance = env["instance"]
    add_partitions(instance, env["root"])
    digest = plan_partition(env, KEY)["plan_digest"]
    assert approve(env, KEY, digest).success
    assert plan_partition(env, KEY)["plan_digest"] == digest
    [approved] = approval_records(instance)
    assert recorded_approval(instance, KEY, digest) == RecordedApproval(
        KEY, digest, "erin", approved.storage_id, approved.run_id, False
    )
    [request] = sensor_tick(instance).run_requests
    assert publish(env, request.run_config["ops"]["published_pipeline"]["config"]).success


# -- 3. a re-approval after a failed publish publishes; a used approval never again ----------


def test_reapproval_after_failed_publish_publishes_and_used_approval_is_spent(env: dict[str, Any]) -> None:
    instance = env["instance"]
    publish_now(env)
    original = live(env)
    assert original is not None
    defaults = env["root"] / "catalog" / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace("values_branch: release", "values_branch: release-2"))
    digest = plan_partition(env, KEY)["plan_digest"]
    assert approve(env, KEY, digest).success
    first = sensor_tick(instance)
    [request] = first.run_requests

    deck_edit(env)  # a Deck edit lands between approval and publish
    stale = publish(env, request.run_config["ops"]["published_pipeline"]["config"])
    assert "stale plan" in failure_of(stale)
    assert put_live(env, original[1]) == original[0]  # reverted: same bytes, same ETag, same digest
    assert approve(env, KEY, digest).success
    [again] = sensor_tick(instance, first.cursor).run_requests
    reapproved = approval_records(instance)[-1]
    assert again.run_key == f"publish:{KEY}:{digest}:{reapproved.storage_id}" != request.run_key
    assert publish(env, again.run_config["ops"]["published_pipeline"]["config"]).success
    published = live(env)
    assert published is not None and json.loads(published[1])[MARKER_FIELD]["planDigest"] == digest

    # A person restores the old object: the plan digest is the approved one again, but that
    # approval was used; publishing it again needs a new approval.
    assert put_live(env, original[1]) == original[0]
    assert plan_partition(env, KEY)["plan_digest"] == digest
    [run] = [r.run_id for r in instance.fetch_materializations(PUBLISHED_ASSET, limit=1).records]
    for sid in (None, reapproved.storage_id):
        config = {"plan_digest": digest, "approval_storage_id": sid}
        newest = reapproved.storage_id
        assert failure_of(publish(env, config)) == (
            f"Not published: approval event {newest} for {KEY} at digest {digest[:12]} was already "
            f"published by run {run}; approve again to publish again. Nothing was written."
        )
    assert live(env) == original
    assert instance.has_dynamic_partition(PARTITIONS_NAME, KEY)
