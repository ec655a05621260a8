"""Helpers for the fleet tests (import, templatize, release): a store of either kind, seeded by hand."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import Project, build_project
from s3support import BUCKET

from pipeline_sync import engine
from pipeline_sync.engine import ApplyResult, Selection
from pipeline_sync.plan import Plan
from pipeline_sync.rendering import Sources
from pipeline_sync.store import Store
from pipeline_sync.store.select import open_store

# The two stacks a migrated fleet starts with; `imported` is declared by import itself.
FLEET_DEFAULTS = "# Stacks of the migrated fleet.\nstacks:\n  prod: {}  # people approve\n"
STORE_KINDS = ("s3", "postgresql", "mysql")


@dataclass(frozen=True)
class Fleet:
    """A store and the URL the CLI reaches it by."""

    store: Store
    url: str


def open_fleet(request: pytest.FixtureRequest, kind: str) -> Fleet:
    """A fresh, empty store of kind: a versioned moto bucket, or a PostgreSQL or MariaDB database with
    Front50's tables."""
    if kind == "s3":
        store = request.getfixturevalue("store")
        store.client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        return Fleet(store, f"s3://{BUCKET}/front50")
    url = request.getfixturevalue("front50_postgres" if kind == "postgresql" else "front50_mysql")
    return Fleet(open_store(url, {}), url)


def empty_project(root: Path) -> Project:
    return build_project(root, defaults=FLEET_DEFAULTS, services={}, templates={})


def put_unmanaged(store: Store, document: Mapping[str, Any]) -> None:
    """Write a pipeline as a person would in Deck: no marker, no lock."""
    store.put_pipeline(str(document["id"]), json.dumps(document).encode(), if_match=None)


def cli(project: Project, fleet: Fleet, *args: str) -> Result:
    base = ["--catalog", str(project.catalog_dir), "--templates", str(project.templates_dir)]
    from pipeline_sync.cli import main

    return CliRunner().invoke(main, [*base, "--store", fleet.url, *args])


def plan_of(project: Project, store: Store, keys: list[str] | None = None) -> Plan:
    workspace = Sources.load(project.catalog_dir, project.templates_dir)
    selection = Selection.of(keys) if keys is not None else engine.EVERYTHING
    return engine.plan(workspace, store, selection)


def apply_all(project: Project, store: Store, approver: str = "alice") -> list[ApplyResult]:
    """Approve and apply every actionable entry of a fresh plan, as a person."""
    the_plan = plan_of(project, store)
    approved = {k: e.digest for k, e in the_plan.entries.items() if e.actionable}
    workspace = Sources.load(project.catalog_dir, project.templates_dir)
    return engine.apply(workspace, store, approved, approver=approver)


def tree(root: Path) -> dict[str, str]:
    """Every file under root with its text: to prove nothing was written."""
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}
