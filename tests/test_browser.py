"""A real browser against `dagster dev`: the asset graph, the partitions, one partition's diff."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster_dev import PROJECT, DagsterDev, dagster_dev, moto_server, s3_env

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
# Debian's Chromium as root, on a machine whose only network is loopback.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DRIFT_KEY = "checkout/prod/deploy"


def _browser_or_skip() -> None:
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append(CHROMIUM)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install -e '.[browser]')")
    if missing:
        message = f"browser test needs {', '.join(missing)}; run .ci/install-browser.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def demo_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DagsterDev]:
    import dagster as dg

    from pipeline_sync.build import Workspace
    from pipeline_sync.definitions import defs
    from pipeline_sync.demo_seed import seed
    from pipeline_sync.front50 import Front50Settings, Front50Store

    with moto_server() as endpoint:
        env = s3_env(endpoint, tmp_path, "front50-browser")
        for name, value in env.items():
            if name.startswith(("AWS_", "PIPELINE_SYNC_", "DAGSTER_")):
                monkeypatch.setenv(name, value)
        monkeypatch.setenv("PIPELINE_SYNC_CATALOG", str(PROJECT / "catalog"))
        monkeypatch.setenv("PIPELINE_SYNC_TEMPLATES", str(PROJECT / "templates"))
        seed(Front50Store(Front50Settings.from_env()), PROJECT / "catalog", PROJECT / "templates")
        keys = sorted(Workspace.load(PROJECT / "catalog", PROJECT / "templates").catalog.targets)
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            instance.add_dynamic_partitions("pipelines", keys)
            result = defs.resolve_job_def("reconcile_job").execute_in_process(instance=instance)
            assert result.success
        with dagster_dev(env, tmp_path / "dagster-dev.log") as server:
            yield server


def screenshot_dir(tmp_path: Path) -> Path:
    """docs/ when asked (PIPELINE_SYNC_SCREENSHOTS=docs), else a temporary folder."""
    if os.environ.get("PIPELINE_SYNC_SCREENSHOTS") == "docs":
        return PROJECT / "docs"
    return tmp_path / "screenshots"


def test_ui_shows_graph_partitions_and_a_diff(demo_server: DagsterDev, tmp_path: Path) -> None:
    _browser_or_skip()
    from playwright.sync_api import sync_playwright

    shots = screenshot_dir(tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        # launch() gives every run a fresh, empty profile of its own.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})

            page.goto(f"{demo_server.url}/assets/pipeline_plan?view=partitions", wait_until="networkidle")
            page.wait_for_timeout(2500)
            skip = page.get_by_role("button", name="Skip")  # Dagster's first-visit newsletter dialog
            if skip.count():
                skip.click()
            page.get_by_text("13 Partitions Selected").wait_for(timeout=30_000)
            page.get_by_text(DRIFT_KEY, exact=True).first.wait_for()
            page.screenshot(path=str(shots / "partitions.png"))

            page.get_by_text(DRIFT_KEY, exact=True).first.click()
            diff = page.locator(".dagster-markdown").first
            diff.wait_for(timeout=30_000)
            text = diff.inner_text()
            assert f"--- live/{DRIFT_KEY}" in text
            assert "replicaCount: 12" in text and "replicaCount: 6" in text
            page.get_by_text("drifted, pending approval").wait_for()
            page.screenshot(path=str(shots / "partition-diff.png"))

            page.goto(
                f"{demo_server.url}/assets/pipeline_plan?view=lineage&lineageScope=neighbors&lineageDepth=4",
                wait_until="networkidle",
            )
            for name in ("rendered_pipeline", "approval", "published_pipeline", "front50_live"):
                page.get_by_text(name, exact=True).first.wait_for(timeout=30_000)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(shots / "asset-graph.png"))
        finally:
            browser.close()
    for name in ("partitions.png", "partition-diff.png", "asset-graph.png"):
        png = (shots / name).read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 20_000
