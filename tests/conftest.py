"""Fixtures for catalog and render tests: a throwaway catalog/ + templates/ tree under a tmp path."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from s3support import write_tree

from pipeline_sync.catalog import Catalog, load_catalog
from pipeline_sync.render import RenderedPipeline, Renderer

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


@pytest.fixture(scope="session")
def make_project() -> MakeProject:
    """make_project(root, defaults=..., services={name: mapping-or-text}, templates={name: text})."""

    def make(
        root: Path,
        *,
        defaults: Text = DEFAULTS,
        services: Mapping[str, Text] | None = None,
        templates: Mapping[str, str] | None = None,
    ) -> Project:
        project = Project(Path(root))
        write_tree(
            project.root,
            defaults=_yaml_text(defaults, {}),
            services={
                name: _service_text(name, service)
                for name, service in (services if services is not None else {"svc": {}}).items()
            },
            templates=templates if templates is not None else {"deploy": TEMPLATE},
        )
        return project

    return make
