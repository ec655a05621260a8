"""End to end through the CLI against moto's HTTP server: plan, apply, drift, stale, unmanaged."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from dagster_dev import moto_server

PROJECT = Path(__file__).resolve().parent.parent
BUCKET = "front50-e2e"
KEY = "checkout/prod/deploy"

pytestmark = pytest.mark.e2e


@pytest.fixture
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def cli_env(moto_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PIPELINE_SYNC_"))}
    env.update(
        AWS_ACCESS_KEY_ID="e2e",
        AWS_SECRET_ACCESS_KEY="e2e",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL_S3=moto_url,
        PIPELINE_SYNC_BUCKET=BUCKET,
        PIPELINE_SYNC_CACHE_DIR=str(tmp_path / "cache"),
    )
    return env


def s3(env: dict[str, str]) -> object:
    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL_S3"],
        aws_access_key_id="e2e",
        aws_secret_access_key="e2e",
        region_name="us-east-1",
    )


def run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).parent / "pipeline-sync"
    return subprocess.run([str(cli), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_plan_apply_drift_stale_unmanaged(cli_env: dict[str, str], tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(PROJECT / "catalog", work / "catalog")
    shutil.copytree(PROJECT / "templates", work / "templates")
    client = s3(cli_env)
    client.create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
    unmanaged = {"id": "legacy-1", "application": "legacy", "name": "by-hand", "stages": []}
    client.put_object(  # type: ignore[attr-defined]
        Bucket=BUCKET,
        Key="front50/pipelines/legacy-1/pipeline-metadata.json",
        Body=json.dumps(unmanaged),
    )

    first = run(cli_env, work, "plan", "--out", "plan.json")
    assert first.returncode == 2, first.stderr
    assert "Summary: 13 create" in first.stdout

    applied = run(cli_env, work, "apply", "plan.json", "--approver", "carol")
    assert applied.returncode == 0, applied.stderr
    assert "13 applied, 0 refused or failed (approver: carol)" in applied.stdout

    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"])  # type: ignore[attr-defined]
    apps = [
        k for k in keys if k.startswith("front50/applications/") and k.endswith("application-metadata.json")
    ]
    assert apps == [
        f"front50/applications/{a}/application-metadata.json"
        for a in ["catalog-api", "checkout", "notifications", "search"]
    ]
    assert "front50/pipelines/last-modified.json" in keys
    assert "front50/applications/last-modified.json" in keys
    assert len([k for k in keys if k.endswith("pipeline-metadata.json")]) == 14
    marker = json.loads(
        client.get_object(Bucket=BUCKET, Key="front50/pipelines/last-modified.json")["Body"].read()
    )  # type: ignore[attr-defined]
    assert isinstance(marker["lastModified"], int)
    app = json.loads(
        client.get_object(Bucket=BUCKET, Key="front50/applications/checkout/application-metadata.json")[
            "Body"
        ].read()  # type: ignore[attr-defined]
    )
    assert app["name"] == "CHECKOUT" and app["email"] == "payments@example.com"

    quiet = run(cli_env, work, "plan", "--json")
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    entries = json.loads(quiet.stdout)["entries"]
    assert {e["status"] for e in entries} == {"in-sync"}
    pipeline_id = next(e["pipeline_id"] for e in entries if e["key"] == KEY)

    # Plan a catalog change, then let a person edit the pipeline in Deck before it is applied.
    defaults = work / "catalog" / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace("values_branch: release", "values_branch: release-2"))
    planned = run(cli_env, work, "plan", "--select", KEY, "--out", "stale.json")
    assert planned.returncode == 2
    obj_key = f"front50/pipelines/{pipeline_id}/pipeline-metadata.json"
    live = json.loads(client.get_object(Bucket=BUCKET, Key=obj_key)["Body"].read())  # type: ignore[attr-defined]
    live["description"] = "emergency fix by dave"
    client.put_object(Bucket=BUCKET, Key=obj_key, Body=json.dumps(live))  # type: ignore[attr-defined]

    drift = run(cli_env, work, "plan", "--select", KEY, "--json")
    assert drift.returncode == 2
    [entry] = json.loads(drift.stdout)["entries"]
    assert entry["status"] == "drift"

    stale = run(cli_env, work, "apply", "stale.json")
    assert stale.returncode == 1
    assert "stale" in stale.stderr
    after = json.loads(client.get_object(Bucket=BUCKET, Key=obj_key)["Body"].read())  # type: ignore[attr-defined]
    assert after["description"] == "emergency fix by dave"

    legacy = json.loads(
        client.get_object(Bucket=BUCKET, Key="front50/pipelines/legacy-1/pipeline-metadata.json")[
            "Body"
        ].read()  # type: ignore[attr-defined]
    )
    assert legacy == unmanaged


def test_validate_and_render_on_example_catalog(tmp_path: Path) -> None:
    env = dict(os.environ)
    ok = run(env, PROJECT, "validate")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "13 targets: 13 valid, 0 invalid" in ok.stdout
    out = run(env, PROJECT, "render", "--select", "checkout/*", "--out", str(tmp_path / "out"))
    assert out.returncode == 0, out.stderr
    written = sorted(
        p.relative_to(tmp_path / "out").parts[0] for p in (tmp_path / "out").rglob("pipeline-metadata.json")
    )
    assert written == ["pipelines"] * 5
