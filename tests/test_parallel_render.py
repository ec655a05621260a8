"""Many renders are shared out to forked processes, one per core: the outcomes are exactly those
of rendering in this process, cached or fresh."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import build_project

from pipeline_sync import rendering
from pipeline_sync.render_cache import RenderCache
from pipeline_sync.rendering import PARALLEL_MIN, Sources, render_all

TEMPLATE = """\
application: "{{ app_name }}"
name: "deploy-{{ stack }}"
description: "{% if app_name == 'svc7' %}{{ missing_variable }}{% endif %}fine"
stages:
  - refId: "1"
    type: wait
    waitTime: {{ app_name | length }}
"""


def many(root: Path) -> Sources:
    stacks = {"dev": {"pipelines": ["deploy"]}, "prod": {"pipelines": ["deploy"]}}
    project = build_project(
        root,
        defaults="stacks:\n  dev: {}\n  prod: {}\n",
        services={f"svc{i}": {"stacks": stacks} for i in range(PARALLEL_MIN // 2 + 10)},
        templates={"deploy": TEMPLATE},
    )
    return Sources.load(project.catalog_dir, project.templates_dir, render_cache=RenderCache.in_memory())


def outcomes(workspace: Sources, use_cache: bool) -> dict[str, Any]:
    """Each target's render, problems, identity and texts, and the render cache's rows after."""
    cache = RenderCache.in_memory()
    fresh = Sources(workspace.catalog, workspace.renderer, cache)
    found = render_all(fresh, use_cache=use_cache, with_texts=True)
    renders = {
        k: (
            o.rendered.canonical if o.rendered else None,
            o.problems,
            rendering._identity_of(o.rendered) if o.rendered else None,
            o.texts,
        )
        for k, o in found.items()
    }
    return {"renders": renders, "rows": dict(cache._memory)}


@pytest.mark.parametrize("use_cache", [True, False])
def test_forked_renders_equal_renders_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_cache: bool
) -> None:
    workspace = many(tmp_path / "p")
    assert len(workspace.catalog.targets) > PARALLEL_MIN
    pools: list[int] = []
    real = rendering.ProcessPoolExecutor

    def counted(workers: int, **kwargs: Any) -> Any:
        pools.append(workers)
        return real(workers, **kwargs)

    monkeypatch.setattr(rendering, "ProcessPoolExecutor", counted)
    monkeypatch.setenv(rendering.WORKERS_VARIABLE, "1")
    alone = outcomes(workspace, use_cache)
    assert pools == []
    monkeypatch.setenv(rendering.WORKERS_VARIABLE, "2")
    shared = outcomes(workspace, use_cache)
    assert pools == [2]
    assert shared == alone
    assert any(problems for _, problems, _, _ in alone["renders"].values())  # invalid renders travel back too
    if use_cache:  # rows keep what the workers derived, as this process derives it
        assert alone["rows"] and all(row.derived is not None for row in alone["rows"].values())
        assert all(texts is not None for _, problems, _, texts in alone["renders"].values() if not problems)
    else:
        assert alone["rows"] == {}
