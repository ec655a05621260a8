"""`pipeline-sync release KEY`: a managed pipeline goes back to its pre-adoption version, unmanaged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import Project, build_project
from fleetsupport import (
    STORE_KINDS,
    Fleet,
    apply_all,
    cli,
    empty_project,
    open_fleet,
    plan_of,
    put_unmanaged,
    tree,
)
from sshkeys import make_keys

from pipeline_sync.plan import Plan
from pipeline_sync.provenance import MARKER_FIELD
from pipeline_sync.release import ReleaseError, apply_release, plan_release, release_version
from pipeline_sync.store import Store

pytest_plugins = ("front50_schema",)

KEY = "checkout/imported/checkout-deploy-to-prod"
ORIGINAL = {
    "id": "0f3b5c8e-1d2a-4c6e-9f70-123456789abc",
    "application": "checkout",
    "name": "Deploy to Prod",
    "index": 2,
    "description": "Helm {{ .Values.image }}, SpEL ${#stage('Bake')}",
    "locked": {"ui": True, "allowUnlockUi": True, "description": "locked by a person"},
    "triggers": [{"id": "7d0e", "type": "docker", "enabled": True}],
    "stages": [{"refId": "1", "type": "wait", "name": "Wait", "waitTime": 30, "requisiteStageRefIds": []}],
    "updateTs": "1700000000000",
    "lastModifiedBy": "bob@example.com",
}
SERVER_FIELDS = ("updateTs", "lastModifiedBy")


@pytest.fixture(params=STORE_KINDS)
def fleet(request: pytest.FixtureRequest) -> Fleet:
    return open_fleet(request, request.param)


def adopted(root: Path, fleet: Fleet) -> Project:
    """A project that imported ORIGINAL and applied the adoption."""
    project = empty_project(root)
    put_unmanaged(fleet.store, ORIGINAL)
    assert cli(project, fleet, "import").exit_code == 0
    assert [r.outcome for r in apply_all(project, fleet.store)] == ["applied"]
    return project


def live_document(store: Store, pipeline_id: str) -> dict[str, Any]:
    live = store.read_pipeline(pipeline_id)
    assert live is not None and live.document is not None
    return dict(live.document)


def test_release_restores_the_original_bytes_apart_from_server_fields(tmp_path: Path, fleet: Fleet) -> None:
    project = adopted(tmp_path / "project", fleet)
    service = project.catalog_dir / "services" / "checkout.yaml"
    assert "checkout-deploy-to-prod" in service.read_text()
    out = tmp_path / "release.json"

    planned = cli(project, fleet, "release", KEY, "--out", str(out))

    assert planned.exit_code == 0, planned.output
    lines = planned.output.splitlines()
    assert lines[1].startswith(f"release (update): {KEY}  (digest ")
    assert lines[2].startswith(f"  releases {KEY}: restores version ")
    assert lines[-2:] == [
        f"Took {KEY} out of {service} (templates/checkout-deploy-to-prod.yaml.j2 is left in place).",
        f"Saved the release to {out}. A person applies exactly it with: pipeline-sync apply {out}",
    ]
    assert "checkout-deploy-to-prod" not in service.read_text()
    assert json.loads(out.read_text())["entries"][0]["source"].startswith("release:")
    assert MARKER_FIELD in live_document(fleet.store, ORIGINAL["id"])  # nothing written before apply

    applied = cli(project, fleet, "apply", str(out), "--approver", "carol")

    assert applied.exit_code == 0, applied.output
    assert applied.output.splitlines()[0].startswith(f"applied: {KEY}: released: version ")
    after = live_document(fleet.store, ORIGINAL["id"])
    assert {k: v for k, v in after.items() if k not in SERVER_FIELDS} == {
        k: v for k, v in ORIGINAL.items() if k not in SERVER_FIELDS
    }
    assert after["updateTs"] != ORIGINAL["updateTs"]
    assert plan_of(project, fleet.store).entries == {}  # unmanaged again: no entry, no warning
    assert plan_of(project, fleet.store).warnings == ()
    again = cli(project, fleet, "import", "--dry-run")  # a candidate again; its old template is in the way
    assert again.stderr.splitlines() == [
        f"skipped checkout/Deploy to Prod ({ORIGINAL['id']}): templates/checkout-deploy-to-prod.yaml.j2 "
        "already exists; it is never overwritten (rename or remove it first)"
    ]


def test_release_after_later_catalog_changes_still_goes_back_to_before_the_first_write(
    tmp_path: Path, fleet: Fleet
) -> None:
    project = adopted(tmp_path / "project", fleet)
    template = project.templates_dir / "checkout-deploy-to-prod.yaml.j2"
    template.write_text(template.read_text().replace("waitTime: 30", "waitTime: 60"))
    assert [r.outcome for r in apply_all(project, fleet.store)] == ["applied"]

    done = plan_release(project.catalog_dir, project.templates_dir, fleet.store, KEY)

    assert done.entry.desired is not None and done.entry.desired["stages"][0]["waitTime"] == 30
    assert "waitTime: 60" in done.entry.unified and "waitTime: 30" in done.entry.unified
    assert not done.entry.policy_approvable
    assert apply_release(fleet.store, done.entry, approver="carol").outcome == "applied"
    assert MARKER_FIELD not in live_document(fleet.store, ORIGINAL["id"])


def test_a_pipeline_never_written_by_pipeline_sync_is_not_released(tmp_path: Path, fleet: Fleet) -> None:
    project = empty_project(tmp_path / "project")
    put_unmanaged(fleet.store, ORIGINAL)
    assert cli(project, fleet, "import").exit_code == 0  # pinned, but not applied: still unmanaged
    before = tree(project.root)

    result = cli(project, fleet, "release", KEY, "--out", str(tmp_path / "r.json"))

    assert result.exit_code == 1
    assert result.stderr == (
        f"error: the live pipeline {ORIGINAL['id']} is not managed by pipeline-sync as {KEY} (it carries no "
        "pipeline-sync marker); there is nothing to release, and it is left alone\n"
    )
    assert tree(project.root) == before
    assert not (tmp_path / "r.json").exists()


def test_a_pipeline_pipeline_sync_created_has_nothing_to_be_released_to(tmp_path: Path, fleet: Fleet) -> None:
    project = build_project(
        tmp_path / "project",
        defaults="stacks: {prod: {}}\n",
        services={"svc": {"stacks": {"prod": {"pipelines": ["deploy"]}}}},
    )
    assert [r.outcome for r in apply_all(project, fleet.store)] == ["applied"]

    with pytest.raises(ReleaseError) as raised:
        plan_release(project.catalog_dir, project.templates_dir, fleet.store, "svc/prod/deploy")

    assert str(raised.value) == (
        "pipeline-sync created svc/prod/deploy (1 stored version, every one written by pipeline-sync): "
        "there is no earlier, unmanaged version to release it to. Take it out of the catalog (with "
        "`prune: true` the next plan deletes it), or delete it in Deck."
    )


def test_a_key_outside_the_catalog_is_refused(tmp_path: Path, fleet: Fleet) -> None:
    project = empty_project(tmp_path / "project")

    result = cli(project, fleet, "release", "nope/prod/deploy", "--out", str(tmp_path / "r.json"))

    assert (result.exit_code, result.stderr) == (
        1,
        "error: nope/prod/deploy is not a target of the catalog; release takes a managed target's key "
        "(`pipeline-sync plan` lists them)\n",
    )


def test_release_needs_somewhere_to_save_its_plan(tmp_path: Path, fleet: Fleet) -> None:
    project = adopted(tmp_path / "project", fleet)
    before = tree(project.root)

    result = cli(project, fleet, "release", KEY)

    assert result.exit_code == 1
    assert (
        "release needs --out PLAN.json (it takes the target out of the catalog) or --dry-run."
        in result.output
    )
    assert tree(project.root) == before


def test_a_person_editing_the_pipeline_after_the_release_plan_makes_it_stale(
    tmp_path: Path, fleet: Fleet
) -> None:
    project = adopted(tmp_path / "project", fleet)
    done = plan_release(project.catalog_dir, project.templates_dir, fleet.store, KEY)
    live = fleet.store.read_pipeline(ORIGINAL["id"])
    assert live is not None and live.document is not None
    edited = {**live.document, "description": "hotfix in Deck"}
    fleet.store.put_pipeline(ORIGINAL["id"], json.dumps(edited).encode(), if_match=live.etag)

    result = apply_release(fleet.store, done.entry, approver="carol")

    assert (result.outcome, result.message) == (
        "stale",
        f"{KEY}: stale plan: the live pipeline moved since the release was planned; nothing was written. "
        "Plan the release again.",
    )
    assert live_document(fleet.store, ORIGINAL["id"])["description"] == "hotfix in Deck"


def test_a_saved_release_edited_to_restore_a_managed_version_is_refused(tmp_path: Path, fleet: Fleet) -> None:
    project = adopted(tmp_path / "project", fleet)
    done = plan_release(project.catalog_dir, project.templates_dir, fleet.store, KEY)
    managed_version = fleet.store.pipeline_versions(ORIGINAL["id"])[0].version_id
    tampered = Plan.from_json(
        {
            **Plan({KEY: done.entry}).to_json(),
            "entries": [{**done.entry.to_json(), "source": f"release:{managed_version}"}],
        }
    ).entries[KEY]
    assert release_version(tampered) == managed_version

    result = apply_release(fleet.store, tampered, approver="carol")

    assert result.outcome == "refused"
    assert result.message.endswith(
        "was written by pipeline-sync; a release restores only the version from before its first write "
        "(plan it again with `pipeline-sync release`)"
    )
    assert MARKER_FIELD in live_document(fleet.store, ORIGINAL["id"])


def test_stack_policy_cannot_apply_a_release(tmp_path: Path, fleet: Fleet) -> None:
    project = adopted(tmp_path / "project", fleet)
    done = plan_release(project.catalog_dir, project.templates_dir, fleet.store, KEY)
    assert not done.entry.policy_approvable

    result = apply_release(fleet.store, done.entry, approver="policy:approval=auto")

    assert (result.outcome, result.message) == (
        "refused",
        f"{KEY}: a release needs a person; approver names beginning with 'policy:' are reserved for stack policy",
    )
    assert MARKER_FIELD in live_document(fleet.store, ORIGINAL["id"])


def test_a_release_of_a_signed_stack_needs_the_signatures_too(tmp_path: Path, fleet: Fleet) -> None:
    project = adopted(tmp_path / "project", fleet)
    keys = make_keys(tmp_path / "keys")
    (project.catalog_dir / "approvers").mkdir()
    (project.catalog_dir / "approvers" / "imported").write_text(keys.signers)
    defaults = project.catalog_dir / "defaults.yaml"
    signed = "  imported: {approvers: approvers/imported, approvals: 2}\n"
    defaults.write_text(defaults.read_text().replace("  imported: {}\n", signed))
    out = tmp_path / "release.json"
    released = cli(project, fleet, "release", KEY, "--out", str(out))
    assert released.exit_code == 0, released.output

    unsigned = cli(project, fleet, "apply", str(out), "--approver", "the-cto")
    one = cli(project, fleet, "apply", str(out), "--sign", str(keys.alice))

    assert unsigned.exit_code == one.exit_code == 1
    assert f"refused: {KEY}: needs 2 signed approvals by distinct people" in unsigned.output
    assert f"refused: {KEY}: needs 2 signed approvals by distinct people" in one.output
    assert MARKER_FIELD in live_document(fleet.store, ORIGINAL["id"])
    both = cli(project, fleet, "apply", str(out), "--sign", str(keys.alice), "--sign", str(keys.bob))
    assert both.exit_code == 0, both.output
    assert MARKER_FIELD not in live_document(fleet.store, ORIGINAL["id"])
