"""Plain helpers for S3-backed tests (the fixtures are in conftest.py): names and bucket listings."""

from __future__ import annotations

from pathlib import Path

from pipeline_sync.rendering import Sources
from pipeline_sync.store.s3 import S3Store

PROJECT = Path(__file__).resolve().parent.parent
BUCKET = "front50-test"


def workspace_of(root: Path) -> Sources:
    return Sources.load(root / "catalog", root / "templates")


def object_keys(store: S3Store) -> list[str]:
    """Every key Front50 could read: pipeline-sync's own fleet summary (store.summary_key, under
    a prefix Front50 never lists) is left out."""
    response = store.client.list_objects_v2(Bucket=store.settings.bucket)
    return sorted(o["Key"] for o in response.get("Contents", []) if o["Key"] != store.summary_key)
