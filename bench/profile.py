"""Where the time of a warm no-op plan goes: pyinstrument over `pipeline-sync plan`'s code path.

`python -m bench.profile --size 10000` builds the synthetic fleet and bucket, warms the cache with
one plan, then profiles a second plan in process and prints pyinstrument's text report
(--html PATH writes the HTML one too). pyinstrument is a measurement tool, not a dependency:
install it into the venv by hand (`.venv/bin/pip install pyinstrument`).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import synth
from bench.s3server import S3Server

BUCKET = "bench-profile"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--html", type=Path, default=None)
    parser.add_argument("--dagster", action="store_true", help="Profile the reconcile run instead.")
    parser.add_argument(
        "--phases", action="store_true", help="Time each phase of a warm plan, without a profiler."
    )
    parser.add_argument(
        "--micro", action="store_true", help="Per-document cost of each step, naive and pipeline-sync."
    )
    args = parser.parse_args(argv)
    if args.phases:
        return _phases(args.size)
    if args.micro:
        return _micro()
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("pyinstrument is not installed: .venv/bin/pip install pyinstrument", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="pipeline-sync-profile-") as tmp:
        work = Path(tmp)
        fleet = synth.write_fleet(work / "project", args.size)
        with S3Server(work / "s3.log") as s3:
            synth.seed(synth.s3_client(s3.url), BUCKET, synth.baseline(fleet))
            os.environ.update(s3.client_env())
            os.environ.update(PIPELINE_SYNC_BUCKET=BUCKET, PIPELINE_SYNC_CACHE_DIR=str(work / "cache"))
            run = _dagster_run(fleet, work) if args.dagster else _cli_plan(fleet)
            run()  # warm the content cache (and the instance)
            profiler = Profiler(interval=0.001)
            started = time.perf_counter()
            with profiler:
                run()
            print(f"profiled run: {time.perf_counter() - started:.1f} s at N={args.size}")
            print(profiler.output_text(unicode=True, color=False, show_all=False))
            if args.html:
                args.html.write_text(profiler.output_html())
    return 0


def _phases(size: int) -> int:
    """Wall time of each phase of `pipeline-sync plan`'s code path, warm cache, no profiler."""
    from pipeline_sync.plan import build_plan
    from pipeline_sync.rendering import render_all
    from pipeline_sync.store.s3 import S3Settings, S3Store

    with tempfile.TemporaryDirectory(prefix="pipeline-sync-phases-") as tmp:
        work = Path(tmp)
        fleet = synth.write_fleet(work / "project", size)
        with S3Server(work / "s3.log") as s3:
            synth.seed(synth.s3_client(s3.url), BUCKET, synth.baseline(fleet))
            os.environ.update(s3.client_env())
            os.environ.update(PIPELINE_SYNC_BUCKET=BUCKET, PIPELINE_SYNC_CACHE_DIR=str(work / "cache"))
            _cli_plan(fleet)()  # warm the content cache
            clock = time.perf_counter()
            times: dict[str, float] = {}

            def lap(name: str) -> None:
                nonlocal clock
                now = time.perf_counter()
                times[name] = now - clock
                clock = now

            workspace = fleet.workspace()
            lap("load catalog (Sources.load)")
            outcomes = render_all(workspace)
            lap("render + validate (render_all)")
            store = S3Store(S3Settings.from_env())
            listing = store.list_pipeline_etags()
            lap("list the bucket (ListObjectsV2 pages)")
            live = store.read_live()
            lap("read_live again (listing + cached summaries)")
            build_plan(workspace.catalog, outcomes, live)
            lap("build_plan (normalise, digests, diffs of changed)")
    total = sum(times.values()) - times["list the bucket (ListObjectsV2 pages)"]
    print(f"N={size}, warm cache, {len(listing)} live objects; one plan = {total:.1f} s")
    for name, seconds in times.items():
        print(f"  {name:<52} {seconds:6.2f} s  {1000 * seconds / size:6.2f} ms/pipeline")
    return 0


def _micro(repeat: int = 300) -> int:
    """Milliseconds per document of the steps the naive loop and pipeline-sync take (no S3)."""
    import jinja2
    import yaml
    from deepdiff import DeepDiff

    from pipeline_sync.canonical import canonical_json, sha256_hex
    from pipeline_sync.yamlsafe import load_yaml

    with tempfile.TemporaryDirectory(prefix="pipeline-sync-micro-") as tmp:
        fleet = synth.write_fleet(Path(tmp) / "project", 10)
        workspace = fleet.workspace()
        target = workspace.catalog.targets[
            next(k for k in workspace.catalog.targets if k.endswith("/deploy"))
        ]
        source = (fleet.templates_dir / "deploy.yaml.j2").read_text()
        context = {**target.context, "pipeline_id": lambda *parts: "/".join(parts)}
        text = jinja2.Template(source).render(context)
        rendered = workspace.renderer.render(target)
        document = dict(rendered.document)
        twin = json.loads(json.dumps(document))
        steps: dict[str, Callable[[], object]] = {
            "naive: jinja2.Template(source) (compile)": lambda: jinja2.Template(source),
            "naive: yaml.load(SafeLoader)": lambda: yaml.load(text, Loader=yaml.SafeLoader),
            "naive: DeepDiff(equal documents)": lambda: DeepDiff(document, twin),
            "yaml.load(CSafeLoader), plain": lambda: yaml.load(text, Loader=yaml.CSafeLoader),
            "pipeline-sync load_yaml (CSafeLoader + checks)": lambda: load_yaml(text, "x"),
            "pipeline-sync Renderer.render (cached template)": lambda: workspace.renderer.render(target),
            "canonical_json + sha256": lambda: sha256_hex(canonical_json(document)),
            "copy.deepcopy(document)": lambda: copy.deepcopy(document),
            "json.loads(canonical)": lambda: json.loads(rendered.canonical),
        }
        print(f"one {target.template} pipeline ({len(rendered.canonical):,} bytes of JSON), ms per call:")
        for name, step in steps.items():
            started = time.perf_counter()
            for _ in range(repeat):
                step()
            print(f"  {name:<50} {1000 * (time.perf_counter() - started) / repeat:6.2f}")
    return 0


def _cli_plan(fleet: synth.Fleet) -> Callable[[], None]:
    from pipeline_sync import engine
    from pipeline_sync.store.s3 import S3Settings, S3Store

    def run() -> None:
        engine.plan(fleet.workspace(), S3Store(S3Settings.from_env()))

    return run


def _dagster_run(fleet: synth.Fleet, work: Path) -> Callable[[], None]:
    import dagster as dg

    from pipeline_sync.definitions import defs
    from pipeline_sync.defs.resources import CatalogResource, Front50Resource

    home = work / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(home)
    instance = dg.DagsterInstance.get()
    resources = {
        "catalog": CatalogResource(
            catalog_dir=str(fleet.catalog_dir), templates_dir=str(fleet.templates_dir)
        ),
        "front50": Front50Resource(bucket=BUCKET),
    }

    def run() -> None:
        result = defs.resolve_job_def("reconcile_job").execute_in_process(
            instance=instance, resources=resources
        )
        assert result.success

    return run


if __name__ == "__main__":
    raise SystemExit(main())
