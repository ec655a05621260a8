"""Shared helpers for S3-backed tests: fake credentials, a moto bucket, a small project tree."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from pipeline_sync.build import Workspace
from pipeline_sync.front50 import Front50Settings, Front50Store

PROJECT = Path(__file__).resolve().parent.parent
BUCKET = "front50-test"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials so nothing can reach real AWS, and no endpoint from the outside."""
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_PROFILE",
        "PIPELINE_SYNC_ENDPOINT_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("PIPELINE_SYNC_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def store(aws_env: None, tmp_path: Path) -> Iterator[Front50Store]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        settings = Front50Settings(bucket=BUCKET, cache_dir=tmp_path / "cache")
        yield Front50Store(settings, client=client)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the example catalog and templates that a test may edit."""
    root = tmp_path / "project"
    shutil.copytree(PROJECT / "catalog", root / "catalog")
    shutil.copytree(PROJECT / "templates", root / "templates")
    return root


def workspace_of(root: Path) -> Workspace:
    return Workspace.load(root / "catalog", root / "templates")


def object_keys(store: Front50Store) -> list[str]:
    response = store.client.list_objects_v2(Bucket=store.settings.bucket)
    return sorted(o["Key"] for o in response.get("Contents", []))
