"""Trust: no write without the current plan's approval, no claim on what we don't own, no trust in caches.

Each test reproduces an attack or a careless act and checks that nothing is written.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import DEPLOY_DEFAULTS, DEPLOY_TEMPLATE, MakeProject, build_project
from s3support import BUCKET, object_keys, workspace_of

from pipeline_sync import engine, render_cache
from pipeline_sync.canonical import canonical_json
from pipeline_sync.cli import main
from pipeline_sync.engine import AUTO_APPROVER, Selection
from pipeline_sync.identity import pipeline_id_for
from pipeline_sync.plan import Plan, plan_digest
from pipeline_sync.provenance import MARKER_FIELD, content_digest
from pipeline_sync.status import Status
from pipeline_sync.store.s3 import RequestCounter, S3Settings, S3Store

KEY = "checkout/prod/deploy"


def cli(project: Path, *args: str) -> Result:
    options = ["--catalog", str(project / "catalog"), "--templates", str(project / "templates")]
    return CliRunner().invoke(main, [*options, *args])


def deploy_project(root: Path, services: Mapping[str, Any] | None = None) -> Path:
    """A project with the deploy template and defaults (dev approved by stack policy)."""
    return build_project(
        root, defaults=DEPLOY_DEFAULTS, services=services, templates={"deploy": DEPLOY_TEMPLATE}
    ).root


def apply_everything(project: Path, store: S3Store) -> None:
    ws = workspace_of(project)
    plan = engine.plan(ws, store)
    approved = {k: e.digest for k, e in plan.entries.items() if e.actionable}
    assert {r.outcome for r in engine.apply(ws, store, approved, approver="alice")} == {"applied"}


def body_of(store: S3Store, pipeline_id: str) -> bytes:
    response = store.client.get_object(Bucket=BUCKET, Key=store.pipeline_key(pipeline_id))
    body: bytes = response["Body"].read()
    return body


def put_raw(store: S3Store, pipeline_id: str, document: dict[str, Any]) -> None:
    store.client.put_object(Bucket=BUCKET, Key=store.pipeline_key(pipeline_id), Body=json.dumps(document))


def set_defaults(project: Path, old: str, new: str) -> None:
    path = project / "catalog" / "defaults.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


# -- a broken catalog deletes nothing ----------------------------------------------------------


def test_a_renamed_service_file_deletes_nothing(
    project: Path, store: S3Store, bucket_env: None, tmp_path: Path
) -> None:
    set_defaults(project, "prune: false", "prune: true")
    apply_everything(project, store)
    services = project / "catalog" / "services"
    (services / "checkout.yaml").rename(services / "Checkout.yaml")
    result = cli(project, "plan", "--out", str(tmp_path / "plan.json"))
    assert result.exit_code == 1
    plan = Plan.from_json(json.loads((tmp_path / "plan.json").read_text()))
    assert not [k for k, e in plan.entries.items() if e.status is Status.DELETE]
    checkout = {k: e for k, e in plan.entries.items() if k.startswith("checkout/")}
    assert len(checkout) == 5 and {e.status for e in checkout.values()} == {Status.UNKNOWN}
    assert "catalog/services/Checkout.yaml" in checkout[KEY].messages[0]
    assert "nothing is deleted while any catalog file fails to load" in checkout[KEY].messages[0]


def test_a_saved_plan_with_deletes_is_refused_once_the_catalog_breaks(
    project: Path, store: S3Store, bucket_env: None, tmp_path: Path
) -> None:
    set_defaults(project, "prune: false", "prune: true")
    apply_everything(project, store)
    (project / "catalog" / "services" / "checkout.yaml").unlink()
    planned = cli(project, "plan", "--out", str(tmp_path / "plan.json"))
    assert planned.exit_code == 2, planned.output
    assert "Deletes (5)" in planned.output
    before = object_keys(store)
    (project / "catalog" / "services" / "search.yaml").write_text("name: search\nstacks: [oops\n")
    applied = cli(project, "apply", str(tmp_path / "plan.json"))
    assert applied.exit_code == 1
    assert object_keys(store) == before
    assert applied.output.count("failed: checkout/") == 5
    assert (
        "nothing is deleted while any catalog file fails to load (catalog/services/search.yaml)"
        in applied.output
    )


# -- ownership is proven, not claimed ----------------------------------------------------------


def test_a_deck_copy_keeps_the_marker_but_is_never_deleted(
    project: Path, store: S3Store, bucket_env: None, tmp_path: Path
) -> None:
    set_defaults(project, "prune: false", "prune: true")
    apply_everything(project, store)
    original = json.loads(body_of(store, pipeline_id_for(KEY)))
    copy = {k: v for k, v in original.items() if k != "id"}  # what Deck's "Copy from" does
    copy.update(id="copied-by-a-person", name="deploy-prod-copy")
    put_raw(store, "copied-by-a-person", copy)
    services = project / "catalog" / "services" / "checkout.yaml"
    services.write_text(
        services.read_text().replace("pipelines: [deploy, deploy-canary]", "pipelines: [deploy-canary]")
    )
    result = cli(project, "plan", "--out", str(tmp_path / "plan.json"))
    plan = Plan.from_json(json.loads((tmp_path / "plan.json").read_text()))
    assert plan.entries[KEY].status is Status.DELETE
    assert plan.entries[KEY].pipeline_id == pipeline_id_for(KEY)
    assert "copied-by-a-person is not managed" in result.output
    applied = cli(project, "apply", str(tmp_path / "plan.json"))
    assert applied.exit_code == 0, applied.output
    assert json.loads(body_of(store, "copied-by-a-person"))["name"] == "deploy-prod-copy"
    assert store.read_pipeline(pipeline_id_for(KEY)) is None


def test_a_hand_written_marker_on_another_teams_pipeline_claims_nothing(
    project: Path, store: S3Store, bucket_env: None
) -> None:
    set_defaults(project, "prune: false", "prune: true")
    forged = {
        "id": "billing-deploy",
        "application": "billing",
        "name": "deploy",
        "stages": [],
        MARKER_FIELD: {"key": "billing/prod/deploy", "renderDigest": "0" * 64},
    }
    put_raw(store, "billing-deploy", forged)
    plan = engine.plan(workspace_of(project), store)
    assert "billing/prod/deploy" not in plan.entries
    assert any("billing-deploy is not managed" in w for w in plan.warnings)
    assert cli(project, "plan").exit_code == 2
    assert json.loads(body_of(store, "billing-deploy")) == forged


def test_pipelines_of_another_catalog_are_managed_elsewhere(
    make_project: MakeProject, store: S3Store, tmp_path: Path, bucket_env: None
) -> None:
    defaults = "prune: true\ncatalog: {id: %s}\nvars: {description: x}\nstacks:\n  dev: {approval: auto}\n"
    team_b = make_project(
        tmp_path / "b",
        defaults=defaults % "team-b",
        services={"beta": {}},
        templates={"deploy": DEPLOY_TEMPLATE},
    ).root
    team_a = make_project(
        tmp_path / "a",
        defaults=defaults % "team-a",
        services={"alpha": {}},
        templates={"deploy": DEPLOY_TEMPLATE},
    ).root
    apply_everything(team_b, store)
    beta_body = body_of(store, pipeline_id_for("beta/dev/deploy"))
    assert json.loads(beta_body)[MARKER_FIELD]["catalog"] == "team-b"
    plan = engine.plan(workspace_of(team_a), store)
    assert set(plan.entries) == {"alpha/dev/deploy"} and plan.elsewhere == {"team-b": 1}
    assert "Managed elsewhere (left alone): 1 by team-b" in cli(team_a, "plan").output
    apply_everything(team_a, store)
    assert body_of(store, pipeline_id_for("beta/dev/deploy")) == beta_body
    # a catalog that takes an id for the first time still owns what it wrote without one
    unnamed = make_project(
        tmp_path / "c",
        defaults=defaults.replace("catalog: {id: %s}\n", ""),
        services={"gamma": {}},
        templates={"deploy": DEPLOY_TEMPLATE},
    ).root
    apply_everything(unnamed, store)
    set_defaults(unnamed, "prune: true\n", "prune: true\ncatalog: {id: team-c}\n")
    assert engine.plan(workspace_of(unnamed), store).entries["gamma/dev/deploy"].status is Status.CONFLICT
    set_defaults(unnamed, "catalog: {id: team-c}", 'catalog: {id: team-c, formerly: [""]}')
    assert engine.plan(workspace_of(unnamed), store).entries["gamma/dev/deploy"].status is Status.IN_SYNC


def test_the_same_key_owned_by_another_catalog_is_a_conflict(
    make_project: MakeProject, store: S3Store, tmp_path: Path
) -> None:
    defaults = "catalog: {id: %s}\nvars: {description: x}\nstacks:\n  dev: {approval: auto}\n"
    templates = {"deploy": DEPLOY_TEMPLATE}
    apply_everything(
        make_project(tmp_path / "b", defaults=defaults % "team-b", templates=templates).root, store
    )
    team_a = make_project(tmp_path / "a", defaults=defaults % "team-a", templates=templates).root
    entry = engine.plan(workspace_of(team_a), store).entries["svc/dev/deploy"]
    assert entry.status is Status.CONFLICT and "names catalog 'team-b'" in entry.messages[0]


# -- taking over an unmanaged pipeline always needs a person -----------------------------------

BILLING = {"id": "billing-prod", "application": "billing", "name": "deploy-dev", "stages": []}


def test_a_pin_on_an_auto_stack_never_takes_over_another_applications_pipeline(
    store: S3Store, tmp_path: Path
) -> None:
    put_raw(store, "billing-prod", BILLING)
    stacks = {"dev": {"pipelines": ["deploy"], "ids": {"deploy": "billing-prod"}}}
    project = deploy_project(tmp_path / "p", {"svc": {"stacks": stacks}})
    entry = engine.plan(workspace_of(project), store).entries["svc/dev/deploy"]
    assert entry.status is Status.CONFLICT and not entry.policy_approvable
    assert "belongs to application 'billing', not 'svc'" in entry.messages[0]
    for approver, policy in ((AUTO_APPROVER, True), ("alice", False)):
        [result] = engine.apply(
            workspace_of(project), store, {entry.key: entry.digest}, approver=approver, policy=policy
        )
        assert result.outcome != "applied"
    assert json.loads(body_of(store, "billing-prod")) == BILLING


def test_policy_never_approves_an_adoption_but_a_person_may(store: S3Store, tmp_path: Path) -> None:
    put_raw(store, "legacy-svc", {**BILLING, "id": "legacy-svc", "application": "svc"})
    stacks = {"dev": {"pipelines": ["deploy"], "ids": {"deploy": "legacy-svc"}}}
    project = deploy_project(tmp_path / "p", {"svc": {"stacks": stacks}})
    entry = engine.plan(workspace_of(project), store).entries["svc/dev/deploy"]
    assert entry.status is Status.UPDATE and entry.adopt and entry.approval == "auto"
    assert not entry.policy_approvable
    assert (
        engine.policy_refusals(workspace_of(project), store, {entry.key: entry.digest})[entry.key] is not None
    )
    [by_policy] = engine.apply(
        workspace_of(project), store, {entry.key: entry.digest}, approver=AUTO_APPROVER, policy=True
    )
    assert by_policy.outcome == "refused" and "an adoption" in by_policy.message
    [forged] = engine.apply(workspace_of(project), store, {entry.key: entry.digest}, approver=AUTO_APPROVER)
    assert forged.outcome == "refused" and "reserved for stack policy" in forged.message
    assert json.loads(body_of(store, "legacy-svc"))["name"] == "deploy-dev"
    [person] = engine.apply(workspace_of(project), store, {entry.key: entry.digest}, approver="alice")
    assert person.outcome == "applied"


# -- caches speed up a plan and never decide a write -------------------------------------------


def test_a_tampered_render_cache_changes_the_plan_but_never_what_is_written(
    store: S3Store, tmp_path: Path
) -> None:
    project = deploy_project(tmp_path / "p")
    apply_everything(project, store)
    written = body_of(store, pipeline_id_for("svc/dev/deploy"))
    assert engine.plan(workspace_of(project), store).counts() == {"in-sync": 1}
    with sqlite3.connect(tmp_path / "cache" / "render-cache.sqlite") as db:
        rows = db.execute(f"SELECT key, canonical FROM {render_cache.TABLE}").fetchall()
        assert rows
        for key, canonical in rows:
            evil = canonical.replace('"k8s-dev"', '"attacker-account"')
            db.execute(f"UPDATE {render_cache.TABLE} SET canonical = ? WHERE key = ?", (evil, key))
    entry = engine.plan(workspace_of(project), store).entries["svc/dev/deploy"]
    assert entry.status is Status.UPDATE and "attacker-account" in entry.unified
    assert (
        engine.policy_refusals(workspace_of(project), store, {entry.key: entry.digest})[entry.key] is not None
    )
    [result] = engine.apply(workspace_of(project), store, {entry.key: entry.digest}, approver="alice")
    assert result.outcome == "stale"
    [by_policy] = engine.apply(
        workspace_of(project), store, {entry.key: entry.digest}, approver=AUTO_APPROVER, policy=True
    )
    assert by_policy.outcome == "stale"
    assert body_of(store, pipeline_id_for("svc/dev/deploy")) == written


def test_a_render_cache_row_with_forged_derived_texts_hides_a_change_from_a_plan_never_a_write(
    store: S3Store, tmp_path: Path
) -> None:
    """What a row keeps derived from its render (render_cache.Derived) is taken as it is while the
    render's text is unchanged: its checksum tells an edited text, it is no seal. Forged to claim
    the pipeline a person edited in Deck, it hides that drift from a cached plan; the write
    decision renders afresh and sees it, and an approval of the cached plan's digest writes
    nothing."""
    project = deploy_project(tmp_path / "p")
    apply_everything(project, store)
    pipeline_id = pipeline_id_for("svc/dev/deploy")
    edited = json.loads(body_of(store, pipeline_id))
    edited["stages"][0]["name"] = "edited in Deck"
    put_raw(store, pipeline_id, edited)
    before = body_of(store, pipeline_id)
    assert engine.plan(workspace_of(project), store).entries["svc/dev/deploy"].status is Status.DRIFT
    forged_texts = canonical_json(edited)
    with sqlite3.connect(tmp_path / "cache" / "render-cache.sqlite") as db:
        rows = db.execute(f"SELECT key, derived FROM {render_cache.TABLE}").fetchall()
        assert rows and all(derived for _, derived in rows)
        for key, derived in rows:
            forged = {**json.loads(derived), "renderDigest": content_digest(edited)}
            db.execute(
                f"UPDATE {render_cache.TABLE} SET derived = ?, managed = ? WHERE key = ?",
                (json.dumps(forged), forged_texts, key),
            )
    entry = engine.plan(workspace_of(project), store).entries["svc/dev/deploy"]
    assert entry.status is Status.IN_SYNC  # the plan believed the cache...
    fresh = engine.fresh_plan(workspace_of(project), store, [entry.key])
    assert fresh.entries[entry.key].status is Status.DRIFT
    for approver, policy in (("alice", False), (AUTO_APPROVER, True)):
        [result] = engine.apply(
            workspace_of(project), store, {entry.key: entry.digest}, approver=approver, policy=policy
        )
        assert result.outcome != "applied"
    assert body_of(store, pipeline_id) == before  # ...the write did not


@pytest.mark.parametrize("text", ["{}", '{"application": "svc", "id": "x"}'])
def test_a_render_cache_row_without_the_identity_of_a_valid_render_plans_as_the_honest_one(
    store: S3Store, tmp_path: Path, text: str
) -> None:
    """A row stored without problems whose JSON lacks what validation demands of every render
    (here its name or more) was edited by hand: its target is rendered again, and the plan is the
    one an untouched cache gives. It used to fail the whole plan with a KeyError."""
    project = deploy_project(tmp_path / "p")
    apply_everything(project, store)
    honest = engine.plan(workspace_of(project), store)
    with sqlite3.connect(tmp_path / "cache" / "render-cache.sqlite") as db:
        db.execute(f"UPDATE {render_cache.TABLE} SET canonical = ?, problems = '[]', derived = NULL", (text,))
    again = engine.plan(workspace_of(project), store)
    assert {k: (e.status, e.digest) for k, e in again.entries.items()} == {
        k: (e.status, e.digest) for k, e in honest.entries.items()
    }


def test_a_tampered_render_cache_pipeline_id_never_moves_a_write(store: S3Store, tmp_path: Path) -> None:
    project = deploy_project(tmp_path / "p")
    victim = {"id": "victim", "application": "svc", "name": "someone-elses", "stages": []}
    put_raw(store, "victim", victim)
    engine.plan(workspace_of(project), store)  # fills the render cache
    with sqlite3.connect(tmp_path / "cache" / "render-cache.sqlite") as db:
        for key, canonical in db.execute(f"SELECT key, canonical FROM {render_cache.TABLE}").fetchall():
            evil = canonical.replace(pipeline_id_for("svc/dev/deploy"), "victim")
            db.execute(
                f"UPDATE {render_cache.TABLE} SET pipeline_id = 'victim', canonical = ? WHERE key = ?",
                (evil, key),
            )
    entry = engine.plan(workspace_of(project), store).entries["svc/dev/deploy"]
    assert entry.pipeline_id == "victim"  # the plan believed the cache...
    for approver, policy in (("alice", False), (AUTO_APPROVER, True)):
        [result] = engine.apply(
            workspace_of(project), store, {entry.key: entry.digest}, approver=approver, policy=policy
        )
        assert result.outcome == "stale"
    assert json.loads(body_of(store, "victim")) == victim  # ...the write did not
    assert store.read_pipeline(pipeline_id_for("svc/dev/deploy")) is None


def test_a_tampered_content_cache_never_overwrites_an_unmanaged_pipeline(
    store: S3Store, tmp_path: Path
) -> None:
    project = deploy_project(tmp_path / "p")
    pipeline_id = pipeline_id_for("svc/dev/deploy")
    squatter = {"id": pipeline_id, "application": "svc", "name": "someone-elses", "stages": []}
    put_raw(store, pipeline_id, squatter)
    assert engine.plan(workspace_of(project), store).entries["svc/dev/deploy"].status is Status.CONFLICT
    cache = next((tmp_path / "cache").glob("front50-*.sqlite"))
    with sqlite3.connect(cache) as db:
        [(summary,)] = db.execute("SELECT summary FROM objects_v2").fetchall()
        forged = json.loads(summary)
        forged["marker"] = {"key": "svc/dev/deploy", "renderDigest": forged["content_digest"]}
        db.execute("UPDATE objects_v2 SET summary = ?", (json.dumps(forged),))
    entry = engine.plan(workspace_of(project), store).entries["svc/dev/deploy"]
    assert entry.status is Status.UPDATE  # the plan believed the cache...
    for approver, policy in (("alice", False), (AUTO_APPROVER, True)):
        [result] = engine.apply(
            workspace_of(project), store, {entry.key: entry.digest}, approver=approver, policy=policy
        )
        assert result.outcome == "failed" and "not managed by pipeline-sync" in result.message
    assert json.loads(body_of(store, pipeline_id)) == squatter  # ...the write did not


# -- a saved plan is a file anyone can edit ----------------------------------------------------


def test_a_hand_edited_plan_file_writes_nothing_the_catalog_does_not_say(
    project: Path, store: S3Store, bucket_env: None, tmp_path: Path
) -> None:
    pipeline_id = pipeline_id_for(KEY)
    squatter = {"id": pipeline_id, "application": "checkout", "name": "hotfix", "stages": []}
    put_raw(store, pipeline_id, squatter)
    assert cli(project, "plan", "--select", KEY, "--out", str(tmp_path / "plan.json")).exit_code == 1
    data = json.loads((tmp_path / "plan.json").read_text())
    [entry] = data["entries"]
    assert entry["status"] == "conflict"
    evil = {**entry["desired"], "name": "evil"} if entry["desired"] else {"name": "evil"}
    entry.update(status="update", desired=evil, digest=plan_digest(KEY, entry["live_etag"], evil))
    (tmp_path / "plan.json").write_text(json.dumps(data))
    result = cli(project, "apply", str(tmp_path / "plan.json"))
    assert result.exit_code == 1 and "stale plan" in result.output
    assert json.loads(body_of(store, pipeline_id)) == squatter


def test_a_tampered_rollback_entry_is_validated_before_it_is_written(
    project: Path, store: S3Store, bucket_env: None, tmp_path: Path
) -> None:
    store.client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    apply_everything(project, store)
    pipeline_id = pipeline_id_for(KEY)
    live = store.read_pipeline(pipeline_id)
    assert live is not None and live.document is not None
    unmarked = {k: v for k, v in live.document.items() if k != MARKER_FIELD}
    unmarked["stages"] = [{"refId": "x", "type": "wait", "requisiteStageRefIds": ["missing"]}]
    put_raw(store, pipeline_id, unmarked)  # a version nobody planned: no marker, and invalid
    bad_version = store.pipeline_versions(pipeline_id)[0].version_id
    put_raw(store, pipeline_id, live.document)
    current = store.read_pipeline(pipeline_id)
    assert current is not None
    entry = {
        "key": KEY,
        "status": "update",
        "pipeline_id": pipeline_id,
        "application": "checkout",
        "name": live.document["name"],
        "live_etag": current.etag,
        "digest": plan_digest(KEY, current.etag, unmarked),
        "source": f"rollback:{bad_version}",
        "desired": unmarked,
    }
    (tmp_path / "rb.json").write_text(json.dumps({"format": 1, "entries": [entry]}))
    result = cli(project, "apply", str(tmp_path / "rb.json"))
    assert result.exit_code == 1
    assert "was not written by pipeline-sync" in result.output and "Traceback" not in result.output
    assert json.loads(body_of(store, pipeline_id)) == live.document


# -- change markers --------------------------------------------------------------------------


def test_a_rerun_after_a_crash_bumps_the_markers_an_earlier_write_left_unbumped(
    store: S3Store, tmp_path: Path
) -> None:
    project = deploy_project(tmp_path / "p")
    key = "svc/dev/deploy"
    entry = engine.plan(workspace_of(project), store).entries[key]

    class Crash(BaseException):
        pass

    crashing = S3Store(store.settings, client=store.client)

    def crash_before_bump(group: str) -> str | None:
        raise Crash(group)

    crashing._bump_quietly = crash_before_bump  # type: ignore[method-assign]
    with pytest.raises(Crash):
        engine.apply(workspace_of(project), crashing, {key: entry.digest}, approver="alice")
    assert "front50/applications/svc/application-metadata.json" in object_keys(store)
    assert "front50/applications/last-modified.json" not in object_keys(store)
    results = engine.apply(workspace_of(project), store, {key: entry.digest}, approver="alice")
    assert [r.outcome for r in results] == ["applied"]
    for group in ("applications", "pipelines"):
        marker = json.loads(
            store.client.get_object(Bucket=BUCKET, Key=f"front50/{group}/last-modified.json")["Body"].read()
        )
        assert isinstance(marker["lastModified"], int)


def test_the_change_marker_moves_past_a_value_ahead_of_this_clock(store: S3Store, tmp_path: Path) -> None:
    project = deploy_project(tmp_path / "p")
    ahead = int(time.time() * 1000) + 3_600_000
    store.client.put_object(
        Bucket=BUCKET, Key="front50/pipelines/last-modified.json", Body=json.dumps({"lastModified": ahead})
    )
    apply_everything(project, store)
    marker = json.loads(
        store.client.get_object(Bucket=BUCKET, Key="front50/pipelines/last-modified.json")["Body"].read()
    )
    assert marker["lastModified"] > ahead


def test_one_partition_plan_selection_matches_the_fleet_plan(project: Path, store: S3Store) -> None:
    fleet = engine.plan(workspace_of(project), store)
    one = engine.plan(workspace_of(project), store, Selection.of([KEY]))
    assert one.entries[KEY] == fleet.entries[KEY]
    settings = S3Settings(bucket=BUCKET, cache_dir=store.settings.cache_dir)
    assert S3Store(settings, client=store.client).describe() == f"s3://{BUCKET}"


# -- output is safe to read; secrets stay secret ----------------------------------------------


def test_a_crafted_bucket_key_cannot_hide_a_delete_from_the_reviewer(
    project: Path, store: S3Store, bucket_env: None
) -> None:
    set_defaults(project, "prune: false", "prune: true")
    apply_everything(project, store)
    (project / "catalog" / "services" / "search.yaml").unlink()
    hostile_id = "x\x1b[2K\x1b[1A\rall good\u202e"
    store.client.put_object(
        Bucket=BUCKET, Key=f"front50/pipelines/{hostile_id}/pipeline-metadata.json", Body=b"{"
    )
    result = cli(project, "plan")
    assert result.exit_code == 2
    assert "\x1b" not in result.output and "\r" not in result.output and "\u202e" not in result.output
    assert "x\\x1b[2K\\x1b[1A\\rall good\\u202e" in result.output
    assert "Deletes (" in result.output


def test_credentials_in_the_endpoint_url_never_reach_output(project: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PIPELINE_SYNC_BUCKET": "b",
        "PIPELINE_SYNC_CACHE_DIR": str(tmp_path / "cache"),
        "PIPELINE_SYNC_ENDPOINT_URL": "http://alice:hunter2@127.0.0.1:9",
    }
    command = [str(Path(sys.executable).parent / "pipeline-sync"), "--catalog", str(project / "catalog")]
    done = subprocess.run(
        [*command, "--templates", str(project / "templates"), "plan"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "hunter2" not in done.stdout + done.stderr
    assert "http://***@127.0.0.1:9" in done.stderr


def test_credentials_in_the_endpoint_url_never_reach_dagster_run_storage(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import dagster as dg

    from pipeline_sync.defs.assets import pipeline_plan, rendered_pipeline
    from pipeline_sync.defs.partitions import PARTITIONS_NAME
    from pipeline_sync.defs.resources import CatalogResource, Front50Resource

    monkeypatch.setenv("PIPELINE_SYNC_ENDPOINT_URL", "http://alice:hunter2@127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(PARTITIONS_NAME, [KEY])
        resources = {
            "catalog": CatalogResource(
                catalog_dir=str(project / "catalog"), templates_dir=str(project / "templates")
            ),
            "front50": Front50Resource(bucket="b", cache_dir=str(tmp_path / "cache")),
        }
        result = dg.materialize(
            [rendered_pipeline, pipeline_plan],
            partition_key=KEY,
            instance=instance,
            resources=resources,
            raise_on_error=False,
        )
        assert not result.success
        stored = json.dumps(
            [str(record.event_log_entry) for record in instance.get_records_for_run(result.run_id).records]
        )
        assert "127.0.0.1:9" in stored and "hunter2" not in stored


def test_policy_approvals_are_verified_with_one_listing_however_many(store: S3Store, tmp_path: Path) -> None:
    services = {f"svc{i}": {} for i in range(6)}
    project = deploy_project(tmp_path / "p", services)
    plan = engine.plan(workspace_of(project), store)
    auto = {k: e.digest for k, e in plan.entries.items() if e.policy_approvable}
    assert len(auto) == 6
    counter = RequestCounter()
    store.client.meta.events.register("before-call.s3", counter)
    refusals = engine.policy_refusals(workspace_of(project), store, auto)
    assert refusals == dict.fromkeys(auto)
    # Creates: one listing checks which objects could collide; the six objects, Front50's marker
    # and the fleet summary are read once each (engine.NARROW_MAX, S3Store.read_related).
    assert counter.counts.get("ListObjectsV2") == 1 and counter.counts.get("GetObject") == 6 + 2
