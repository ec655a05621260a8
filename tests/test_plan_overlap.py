"""A fleet plan reads the store in a thread while it renders: both happen at once, the plan is the
plan made one after the other, and an error of either is raised only once both are done."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import DEPLOY_DEFAULTS, DEPLOY_TEMPLATE, build_project
from s3support import workspace_of

from pipeline_sync import engine
from pipeline_sync import plan as plan_module
from pipeline_sync import rendering as rendering_module
from pipeline_sync.engine import Selection
from pipeline_sync.errors import StoreError
from pipeline_sync.rendering import Sources
from pipeline_sync.store.s3 import S3Store

STACKS = {"dev": {"pipelines": ["deploy"]}, "prod": {"pipelines": ["deploy"]}}
WAIT = 20.0  # seconds one side waits for the other before the test calls it sequential


def project(root: Path) -> Path:
    return build_project(
        root,
        defaults=DEPLOY_DEFAULTS,
        services={f"svc{i}": {"stacks": STACKS} for i in range(3)},
        templates={"deploy": DEPLOY_TEMPLATE},
    ).root


def applied(root: Path, store: S3Store) -> Sources:
    workspace = workspace_of(project(root))
    plan = engine.plan(workspace, store)
    approved = {k: e.digest for k, e in plan.entries.items() if e.actionable}
    assert {r.outcome for r in engine.apply(workspace, store, approved, approver="alice")} == {"applied"}
    (root / "catalog" / "defaults.yaml").write_text(
        (root / "catalog" / "defaults.yaml").read_text().replace("description: plain", "description: new")
    )
    return workspace_of(root)


def wrap_read(
    monkeypatch: pytest.MonkeyPatch, store: S3Store, around: Callable[[Callable[[], Any]], Any]
) -> None:
    original = store.read_live_summarised

    def read(*, vouched: bool = True) -> Any:
        return around(lambda: original(vouched=vouched))

    monkeypatch.setattr(store, "read_live_summarised", read)


def wrap_render(monkeypatch: pytest.MonkeyPatch, around: Callable[[Callable[[], Any]], Any]) -> None:
    original = engine.render_all

    def render(*args: Any, **kwargs: Any) -> Any:
        return around(lambda: original(*args, **kwargs))

    monkeypatch.setattr(engine, "render_all", render)


def plan_fails(
    monkeypatch: pytest.MonkeyPatch,
    workspace: Sources,
    store: S3Store,
    wrappers: tuple[Callable[[Callable[[], Any]], Any], Callable[[Callable[[], Any]], Any]],
    error: type[Exception],
    match: str,
) -> None:
    """engine.plan with the store read and the renders wrapped (read, render) raises error."""
    wrap_read(monkeypatch, store, wrappers[0])
    wrap_render(monkeypatch, wrappers[1])
    with pytest.raises(error, match=match):
        engine.plan(workspace, store)


def test_the_store_is_read_while_the_catalog_renders(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store: S3Store
) -> None:
    """Each side waits for the other to have started: done one after the other, the first would
    time out. The plan equals the plan made with reads and renders one after the other."""
    workspace = applied(tmp_path, store)
    sequential = engine.plan(workspace, store)
    reading, rendering = threading.Event(), threading.Event()
    seen: dict[str, bool] = {}

    def read(call: Callable[[], Any]) -> Any:
        reading.set()
        seen["render started before the read ended"] = rendering.wait(WAIT)
        return call()

    def render(call: Callable[[], Any]) -> Any:
        rendering.set()
        seen["read started before the render ended"] = reading.wait(WAIT)
        return call()

    wrap_read(monkeypatch, store, read)
    wrap_render(monkeypatch, render)
    overlapped = engine.plan(workspace, store)
    assert seen == {
        "render started before the read ended": True,
        "read started before the render ended": True,
    }
    assert overlapped.dumps() == sequential.dumps()
    assert {e.status.value for e in overlapped.entries.values()} == {"update"}


def test_a_failed_read_fails_the_plan_after_the_renders(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store: S3Store
) -> None:
    workspace = applied(tmp_path, store)
    rendered = threading.Event()

    def read(call: Callable[[], Any]) -> Any:
        raise StoreError("cannot list s3://bucket: the network is down")

    def render(call: Callable[[], Any]) -> Any:
        outcomes = call()
        rendered.set()
        return outcomes

    plan_fails(monkeypatch, workspace, store, (read, render), StoreError, "network is down")
    assert rendered.is_set()


def test_a_failed_render_waits_for_the_read_before_it_is_raised(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store: S3Store
) -> None:
    """No read outlives the plan that started it: the store may be closed right after."""
    workspace = applied(tmp_path, store)
    may_finish, finished = threading.Event(), threading.Event()

    def read(call: Callable[[], Any]) -> Any:
        assert may_finish.wait(WAIT)
        live = call()
        finished.set()
        return live

    def render(call: Callable[[], Any]) -> Any:
        threading.Timer(0.3, may_finish.set).start()
        raise RuntimeError("a renderer bug")

    plan_fails(monkeypatch, workspace, store, (read, render), RuntimeError, "a renderer bug")
    assert finished.is_set()


def test_a_few_keys_and_a_write_decision_still_read_after_rendering(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store: S3Store
) -> None:
    """Only the fleet plan overlaps: a plan of a few keys reads what its renders name, and a
    fresh plan (what apply decides from) renders first and reads afresh, as before."""
    workspace = applied(tmp_path, store)
    order: list[str] = []
    original = engine.render_all

    def render(*args: Any, **kwargs: Any) -> Any:
        order.append("render")
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "render_all", render)
    for name in ("read_related", "read_live", "read_live_summarised"):
        method = getattr(store, name)

        def recorded(*args: Any, _method: Any = method, _name: str = name, **kwargs: Any) -> Any:
            order.append(_name)
            return _method(*args, **kwargs)

        monkeypatch.setattr(store, name, recorded)
    key = sorted(workspace.catalog.targets)[0]
    engine.plan(workspace, store, Selection.of([key]))
    assert order[:2] == ["render", "read_related"]
    order.clear()
    engine.fresh_plan(workspace, store, [key])
    assert order[0] == "render"


def test_the_store_is_read_while_the_catalog_loads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store: S3Store
) -> None:
    """plan_loading (the CLI's plan, the reconcile) starts the read before loading the catalog:
    the load waits for the read to have started, which done one after the other would time out."""
    workspace = applied(tmp_path, store)
    sequential = engine.plan(workspace, store)
    reading, loading = threading.Event(), threading.Event()

    def read(call: Callable[[], Any]) -> Any:
        reading.set()
        assert loading.wait(WAIT)
        return call()

    def load() -> Sources:
        loading.set()
        assert reading.wait(WAIT), "the catalog was loaded before the store read started"
        return workspace_of(tmp_path)

    wrap_read(monkeypatch, store, read)
    loaded, overlapped = engine.plan_loading(load, store)
    assert sorted(loaded.catalog.targets) == sorted(workspace.catalog.targets)
    assert overlapped.dumps() == sequential.dumps()


@pytest.mark.parametrize("render_cache", ["on", "off"])
def test_the_managed_texts_are_ready_while_the_store_is_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store: S3Store, render_cache: str
) -> None:
    """The part of each entry that needs no live object (its managed texts: taken from the render
    cache's row as a render is read from it, or spliced once as a render is stored, in a file or,
    with the cache off, in memory) is done before the read ends, once per target: the read waits
    until every target's texts are ready, which done after the read would time out. The plan is
    the one made one step after the other, and build_plan splices nothing again."""
    monkeypatch.setenv("PIPELINE_SYNC_CACHE", render_cache)
    workspace = applied(tmp_path, store)
    sequential = engine.plan(workspace, store)  # with the cache on, it stores every render
    targets = len(workspace.catalog.targets)
    spliced: list[str] = []
    from_rows: list[object] = []  # texts a render cache row kept
    all_ready = threading.Event()
    splice, kept = plan_module.managed_texts, rendering_module._texts

    def counted(canonical: str, **kwargs: Any) -> Any:
        spliced.append(kwargs["key"])
        return splice(canonical, **kwargs)

    def taken(derived: Any) -> Any:
        texts = kept(derived)
        from_rows.append(texts)
        if len(from_rows) == targets:
            all_ready.set()
        return texts

    def read(call: Callable[[], Any]) -> Any:
        assert all_ready.wait(WAIT), "the texts were ready only after the store read"
        return call()

    monkeypatch.setattr(plan_module, "managed_texts", counted)
    monkeypatch.setattr(rendering_module, "managed_texts", counted)
    monkeypatch.setattr(rendering_module, "_texts", taken)
    wrap_read(monkeypatch, store, read)
    _, overlapped = engine.plan_loading(lambda: workspace_of(tmp_path), store)
    assert len(from_rows) == targets and None not in from_rows
    # on: every row kept its texts, nothing is spliced; off: each render's, once, as it is kept
    assert sorted(spliced) == ([] if render_cache == "on" else sorted(workspace.catalog.targets))
    assert overlapped.dumps() == sequential.dumps()


def test_a_catalog_that_fails_to_load_waits_for_the_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store: S3Store
) -> None:
    applied(tmp_path, store)
    finished = threading.Event()

    def read(call: Callable[[], Any]) -> Any:
        live = call()
        finished.set()
        return live

    def load() -> Sources:
        raise StoreError("catalog/services/a.yaml: unreadable")

    wrap_read(monkeypatch, store, read)
    with pytest.raises(StoreError, match="unreadable"):
        engine.plan_loading(load, store)
    assert finished.is_set()


def test_ctrl_c_leaves_without_waiting_for_the_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store: S3Store
) -> None:
    """An interrupt (Ctrl-C, Dagster's stop) while rendering is raised at once: the read, a daemon
    thread, is abandoned mid-way instead of holding the process until the whole store is read."""
    workspace = applied(tmp_path, store)
    release, finished = threading.Event(), threading.Event()

    def read(call: Callable[[], Any]) -> Any:
        release.wait(WAIT)
        finished.set()
        return call()

    def render(call: Callable[[], Any]) -> Any:
        raise KeyboardInterrupt

    wrap_read(monkeypatch, store, read)
    wrap_render(monkeypatch, render)
    try:
        with pytest.raises(KeyboardInterrupt):
            engine.plan(workspace, store)
        assert not finished.is_set()
    finally:
        release.set()
