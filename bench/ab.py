"""A/B: `pipeline-sync plan` of two source trees on one seeded fleet, run alternately.

    python -m bench.ab --baseline /work/main --sizes 2000

Both trees plan the same bucket of one moto server (bench.s3server), each with its own cache
directory, one after the other, twice per scenario: machine noise hits both alike, so the
ratio between them means something even on a busy machine. Scenarios: cold (empty cache),
no-op (warm) and one template changed (bench.synth). Results: bench/results/ab.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import synth
from bench.s3server import S3Server

PROJECT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT / "bench" / "results"
BUCKET = "ab-bench"


def plan_once(
    server: S3Server, tree: Path, fleet: synth.Fleet, bucket: str, cache: Path
) -> tuple[float, int]:
    """One `pipeline-sync plan` of tree's code in a process of its own: (wall seconds, requests)."""
    env = {
        **server.client_env(),
        "PYTHONPATH": str(tree),
        "PIPELINE_SYNC_BUCKET": bucket,
        "PIPELINE_SYNC_CACHE_DIR": str(cache),
    }
    argv = ["--catalog", str(fleet.catalog_dir), "--templates", str(fleet.templates_dir), "plan"]
    server.reset()
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", "from pipeline_sync.cli import main; main()", *argv],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode not in (0, 2):
        raise RuntimeError(f"pipeline-sync plan ({tree}) failed:\n{done.stderr[-3000:]}")
    return wall, sum(server.counts().values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="the other source tree")
    parser.add_argument("--sizes", default="2000")
    args = parser.parse_args(argv)
    trees = {"baseline": args.baseline.resolve(), "this tree": PROJECT}
    lines = [
        "# A/B: `pipeline-sync plan`, baseline vs this tree",
        "",
        f"`python -m bench.ab {' '.join(argv if argv is not None else sys.argv[1:])}` on {os.cpu_count()} "
        "cores; each cell: wall seconds of the whole process (best of the runs), requests counted "
        "at the server.",
        "",
        "| N | scenario | baseline | this tree | ratio |",
        "|---:|---|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp, S3Server(Path(tmp) / "s3.log") as server:
        for size in (int(s) for s in args.sizes.split(",")):
            work = Path(tmp) / f"n{size}"
            fleet = synth.write_fleet(work / "project", size)
            os.environ["PIPELINE_SYNC_CACHE_DIR"] = str(work / "cache-synth")
            bucket = f"{BUCKET}-{size}"
            synth.seed(synth.s3_client(server.url), bucket, synth.baseline(fleet))
            for scenario, runs in (("cold", 1), ("no-op", 2), ("template changed", 2)):
                if scenario == "template changed":
                    synth.edit_template(fleet)
                best: dict[str, tuple[float, int]] = {}
                for _ in range(runs):
                    for name, tree in trees.items():
                        cache = work / f"cache-{name.replace(' ', '-')}"
                        wall, requests = plan_once(server, tree, fleet, bucket, cache)
                        print(
                            f"N={size} {scenario:<17} {name:<9} {wall:6.2f} s {requests:6} requests",
                            flush=True,
                        )
                        if name not in best or wall < best[name][0]:
                            best[name] = (wall, requests)
                base, this = best["baseline"], best["this tree"]
                lines.append(
                    f"| {size:,} | {scenario} | {base[0]:.2f} s, {base[1]:,} requests | "
                    f"{this[0]:.2f} s, {this[1]:,} requests | {base[0] / this[0]:.2f}x |"
                )
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ab.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
