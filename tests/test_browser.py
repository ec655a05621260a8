"""Headless Chromium on the demo's UI: the asset graph, the pipeline partitions, one partition's diff.

Needs Debian's /usr/bin/chromium and playwright-python (`bash .ci/install-browser.sh`); skipped
without them, except under CI, where that is a failure. Screenshots go to a temporary folder, or
to docs/ with PIPELINE_SYNC_SCREENSHOTS=docs (how the committed docs/*.png are made).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import pytest
from dagster_dev import PROJECT, DemoLike, demo_like

from pipeline_sync.demo import partition_url
from pipeline_sync.demo_seed import DRIFT_KEY, MISSING_KEY

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
# Debian's Chromium as root on a machine whose only network is loopback: no sandbox, no GPU, and
# none of the background fetches (updates, sync, QUIC probes) a closed network would refuse.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Read at collection: the demo-like setup replaces PIPELINE_SYNC_* variables while it runs.
TO_DOCS = os.environ.get("PIPELINE_SYNC_SCREENSHOTS") == "docs"
ASSETS = (
    "catalog_source",
    "templates_source",
    "front50_live",
    "rendered_pipeline",
    "pipeline_plan",
    "approval",
    "published_pipeline",
    "fleet_plan",
)


def missing_browser() -> str | None:
    missing = [] if Path(CHROMIUM).exists() else [CHROMIUM]
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright-python (the `browser` extra)")
    if not missing:
        return None
    return f"needs {' and '.join(missing)}: run `bash .ci/install-browser.sh`"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoLike]:
    reason = missing_browser()
    if reason:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"CI must run the browser test, but it {reason}")
        pytest.skip(reason)
    with demo_like(tmp_path_factory.mktemp("browser"), reconcile=True) as setup:
        yield setup


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """docs/ when asked for, else a temporary folder: tests never write into the repository."""
    if TO_DOCS:
        return PROJECT / "docs"
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def page(demo: DemoLike, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page in a fresh Chromium profile; fails the test if the UI asked for anything off this machine.

    If the test fails, what the page showed is kept as failure.png and failure.txt in tmp_path.
    """
    from playwright.sync_api import sync_playwright

    elsewhere: list[str] = []
    troubles: list[str] = []
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path / "chromium-profile",
            executable_path=CHROMIUM,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            page = context.new_page()
            page.set_default_timeout(45_000)
            page.on("request", lambda r: elsewhere.append(r.url) if off_machine(r.url) else None)
            page.on("pageerror", lambda e: troubles.append(f"page error: {e}"))
            page.on("crash", lambda _: troubles.append("the page crashed"))
            # Dagster's first-visit "join the community" dialog: dismiss it whenever it shows.
            page.add_locator_handler(page.get_by_role("button", name="Skip"), lambda b: b.click())
            failed_before = request.session.testsfailed
            yield page
            if request.session.testsfailed > failed_before:  # this test's call just failed
                keep_evidence(page, tmp_path, troubles)
        finally:
            context.close()
    assert not elsewhere, f"the UI fetched from outside this machine: {elsewhere}"


def keep_evidence(page: Page, where: Path, troubles: list[str]) -> None:
    print("\n".join([f"page url: {page.url}", *troubles]))
    with suppress(Exception):
        page.screenshot(path=str(where / "failure.png"))
        (where / "failure.txt").write_text(page.inner_text("body"))
        print(f"what the page showed: {where / 'failure.png'} and failure.txt")


def off_machine(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in {"http", "https", "ws", "wss"} and parsed.hostname not in {
        "127.0.0.1",
        "localhost",
    }


def test_asset_graph_shows_every_asset(demo: DemoLike, page: Page, shots: Path) -> None:
    page.goto(f"{demo.server.url}/asset-groups", wait_until="networkidle")
    for group in ("inputs", "pipelines", "fleet"):
        page.get_by_text(group, exact=True).first.wait_for()
    expand = page.locator('[aria-label="unfold_more"]')  # one per collapsed group
    while expand.count():
        expand.first.click()
    page.reload(wait_until="networkidle")  # the graph fits itself to the page only when it loads
    for asset in ASSETS:
        page.get_by_text(asset, exact=True).first.wait_for()
    page.wait_for_timeout(1000)  # edges are drawn after the nodes
    page.screenshot(path=str(shots / "asset-graph.png"))


def test_partitions_list_every_pipeline_with_its_plan(demo: DemoLike, page: Page, shots: Path) -> None:
    plan = demo.server.latest_metadata("pipeline_plan", MISSING_KEY)
    assert plan["status"] == "create"
    page.goto(partition_url(demo.server.url, "pipeline_plan", MISSING_KEY), wait_until="networkidle")
    page.get_by_text(f"{len(demo.keys)} Partitions Selected").wait_for()
    for key in demo.keys:
        page.get_by_text(key, exact=True).first.wait_for()
    page.get_by_text(plan["display_status"], exact=True).wait_for()
    page.get_by_text(plan["plan_digest"], exact=True).first.wait_for()  # also in approve_config
    page.screenshot(path=str(shots / "partitions.png"))


def test_a_partition_shows_its_diff(demo: DemoLike, page: Page, shots: Path) -> None:
    plan = demo.server.latest_metadata("pipeline_plan", DRIFT_KEY)
    assert plan["status"] == "drift"
    page.goto(partition_url(demo.server.url, "pipeline_plan", DRIFT_KEY), wait_until="networkidle")
    page.get_by_text(plan["display_status"], exact=True).wait_for()
    diff = page.locator(".dagster-markdown").first
    diff.wait_for()
    text = diff.inner_text()
    assert f"--- live/{DRIFT_KEY}" in text and f"+++ rendered/{DRIFT_KEY}" in text
    assert "-    replicaCount: 12" in text and "+    replicaCount: 6" in text
    diff.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "partition-diff.png"))
