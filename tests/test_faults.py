"""Faults while applying: every object stays its old or its approved new version, and a re-run converges."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from dagster_dev import moto_server
from faults import FaultInjector, atomic_conditional_writes
from s3support import workspace_of

from pipeline_sync import engine
from pipeline_sync.plan import Plan, build_plan
from pipeline_sync.provenance import content_digest
from pipeline_sync.rendering import render_all
from pipeline_sync.status import Status
from pipeline_sync.store.s3 import S3Settings, S3Store, make_s3_client
from pipeline_sync.validate import validate_pipeline

pytestmark = pytest.mark.e2e
HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def s3_environment(endpoint: str, monkeypatch: pytest.MonkeyPatch, aws_env: None) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    monkeypatch.setenv("PIPELINE_SYNC_S3_READER", "auto")  # a server over HTTP: obstore reads too
    return endpoint


def fresh_bucket(name: str, tmp_path: Path) -> S3Settings:
    client = boto3.client("s3")
    client.create_bucket(Bucket=name)
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return S3Settings(bucket=name, cache_dir=tmp_path / f"cache-{name}")


def plan_of(project: Path, store: S3Store) -> Plan:
    ws = workspace_of(project)
    return build_plan(ws.catalog, render_all(ws), store.read_live())


def apply_plan(project: Path, store: S3Store, plan: Plan, approver: str = "alice") -> list[str]:
    approved = {k: e.digest for k, e in plan.entries.items() if e.actionable}
    return [r.outcome for r in engine.apply(workspace_of(project), store, approved, approver=approver)]


def change_catalog(project: Path) -> None:
    """Every deploy pipeline changes, and a new stack adds creates."""
    defaults = project / "catalog" / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace("chart_version: 1.4.0", "chart_version: 1.4.1"))
    service = project / "catalog" / "services" / "catalog-api.yaml"
    service.write_text(
        service.read_text().replace(
            "  qa: {pipelines: [deploy]}", "  qa: {pipelines: [deploy]}\n  stage: {pipelines: [deploy]}"
        )
    )


def bucket_state(store: S3Store) -> dict[str, dict[str, object]]:
    """Every pipeline object, asserted to be valid JSON and a valid pipeline; markers asserted numeric."""
    client, bucket = store.client, store.settings.bucket
    found = {}
    for item in client.list_objects_v2(Bucket=bucket, Prefix="front50/")["Contents"]:
        body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        document = json.loads(body)  # always valid JSON
        if item["Key"].endswith("last-modified.json"):
            assert isinstance(document["lastModified"], int)
        elif item["Key"].endswith("pipeline-metadata.json"):
            assert validate_pipeline(item["Key"], document) == []
            found[item["Key"]] = document
    return found


def versions_per_key(store: S3Store) -> dict[str, int]:
    response = store.client.list_object_versions(Bucket=store.settings.bucket, Prefix="front50/pipelines/")
    counts: dict[str, int] = {}
    for version in response.get("Versions", []):
        if version["Key"].endswith("pipeline-metadata.json"):
            counts[version["Key"]] = counts.get(version["Key"], 0) + 1
    return counts


def prepare(seed: int, project: Path, tmp_path: Path) -> tuple[S3Settings, dict[str, str], Plan]:
    """v1 applied cleanly, catalog changed to v2; returns settings, v1 digests by key, the v2 plan."""
    settings = fresh_bucket(f"faults-{seed}", tmp_path)
    clean = S3Store(settings)
    assert set(apply_plan(project, clean, plan_of(project, clean))) == {"applied"}
    before = {key: content_digest(doc) for key, doc in bucket_state(clean).items()}
    change_catalog(project)
    return settings, before, plan_of(project, clean)


def assert_old_or_new(store: S3Store, before: dict[str, str], plan: Plan) -> None:
    new = {
        store.pipeline_key(e.pipeline_id or ""): content_digest(e.desired or {})
        for e in plan.entries.values()
        if e.actionable
    }
    for key, document in bucket_state(store).items():
        assert content_digest(document) in {before.get(key), new.get(key)}, key


def assert_converges(project: Path, store: S3Store, before: dict[str, str], v2: Plan) -> None:
    rerun = plan_of(project, store)
    assert not rerun.has_errors
    assert set(apply_plan(project, store, rerun)) <= {"applied"}
    final = plan_of(project, store)
    assert final.counts() == {"in-sync": len(final.entries)}
    versions = versions_per_key(store)
    for entry in v2.entries.values():
        key = store.pipeline_key(entry.pipeline_id or "")
        # exactly one write per approved change, none for the rest
        expected = (2 if key in before else 1) if entry.actionable else 1
        assert versions[key] == expected, (entry.key, versions[key])


@pytest.mark.parametrize("seed", range(12))
def test_injected_faults_leave_old_or_new_and_rerun_converges(
    seed: int, s3_environment: str, project: Path, tmp_path: Path
) -> None:
    settings, before, v2 = prepare(seed, project, tmp_path)
    assert sum(e.status is Status.UPDATE for e in v2.entries.values()) >= 10
    faulty_client = make_s3_client(settings)
    injector = FaultInjector(seed=seed, rate=0.3)
    injector.attach(faulty_client)
    outcomes = apply_plan(project, S3Store(settings, client=faulty_client), v2)
    assert sum(injector.injected.values()) > 0
    clean = S3Store(settings)
    assert_old_or_new(clean, before, v2)
    assert set(outcomes) <= {"applied", "failed", "stale"}
    assert_converges(project, clean, before, v2)


@pytest.mark.parametrize(("kill_at", "phase"), [(1, "before"), (3, "after"), (6, "before"), (9, "after")])
def test_sigkill_mid_apply_then_rerun_converges(
    kill_at: int, phase: str, s3_environment: str, project: Path, tmp_path: Path
) -> None:
    settings, before, v2 = prepare(100 + kill_at, project, tmp_path)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(v2.dumps())
    env = dict(
        os.environ, PIPELINE_SYNC_BUCKET=settings.bucket, PIPELINE_SYNC_CACHE_DIR=str(tmp_path / "kill-cache")
    )
    killed = subprocess.run(
        [sys.executable, str(HERE / "kill_apply.py"), str(plan_file), str(project), str(kill_at), phase],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr
    clean = S3Store(settings)
    assert_old_or_new(clean, before, v2)
    assert_converges(project, clean, before, v2)


def test_two_racing_applies_write_once(s3_environment: str, project: Path, tmp_path: Path) -> None:
    settings, _before, v2 = prepare(200, project, tmp_path)
    key = "checkout/prod/deploy"
    entry = v2.entries[key]
    barrier = threading.Barrier(2)
    results: list[str] = []

    def racer() -> None:
        store = S3Store(settings)
        ws = workspace_of(project)

        def meet_the_other_racer(params: dict[str, object], **_: object) -> None:
            if str(params["Key"]).endswith("pipeline-metadata.json"):
                barrier.wait(timeout=30)  # both have planned and read the same ETag: now both write

        store.client.meta.events.register("provide-client-params.s3.PutObject", meet_the_other_racer)
        results.extend(r.outcome for r in engine.apply(ws, store, {key: entry.digest}, approver="racer"))

    threads = [threading.Thread(target=racer) for _ in range(2)]
    with atomic_conditional_writes():  # moto checks then writes without a lock; S3 is atomic
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert sorted(results) == ["applied", "stale"]
    assert versions_per_key(S3Store(settings))[S3Store(settings).pipeline_key(entry.pipeline_id or "")] == 2


def test_deck_edit_between_plan_and_apply_is_refused(
    s3_environment: str, project: Path, tmp_path: Path
) -> None:
    settings, _before, v2 = prepare(300, project, tmp_path)
    store = S3Store(settings)
    entry = v2.entries["search/prod/deploy"]
    live = store.read_pipeline(entry.pipeline_id or "")
    assert live is not None and live.document is not None
    edited = {**live.document, "description": "hotfix by dave"}
    store.client.put_object(Bucket=settings.bucket, Key=live.key, Body=json.dumps(edited))
    [result] = engine.apply(workspace_of(project), store, {entry.key: entry.digest}, approver="a")
    assert result.outcome == "stale" and "stale plan" in result.message
    after = store.read_pipeline(entry.pipeline_id or "")
    assert after is not None and after.document == edited
