"""Adoption of unmanaged pipelines and rollback to earlier S3 versions, against moto."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner, Result
from moto.server import ThreadedMotoServer
from s3support import BUCKET, workspace_of

from pipeline_sync import engine
from pipeline_sync.adopt import AdoptError, adopt, pin_id
from pipeline_sync.cli import compute_plan, main
from pipeline_sync.engine import Selection
from pipeline_sync.identity import pipeline_id_for
from pipeline_sync.plan import Plan, plan_digest
from pipeline_sync.provenance import MARKER_FIELD, content_digest
from pipeline_sync.rollback import RollbackError, apply_rollback, plan_rollback
from pipeline_sync.status import Status
from pipeline_sync.store.s3 import S3Store

KEY = "checkout/prod/deploy"
LEGACY = {
    "id": "legacy-checkout-prod",
    "application": "checkout",
    "name": "Deploy-Prod",
    "limitConcurrent": False,
    "stages": [{"refId": "1", "type": "wait", "waitTime": 30}],
}


def cli(project: Path, *args: str) -> Result:
    catalog = ["--catalog", str(project / "catalog"), "--templates", str(project / "templates")]
    return CliRunner().invoke(main, [*catalog, *args])


def apply_keys(project: Path, store: S3Store, keys: list[str] | None = None) -> list[str]:
    ws = workspace_of(project)
    plan = engine.plan(ws, store, Selection.of(keys or sorted(ws.catalog.targets)))
    approved = {k: e.digest for k, e in plan.entries.items() if e.actionable}
    return [r.outcome for r in engine.apply(ws, store, approved, approver="alice")]


def put_unmanaged(store: S3Store, document: dict[str, object]) -> None:
    pid = str(document["id"])
    store.put_pipeline(pid, json.dumps(document).encode(), if_match=None)


def pipelines_named(store: S3Store, application: str, name: str) -> list[str]:
    return sorted(
        obj.pipeline_id
        for obj in store.read_live().values()
        if obj.document
        and obj.document.get("application") == application
        and str(obj.document.get("name", "")).lower() == name
    )


# -- adoption ---------------------------------------------------------------------------------


def test_adopt_pins_the_id_and_the_next_plan_takes_it_over_in_place(project: Path, store: S3Store) -> None:
    service = project / "catalog" / "services" / "checkout.yaml"
    original = "# Payments' checkout service.\n" + service.read_text()
    service.write_text(original)
    put_unmanaged(store, LEGACY)
    assert (
        engine.plan(workspace_of(project), store, Selection.of([KEY])).entries[KEY].status is Status.CONFLICT
    )

    done = adopt(project / "catalog", project / "templates", store, "checkout", "deploy-prod")

    assert (done.key, done.pipeline_id) == (KEY, "legacy-checkout-prod")
    assert service.read_text() == original.replace(
        "  prod:\n    pipelines:", "  prod:\n    ids: {deploy: legacy-checkout-prod}\n    pipelines:"
    )
    entry = engine.plan(workspace_of(project), store, Selection.of([KEY])).entries[KEY]
    assert (entry.status, entry.adopt, entry.pipeline_id) == (Status.UPDATE, True, "legacy-checkout-prod")
    assert done.entry.digest == entry.digest
    assert "waitTime" in entry.unified  # the live content the catalog's render replaces
    assert set(apply_keys(project, store)) == {"applied"}
    live = store.read_pipeline("legacy-checkout-prod")
    assert live is not None and live.document is not None and live.document[MARKER_FIELD]["key"] == KEY
    assert pipelines_named(store, "checkout", "deploy-prod") == ["legacy-checkout-prod"]  # no duplicate
    assert store.read_pipeline(pipeline_id_for(KEY)) is None  # no new id
    assert (
        engine.plan(workspace_of(project), store, Selection.of([KEY])).entries[KEY].status is Status.IN_SYNC
    )


def test_adopt_through_the_cli(project: Path, store: S3Store, bucket_env: None) -> None:
    put_unmanaged(store, LEGACY)
    result = cli(project, "adopt", "checkout", "DEPLOY-PROD")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert (
        lines[0] == "Adopting pipeline legacy-checkout-prod (checkout/deploy-prod) as checkout/prod/deploy."
    )
    assert lines[1].endswith("catalog/services/checkout.yaml: stacks.prod.ids.deploy")
    assert lines[-1] == (
        "Next: commit the catalog change, then `pipeline-sync plan --select checkout/prod/deploy "
        "--out plan.json` (an update that adopts it, same id) and `pipeline-sync apply plan.json`."
    )


CHECKOUT_NAMES = (
    "checkout/dev/deploy -> 'deploy-dev', checkout/prod/deploy -> 'deploy-prod', "
    "checkout/prod/deploy-canary -> 'deploy-canary-prod', checkout/qa/deploy -> 'deploy-qa', "
    "checkout/stage/deploy -> 'deploy-stage'"
)


@pytest.mark.parametrize(
    ("live", "application", "name", "message"),
    [
        (
            [],
            "checkout",
            "deploy-prod",
            "no pipeline named 'deploy-prod' in application 'checkout' is in the bucket "
            "(names are compared case-insensitively, as Front50 does)",
        ),
        (
            [{"id": "hand-made", "application": "checkout", "name": "hand-made", "stages": []}],
            "checkout",
            "hand-made",
            "cannot tell which catalog target pipeline 'hand-made' of 'checkout' is: no target of service "
            f"'checkout' renders that name ({CHECKOUT_NAMES}). Make exactly one template render it, then "
            "adopt.",
        ),
        (
            [{"id": "old-1", "application": "legacy", "name": "by-hand", "stages": []}],
            "legacy",
            "by-hand",
            "no catalog service has application 'legacy' (compared case-insensitively, as Front50 does): "
            "add catalog/services/legacy.yaml (its `name`, or its `application:`, is the application) with "
            "the template that renders 'by-hand', then adopt",
        ),
        (
            [
                {**LEGACY, "id": "twin-a"},
                {**LEGACY, "id": "twin-b", "name": "deploy-PROD"},
            ],
            "checkout",
            "deploy-prod",
            "2 pipelines are named 'deploy-prod' in application 'checkout' (twin-a, twin-b); Front50 "
            "allows one per name: delete or rename the others in Deck first",
        ),
    ],
)
def test_adopt_refuses_clearly_and_leaves_the_catalog_alone(
    project: Path,
    store: S3Store,
    live: list[dict[str, object]],
    application: str,
    name: str,
    message: str,
) -> None:
    for document in live:
        put_unmanaged(store, document)
    before = {p: p.read_text() for p in (project / "catalog").rglob("*.yaml")}
    with pytest.raises(AdoptError) as caught:
        adopt(project / "catalog", project / "templates", store, application, name)
    assert str(caught.value) == message
    assert {p: p.read_text() for p in (project / "catalog").rglob("*.yaml")} == before


def test_adopt_refuses_a_managed_pipeline(project: Path, store: S3Store) -> None:
    apply_keys(project, store, [KEY])
    with pytest.raises(AdoptError) as caught:
        adopt(project / "catalog", project / "templates", store, "checkout", "deploy-prod")
    assert str(caught.value) == (
        f"pipeline {pipeline_id_for(KEY)} (checkout/deploy-prod) is already managed by pipeline-sync "
        f"as '{KEY}'; there is nothing to adopt"
    )


@pytest.mark.parametrize(
    ("text", "stack", "expected"),
    [
        (
            "stacks:\n  dev: {pipelines: [deploy]}  # keep me\n",
            "dev",
            "stacks:\n  dev: {pipelines: [deploy], ids: {deploy: p-1}}  # keep me\n",
        ),
        (
            "stacks:\n  dev: {pipelines: [deploy], ids: {other: x} }\n",
            "dev",
            "stacks:\n  dev: {pipelines: [deploy], ids: {other: x, deploy: p-1} }\n",
        ),
        (
            "stacks:\n  # the real one\n  prod:\n    pipelines: [deploy]   # why\n    vars: {a: 1}\n",
            "prod",
            "stacks:\n  # the real one\n  prod:\n    ids: {deploy: p-1}\n    pipelines: [deploy]   # why\n"
            "    vars: {a: 1}\n",
        ),
        (
            "stacks:\n  prod:\n    ids:\n      other: x   # pinned by hand\n    pipelines: [deploy]\n",
            "prod",
            "stacks:\n  prod:\n    ids:\n      deploy: p-1\n      other: x   # pinned by hand\n"
            "    pipelines: [deploy]\n",
        ),
    ],
)
def test_pin_id_is_one_targeted_insertion(text: str, stack: str, expected: str) -> None:
    assert pin_id(text, "catalog/services/svc.yaml", stack, "deploy", "p-1") == expected


@pytest.mark.parametrize(
    ("pipeline_id", "written"), [("123", '"123"'), ("true", '"true"'), ("null", '"null"')]
)
def test_pin_id_quotes_ids_yaml_would_misread(pipeline_id: str, written: str) -> None:
    text = "stacks:\n  dev: {pipelines: [deploy]}\n"
    assert pin_id(text, "f", "dev", "deploy", pipeline_id) == (
        f"stacks:\n  dev: {{pipelines: [deploy], ids: {{deploy: {written}}}}}\n"
    )


# -- rollback ---------------------------------------------------------------------------------


def versioned(store: S3Store) -> S3Store:
    store.client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return store


def bump_chart(project: Path) -> None:
    defaults = project / "catalog" / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace("chart_version: 1.4.0", "chart_version: 1.4.1"))


def two_releases(project: Path, store: S3Store) -> tuple[str, str]:
    """v1 applied, then v2 (chart 1.4.1); returns (pipeline id, content digest of v1)."""
    apply_keys(project, versioned(store), [KEY])
    pipeline_id = pipeline_id_for(KEY)
    live = store.read_pipeline(pipeline_id)
    assert live is not None and live.document is not None
    v1 = content_digest(live.document)
    bump_chart(project)
    assert apply_keys(project, store, [KEY]) == ["applied"]
    return pipeline_id, v1


def test_rollback_is_an_ordinary_entry_bound_to_the_live_etag_and_the_version(
    project: Path, store: S3Store
) -> None:
    pipeline_id, _ = two_releases(project, store)
    versions = store.pipeline_versions(pipeline_id)
    entry = plan_rollback(store, KEY, catalog_id=pipeline_id)
    live = store.read_pipeline(pipeline_id)
    restored = store.read_pipeline_version(pipeline_id, versions[1].version_id).document
    assert live is not None and restored is not None
    assert (entry.status, entry.rollback_version, entry.source) == (
        Status.UPDATE,
        versions[1].version_id,
        f"rollback:{versions[1].version_id}",
    )
    assert entry.digest == plan_digest(KEY, live.etag, restored)
    assert entry.messages == (f"rolls the live pipeline back to S3 version {versions[1].version_id}",)
    assert "1.4.1" in entry.diff_yaml and "1.4.0" in entry.diff_yaml
    assert Plan.from_json(json.loads(Plan({KEY: entry}).dumps())).entries[KEY] == entry


def test_rollback_through_the_cli_then_apply(project: Path, store: S3Store, bucket_env: None) -> None:
    pipeline_id, v1 = two_releases(project, store)
    plan_file = project / "rollback.json"
    planned = cli(project, "rollback", KEY, "--out", str(plan_file))
    assert planned.exit_code == 0, planned.output
    assert planned.output.splitlines()[-1] == (
        f"After it is applied, the next reconcile shows the catalog's version of {KEY} again as an update "
        "(stacks with approval: auto apply it on their own): revert the catalog or template change too, "
        "or the next approved plan undoes this rollback."
    )
    applied = cli(project, "apply", str(plan_file), "--approver", "carol")
    assert applied.exit_code == 0, applied.output
    version = store.pipeline_versions(pipeline_id)[2].version_id  # v1, now two behind
    assert f"applied: {KEY}: rolled back to S3 version {version}" in applied.output
    live = store.read_pipeline(pipeline_id)
    assert live is not None and live.document is not None
    assert content_digest(live.document) == v1
    assert live.document[MARKER_FIELD]["restoredFrom"] == version
    assert live.document[MARKER_FIELD]["approvedBy"] == "carol"
    after = engine.plan(workspace_of(project), store, Selection.of([KEY])).entries[KEY]
    assert after.status is Status.UPDATE and "1.4.1" in after.diff_yaml  # the catalog's version again
    again = cli(project, "apply", str(plan_file))
    assert again.exit_code == 1 and "stale plan" in again.output  # applies exactly once


def test_rollback_without_versioning_says_so_and_exits_1(
    project: Path, store: S3Store, bucket_env: None
) -> None:
    apply_keys(project, store, [KEY])
    result = cli(project, "rollback", KEY)
    assert result.exit_code == 1
    assert result.output == (
        f"error: s3://{BUCKET} has no versioning, so it keeps no earlier version to roll back to. Revert "
        "the catalog or template change and apply that instead (and consider enabling versioning on the "
        "bucket, as Front50 does for buckets it creates).\n"
    )


def test_rollback_refused_when_the_live_pipeline_moved(project: Path, store: S3Store) -> None:
    pipeline_id, _ = two_releases(project, store)
    entry = plan_rollback(store, KEY, catalog_id=pipeline_id)
    live = store.read_pipeline(pipeline_id)
    assert live is not None and live.document is not None
    edited = {**live.document, "description": "hotfix by dave"}
    store.client.put_object(Bucket=BUCKET, Key=live.key, Body=json.dumps(edited).encode())
    result = apply_rollback(store, entry, approver="a")
    assert (result.outcome, result.message) == (
        "stale",
        f"{KEY}: stale plan: the live pipeline moved since the rollback was planned; nothing was written. "
        "Plan the rollback again.",
    )
    after = store.read_pipeline(pipeline_id)
    assert after is not None and after.document == edited


def test_rollback_to_a_named_version_and_unknown_versions(project: Path, store: S3Store) -> None:
    pipeline_id, v1 = two_releases(project, store)
    first = store.pipeline_versions(pipeline_id)[-1].version_id
    entry = plan_rollback(store, KEY, catalog_id=pipeline_id, to_version=first)
    assert entry.rollback_version == first and content_digest(entry.desired or {}) == v1
    with pytest.raises(
        RollbackError, match=r"^checkout/prod/deploy has no version 'nope' in s3://front50-test"
    ):
        plan_rollback(store, KEY, catalog_id=pipeline_id, to_version="nope")
    latest = store.pipeline_versions(pipeline_id)[0].version_id
    with pytest.raises(RollbackError) as caught:
        plan_rollback(store, KEY, catalog_id=pipeline_id, to_version=latest)
    assert str(caught.value) == f"version {latest} is the live version of {KEY}; nothing to do"


def test_rollback_needs_an_earlier_version(project: Path, store: S3Store) -> None:
    apply_keys(project, versioned(store), [KEY])
    with pytest.raises(RollbackError, match=r"^checkout/prod/deploy has no earlier version to roll back to"):
        plan_rollback(store, KEY, catalog_id=pipeline_id_for(KEY))


def test_rollback_refuses_a_version_pipeline_sync_did_not_write(project: Path, store: S3Store) -> None:
    put_unmanaged(versioned(store), LEGACY)
    adopt(project / "catalog", project / "templates", store, "checkout", "deploy-prod")
    assert apply_keys(project, store, [KEY]) == ["applied"]
    with pytest.raises(RollbackError) as caught:
        plan_rollback(store, KEY, catalog_id="legacy-checkout-prod")
    version = store.pipeline_versions("legacy-checkout-prod")[1].version_id
    assert str(caught.value) == (
        f"version {version} of front50/pipelines/legacy-checkout-prod/pipeline-metadata.json was not "
        f"written by pipeline-sync for {KEY} (no matching {MARKER_FIELD} marker); restore it by hand "
        "from the bucket's history if you really mean it"
    )


def test_rollback_restores_a_deleted_pipeline_by_id(project: Path, store: S3Store) -> None:
    apply_keys(project, versioned(store))
    key = "notifications/dev/deploy"
    pipeline_id = pipeline_id_for(key)
    (project / "catalog" / "services" / "notifications.yaml").unlink()
    defaults = project / "catalog" / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace("prune: false", "prune: true"))
    delete = compute_plan(workspace_of(project), store, key).entries[key]
    assert delete.status is Status.DELETE
    engine.apply(workspace_of(project), store, {key: delete.digest}, approver="a")
    assert store.read_pipeline(pipeline_id) is None
    entry = plan_rollback(store, pipeline_id)
    assert (entry.key, entry.status, entry.live_etag) == (key, Status.CREATE, None)
    assert apply_rollback(store, entry, approver="a").outcome == "applied"
    live = store.read_pipeline(pipeline_id)
    assert live is not None and live.document is not None and live.document[MARKER_FIELD]["key"] == key


# -- end to end: the real command against a moto server ----------------------------------------


@pytest.mark.e2e
def test_adopt_then_rollback_end_to_end(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PIPELINE_SYNC_"))}
        env.update(
            AWS_ACCESS_KEY_ID="e2e",
            AWS_SECRET_ACCESS_KEY="e2e",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT_URL_S3=url,
            PIPELINE_SYNC_BUCKET=BUCKET,
            PIPELINE_SYNC_CACHE_DIR=str(tmp_path / "cache"),
        )
        client = boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="e2e",
            aws_secret_access_key="e2e",
        )
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        client.put_object(
            Bucket=BUCKET,
            Key="front50/pipelines/legacy-checkout-prod/pipeline-metadata.json",
            Body=json.dumps(LEGACY).encode(),
        )
        work = tmp_path / "work"
        shutil.copytree(Path(__file__).resolve().parent.parent / "catalog", work / "catalog")
        shutil.copytree(Path(__file__).resolve().parent.parent / "templates", work / "templates")
        command = Path(sys.executable).parent / "pipeline-sync"

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [str(command), *args], cwd=work, env=env, capture_output=True, text=True, timeout=120
            )

        conflict = run("plan", "--select", KEY)
        assert conflict.returncode == 1 and "conflict: checkout/prod/deploy" in conflict.stdout
        adopted = run("adopt", "checkout", "deploy-prod")
        assert adopted.returncode == 0, adopted.stderr
        planned = run("plan", "--select", KEY, "--out", "adopt.json")
        assert planned.returncode == 2, planned.stdout + planned.stderr
        assert "adopts the unmanaged pipeline legacy-checkout-prod" in planned.stdout
        assert run("apply", "adopt.json").returncode == 0
        rollback = run("rollback", KEY, "--out", "rollback.json")
        assert rollback.returncode == 1  # the version before adoption was not written by pipeline-sync
        assert "was not written by pipeline-sync" in rollback.stderr
        bump_chart(work)
        assert run("plan", "--select", KEY, "--out", "v2.json").returncode == 2
        assert run("apply", "v2.json").returncode == 0
        rollback = run("rollback", KEY, "--out", "rollback.json")
        assert rollback.returncode == 0, rollback.stderr
        applied = run("apply", "rollback.json", "--approver", "erin")
        assert applied.returncode == 0, applied.stderr
        assert "1 applied, 0 refused or failed (approver: erin)" in applied.stdout
        body = client.get_object(
            Bucket=BUCKET, Key="front50/pipelines/legacy-checkout-prod/pipeline-metadata.json"
        )["Body"].read()
        restored = json.loads(body)
        assert restored[MARKER_FIELD]["key"] == KEY and restored[MARKER_FIELD]["approvedBy"] == "erin"
        assert "1.4.0" in body.decode() and "1.4.1" not in body.decode()
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]]
        assert f"front50/pipelines/{pipeline_id_for(KEY)}/pipeline-metadata.json" not in keys
    finally:
        server.stop()
