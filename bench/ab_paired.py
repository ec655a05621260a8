"""Paired A/B of `pipeline-sync plan`: the warm no-op and the first plan after a template edit.

    python -m bench.ab_paired --baseline /work/main --size 10000 --rounds 6

bench.ab keeps the best of two runs, so its *template changed* is the second plan after the
edit (the changed renders are then cached). bench.reconcile measures the first. This runs both
trees on one seeded moto bucket, each with its own cache directory, in rounds: each round plans
the no-op, edits the template and plans again (the first plan after the edit for both trees),
then restores it; the trees take turns going first. It prints each round and, per scenario, the
median of the per-round ratios (baseline / this tree) and the ratio of the best runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench import synth
from bench.ab import PROJECT, plan_once
from bench.s3server import S3Server

BUCKET = "ab-paired"
SCENARIOS = ("no-op", "template changed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="the other source tree")
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    trees = {"baseline": args.baseline.resolve(), "this tree": PROJECT}
    walls: dict[tuple[str, str], list[float]] = {(s, t): [] for s in SCENARIOS for t in trees}
    with (
        tempfile.TemporaryDirectory(prefix="bench-ab-paired-") as tmp,
        S3Server(Path(tmp) / "s3.log") as server,
    ):
        work = Path(tmp)
        fleet = synth.write_fleet(work / "project", args.size)
        os.environ["PIPELINE_SYNC_CACHE_DIR"] = str(work / "cache-synth")
        synth.seed(synth.s3_client(server.url), BUCKET, synth.baseline(fleet))
        for name, tree in trees.items():
            plan_once(server, tree, fleet, BUCKET, work / f"cache-{name}")  # cold: fills the caches
        for number in range(args.rounds):
            order = list(trees.items()) if number % 2 == 0 else list(reversed(trees.items()))
            for scenario in SCENARIOS:
                if scenario == "template changed":
                    synth.edit_template(fleet)
                for name, tree in order:
                    wall, _ = plan_once(server, tree, fleet, BUCKET, work / f"cache-{name}")
                    walls[(scenario, name)].append(wall)
            synth.restore_template(fleet)
            shown = ", ".join(f"{s} {t}: {v[-1]:.2f} s" for (s, t), v in walls.items())
            print(f"round {number + 1}: {shown}", flush=True)
    print(f"N={args.size}, {args.rounds} rounds on {os.cpu_count()} cores:")
    for scenario in SCENARIOS:
        base, this = walls[(scenario, "baseline")], walls[(scenario, "this tree")]
        ratios = [b / t for b, t in zip(base, this, strict=True)]
        print(
            f"  {scenario}: baseline median {statistics.median(base):.2f} s (best {min(base):.2f}), "
            f"this tree median {statistics.median(this):.2f} s (best {min(this):.2f}); ratio median "
            f"{statistics.median(ratios):.2f}x (rounds: {', '.join(f'{r:.2f}' for r in ratios)}), "
            f"of the best runs {min(base) / min(this):.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
