"""`dagster dev` against moto's HTTP server: the UI's GraphQL sees the assets and partitions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dagster_dev import dagster_dev, group_alive, moto_server, s3_env

from pipeline_sync.build import Workspace
from pipeline_sync.demo_seed import seed
from pipeline_sync.front50 import Front50Settings, Front50Store

pytestmark = pytest.mark.e2e
PROJECT = Path(__file__).resolve().parent.parent

ASSETS = """
{ assetNodes { assetKey { path } isPartitioned } }
"""
PARTITIONS = """
query ($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode { partitionKeysByDimension { partitionKeys } }
  }
}
"""


def test_dagster_dev_serves_assets_and_partitions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dagster as dg

    with moto_server() as endpoint:
        env = s3_env(endpoint, tmp_path, "front50-e2e")
        for name, value in env.items():
            if name.startswith(("AWS_", "PIPELINE_SYNC_", "DAGSTER_")):
                monkeypatch.setenv(name, value)
        seed(Front50Store(Front50Settings.from_env()), PROJECT / "catalog", PROJECT / "templates")
        keys = sorted(Workspace.load(PROJECT / "catalog", PROJECT / "templates").catalog.targets)
        with dg.DagsterInstance.from_config(os.environ["DAGSTER_HOME"]) as instance:
            instance.add_dynamic_partitions("pipelines", keys)

        with dagster_dev(env, tmp_path / "dagster-dev.log") as server:
            nodes = server.graphql(ASSETS)["assetNodes"]
            found = {"/".join(n["assetKey"]["path"]): n["isPartitioned"] for n in nodes}
            assert found["pipeline_plan"] is True and found["published_pipeline"] is True
            assert found["fleet_plan"] is False and "front50_live" in found
            node = server.graphql(PARTITIONS, {"path": ["pipeline_plan"]})["assetNodeOrError"]
            assert node["partitionKeysByDimension"][0]["partitionKeys"] == keys
            pgid = server.process.pid
        assert not group_alive(pgid), "dagster dev left processes behind"
