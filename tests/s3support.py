"""Shared helpers for S3-backed tests: fake credentials, a moto bucket, a small project tree."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from pipeline_sync.rendering import Sources
from pipeline_sync.store.s3 import S3Settings, S3Store

PROJECT = Path(__file__).resolve().parent.parent
BUCKET = "front50-test"


@pytest.fixture(autouse=True)
def private_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every test gets its own content and render caches, never the user's cache dir."""
    monkeypatch.setenv("PIPELINE_SYNC_CACHE_DIR", str(tmp_path / "cache"))


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
def store(aws_env: None, tmp_path: Path) -> Iterator[S3Store]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        settings = S3Settings(bucket=BUCKET, cache_dir=tmp_path / "cache")
        yield S3Store(settings, client=client)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the example catalog and templates that a test may edit."""
    root = tmp_path / "project"
    shutil.copytree(PROJECT / "catalog", root / "catalog")
    shutil.copytree(PROJECT / "templates", root / "templates")
    return root


def workspace_of(root: Path) -> Sources:
    return Sources.load(root / "catalog", root / "templates")


def object_keys(store: S3Store) -> list[str]:
    response = store.client.list_objects_v2(Bucket=store.settings.bucket)
    return sorted(o["Key"] for o in response.get("Contents", []))


MINIMAL_TEMPLATE = """\
application: "{{ app_name }}"
name: "deploy-{{ stack }}"
description: "{{ description }}"
stages:
  - refId: "deploy"
    type: deployManifest
    account: "k8s-{{ stack }}"
"""

MINIMAL_DEFAULTS = """\
vars:
  description: plain
stacks:
  dev: {approval: auto}
  prod: {}
"""


def service_yaml(name: str = "svc", stacks: str = "  dev: {pipelines: [deploy]}\n", extra: str = "") -> str:
    return f"name: {name}\nproduct: prod-x\nteam: team-x\nnamespace: ns-x\ngit_repo: repo-x\n{extra}stacks:\n{stacks}"


def write_project(
    root: Path,
    *,
    defaults: str = MINIMAL_DEFAULTS,
    services: dict[str, str] | None = None,
    templates: dict[str, str] | None = None,
) -> Path:
    """A catalog/ and templates/ tree under root, from text; returns root."""
    write_tree(
        root,
        defaults=defaults,
        services=services if services is not None else {"svc": service_yaml()},
        templates=templates if templates is not None else {"deploy": MINIMAL_TEMPLATE},
    )
    return root


def write_tree(
    root: Path, *, defaults: str, services: Mapping[str, str], templates: Mapping[str, str]
) -> None:
    """catalog/defaults.yaml, catalog/services/<name>.yaml and templates/<name>.yaml.j2 under root."""
    (root / "catalog" / "services").mkdir(parents=True, exist_ok=True)
    (root / "templates").mkdir(parents=True, exist_ok=True)
    (root / "catalog" / "defaults.yaml").write_text(defaults, encoding="utf-8")
    for name, text in services.items():
        (root / "catalog" / "services" / f"{name}.yaml").write_text(text, encoding="utf-8")
    for name, text in templates.items():
        (root / "templates" / f"{name}.yaml.j2").write_text(text, encoding="utf-8")
