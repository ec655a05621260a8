"""Every shared fixture: private caches, fake AWS with a moto bucket, and project trees on disk."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws
from s3support import BUCKET, PROJECT

from pipeline_sync.catalog import Catalog, load_catalog
from pipeline_sync.render import RenderedPipeline, Renderer
from pipeline_sync.store.s3 import S3Settings, S3Store

# --- caches and AWS ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def private_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every test gets its own content and render caches, never the user's cache dir."""
    monkeypatch.setenv("PIPELINE_SYNC_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def botocore_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bulk reads through botocore alone: mock_aws answers botocore in process, and obstore
    (pipeline_sync.store.fast_reads) would go to the network. A test against a moto server over
    HTTP sets PIPELINE_SYNC_S3_READER=auto, as a subprocess that is not given it is."""
    monkeypatch.setenv("PIPELINE_SYNC_S3_READER", "botocore")


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
    """An S3 store on an empty moto bucket; the test runs inside mock_aws, so the CLI's own client is mocked too."""
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        settings = S3Settings(bucket=BUCKET, cache_dir=tmp_path / "cache")
        yield S3Store(settings, client=client)


@pytest.fixture
def bucket_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """PIPELINE_SYNC_BUCKET names the moto bucket, for code that builds its store from the environment (the CLI)."""
    monkeypatch.setenv("PIPELINE_SYNC_BUCKET", BUCKET)


# --- project trees ----------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the example catalog and templates that a test may edit."""
    root = tmp_path / "project"
    shutil.copytree(PROJECT / "catalog", root / "catalog")
    shutil.copytree(PROJECT / "templates", root / "templates")
    return root


DEFAULTS: dict[str, Any] = {"stacks": {"dev": {}, "prod": {}}}
SERVICE_FIELDS: dict[str, Any] = {
    "product": "shop",
    "team": "shop-team",
    "email": "shop@example.com",
    "namespace": "shop-ns",
    "git_repo": "shop-repo",
    "stacks": {"dev": {"pipelines": ["deploy"]}},
}
TEMPLATE = 'application: "{{ app_name }}"\nname: "deploy-{{ stack }}"\nstages: []\n'

# A project to plan and apply against a bucket: dev is approved by stack policy, and the one
# stage names an account a test can look for in what was written.
DEPLOY_DEFAULTS = """\
vars:
  description: plain
stacks:
  dev: {approval: auto}
  prod: {}
"""
DEPLOY_TEMPLATE = """\
application: "{{ app_name }}"
name: "deploy-{{ stack }}"
description: "{{ description }}"
stages:
  - refId: "deploy"
    type: deployManifest
    account: "k8s-{{ stack }}"
"""

Text = str | Mapping[str, Any]


@dataclass(frozen=True)
class Project:
    """A catalog/ and templates/ tree on disk, with shortcuts to load and render it."""

    root: Path

    @property
    def catalog_dir(self) -> Path:
        return self.root / "catalog"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    def load(self) -> Catalog:
        return load_catalog(self.catalog_dir, self.templates_dir)

    def render(self, key: str = "svc/dev/deploy") -> RenderedPipeline:
        """Load the catalog afresh and render one target with a fresh renderer."""
        catalog = self.load()
        return Renderer(self.templates_dir, catalog).render(catalog.targets[key])

    def write_service(self, name: str, service: Text) -> Path:
        """Write services/<name>.yaml: text verbatim, or a mapping over the default service fields."""
        path = self.catalog_dir / "services" / f"{name}.yaml"
        path.write_text(_service_text(name, service), encoding="utf-8")
        return path


def _service_text(name: str, service: Text) -> str:
    return _yaml_text(service, {"name": name, **SERVICE_FIELDS})


def _yaml_text(value: Text, base: Mapping[str, Any]) -> str:
    if isinstance(value, str):
        return value
    return yaml.safe_dump({**base, **value}, sort_keys=False)  # escapes survive a round trip


MakeProject = Callable[..., Project]


def build_project(
    root: Path,
    *,
    defaults: Text = DEFAULTS,
    services: Mapping[str, Text] | None = None,
    templates: Mapping[str, str] | None = None,
) -> Project:
    """The one way to build a project tree: catalog/defaults.yaml, catalog/services/<name>.yaml and
    templates/<name>.yaml.j2 under root. Text is written verbatim; a mapping is dumped, a service's
    over SERVICE_FIELDS. By default: DEFAULTS, one service "svc" and TEMPLATE as "deploy"."""
    project = Project(Path(root))
    (project.catalog_dir / "services").mkdir(parents=True, exist_ok=True)
    project.templates_dir.mkdir(parents=True, exist_ok=True)
    (project.catalog_dir / "defaults.yaml").write_text(_yaml_text(defaults, {}), encoding="utf-8")
    for name, service in (services if services is not None else {"svc": {}}).items():
        project.write_service(name, service)
    for name, text in (templates if templates is not None else {"deploy": TEMPLATE}).items():
        (project.templates_dir / f"{name}.yaml.j2").write_text(text, encoding="utf-8")
    return project


@pytest.fixture(scope="session")
def make_project() -> MakeProject:
    """build_project, as a fixture for tests that take their helpers as parameters."""
    return build_project
