"""Seed a Front50 bucket for the demo: most pipelines in sync, one drifted, one conflict, one missing,
and a few hand-made pipelines of applications the catalog does not know, to try `import` on."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline_sync import engine
from pipeline_sync.engine import Selection
from pipeline_sync.errors import PipelineSyncError
from pipeline_sync.rendering import Sources
from pipeline_sync.status import Status
from pipeline_sync.store.s3 import S3Store

DRIFT_KEY = "checkout/prod/deploy"
MISSING_KEY = "search/prod/deploy"
CONFLICT_KEY = "notifications/prod/deploy"
UNMANAGED_ID = "0b7e2d4a-6c1f-4f8e-9d3a-5e2b1c0a9f77"
UNTOUCHED_ID = "5a0c9e1b-2d3f-4a6b-8c7d-9e0f1a2b3c4d"
# Hand-made in Deck, one per application, copied from each other: what `import` then `templatize`
# turn into one shared template. (app, namespace, replicas, stages)
HAND_MADE = (
    ("inventory", "warehouse", 3, 1),
    ("pricing", "warehouse", 3, 1),
    ("reviews", "community", 2, 1),
    ("shipping", "warehouse", 3, 2),
)


def seed(store: S3Store, catalog_dir: Path, templates_dir: Path) -> dict[str, str]:
    """Write the demo's starting state; returns what was arranged, for the banner."""
    store.client.create_bucket(Bucket=store.settings.bucket)
    store.client.put_bucket_versioning(
        Bucket=store.settings.bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    workspace = Sources.load(catalog_dir, templates_dir)
    keys = [k for k in workspace.catalog.targets if k not in {MISSING_KEY, CONFLICT_KEY}]
    plan = engine.plan(workspace, store, Selection.of(keys))
    approved = {k: e.digest for k, e in plan.entries.items() if e.status is Status.CREATE}
    failed = [r.message for r in engine.apply(workspace, store, approved, approver="demo-seed") if not r.ok]
    if failed:
        raise PipelineSyncError("the demo seed could not write its pipelines: " + "; ".join(failed))
    _edit_in_deck(store, plan.entries[DRIFT_KEY].pipeline_id or "")
    conflict_name = str(plan_name(workspace, CONFLICT_KEY))
    _put_unmanaged(store, UNMANAGED_ID, "notifications", conflict_name, "hand-made in Deck")
    _put_unmanaged(store, UNTOUCHED_ID, "legacy-app", "deploy-by-hand", "not in the catalog")
    for app, namespace, replicas, stages in HAND_MADE:
        store.ensure_application(app, f"{app}-team@example.com")  # as Deck creates it, with its owner
        document = hand_made(app, namespace, replicas, stages)
        store.put_pipeline(str(document["id"]), json.dumps(document).encode(), if_match=None)
    return {
        "hand_made": ", ".join(f"{app}/Deploy to Prod" for app, *_ in HAND_MADE),
        "drift": DRIFT_KEY,
        "create": MISSING_KEY,
        "conflict": CONFLICT_KEY,
        "unmanaged": f"legacy-app/deploy-by-hand ({UNTOUCHED_ID})",
    }


def plan_name(workspace: Sources, key: str) -> object:
    return workspace.renderer.render(workspace.catalog.targets[key]).document["name"]


def _edit_in_deck(store: S3Store, pipeline_id: str) -> None:
    """Simulate a person raising replicas in Deck: the object changes, the marker stays."""
    live = store.read_pipeline(pipeline_id)
    if live is None or live.document is None:
        raise PipelineSyncError(f"the demo seed could not read back pipeline {pipeline_id} to edit it")
    document = dict(live.document)
    bake = [s for s in document.get("stages", []) if s.get("refId") == "bake"]
    if not bake:
        raise PipelineSyncError(
            f"the demo seed edits the 'bake' stage of {DRIFT_KEY}, and its template has none: "
            "update pipeline_sync/demo_seed.py to edit a stage that exists."
        )
    bake[0].setdefault("overrides", {})["replicaCount"] = 12
    document["lastModifiedBy"] = "alice@example.com"
    store.put_pipeline(pipeline_id, json.dumps(document).encode(), if_match=live.etag)


def _put_unmanaged(store: S3Store, pipeline_id: str, application: str, name: str, why: str) -> None:
    document = {
        "id": pipeline_id,
        "application": application,
        "name": name,
        "description": why,
        "stages": [
            {
                "refId": "1",
                "type": "wait",
                "name": "Wait",
                "waitTime": 30,
                "requisiteStageRefIds": [],
            }
        ],
        "triggers": [],
        "lastModifiedBy": "bob@example.com",
        "updateTs": "1700000000000",
    }
    store.put_pipeline(pipeline_id, json.dumps(document).encode(), if_match=None)


def hand_made(app: str, namespace: str, replicas: int, stages: int) -> dict[str, object]:
    """A deploy pipeline as a person makes it in Deck: a Docker trigger without an id, SpEL, a Helm value."""
    return {
        "id": f"{app}-deploy-prod",
        "application": app,
        "name": "Deploy to Prod",
        "keepWaitingPipelines": False,
        "limitConcurrent": True,
        "triggers": [
            {"type": "docker", "account": "dockerhub", "repository": f"shop/{app}", "enabled": True}
        ],
        "stages": [
            {
                "refId": str(index + 1),
                "requisiteStageRefIds": [str(index)] if index else [],
                "type": "deployManifest",
                "name": "Deploy" if index == 0 else f"Deploy (wave {index + 1})",
                "account": "k8s-prod",
                "cloudProvider": "kubernetes",
                "source": "text",
                "manifests": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "metadata": {
                            "name": app,
                            "namespace": namespace,
                            "annotations": {"helm.sh/chart": "{{ .Chart.Name }}-{{ .Chart.Version }}"},
                        },
                        "spec": {"replicas": replicas, "image": f"shop/{app}:${{trigger['tag']}}"},
                    }
                ],
            }
            for index in range(stages)
        ],
        "lastModifiedBy": "bob@example.com",
        "updateTs": "1700000000000",
    }
