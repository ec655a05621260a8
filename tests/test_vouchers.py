"""A fresh pod's full plan reads only the bodies it must, through signed vouchers; a voucher
nobody signed, or one a body contradicts, never changes a plan, and no write decision reads one."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from s3support import BUCKET, workspace_of
from test_fleet_summary import apply_all, change_description, counted, fleet, front50_writes

from pipeline_sync import engine
from pipeline_sync.engine import AUTO_APPROVER, Selection
from pipeline_sync.errors import StoreError
from pipeline_sync.fleet_summary import FleetSummary
from pipeline_sync.identity import pipeline_id_for
from pipeline_sync.live import LiveLimits, LiveSummary
from pipeline_sync.rendering import Sources
from pipeline_sync.status import Status
from pipeline_sync.store.s3 import S3Settings, S3Store
from pipeline_sync.vouchers import KEY_VARIABLE, Vouchers, key_from_env

KEY = b"k" * 32
OTHER_ID = "0b0b0b0b-0000-4000-8000-000000000000"
DEV = "svc0/dev/deploy"  # approval: auto in the test catalog's dev stack
View = dict[str, Any]


def pod(store: S3Store, tmp_path: Path, name: str, *, key: bytes | None = KEY) -> S3Store:
    """A new run on a new machine: an empty local cache (vouch_min 1 stands in for 10,000 misses)."""
    settings = replace(store.settings, cache_dir=tmp_path / name, vouch_min=1, summary_key=key)
    return S3Store(settings, client=store.client)


def plan_view(plan: engine.Plan) -> View:
    return {k: (str(e.status), e.digest) for k, e in plan.entries.items()} | {"warnings": plan.warnings}


def truth(workspace: Sources, store: S3Store) -> View:
    """The plan from every body: no local cache, no fleet summary, no vouchers."""
    run = S3Store(replace(store.settings, use_cache=False, summary_key=None), client=store.client)
    run.read_live_summarised = None  # type: ignore[assignment,method-assign]
    return plan_view(engine.plan(workspace, run))


def vouchers_of(store: S3Store, key: bytes = KEY) -> Vouchers:
    body = store.client.get_object(Bucket=BUCKET, Key=store.vouchers_key)["Body"].read()
    found = Vouchers.from_bytes(body, key, f"s3://{BUCKET}/front50")
    assert found is not None
    return found


def resign(
    store: S3Store, vouchers: Vouchers, key: bytes = KEY, where: str = f"s3://{BUCKET}/front50"
) -> None:
    store.client.put_object(Bucket=BUCKET, Key=store.vouchers_key, Body=vouchers.to_bytes(key, where))


def edit_voucher(
    vouchers: Vouchers, pipeline_id: str, edit: Callable[[dict[str, Any]], dict[str, Any]]
) -> Vouchers:
    etag, summary = vouchers.entries[pipeline_id]
    forged = LiveSummary.from_data(edit(dict(vars(summary))))
    assert forged is not None
    return Vouchers(vouchers.computed_by, {**vouchers.entries, pipeline_id: (etag, forged)})


def vouched_fleet(store: S3Store, tmp_path: Path) -> Path:
    """12 managed pipelines, one edited in Deck (drift), vouchers written by a full plan."""
    project = fleet(tmp_path / "p", 6)
    apply_all(project, store)
    drifted = pipeline_id_for("svc1/dev/deploy")
    document = store.read_pipeline(drifted).document  # type: ignore[union-attr]
    front50_writes(store, drifted, {**document, "description": "edited in Deck"})
    engine.plan(workspace_of(project), pod(store, tmp_path, "writer"))
    return project


def name_clash(store: S3Store, tmp_path: Path) -> Sources:
    """DEV's pipeline is gone (a create) and a person's pipeline holds its name (truly a conflict);
    a full plan has written the signed summary and vouchers."""
    project = fleet(tmp_path / "p", 3)
    apply_all(project, store)
    workspace = workspace_of(project)
    store.client.delete_object(Bucket=BUCKET, Key=store.pipeline_key(pipeline_id_for(DEV)))
    front50_writes(
        store, OTHER_ID, {"id": OTHER_ID, "application": "svc0", "name": "deploy-dev", "stages": []}
    )
    engine.plan(workspace, pod(store, tmp_path, "writer"))
    return workspace


def test_a_fresh_pod_plans_the_fleet_reading_only_the_bodies_it_must(store: S3Store, tmp_path: Path) -> None:
    project = vouched_fleet(store, tmp_path)
    workspace = workspace_of(project)
    expected = truth(workspace, store)
    run = pod(store, tmp_path, "fresh")
    got: View = {}
    counts = counted(run, lambda: got.update(plan_view(engine.plan(workspace, run))))
    assert got == expected and expected["svc1/dev/deploy"][0] == "drift"
    # The marker, the vouchers and the drifted body (unversioned bucket: no history): not 12 bodies.
    assert counts.get("GetObject", 0) == 3, counts


def test_without_a_key_no_vouchers_are_written_or_read(store: S3Store, tmp_path: Path) -> None:
    project = fleet(tmp_path / "p", 3)
    apply_all(project, store)
    workspace = workspace_of(project)
    engine.plan(workspace, pod(store, tmp_path, "writer", key=None))
    keys = [o["Key"] for o in store.client.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert store.vouchers_key not in keys
    run = pod(store, tmp_path, "fresh", key=None)
    assert counted(run, lambda: engine.plan(workspace, run))["GetObject"] == 1 + 6  # the marker, each body


UNSIGNED: dict[str, Callable[[S3Store, Vouchers], None]] = {
    "signed with another key": lambda store, v: resign(store, v, key=b"x" * 32),
    "copied from another bucket": lambda store, v: resign(store, v, where="s3://elsewhere/front50"),
    "not signed at all": lambda store, v: store.client.put_object(
        Bucket=BUCKET,
        Key=store.vouchers_key,
        Body=v.to_bytes(KEY, f"s3://{BUCKET}/front50").split(b"\n", 1)[1],
    ),
    "one byte changed": lambda store, v: store.client.put_object(
        Bucket=BUCKET,
        Key=store.vouchers_key,
        Body=v.to_bytes(KEY, f"s3://{BUCKET}/front50").replace(b'"svc', b'"svd', 1),
    ),
}


@pytest.mark.parametrize("forge", UNSIGNED.values(), ids=UNSIGNED.keys())
def test_vouchers_not_signed_with_our_key_for_this_bucket_are_ignored(
    store: S3Store, tmp_path: Path, forge: Callable[[S3Store, Vouchers], None]
) -> None:
    project = vouched_fleet(store, tmp_path)
    workspace = workspace_of(project)
    lie = edit_voucher(
        vouchers_of(store), pipeline_id_for("svc1/dev/deploy"), lambda s: {**s, "content_digest": "0" * 64}
    )
    forge(store, lie)
    run = pod(store, tmp_path, "fresh")
    counts = counted(run, lambda: engine.plan(workspace, run))
    assert counts["GetObject"] == 2 + 12, counts  # the marker, the vouchers (refused), then every body
    assert vouchers_of(store).entries == vouchers_of(store).entries  # rewritten, signed again


# A signed voucher that lies (a leaked key, or a bug): what the plan opens is checked against the
# body; what it does not open (a name, a marker naming another key or none) can show a conflict.
LIES: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], bool]] = {
    "claims our marker at an older digest": (
        lambda s: {
            **s,
            "marker": {"key": "svc2/dev/deploy", "renderDigest": "0" * 64},
            "content_digest": "1" * 64,
        },
        True,
    ),
    "says someone edited it": (lambda s: {**s, "content_digest": "2" * 64}, True),
    "claims a key the catalog no longer has": (
        lambda s: {**s, "marker": {**s["marker"], "key": "gone/dev/deploy"}},
        False,
    ),
    "says it is not ours": (lambda s: {**s, "marker": None}, False),
    "renames the pipeline": (lambda s: {**s, "name": "someone else's"}, False),
}


@pytest.mark.parametrize(("lie", "opened"), LIES.values(), ids=LIES.keys())
def test_a_signed_voucher_that_lies_never_plans_a_write(
    store: S3Store, tmp_path: Path, lie: Callable[[dict[str, Any]], dict[str, Any]], opened: bool
) -> None:
    project = vouched_fleet(store, tmp_path)
    workspace = workspace_of(project)
    victim = pipeline_id_for("svc2/dev/deploy")
    expected = truth(workspace, store)
    resign(store, edit_voucher(vouchers_of(store), victim, lie))
    run = pod(store, tmp_path, "fresh")
    planned = engine.plan(workspace, run)
    if opened:
        assert plan_view(planned) == expected
        assert vouchers_of(store).entries[victim][1] == run.read_pipeline(victim).summary  # type: ignore[union-attr]
        return
    others = {k: v for k, v in plan_view(planned).items() if k not in {"svc2/dev/deploy", "warnings"}}
    assert others == {k: v for k, v in expected.items() if k not in {"svc2/dev/deploy", "warnings"}}
    assert planned.entries["svc2/dev/deploy"].status in {Status.IN_SYNC, Status.CONFLICT}


def test_an_unsigned_voucher_cannot_hide_a_name_clash_from_a_create(store: S3Store, tmp_path: Path) -> None:
    """A person's pipeline holds the name a create will write; someone who may write to the bucket
    but holds no key rewrites its voucher's name. The fleet plan, the policy and the publish all
    still see the clash, and nothing is written."""
    workspace = name_clash(store, tmp_path)
    forged = edit_voucher(vouchers_of(store), OTHER_ID, lambda s: {**s, "name": "something else"})
    resign(store, forged, key=b"attacker key, not ours..........")
    run = pod(store, tmp_path, "fleet-plan")
    entry = engine.plan(workspace, run).entries[DEV]
    assert entry.status is Status.CONFLICT
    refusals = engine.policy_refusals(workspace, run, {DEV: entry.digest})
    result = engine.apply(
        workspace, pod(store, tmp_path, "publish"), {DEV: entry.digest}, approver=AUTO_APPROVER, policy=True
    )
    assert refusals[DEV] is not None and [r.outcome for r in result] != ["applied"]
    assert store.read_pipeline(pipeline_id_for(DEV)) is None


def test_a_few_cache_misses_are_read_as_bodies_not_through_the_vouchers(
    store: S3Store, tmp_path: Path
) -> None:
    project = vouched_fleet(store, tmp_path)
    run = S3Store(replace(store.settings, cache_dir=tmp_path / "few", summary_key=KEY), client=store.client)
    counts = counted(run, lambda: engine.plan(workspace_of(project), run))
    assert counts["GetObject"] == 1 + 12  # the marker and each of the 12 bodies: no vouchers (vouch_min 64)


def test_a_voucher_is_not_used_for_an_object_that_changed_since(store: S3Store, tmp_path: Path) -> None:
    project = vouched_fleet(store, tmp_path)
    workspace = workspace_of(project)
    victim = pipeline_id_for("svc3/prod/deploy")
    document = store.read_pipeline(victim).document  # type: ignore[union-attr]
    store.client.put_object(
        Bucket=BUCKET, Key=store.pipeline_key(victim), Body=json.dumps({**document, "name": "renamed"})
    )
    expected = truth(workspace, store)
    assert plan_view(engine.plan(workspace, pod(store, tmp_path, "fresh"))) == expected


def test_an_object_changed_between_the_listing_and_the_read_of_its_body(
    store: S3Store, tmp_path: Path
) -> None:
    project = vouched_fleet(store, tmp_path)
    workspace = workspace_of(project)
    victim = pipeline_id_for("svc1/dev/deploy")  # drifted: the plan opens it
    document = store.read_pipeline(victim).document  # type: ignore[union-attr]
    run = pod(store, tmp_path, "fresh")
    read = run.read_live_summarised

    def racing(**kwargs: Any) -> Any:
        live = read(**kwargs)
        if kwargs.get("vouched", True):
            front50_writes(store, victim, {**document, "description": "edited again"})
        return live

    run.read_live_summarised = racing  # type: ignore[method-assign]
    got = plan_view(engine.plan(workspace, run))
    assert got == truth(workspace, store)


def test_vouchers_computed_under_other_limits_are_not_used(store: S3Store, tmp_path: Path) -> None:
    project = vouched_fleet(store, tmp_path)
    run = S3Store(
        replace(pod(store, tmp_path, "other").settings, limits=LiveLimits(max_depth=900)), client=store.client
    )
    counts = counted(run, lambda: engine.plan(workspace_of(project), run))
    assert counts["GetObject"] >= 12  # every body: the vouchers were computed under 1,000 levels


def test_a_write_decision_never_reads_vouchers(store: S3Store, tmp_path: Path) -> None:
    project = vouched_fleet(store, tmp_path)
    change_description(project)
    workspace = workspace_of(project)
    plan = engine.plan(workspace, pod(store, tmp_path, "planner"))
    approved = {k: e.digest for k, e in plan.entries.items() if e.status is Status.UPDATE}
    assert len(approved) == 11
    lies = vouchers_of(store)
    for pipeline_id in list(lies.entries):  # signed lies about every object
        lies = edit_voucher(lies, pipeline_id, lambda s: {**s, "content_digest": "3" * 64, "marker": None})
    resign(store, lies)
    results = engine.apply(workspace, pod(store, tmp_path, "applier"), approved, approver="alice")
    assert {r.outcome for r in results} == {"applied"}
    after = truth(workspace, store)
    assert after["svc0/prod/deploy"][0] == "in-sync" and after["svc1/dev/deploy"][0] == "drift"


def test_the_next_run_on_the_same_machine_reads_no_body_again(store: S3Store, tmp_path: Path) -> None:
    project = vouched_fleet(store, tmp_path)
    workspace = workspace_of(project)
    engine.plan(workspace, pod(store, tmp_path, "same"))  # the drifted body it opened is cached
    again = pod(store, tmp_path, "same")
    counts = counted(again, lambda: engine.plan(workspace, again))
    assert counts.get("GetObject", 0) == 2, counts  # Front50's marker and the vouchers: no body


def test_a_fresh_pod_reads_the_bodies_of_a_template_change_ahead_in_parallel(
    store: S3Store, tmp_path: Path
) -> None:
    project = vouched_fleet(store, tmp_path)
    change_description(project)
    workspace = workspace_of(project)
    expected = truth(workspace, store)
    run = pod(store, tmp_path, "fresh")
    one_by_one: list[str] = []
    get = run._get_at_etag

    def spy(obj: Any) -> bytes | None:
        if threading.current_thread() is threading.main_thread():  # the planning thread
            one_by_one.append(obj.key)
        return get(obj)

    run._get_at_etag = spy  # type: ignore[method-assign]
    assert plan_view(engine.plan(workspace, run)) == expected
    assert sum(1 for k, v in expected.items() if k != "warnings" and v[0] == "update") == 11
    assert one_by_one == []  # every body the plan opened was read ahead
    assert not _reading_ahead()


def _reading_ahead() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "pipeline-sync-prefetch" and t.is_alive()]


def _opening_order(store: S3Store, tmp_path: Path, workspace: Sources) -> list[str]:
    """The keys of the bodies a fresh pod's plan opens, in the order it opens them."""
    run = pod(store, tmp_path, "first")
    opened: list[str] = []
    fetch = run._fetch_vouched

    def spy(obj: Any) -> bytes | None:
        opened.append(obj.key)
        return fetch(obj)

    run._fetch_vouched = spy  # type: ignore[method-assign]
    engine.plan(workspace, run)
    return opened


def test_the_plan_opens_bodies_read_ahead_while_later_ones_are_still_being_read(
    store: S3Store, tmp_path: Path
) -> None:
    """The read-ahead runs in its own thread: the plan opens the first body it needs while every
    other one is held back, and those are released only once it has (a read-ahead that made the
    plan wait for all of them would hold them for good: the gate times out instead)."""
    project = vouched_fleet(store, tmp_path)
    change_description(project)
    workspace = workspace_of(project)
    expected = truth(workspace, store)
    order = _opening_order(store, tmp_path, workspace)
    assert len(order) >= 11
    run = pod(store, tmp_path, "fresh")
    first_opened, timed_out, planner_reads = threading.Event(), [], []
    get, fetch = run._get_at_etag, run._fetch_vouched

    def held(obj: Any) -> bytes | None:
        if threading.current_thread() is threading.main_thread():
            planner_reads.append(obj.key)
        elif obj.key != order[0] and not first_opened.wait(timeout=10):
            timed_out.append(obj.key)
        return get(obj)

    def opened(obj: Any) -> bytes | None:
        body = fetch(obj)
        if obj.key == order[0]:
            first_opened.set()
        return body

    run._get_at_etag = held  # type: ignore[method-assign]
    run._fetch_vouched = opened  # type: ignore[method-assign]
    assert plan_view(engine.plan(workspace, run)) == expected
    assert timed_out == []
    assert planner_reads == []  # each body it opened came from the read-ahead
    assert not _reading_ahead()


def test_a_read_ahead_that_fails_fails_the_plan_after_the_body_is_read_when_opened(
    store: S3Store, tmp_path: Path
) -> None:
    """A read of the read-ahead that raises: the object it was for is read when the plan opens
    it (nothing waits for a body that will not come), and the plan then raises that error, as a
    prefetch that raised did before it ran in the background."""
    project = vouched_fleet(store, tmp_path)
    change_description(project)
    workspace = workspace_of(project)
    order = _opening_order(store, tmp_path, workspace)
    run = pod(store, tmp_path, "fresh")
    planner_reads: list[str] = []
    get = run._get_at_etag

    def failing(obj: Any) -> bytes | None:
        if threading.current_thread() is threading.main_thread():
            planner_reads.append(obj.key)
            return get(obj)
        if obj.key == order[-1]:
            raise StoreError("the read-ahead's read failed")
        return get(obj)

    run._get_at_etag = failing  # type: ignore[method-assign]
    with pytest.raises(StoreError, match="the read-ahead's read failed"):
        engine.plan(workspace, run)
    assert planner_reads == [order[-1]]
    assert not _reading_ahead()


def test_a_plan_that_fails_waits_for_its_read_ahead(
    store: S3Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No read outlives the plan that started it: a plan that raises while bodies are still
    being read ahead waits for them before it raises."""
    project = vouched_fleet(store, tmp_path)
    change_description(project)
    workspace = workspace_of(project)
    run = pod(store, tmp_path, "fresh")
    get = run._get_at_etag
    finished: list[str] = []

    def slow(obj: Any) -> bytes | None:
        if threading.current_thread() is not threading.main_thread():
            time.sleep(0.05)
            finished.append(obj.key)
        return get(obj)

    def broken(*args: Any, **kwargs: Any) -> Any:
        assert _reading_ahead()  # the bodies are still being read
        raise RuntimeError("the plan failed")

    run._get_at_etag = slow  # type: ignore[method-assign]
    monkeypatch.setattr(engine, "build_plan", broken)
    with pytest.raises(RuntimeError, match="the plan failed"):
        engine.plan(workspace, run)
    assert not _reading_ahead()
    assert len(finished) >= 11


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            None,
            "PIPELINE_SYNC_SUMMARY_KEY_FILE names {file}, which cannot be read: No such file or directory",
        ),
        (
            b"short\n",
            "PIPELINE_SYNC_SUMMARY_KEY_FILE names {file}, which holds 5 bytes: a key needs at least 32 (make one with `openssl rand -hex 32 > FILE`)",
        ),
    ],
)
def test_an_unusable_key_file_is_a_clear_error(tmp_path: Path, content: bytes | None, message: str) -> None:
    file = tmp_path / "key"
    if content is not None:
        file.write_bytes(content)
    with pytest.raises(StoreError) as raised:
        S3Settings.from_env({"PIPELINE_SYNC_BUCKET": "b", KEY_VARIABLE: str(file)})
    assert str(raised.value) == message.format(file=file)


def test_the_key_file_is_read_and_never_shown(tmp_path: Path) -> None:
    (tmp_path / "key").write_bytes(b"0123456789abcdef0123456789abcdef\n")
    settings = S3Settings.from_env({"PIPELINE_SYNC_BUCKET": "b", KEY_VARIABLE: str(tmp_path / "key")})
    assert settings.summary_key == b"0123456789abcdef0123456789abcdef"
    assert "0123456789abcdef" not in repr(settings)
    assert key_from_env({}) is None


@pytest.mark.parametrize(
    "data",
    [
        {"problem": None, "has_document": True, "marker": {"renderDigest": "x"}},  # a marker without its key
        {"problem": None, "has_document": True, "marker": {"key": 3}},
        {"problem": None, "has_document": True, "marker": {"key": "a/b/c", "nested": {"x": 1}}},
        {"problem": None, "has_document": "yes"},
        {"problem": None, "has_document": True, "surprise": 1},
        ["not", "a", "mapping"],
    ],
)
def test_a_stored_summary_that_marker_of_could_not_have_made_is_refused(data: object) -> None:
    assert LiveSummary.from_data(data) is None


def test_a_body_read_ahead_is_never_used_at_another_etag(store: S3Store, tmp_path: Path) -> None:
    """A long-lived process plans twice on one store; a body it read ahead but never opened must
    not stand for the object once Deck has changed it (found in review)."""
    project = fleet(tmp_path / "p", 3)
    apply_all(project, store)
    workspace = workspace_of(project)
    victim = pipeline_id_for("svc1/dev/deploy")
    document = store.read_pipeline(victim).document  # type: ignore[union-attr]
    front50_writes(store, victim, {**document, "description": "edited in Deck"})
    engine.plan(workspace, pod(store, tmp_path, "writer"))
    run = pod(store, tmp_path, "long-lived")
    live = run.read_live_summarised()
    run.prefetch([live[victim]])  # read ahead, never opened
    assert run.summary_misled() is False
    front50_writes(store, victim, {**document, "description": "edited again"})
    engine.plan(workspace, pod(store, tmp_path, "writer2"))  # vouchers at the new ETag
    entry = engine.plan(workspace, run).entries["svc1/dev/deploy"]
    assert "edited again" in entry.unified
    fresh = store.read_pipeline(victim).summary  # type: ignore[union-attr]
    assert vouchers_of(store).entries[victim][1].content_digest == fresh.content_digest


def duplicate_names(store: S3Store) -> list[str]:
    seen: dict[tuple[str, str], list[str]] = {}
    for item in store.client.list_objects_v2(Bucket=BUCKET, Prefix="front50/pipelines/")["Contents"]:
        if item["Key"].endswith("pipeline-metadata.json"):
            doc = json.loads(store.client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read())
            seen.setdefault((doc["application"].lower(), doc["name"].strip().lower()), []).append(doc["id"])
    return [f"{a}/{n}: {ids}" for (a, n), ids in seen.items() if len(ids) > 1]


def test_with_a_key_a_forged_fleet_summary_cannot_hide_a_clash_from_one_partition(
    store: S3Store, tmp_path: Path
) -> None:
    """Without a key, the fleet summary's names are hints a bucket writer could forge (the known
    limit). With a key it is signed too: a forged one is rebuilt from a listing and bodies, so
    a one-partition publish of a create still finds the clash (found in review)."""
    workspace = name_clash(store, tmp_path)
    body = json.loads(store.client.get_object(Bucket=BUCKET, Key=store.summary_key)["Body"].read())
    body["pipelines"][OTHER_ID][2] = "something else"  # mac kept: no key to sign it again
    store.client.put_object(Bucket=BUCKET, Key=store.summary_key, Body=json.dumps(body).encode())
    entry = engine.plan(workspace, pod(store, tmp_path, "narrow"), Selection.of([DEV])).entries[DEV]
    result = engine.apply(workspace, pod(store, tmp_path, "publish"), {DEV: entry.digest}, approver="alice")
    assert entry.status is Status.CONFLICT
    assert [r.outcome for r in result] != ["applied"] and duplicate_names(store) == []


def test_a_signed_fleet_summary_reads_as_before_for_code_without_a_key(
    store: S3Store, tmp_path: Path
) -> None:
    project = fleet(tmp_path / "p", 3)
    apply_all(project, store)
    engine.plan(workspace_of(project), pod(store, tmp_path, "writer"))
    body = store.client.get_object(Bucket=BUCKET, Key=store.summary_key)["Body"].read()
    assert "mac" in json.loads(body)
    assert FleetSummary.from_bytes(body) is not None  # what an older pipeline-sync reads
    assert FleetSummary.from_bytes(body, b"y" * 32, f"s3://{BUCKET}/front50") is None


def test_bodies_a_forked_plan_needs_are_read_by_the_planning_process(
    store: S3Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Enough out-of-sync entries make build_plan diff in forked workers; the deferred bodies they
    diff are read and checked before the fork, so what was read reaches this process's cache."""
    monkeypatch.setenv("PIPELINE_SYNC_RENDER_WORKERS", "2")
    project = fleet(tmp_path / "p", 40)
    apply_all(project, store)
    workspace = workspace_of(project)
    engine.plan(workspace, pod(store, tmp_path, "writer"))
    change_description(project)  # 80 updates: forked diffs
    run = pod(store, tmp_path, "same")
    planned = engine.plan(workspace_of(project), run)
    assert sum(1 for e in planned.entries.values() if e.status is Status.UPDATE) == 80
    again = pod(store, tmp_path, "same")
    counts = counted(again, lambda: engine.plan(workspace_of(project), again))
    assert counts.get("GetObject", 0) == 1, counts  # Front50's marker: every body is in the cache


def test_a_warm_no_op_neither_reads_nor_writes_the_vouchers(store: S3Store, tmp_path: Path) -> None:
    project = vouched_fleet(store, tmp_path)
    workspace = workspace_of(project)
    engine.plan(workspace, pod(store, tmp_path, "warm"))
    warm = S3Store(replace(store.settings, cache_dir=tmp_path / "warm", summary_key=KEY), client=store.client)
    calls: list[str] = []
    counter = lambda model, params, **_: calls.append(f"{model.name} {params.get('Key', '')}")  # noqa: E731
    store.client.meta.events.register("before-call.s3", counter)
    try:
        engine.plan(workspace, warm)
    finally:
        store.client.meta.events.unregister("before-call.s3", counter)
    assert not [c for c in calls if c.endswith(warm.vouchers_key)], calls
