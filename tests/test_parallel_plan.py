"""Many out-of-sync entries have their diffs made by forked processes, one per core: the plan is
exactly the plan made in this process, entry for entry and byte for byte."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import build_project

from pipeline_sync import forked
from pipeline_sync.live import LiveObject
from pipeline_sync.plan import PARALLEL_MIN, Plan, build_plan, plan_digest
from pipeline_sync.provenance import managed_document
from pipeline_sync.render_cache import RenderCache
from pipeline_sync.rendering import Sources, render_all
from pipeline_sync.status import Status

TEMPLATE = """\
application: "{{ app_name }}"
name: "deploy-{{ stack }}"
description: "{{ description }}"
stages:
  - refId: "bake"
    type: bakeManifest
    name: "Bake {{ app_name }}"
  - refId: "deploy"
    type: deployManifest
    account: "k8s-{{ stack }}"
    requisiteStageRefIds: ["bake"]
  - refId: "judge"
    type: manualJudgment
    name: "Judge the canary at {{ app_name | length }}%"
    requisiteStageRefIds: ["deploy"]
"""
SERVICES = PARALLEL_MIN  # two stacks each: twice PARALLEL_MIN targets


def workspace(root: Path, template: str) -> Sources:
    stacks = {"dev": {"pipelines": ["deploy"]}, "prod": {"pipelines": ["deploy"]}}
    project = build_project(
        root,
        defaults="vars:\n  description: plain\nstacks:\n  dev: {}\n  prod: {}\n",
        services={f"svc{i:03d}": {"stacks": stacks} for i in range(SERVICES)},
        templates={"deploy": template},
    )
    return Sources.load(project.catalog_dir, project.templates_dir, render_cache=RenderCache.in_memory())


def fleet(root: Path) -> tuple[Sources, dict[str, LiveObject], dict[str, dict[str, Any]]]:
    """The catalog after a template change, the live pipelines written before it (some missing,
    some edited in Deck, some reordered or locked tighter), and the versions written before edits."""
    before = workspace(root / "before", TEMPLATE)
    live: dict[str, LiveObject] = {}
    written: dict[str, dict[str, Any]] = {}
    for number, (key, outcome) in enumerate(sorted(render_all(before).items())):
        rendered = outcome.rendered
        assert rendered is not None and outcome.valid
        target = outcome.target
        document = managed_document(
            rendered.canonical, key=key, source_file=target.source_file, catalog_id=before.catalog.catalog_id
        )
        if number % 7 == 0:
            continue  # never written: a create
        if number % 5 == 0:
            written[rendered.pipeline_id] = document
            document = {**document, "description": f"hotfix {number}"}  # a person's edit: drift
        if number % 11 == 0:
            document = {**document, "index": number}  # reordered in Deck: a write keeps it
        if number % 13 == 0:
            document = {**document, "locked": {**document["locked"], "allowUnlockUi": False}}
        pid = rendered.pipeline_id
        live[pid] = LiveObject(
            pid, f"front50/pipelines/{pid}/pipeline-metadata.json", f'"etag-{number}"', document
        )
    after = workspace(root / "after", TEMPLATE.replace("Judge the canary at", "Judge canary health at"))
    return after, live, {k: v for k, v in written.items() if int(k[-1], 16) % 2 == 0}


def planned(monkeypatch: pytest.MonkeyPatch, root: Path, workers: str) -> tuple[Plan, list[int]]:
    pools: list[int] = []
    real = forked.ProcessPoolExecutor

    def counted(count: int, **kwargs: Any) -> Any:
        pools.append(count)
        return real(count, **kwargs)

    monkeypatch.setattr(forked, "ProcessPoolExecutor", counted)
    monkeypatch.setenv(forked.WORKERS_VARIABLE, workers)
    after, live, written = fleet(root)
    return build_plan(after.catalog, render_all(after), live, written=written), pools


def test_forked_diffs_make_exactly_the_plan_made_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alone, pools = planned(monkeypatch, tmp_path / "one", "1")
    assert pools == []
    shared, pools = planned(monkeypatch, tmp_path / "two", "2")
    assert pools == [2]
    assert shared.dumps() == alone.dumps()
    assert list(shared.entries) == list(alone.entries)
    for key, entry in shared.entries.items():
        assert entry == alone.entries[key]
    for entry in shared.entries.values():  # each entry holds the document its digest binds
        assert entry.desired is not None and entry.digest == plan_digest(
            entry.key, entry.live_etag, entry.desired
        )
    counts = shared.counts()
    assert counts["create"] > 0 and counts["update"] > PARALLEL_MIN and counts["drift"] > 0
    # Desired documents come back from a worker where the write keeps something of the live one.
    kept = [e for e in shared.entries.values() if e.desired is not None and "index" in e.desired]
    assert kept and all(e.status in (Status.UPDATE, Status.DRIFT) for e in kept)
    drift = [e for e in shared.entries.values() if e.status is Status.DRIFT]
    assert {e.drift_kind for e in drift} == {"both"} and any(e.drift_fields for e in drift)


def test_few_out_of_sync_entries_are_diffed_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pools: list[int] = []
    monkeypatch.setattr(forked, "ProcessPoolExecutor", lambda *a, **k: pools.append(1))
    monkeypatch.setenv(forked.WORKERS_VARIABLE, "2")
    after, live, written = fleet(tmp_path)
    outcomes = render_all(after)
    few = dict(sorted(outcomes.items())[: PARALLEL_MIN - 1])
    plan = build_plan(after.catalog, few, live, scope=list(few), written=written)
    assert pools == []
    assert sum(1 for e in plan.entries.values() if e.actionable) == PARALLEL_MIN - 1


def test_call_forked_keeps_order_and_results(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(forked.WORKERS_VARIABLE, "2")
    calls = [lambda n=n: (n, {"square": n * n}) for n in range(100)]  # lambdas: never pickled
    assert forked.call_forked(calls, minimum=10, chunk=7) == [(n, {"square": n * n}) for n in range(100)]


def test_call_forked_adds_spare_processes_only_when_it_forks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spare processes are for calls that wait on files: beyond the cores, never instead of the
    one process PIPELINE_SYNC_RENDER_WORKERS=1 asks for. Each call waits until `parties` calls
    wait at once, so the calls must be in that many processes."""

    def meeting(parties: int) -> list[Callable[[], int]]:
        barrier = multiprocessing.get_context("fork").Barrier(parties, timeout=20)
        return [lambda: barrier.wait() * 0 + os.getpid() for _ in range(parties)]

    monkeypatch.setenv(forked.WORKERS_VARIABLE, "2")
    assert len(set(forked.call_forked(meeting(3), minimum=2, chunk=1, spare=1))) == 3
    assert len(set(forked.call_forked(meeting(2), minimum=2, chunk=1))) == 2
    monkeypatch.setenv(forked.WORKERS_VARIABLE, "1")
    calls = [os.getpid for _ in range(8)]
    assert set(forked.call_forked(calls, minimum=2, chunk=1, spare=1)) == {os.getpid()}
