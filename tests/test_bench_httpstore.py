"""The bench's Front50 and Gate API stand-in serves the synthetic fleet so that `pipeline-sync plan` sees what the S3 column sees."""

from __future__ import annotations

import json
import re
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench import httpstore, synth
from pipeline_sync.cli import main
from pipeline_sync.store.s3 import S3Store

SIZE = 40
STATUS_OF_ROLE = {"in-sync": "in-sync", "missing": "create", "update": "update", "drift": "drift"}


def plan_counts(fleet: synth.Fleet, *store: str) -> tuple[Counter[str], str]:
    """The plan's entries counted by status, and its Summary line (what the bench's verdict is)."""
    options = ["--catalog", str(fleet.catalog_dir), "--templates", str(fleet.templates_dir), *store]
    as_json = CliRunner().invoke(main, [*options, "plan", "--json"])
    assert as_json.exit_code in (0, 2), as_json.output
    text = CliRunner().invoke(main, [*options, "plan"])
    assert text.exit_code in (0, 2), text.output
    summary = re.findall(r"^Summary: (.*)$", text.stdout, re.MULTILINE)
    assert len(summary) == 1, text.stdout
    return Counter(e["status"] for e in json.loads(as_json.stdout)["entries"]), summary[0]


def arranged(tmp_path: Path) -> tuple[synth.Fleet, dict[str, bytes], Counter[str]]:
    """A tiny fleet whose live copy has every role: one pipeline deleted (create), two edited in
    Deck (drift), and the bench's template edit made (update, every pipeline of that template);
    and the statuses a plan must show."""
    fleet = synth.write_fleet(tmp_path / "project", SIZE)
    base = synth.baseline(fleet)
    canary = f"/{synth.CHANGED_TEMPLATE}"
    in_sync = sorted(k for k, role in base.roles.items() if role == "in-sync" and not k.endswith(canary))
    missing, drifted = in_sync[0], in_sync[1:3]
    bodies = dict(base.bodies)
    del bodies[base.s3_keys[missing]]
    bodies.update(synth.drifted_bodies(base, drifted))
    roles = dict(base.roles, **{missing: "missing"}, **dict.fromkeys(drifted, "drift"))
    roles.update((k, "update") for k, role in roles.items() if role == "in-sync" and k.endswith(canary))
    assert synth.edit_template(fleet) == sum(1 for k in roles if k.endswith(canary))
    return fleet, bodies, Counter(STATUS_OF_ROLE[r] for r in roles.values())


def test_every_api_plans_the_fleet_as_the_s3_column_does(
    tmp_path: Path, store: S3Store, bucket_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet, bodies, expected = arranged(tmp_path)
    assert expected["create"] >= 1 and expected["drift"] >= 2 and expected["update"] >= 1
    synth.put_all(store.client, store.settings.bucket, bodies, workers=1)
    s3_counts, s3_summary = plan_counts(fleet)
    assert s3_counts == expected, s3_summary

    monkeypatch.setenv("PIPELINE_SYNC_HTTP_BACKOFF", "0.01")
    with httpstore.serving(bodies, tmp_path / "http") as served:
        assert len(served.state.pipelines) == len(httpstore.pipeline_documents(bodies))
        for kind in httpstore.KINDS:
            for name, value in served.client_env(kind).items():
                monkeypatch.setenv(name, value)
            served.reset()
            counts, summary = plan_counts(fleet, "--store", served.store_url(kind))
            assert (counts, summary) == (s3_counts, s3_summary), kind
            # Two plans, each one listing and, per drifted pipeline, its history (and a read of it).
            listing, one, history = {
                "front50": ("GET /pipelines", "GET /pipelines/{id}/get", "GET /pipelines/{id}/history"),
                "gate": (
                    "GET /pipelineConfigs",
                    "GET /applications/{app}/pipelineConfigs/{id}",
                    "GET /pipelineConfigs/{id}/history",
                ),
            }[kind]
            assert served.counts() == {listing: 2, one: 4, history: 4}, kind


def test_a_deck_edit_and_putting_it_back_move_the_plan_as_on_s3(tmp_path: Path) -> None:
    """The drifted scenario's arrange and restore on the stand-in: drift appears, then goes."""
    fleet = synth.write_fleet(tmp_path / "project", SIZE)
    base = synth.baseline(fleet)
    keys = synth.drift_keys(base, fraction=0.05)
    with httpstore.serving(base.bodies, tmp_path / "http") as served:
        url = served.store_url("front50")
        before, _ = plan_counts(fleet, "--store", url)
        httpstore.put_bodies(served.state, synth.drifted_bodies(base, keys))
        drifted, _ = plan_counts(fleet, "--store", url)
        assert drifted["drift"] == before["drift"] + len(keys)
        assert drifted["in-sync"] == before["in-sync"] - len(keys)
        pipeline_id = json.loads(base.bodies[base.s3_keys[keys[0]]])["id"]
        assert [v["limitConcurrent"] for v in served.state.history[pipeline_id.lower()]] == [
            not json.loads(base.bodies[base.s3_keys[keys[0]]]).get("limitConcurrent", True),
            json.loads(base.bodies[base.s3_keys[keys[0]]]).get("limitConcurrent"),
        ]
        httpstore.put_bodies(served.state, synth.original_bodies(base, keys))
        after, _ = plan_counts(fleet, "--store", url)
        assert after == before


def test_seeding_keeps_ids_as_spelled_and_leaves_the_change_marker_out() -> None:
    document = {"id": "Pipe-1", "application": "App", "name": "deploy", "stages": []}
    bodies = {
        "front50/pipelines/last-modified.json": b'{"lastModified": 1}',
        "front50/pipelines/pipe-1/pipeline-metadata.json": json.dumps(document).encode(),
        "front50/applications/app/application-metadata.json": b"{}",
    }
    state = httpstore.standin().Front50State()
    assert httpstore.seed(state, bodies) == 1
    assert state.pipelines == {"Pipe-1": document}
    assert state.history == {"pipe-1": [document]}
    assert list(state.applications) == ["app"]
    assert state.applications["app"]["name"] == "APP"


def test_the_listing_size_is_what_the_stand_in_sends(tmp_path: Path) -> None:
    documents = [{"id": f"p-{i}", "application": "app", "name": f"n{i}", "stages": []} for i in range(3)]
    bodies = {
        f"front50/pipelines/p-{i}/pipeline-metadata.json": json.dumps(d).encode()
        for i, d in enumerate(documents)
    }
    with httpstore.serving(bodies, tmp_path) as served:
        with urllib.request.urlopen(served.urls["front50"] + "/pipelines") as answer:
            sent = answer.read()
        assert json.loads(sent) == documents
        assert httpstore.listing_bytes(served.state) == len(sent)
        assert served.counts() == {"GET /pipelines": 1}


@pytest.mark.parametrize(
    ("method", "path", "route"),
    [
        ("GET", "/pipelines", "GET /pipelines"),
        ("GET", "/pipelines/abc-1/get", "GET /pipelines/{id}/get"),
        ("GET", "/pipelines/abc-1/history", "GET /pipelines/{id}/history"),
        ("GET", "/pipelines/shop/name/deploy", "GET /pipelines/{app}/name/{name}"),
        ("GET", "/pipelines/shop", "GET /pipelines/{app}"),
        ("POST", "/pipelines", "POST /pipelines"),
        ("DELETE", "/pipelines/shop/deploy", "DELETE /pipelines/{app}/{name}"),
        ("GET", "/pipelineConfigs", "GET /pipelineConfigs"),
        ("GET", "/applications/shop/pipelineConfigs/abc-1", "GET /applications/{app}/pipelineConfigs/{id}"),
        ("GET", "/applications/shop", "GET /applications/{app}"),
        ("PATCH", "/pipelines", "PATCH (no route) /pipelines"),
        ("GET", "/pipelines/a/b/c/d", "GET (no route) /pipelines/a/b/c/d"),
    ],
)
def test_requests_are_counted_by_route(method: str, path: str, route: str) -> None:
    assert httpstore.route_of(method, path) == route
