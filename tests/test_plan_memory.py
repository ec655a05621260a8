"""A plan of a fleet holds live bodies and canonical renders, not every parsed document at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from s3support import workspace_of

from pipeline_sync.live import parse_body, summarise
from pipeline_sync.provenance import MARKER_FIELD
from pipeline_sync.rendering import CanonicalRender, render_all, render_one
from pipeline_sync.store.s3 import S3Store

MANAGED = {
    "id": "p1",
    "application": "checkout",
    "name": "Deploy",
    "stages": [{"type": "wait", "waitTime": 1}],
    MARKER_FIELD: {"key": "checkout/dev/deploy", "renderDigest": "d"},
}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (json.dumps(MANAGED).encode(), None),
        (json.dumps({"application": "checkout", "name": "No id"}).encode(), "has no id"),
    ],
)
def test_a_body_read_afresh_is_summarised_then_kept_as_bytes(
    store: S3Store, body: bytes, problem: str | None
) -> None:
    store.client.put_object(Bucket=store.settings.bucket, Key=store.pipeline_key("p1"), Body=body)
    (obj,) = store.read_live().values()
    document, _ = parse_body(body)
    assert obj._document is None  # not held: parsed again when read
    assert obj.summary == summarise(document, problem) and obj.problem == problem
    assert obj.document == document
    assert obj._document == document  # kept once read


def test_a_body_that_is_no_pipeline_keeps_its_verdict(store: S3Store) -> None:
    store.client.put_object(Bucket=store.settings.bucket, Key=store.pipeline_key("p1"), Body=b"[1, 2]")
    (obj,) = store.read_live().values()
    assert obj.document is None and obj.problem == "not a JSON object"
    assert not obj.summary.has_document


@pytest.mark.parametrize("run", ["cold", "warm"])
def test_cached_renders_hold_their_json_not_their_document(aws_env: None, project: Path, run: str) -> None:
    workspace = workspace_of(project)
    if run == "warm":
        render_all(workspace_of(project))  # fills the render cache
    outcomes = render_all(workspace)
    assert outcomes
    for key, outcome in outcomes.items():
        rendered = outcome.rendered
        assert isinstance(rendered, CanonicalRender), key
        assert "document" not in vars(rendered)  # parsed again on each read, never stored
        fresh = render_one(workspace, outcome.target).rendered
        assert fresh is not None
        assert rendered == fresh and fresh == rendered
        assert rendered.document == fresh.document == json.loads(rendered.canonical)
        wanted: dict[str, Any] = {f: fresh.document[f] for f in ("id", "application", "name")}
        assert vars(rendered)["identity"] == wanted
