"""The bench's repeated measurements: the median run is judged, and every run finds what the first did."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from s3support import BUCKET

from bench import synth
from bench.reconcile import CLI, DAGSTER, Measurement, Settings, SizeBench, checks, median_run, table
from pipeline_sync.cli import main
from pipeline_sync.store.s3 import SUMMARY_FOLDER, S3Store

TEMPLATE_PLAN = "N=10,000, a template change: `pipeline-sync plan` under 8 s"


def _run(seconds: float, rss: float, method: str = CLI) -> Measurement:
    return Measurement(
        10_000,
        "template changed",
        method,
        seconds,
        {"ListObjectsV2": 11},
        rss,
        verdict="1092 update",
        cpu_seconds=2 * seconds,
        server_cpu_seconds=seconds / 3,
    )


def test_the_median_run_is_kept_with_every_run_beside_it() -> None:
    runs = [_run(7.4, 280.0), _run(8.6, 300.0), _run(7.9, 290.0)]
    median = median_run(runs)
    assert median.seconds == 7.9
    assert median.cpu_seconds == 2 * 7.9  # the median run's own figures, not a mix of runs
    assert median.runs == [7.4, 8.6, 7.9]  # in the order run
    assert median.rss_mib == 300.0  # the highest peak of them all
    assert [r["seconds"] for r in median.details["runs"]] == [7.4, 8.6, 7.9]
    # an even count: the lower of the middle two, a run that happened
    assert median_run([_run(9.0, 1.0), _run(7.0, 1.0)]).seconds == 7.0
    assert median_run([_run(5.0, 1.0)]).runs == []  # one run is not a repetition
    with pytest.raises(ValueError):
        median_run([])


def test_the_target_is_judged_on_the_median_and_shows_every_run() -> None:
    one_slow = {t: (m, v) for t, m, v in checks([median_run([_run(7.4, 1), _run(8.6, 1), _run(7.9, 1)])])}
    measured, verdict = one_slow[TEMPLATE_PLAN]
    assert verdict == "PASS"
    assert measured.startswith("7.9 s (median of 7.4, 8.6, 7.9)")
    two_slow = {t: v for t, _, v in checks([median_run([_run(8.1, 1), _run(7.2, 1), _run(8.3, 1)])])}
    assert two_slow[TEMPLATE_PLAN] == "**MISS**"
    row = table([median_run([_run(7.4, 1), _run(8.6, 1), _run(7.9, 1)])]).splitlines()[-1]
    assert "| 7.9 (median of 7.4, 8.6, 7.9) |" in row


def _bench(tmp_path: Path, repeat: int) -> SizeBench:
    settings = Settings(
        sizes=[40], naive_max=0, postgres_max=0, use_postgres=False, work=tmp_path, results=tmp_path / "r.md",
        command="test", repeat=repeat,
    )  # fmt: skip
    bench = SizeBench(40, settings, SimpleNamespace(url="http://unused"), None, None)  # type: ignore[arg-type]
    bench.bucket = BUCKET
    return bench


def test_only_the_timed_scenarios_repeat_and_each_run_is_set_up_again(tmp_path: Path) -> None:
    bench = _bench(tmp_path, repeat=3)
    again: list[str] = []
    bench._again = again.append  # type: ignore[method-assign]
    cache = Path(bench._cache_dir("dagster-sqlite", "template changed"))
    (cache / "content").mkdir(parents=True)
    (cache / "content" / "bodies").write_text("read before")
    seen: list[list[str]] = []
    times = iter([8.0, 7.0, 9.0])

    def run() -> Measurement:
        # what the run finds in its cache, then what it leaves there (bodies it read, renders)
        seen.append(sorted(p.name for p in cache.rglob("*") if p.is_file()))
        (cache / "content" / "bodies").write_text("read by a run")
        (cache / f"render-{len(seen)}").write_text("rendered")
        return _run(next(times), 1, DAGSTER)

    repeated = bench._repeated("template changed", DAGSTER, run, "dagster-sqlite")
    assert (repeated.seconds, repeated.runs, again) == (8.0, [8.0, 7.0, 9.0], ["template changed"] * 2)
    assert seen == [["bodies"]] * 3  # every run found the cache as the first did
    assert (cache / "content" / "bodies").read_text() == "read by a run"  # the last run's is kept
    once = bench._repeated("no-op", CLI, lambda: _run(5.0, 1), "dagster-sqlite")
    assert once.runs == [] and len(again) == 2
    assert (cache / "render-3").exists()  # a single run's cache is left alone


def test_a_repeated_run_that_found_no_cache_finds_none(tmp_path: Path) -> None:
    bench = _bench(tmp_path, repeat=2)
    bench._again = lambda scenario: None  # type: ignore[method-assign]
    cache = Path(bench._cache_dir("cli", "cold"))
    found: list[bool] = []

    def run() -> Measurement:
        found.append(cache.exists())
        (cache / "content").mkdir(parents=True)
        return _run(20.0, 1)

    bench._repeated("cold", CLI, run, "cli")
    assert found == [False, False]


def _plan_json(fleet: synth.Fleet) -> dict[str, str]:
    """{key: digest} of the entries `pipeline-sync plan --json` shows as updates."""
    options = ["--catalog", str(fleet.catalog_dir), "--templates", str(fleet.templates_dir)]
    result = CliRunner().invoke(main, [*options, "plan", "--json"])
    assert result.exit_code in (0, 2), result.output
    entries = json.loads(result.stdout)["entries"]
    return {e["key"]: e["digest"] for e in entries if e["status"] == "update"}


def test_each_template_variant_changes_the_same_pipelines_and_none_alike(
    tmp_path: Path, store: S3Store, bucket_env: None
) -> None:
    fleet = synth.write_fleet(tmp_path / "project", 40)
    base = synth.baseline(fleet)
    synth.put_all(store.client, store.settings.bucket, base.bodies, workers=1)
    pending = set(_plan_json(fleet))  # the baseline's own pending updates
    variants = []
    for variant in range(3):
        using = synth.edit_template(fleet, variant)
        updates = _plan_json(fleet)
        changed = {k: d for k, d in updates.items() if k not in pending}
        assert len(changed) == using > 0
        assert all(k.endswith(f"/{synth.CHANGED_TEMPLATE}") for k in changed)
        variants.append(changed)
    assert variants[0].keys() == variants[1].keys() == variants[2].keys()
    for key in variants[0]:
        assert len({v[key] for v in variants}) == 3  # three different desired pipelines
    synth.restore_template(fleet)
    assert set(_plan_json(fleet)) == pending


def test_a_repeated_first_plan_finds_no_fleet_summary(
    tmp_path: Path, store: S3Store, bucket_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = synth.write_fleet(tmp_path / "project", 40)
    base = synth.baseline(fleet)
    synth.put_all(store.client, store.settings.bucket, base.bodies, workers=1)
    _plan_json(fleet)  # the first plan ever writes the fleet summary beside Front50's objects
    summary_prefix = f"{store.settings.root}/{SUMMARY_FOLDER}/"

    def listed(prefix: str) -> list[str]:
        found = store.client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
        return [item["Key"] for item in found]

    assert listed(summary_prefix)
    pipelines = listed(f"{store.settings.root}/pipelines/")
    bench = _bench(tmp_path, repeat=2)
    monkeypatch.setattr(synth, "s3_client", lambda url: store.client)
    bench._again("cold")
    assert listed(summary_prefix) == []
    assert listed(f"{store.settings.root}/pipelines/") == pipelines  # Front50's objects untouched
