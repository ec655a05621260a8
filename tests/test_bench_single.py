"""bench.single's report: each step's CPU beside the machine's speed measured in its own process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import naive, single, synth
from bench.naive import REFERENCE_NAIVE_RENDER_MS
from pipeline_sync.catalog import load_catalog


def row(cpu_s: float, probe_ms: float | None) -> dict[str, Any]:
    found = {
        "size": 10_000,
        "store": "S3",
        "cache": "cold",
        "step": "plan",
        "cpu_s": cpu_s,
        "load_cpu_s": 0.9,
        "wall_s": 1.3,
        "requests": 3,
        "requests_by_operation": {"GetObject": 3},
    }
    return found if probe_ms is None else {**found, "probe_ms": probe_ms}


def test_a_steps_cpu_is_shown_at_the_reference_speed_and_judged_as_measured() -> None:
    report = single.markdown(
        [row(1.2, 2 * REFERENCE_NAIVE_RENDER_MS), row(0.8, None)], "python -m bench.single"
    )
    slow, unprobed = [line for line in report.splitlines() if line.startswith("| 10,000")]
    assert slow.endswith(f"| {2 * REFERENCE_NAIVE_RENDER_MS:.1f} | 0.60 | MISSES |")
    assert unprobed.endswith("| — | — | meets |")


def test_the_probe_renders_the_first_targets_as_the_seed_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = synth.write_fleet(tmp_path / "fleet", 12)
    catalog = load_catalog(fleet.catalog_dir, fleet.templates_dir)
    rendered: list[str] = []
    seed_render = naive.seed_render

    def counted(key: str, *args: Any) -> dict[str, Any]:
        rendered.append(key)
        return seed_render(key, *args)

    monkeypatch.setattr(naive, "seed_render", counted)
    assert naive.render_probe(catalog, fleet.templates_dir, count=5) > 0
    assert rendered == sorted(catalog.targets)[:5]
    document = seed_render(rendered[0], catalog.targets[rendered[0]], fleet.templates_dir)
    assert document["application"] == catalog.targets[rendered[0]].application
