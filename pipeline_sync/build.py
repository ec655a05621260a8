"""Render and validate every target of a catalog: the pure front half of a plan."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline_sync.catalog import Catalog, Target, load_catalog
from pipeline_sync.errors import RenderError
from pipeline_sync.render import RenderedPipeline, Renderer
from pipeline_sync.spinnaker import validate_fleet, validate_pipeline


@dataclass(frozen=True)
class RenderOutcome:
    """A target's render and every problem found with it (empty problems = valid)."""

    target: Target
    rendered: RenderedPipeline | None
    problems: tuple[str, ...]

    @property
    def valid(self) -> bool:
        return self.rendered is not None and not self.problems


@dataclass(frozen=True)
class Workspace:
    """A loaded catalog and its renderer."""

    catalog: Catalog
    renderer: Renderer

    @classmethod
    def load(cls, catalog_dir: Path, templates_dir: Path) -> Workspace:
        catalog = load_catalog(catalog_dir, templates_dir)
        return cls(catalog=catalog, renderer=Renderer(templates_dir, catalog))


def select_keys(keys: list[str] | Mapping[str, object], pattern: str | None) -> list[str]:
    """Keys matching a shell glob (all when pattern is None), sorted."""
    return sorted(k for k in keys if pattern is None or fnmatch.fnmatchcase(k, pattern))


def render_one(workspace: Workspace, target: Target) -> RenderOutcome:
    try:
        rendered = workspace.renderer.render(target)
    except RenderError as exc:
        return RenderOutcome(target, None, (str(exc),))
    problems = tuple(str(p) for p in validate_pipeline(target.key, rendered.document))
    return RenderOutcome(target, rendered, problems)


def render_all(workspace: Workspace, keys: list[str] | None = None) -> dict[str, RenderOutcome]:
    """Render and validate targets (all by default), including fleet-wide collision checks.

    A selection is still checked against the whole catalog, so it can never hide a
    duplicate: names can only collide within an application (= service), so only the
    selected services are rendered in full; ids of every other target are known without
    rendering.
    """
    targets = workspace.catalog.targets
    wanted = sorted(targets) if keys is None else keys
    outcomes = {key: render_one(workspace, targets[key]) for key in wanted}
    documents = {k: o.rendered.document for k, o in outcomes.items() if o.rendered is not None}
    if keys is not None:
        services = {targets[k].service for k in wanted}
        for key, target in targets.items():
            if key in documents:
                continue
            if target.service in services:
                other = render_one(workspace, target)
                if other.rendered is not None:
                    documents[key] = other.rendered.document
            else:
                documents[key] = _identity_only(workspace, target)
    for key, problems in validate_fleet(documents).items():
        if key in outcomes:
            old = outcomes[key]
            extra = tuple(str(p) for p in problems)
            outcomes[key] = RenderOutcome(old.target, old.rendered, old.problems + extra)
    return outcomes


def _identity_only(workspace: Workspace, target: Target) -> dict[str, str]:
    """What the fleet check needs of an unrendered target of another application: its id.

    The name is a placeholder that cannot collide: another application's names never clash.
    """
    return {
        "id": workspace.renderer.pipeline_id(target.key),
        "application": target.service,
        "name": f"\x00{target.key}",
    }
