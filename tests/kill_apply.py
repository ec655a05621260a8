"""Run by test_faults: apply a saved plan and SIGKILL ourselves around the Nth pipeline write."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from pipeline_sync import engine
from pipeline_sync.plan import Plan
from pipeline_sync.rendering import Sources
from pipeline_sync.store.s3 import S3Settings, S3Store


def main() -> None:
    plan_file, project, kill_at, phase = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    store = S3Store(S3Settings.from_env())
    writes = {"n": 0}

    def is_pipeline_put(params: dict[str, Any]) -> bool:
        return str(params.get("Key", "")).endswith("/pipeline-metadata.json")

    def before(params: dict[str, Any], **_: Any) -> None:
        writes["pipeline"] = int(is_pipeline_put(params))
        if writes["pipeline"]:
            writes["n"] += 1
            if phase == "before" and writes["n"] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)  # the write never leaves

    def after(**_: Any) -> None:
        if phase == "after" and writes.get("pipeline") and writes["n"] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # the write landed; its marker bump never happens

    store.client.meta.events.register("provide-client-params.s3.PutObject", before)
    store.client.meta.events.register("after-call.s3.PutObject", after)
    plan = Plan.from_json(json.loads(Path(plan_file).read_text()))
    approved = {k: e.digest for k, e in plan.entries.items() if e.actionable}
    workspace = Sources.load(project / "catalog", project / "templates")
    engine.apply(workspace, store, approved, approver="killed")


if __name__ == "__main__":
    main()
