"""Front50 and Gate over HTTP, end to end through the CLI against the stand-in (tests/front50_standin.py).

Each test checks the requests the stand-in recorded: paths, bodies, the user each write was made as.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner, Result
from conftest import DEPLOY_DEFAULTS, DEPLOY_TEMPLATE, build_project
from s3support import PROJECT

from pipeline_sync.cli import main
from pipeline_sync.errors import StalePlanError, StoreError
from pipeline_sync.identity import pipeline_id_for
from pipeline_sync.store.front50_http import PRECONDITION_NOTICE, Front50HttpStore, GateStore, document_token
from pipeline_sync.store.select import open_store

if TYPE_CHECKING:
    from front50_standin import Front50State, Recorded, Serve, StandIn

pytest_plugins = ("front50_standin",)

KEY = "checkout/prod/deploy"
LEGACY = {"id": "legacy-1", "application": "legacy", "name": "by-hand", "stages": [], "triggers": []}


def cli(work: Path, url: str, *args: str) -> Result:
    options = ["--catalog", str(work / "catalog"), "--templates", str(work / "templates"), "--store", url]
    return CliRunner().invoke(main, [*options, *args])


def example(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    shutil.copytree(PROJECT / "catalog", work / "catalog")
    shutil.copytree(PROJECT / "templates", work / "templates")
    return work


def small(tmp_path: Path, services: dict[str, Any] | None = None) -> Path:
    """One service, svc, with dev (approved by policy) and prod: two pipelines."""
    svc = {"stacks": {"dev": {"pipelines": ["deploy"]}, "prod": {"pipelines": ["deploy"]}}}
    return build_project(
        tmp_path / "small",
        defaults=DEPLOY_DEFAULTS,
        services=services or {"svc": svc},
        templates={"deploy": DEPLOY_TEMPLATE},
    ).root


def posts(state: Front50State, path: str = "/pipelines") -> list[Recorded]:
    return [r for r in state.requests if r.method == "POST" and r.path == path]


def plan_and_apply(work: Path, url: str, approver: str, *plan_args: str) -> tuple[Result, Result]:
    planned = cli(work, url, "plan", *plan_args, "--out", str(work / "plan.json"))
    applied = cli(work, url, "apply", str(work / "plan.json"), "--approver", approver)
    return planned, applied


# -- plan -> apply -> in sync, with the requests Spinnaker would see -------------------------------


def test_front50_plan_apply_in_sync_writes_as_the_approver(
    front50: StandIn, front50_state: Front50State, tmp_path: Path
) -> None:
    work = example(tmp_path)
    front50_state.pipelines["legacy-1"] = dict(LEGACY)
    planned, applied = plan_and_apply(work, front50.store_url, "carol")
    assert planned.exit_code == 2, planned.output
    assert "Summary: 13 create" in planned.stdout
    assert f"note: {front50.store_url}: {PRECONDITION_NOTICE}" in planned.stderr.splitlines()
    assert applied.exit_code == 0, applied.output
    assert "13 applied, 0 refused or failed (approver: carol)" in applied.output

    saves = posts(front50_state)
    assert len(saves) == 13
    planned_ids = {e["pipeline_id"] for e in json.loads((work / "plan.json").read_text())["entries"]}
    assert {r.body["id"] for r in saves} == planned_ids
    for save in saves:
        assert save.user == "carol"  # X-SPINNAKER-USER: Front50 makes the write as the approver
        assert save.query == {}
        assert save.body["lastModifiedBy"] == "carol" and save.body["pipelineSync"]["approvedBy"] == "carol"
        # The write was preceded, for that very id, by a fresh read (the precondition).
        before = front50_state.requests[: front50_state.requests.index(save)]
        last_read = [r for r in before if r.path.startswith("/pipelines/") and r.path.endswith("/get")][-1]
        assert last_read.path == f"/pipelines/{save.body['id']}/get"
    applications = posts(front50_state, "/v2/applications")
    assert sorted(r.body["name"] for r in applications) == [
        "CATALOG-API",
        "CHECKOUT",
        "NOTIFICATIONS",
        "SEARCH",
    ]
    assert {r.user for r in applications} == {"pipeline-sync"}
    assert not [r for r in front50_state.writes() if "legacy" in json.dumps(r.body) or "legacy" in r.path]
    assert front50_state.pipelines["legacy-1"] == LEGACY

    # What Front50 filled in (triggers, schema, updateTs, lastModifiedBy) is not drift.
    assert not [r for r in saves if "schema" in r.body]
    for save in saves:
        stored = front50_state.pipelines[save.body["id"]]
        assert (stored["lastModifiedBy"], stored["schema"]) == ("carol", "1")
    again = cli(work, front50.store_url, "plan", "--json")
    assert again.exit_code == 0, again.output
    assert {e["status"] for e in json.loads(again.stdout)["entries"]} == {"in-sync"}
    assert len(front50_state.writes()) == 17  # the second plan wrote nothing


def test_gate_plan_apply_in_sync_writes_as_the_authenticated_user(
    gate: StandIn, front50_state: Front50State, tmp_path: Path
) -> None:
    work = example(tmp_path)
    planned = cli(work, gate.store_url, "plan", "--out", str(work / "plan.json"))
    assert planned.exit_code == 2, planned.output
    before = len(front50_state.requests)
    applied = cli(work, gate.store_url, "apply", str(work / "plan.json"), "--approver", "carol")
    assert applied.exit_code == 0, applied.output
    saves = posts(front50_state)
    assert len(saves) == 13
    # One listing for the fresh plan; every re-read by id (ApplicationController.getPipelineConfig).
    reads = [r.path for r in front50_state.requests[before:] if r.method == "GET"]
    assert reads.count("/pipelineConfigs") == 1
    for save in saves:
        by_id = [
            r
            for r in reads
            if r.startswith("/applications/") and r.endswith(f"/pipelineConfigs/{save.body['id']}")
        ]
        assert len(by_id) == 3  # the fresh plan's read, the re-read, the read back
    assert {(r.server, r.user, r.authorization) for r in saves} == {("gate", None, "Bearer ci-token-1")}
    tasks = [r for r in front50_state.writes() if r.path.endswith("/tasks")]
    assert sorted(r.path for r in tasks) == [
        "/applications/catalog-api/tasks",
        "/applications/checkout/tasks",
        "/applications/notifications/tasks",
        "/applications/search/tasks",
    ]
    assert {r.body["job"][0]["type"] for r in tasks} == {"createApplication"}
    stored = front50_state.pipelines[pipeline_id_for(KEY)]
    assert stored["lastModifiedBy"] == "ci-bot"  # Gate's session decides; the marker names the approver
    assert stored["pipelineSync"]["approvedBy"] == "carol"
    again = cli(work, gate.store_url, "plan", "--json")
    assert again.exit_code == 0, again.output
    assert {e["status"] for e in json.loads(again.stdout)["entries"]} == {"in-sync"}


# -- preconditions --------------------------------------------------------------------------------


def edit_in_deck(state: Front50State, pipeline_id: str, user: str = "dave") -> dict[str, Any]:
    """A person saves the pipeline in Deck: Front50's save, as that user."""
    edited = {**state.pipelines[pipeline_id], "description": f"hotfix by {user}"}
    return state.save(edited, user)


@pytest.mark.parametrize("kind", ["front50", "gate"])
def test_a_concurrent_edit_between_plan_and_apply_is_refused_with_nothing_written(
    kind: str, front50_state: Front50State, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    stand_in: StandIn = request.getfixturevalue(kind)
    work = small(tmp_path)
    assert plan_and_apply(work, stand_in.store_url, "carol")[1].exit_code == 0
    defaults = work / "catalog" / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace("description: plain", "description: changed"))
    planned = cli(work, stand_in.store_url, "plan", "--out", str(work / "plan.json"))
    assert planned.exit_code == 2, planned.output
    pipeline_id = pipeline_id_for("svc/prod/deploy")
    edited = edit_in_deck(front50_state, pipeline_id)
    writes = len(front50_state.writes())
    applied = cli(work, stand_in.store_url, "apply", str(work / "plan.json"), "--approver", "carol")
    assert applied.exit_code == 1
    assert "stale: svc/prod/deploy: " in applied.output
    assert "1 applied, 1 refused or failed (approver: carol)" in applied.output  # dev was untouched
    assert front50_state.pipelines[pipeline_id] == edited
    assert [r.body["id"] for r in front50_state.writes()[writes:]] == [pipeline_id_for("svc/dev/deploy")]


def body_of(name: str) -> bytes:
    return json.dumps({"id": "p-1", "application": "app", "name": name}).encode()


def test_the_re_read_refuses_an_edit_the_fresh_plan_did_not_see(
    front50: StandIn, front50_state: Front50State
) -> None:
    store = open_store(front50.store_url)
    first = store.put_pipeline(
        "p-1", json.dumps({"id": "p-1", "application": "app", "name": "n"}).encode(), if_match=None
    )
    edit_in_deck(front50_state, "p-1")
    with pytest.raises(StalePlanError) as caught:
        store.put_pipeline(
            "p-1", json.dumps({"id": "p-1", "application": "app", "name": "m"}).encode(), if_match=first.etag
        )
    assert str(caught.value).startswith(
        f"stale plan: pipelines/p-1 is no longer what the plan saw (token {first.etag[:12]}; now token "
    )
    assert front50_state.pipelines["p-1"]["description"] == "hotfix by dave"
    assert len(posts(front50_state)) == 1


def test_an_edit_landing_between_the_re_read_and_the_write_is_overwritten_and_reported(
    front50: StandIn, front50_state: Front50State
) -> None:
    """No compare-and-swap: an edit in the milliseconds between the re-read and the save is
    overwritten (docs/http-store.md says so, and `plan` prints it). Front50's history shows it, so
    the write reports it instead of passing in silence."""
    store = open_store(front50.store_url)
    first = store.put_pipeline("p-1", body_of("n"), if_match=None)
    front50_state.before_write = lambda state: edit_in_deck(state, "p-1")
    with pytest.raises(StoreError) as caught:
        store.put_pipeline("p-1", body_of("m"), if_match=first.etag)
    assert str(caught.value) == (
        "pipelines/p-1 was saved as approved, but 1 save by dave landed between the re-read and this write "
        "and was overwritten (the race window docs/http-store.md describes). Front50's history keeps every "
        "version: compare with `pipeline-sync rollback KEY --list` and restore or re-apply."
    )
    assert front50_state.pipelines["p-1"]["name"] == "m"
    assert [v.get("description") for v in front50_state.history["p-1"]] == [None, "hotfix by dave", None]
    # Without an edit in the window, the same history check stays quiet.
    third = store.put_pipeline("p-1", body_of("o"), if_match=store.read_pipeline("p-1").etag)  # type: ignore[union-attr]
    assert third.etag == store.read_pipeline("p-1").etag  # type: ignore[union-attr]


def test_an_earlier_landing_of_the_same_write_is_not_reported_as_an_overwrite(
    front50: StandIn, front50_state: Front50State
) -> None:
    """A save Gate/Orca finished after its answer timed out, then sent again: history shows the
    write twice, which overwrote nothing."""
    store = open_store(front50.store_url)
    first = store.put_pipeline("p-1", body_of("n"), if_match=None)
    again = {"id": "p-1", "application": "app", "name": "m", "pipelineSync": {"key": "k", "writeId": "w-1"}}
    front50_state.before_write = lambda state: state.save(dict(again), "carol")
    written = store.put_pipeline("p-1", json.dumps(again).encode(), if_match=first.etag)
    assert [v["name"] for v in front50_state.history["p-1"]] == ["m", "m", "n"]
    assert written.etag == store.read_pipeline("p-1").etag  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["front50", "gate"])
def test_a_name_taken_in_the_re_read_window_is_front50s_duplicate_400_reported_as_a_conflict(
    kind: str, front50_state: Front50State, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    stand_in: StandIn = request.getfixturevalue(kind)
    work = small(tmp_path)
    front50_state.applications["svc"] = {"name": "SVC"}
    taken = {"id": "by-hand", "application": "svc", "name": "Deploy-Dev ", "stages": []}
    front50_state.before_write = lambda state: state.save(dict(taken), "dave")
    applied = plan_and_apply(work, stand_in.store_url, "carol")[1]
    assert applied.exit_code == 1
    dev_id = pipeline_id_for("svc/dev/deploy")
    assert (
        f"stale: svc/dev/deploy: conflict: {stand_in.store_url} refused pipelines/{dev_id}: A pipeline with "
        "name deploy-dev already exists in application svc. Another pipeline took the name since the plan; "
        "nothing was written. Run `pipeline-sync plan` again."
    ) in applied.output
    assert sorted(front50_state.pipelines) == sorted(["by-hand", pipeline_id_for("svc/prod/deploy")])
    assert len([r for r in posts(front50_state) if r.body["id"] == dev_id]) == 1  # not retried


def test_a_delete_goes_by_name_only_while_the_name_resolves_to_the_planned_id(
    front50: StandIn, front50_state: Front50State, tmp_path: Path
) -> None:
    work = small(tmp_path)
    assert plan_and_apply(work, front50.store_url, "carol")[1].exit_code == 0
    defaults = work / "catalog" / "defaults.yaml"
    defaults.write_text("prune: true\n" + defaults.read_text())
    (work / "catalog" / "services" / "svc.yaml").write_text(
        (work / "catalog" / "services" / "svc.yaml")
        .read_text()
        .replace("  prod:\n    pipelines:\n    - deploy\n", "")
    )
    prod_id = pipeline_id_for("svc/prod/deploy")
    planned = cli(work, front50.store_url, "plan", "--out", str(work / "plan.json"))
    assert planned.exit_code == 2 and "Deletes (1): svc/prod/deploy" in planned.output, planned.output

    # Someone else's pipeline now answers to the same name first: the delete by name would hit it.
    impostor = {"id": "aaa-impostor", "application": "svc", "name": "deploy-prod", "stages": []}
    front50_state.pipelines = {"aaa-impostor": impostor, **front50_state.pipelines}
    refused = cli(work, front50.store_url, "apply", str(work / "plan.json"), "--approver", "erin")
    assert refused.exit_code == 1
    assert (
        "stale: svc/prod/deploy: stale plan: the name 'deploy-prod' in application svc now resolves to "
        f"aaa-impostor, not {prod_id}; nothing was deleted." in refused.output
    )
    assert not [r for r in front50_state.requests if r.method == "DELETE"]

    del front50_state.pipelines["aaa-impostor"]
    applied = cli(work, front50.store_url, "apply", str(work / "plan.json"), "--approver", "erin")
    assert applied.exit_code == 0, applied.output
    [delete] = [r for r in front50_state.requests if r.method == "DELETE"]
    assert (delete.path, delete.user) == ("/pipelines/svc/deploy-prod", "erin")
    assert prod_id not in front50_state.pipelines


# -- permissions ------------------------------------------------------------------------------------


def test_a_user_without_write_gets_a_permission_refusal_and_nothing_is_written(
    front50: StandIn, front50_state: Front50State, tmp_path: Path
) -> None:
    work = small(tmp_path)
    front50_state.applications["svc"] = {"name": "SVC"}
    front50_state.writers = {"svc": {"carol"}}
    planned, applied = plan_and_apply(work, front50.store_url, "mallory")
    assert planned.exit_code == 2
    assert applied.exit_code == 1
    prod_id = pipeline_id_for("svc/prod/deploy")
    assert (
        f"refused: svc/prod/deploy: permission refused: {front50.store_url} would not change "
        f"pipelines/{prod_id} as user mallory, who needs WRITE permission on application svc (Spinnaker "
        "said: Access denied to application svc - required authorization: WRITE); nothing was written. "
        "Have someone with that permission approve, or grant it in Fiat."
    ) in applied.output
    assert "0 applied, 2 refused or failed (approver: mallory)" in applied.output
    assert front50_state.pipelines == {}
    # Refused once per entry, never retried.
    assert sorted(r.body["id"] for r in posts(front50_state)) == sorted(
        [prod_id, pipeline_id_for("svc/dev/deploy")]
    )

    allowed = cli(work, front50.store_url, "apply", str(work / "plan.json"), "--approver", "carol")
    assert allowed.exit_code == 0, allowed.output


def test_gate_names_the_authenticated_user_in_a_permission_refusal(
    gate: StandIn, front50_state: Front50State, tmp_path: Path
) -> None:
    work = small(tmp_path)
    front50_state.applications["svc"] = {"name": "SVC"}
    front50_state.writers = {"svc": {"carol"}}
    applied = plan_and_apply(work, gate.store_url, "carol")[1]
    assert applied.exit_code == 1
    assert (
        "who needs WRITE permission on application svc (Spinnaker said: Access denied to application svc - "
        "required authorization: WRITE); nothing was written." in applied.output
    )
    assert "as user ci-bot, " in applied.output
    assert front50_state.pipelines == {}


def test_plan_can_ask_fiat_up_front_which_changes_the_user_may_not_write(
    front50: StandIn,
    front50_state: Front50State,
    serve: Serve,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    work = small(tmp_path, {"svc": {}, "other": {}})
    triggered = (
        DEPLOY_TEMPLATE
        + 'triggers:\n  - {type: cron, cronExpression: "0 0 * * *", runAsUser: "deployer@svc"}\n'
    )
    (work / "templates" / "deploy.yaml.j2").write_text(triggered)
    front50_state.writers = {"svc": {"carol", "mallory"}, "other": {"carol"}}
    front50_state.service_accounts = {"deployer@svc": {"carol"}}
    unset = cli(work, front50.store_url, "plan", "--check-permissions", "mallory")
    assert unset.exit_code == 1
    assert unset.stderr.splitlines()[-1] == (
        "error: checking permissions needs Fiat: set PIPELINE_SYNC_FIAT_URL to its URL (http://HOST:7003 in "
        "most installations; Gate and Front50 do not forward Fiat's authorize endpoints)."
    )
    (tmp_path / "token").write_text("store-token\n")
    monkeypatch.setenv("PIPELINE_SYNC_HTTP_TOKEN_FILE", str(tmp_path / "token"))
    with serve(front50_state, "fiat") as fiat:
        monkeypatch.setenv("PIPELINE_SYNC_FIAT_URL", fiat.url)
        checked = cli(work, front50.store_url, "plan", "--check-permissions", "mallory")
        assert checked.exit_code == 2, checked.output
        assert [line for line in checked.stderr.splitlines() if line.startswith("warning:")] == [
            "warning: other/dev/deploy: mallory lacks WRITE on application other and the service account "
            "deployer@svc (runAsUser) (Fiat): an apply made as mallory would be refused; have someone with "
            "that permission approve, or grant it.",
            "warning: svc/dev/deploy: mallory lacks the service account deployer@svc (runAsUser) (Fiat): an "
            "apply made as mallory would be refused; have someone with that permission approve, or grant it.",
        ]
        carol = cli(work, front50.store_url, "plan", "--check-permissions", "carol")
        assert carol.exit_code == 2 and "warning:" not in carol.stderr
    fiat_paths = {r.path for r in front50_state.requests if r.server == "fiat"}
    assert fiat_paths == {
        "/authorize/mallory/applications/svc/WRITE",
        "/authorize/mallory/applications/other/WRITE",
        "/authorize/mallory/serviceAccounts/deployer@svc",
        "/authorize/carol/applications/svc/WRITE",
        "/authorize/carol/applications/other/WRITE",
        "/authorize/carol/serviceAccounts/deployer@svc",
    }
    assert front50_state.writes() == []
    # The store's credentials go to the store, never to Fiat.
    assert {r.authorization for r in front50_state.requests if r.server == "fiat"} == {None}
    assert "Bearer store-token" in {r.authorization for r in front50_state.requests if r.server == "front50"}


def test_a_run_as_user_service_account_is_named_in_the_refusal(
    front50: StandIn, front50_state: Front50State
) -> None:
    front50_state.writers = {"app": {"carol"}}
    body = {"id": "p-1", "application": "app", "name": "n", "lastModifiedBy": "carol"}
    body["triggers"] = [{"type": "cron", "runAsUser": "deployer@svc"}]
    with pytest.raises(StoreError) as caught:
        open_store(front50.store_url).put_pipeline("p-1", json.dumps(body).encode(), if_match=None)
    assert (
        "as user carol, who needs WRITE permission on application app and access to the service account "
        "deployer@svc (runAsUser) (Spinnaker said: Access denied to service account deployer@svc)"
    ) in str(caught.value)
    assert type(caught.value).__name__ == "PermissionRefusedError"


# -- unmanaged pipelines ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["front50", "gate"])
def test_an_unmanaged_pipeline_in_the_way_is_never_written(
    kind: str, front50_state: Front50State, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    stand_in: StandIn = request.getfixturevalue(kind)
    work = small(tmp_path)
    by_hand = {"id": "hand-made", "application": "svc", "name": "deploy-prod", "stages": [], "triggers": []}
    same_id = {"id": pipeline_id_for("svc/dev/deploy"), "application": "svc", "name": "x", "stages": []}
    front50_state.pipelines = {"hand-made": dict(by_hand), same_id["id"]: dict(same_id)}
    planned = cli(work, stand_in.store_url, "plan", "--json", "--out", str(work / "plan.json"))
    assert {e["key"]: e["status"] for e in json.loads(planned.stdout)["entries"]} == {
        "svc/dev/deploy": "conflict",
        "svc/prod/deploy": "conflict",
    }
    # Even a plan file edited to call them creates is re-planned fresh and refused.
    saved = json.loads((work / "plan.json").read_text())
    for entry in saved["entries"]:
        entry["status"] = "create"
    (work / "plan.json").write_text(json.dumps(saved))
    applied = cli(work, stand_in.store_url, "apply", str(work / "plan.json"), "--approver", "carol")
    assert applied.exit_code == 1
    assert front50_state.writes() == []
    assert front50_state.pipelines == {"hand-made": by_hand, same_id["id"]: same_id}


# -- misbehaviour: 5xx, lost answers, slowness ------------------------------------------------------


def test_5xx_on_writes_are_retried_after_a_fresh_read(
    front50: StandIn, front50_state: Front50State, tmp_path: Path
) -> None:
    work = small(tmp_path)
    front50_state.fail["POST"] = 3  # the application, then two saves, fail without landing
    applied = plan_and_apply(work, front50.store_url, "carol")[1]
    assert applied.exit_code == 0, applied.output
    assert len(front50_state.pipelines) == 2
    assert all(len(front50_state.history[i]) == 1 for i in front50_state.pipelines)  # written once each


def test_5xx_that_never_stop_are_reported_per_entry(
    front50: StandIn, front50_state: Front50State, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPELINE_SYNC_HTTP_RETRIES", "2")
    work = small(tmp_path)
    front50_state.applications["svc"] = {"name": "SVC"}
    front50_state.fail["POST"] = 1000
    applied = plan_and_apply(work, front50.store_url, "carol")[1]
    assert applied.exit_code == 1
    for key in ("svc/dev/deploy", "svc/prod/deploy"):
        assert (
            f"failed: {key}: cannot write pipelines/{pipeline_id_for(key)}: {front50.store_url} failed 3 times "
            "(last: HTTP 500 injected failure); a fresh read shows it was not written. Run apply again later."
        ) in applied.output
    assert len(posts(front50_state)) == 6
    assert front50_state.pipelines == {}


@pytest.mark.parametrize("switch", ["lose", "drop"])
def test_a_write_that_lands_but_whose_answer_is_lost_is_not_written_twice(
    switch: str, front50: StandIn, front50_state: Front50State, tmp_path: Path
) -> None:
    work = small(tmp_path)
    front50_state.applications["svc"] = {"name": "SVC"}
    getattr(front50_state, switch)["POST"] = 2
    applied = plan_and_apply(work, front50.store_url, "carol")[1]
    assert applied.exit_code == 0, applied.output
    assert "2 applied, 0 refused or failed" in applied.output
    assert len(posts(front50_state)) == 2  # the lost answers were settled by reading, not by resending
    assert all(len(front50_state.history[i]) == 1 for i in front50_state.pipelines)
    # Front50 added "triggers": [] to bodies that had none: not drift.
    assert [r.body.get("triggers") for r in posts(front50_state)] == [None, None]
    assert [p["triggers"] for p in front50_state.pipelines.values()] == [[], []]
    again = cli(work, front50.store_url, "plan", "--json")
    assert {e["status"] for e in json.loads(again.stdout)["entries"]} == {"in-sync"}


def test_5xx_on_reads_are_retried(front50: StandIn, front50_state: Front50State, tmp_path: Path) -> None:
    work = small(tmp_path)
    front50_state.fail["GET"] = 3
    planned = cli(work, front50.store_url, "plan")
    assert planned.exit_code == 2, planned.output
    assert [r.path for r in front50_state.requests[:4]] == ["/pipelines"] * 4


def test_a_server_too_slow_to_answer_is_reported_not_waited_for(
    front50: StandIn, front50_state: Front50State, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPELINE_SYNC_HTTP_TIMEOUT", "0.2")
    monkeypatch.setenv("PIPELINE_SYNC_HTTP_RETRIES", "1")
    front50_state.delay = 0.5
    planned = cli(small(tmp_path), front50.store_url, "plan")
    assert planned.exit_code == 1
    assert planned.stderr.startswith(f"error: GET {front50.url}/pipelines got no answer (ReadTimeout: ")
    assert len(front50_state.requests) == 2


# -- auth and secrets ------------------------------------------------------------------------------


def test_gate_basic_auth_from_the_url_is_sent_and_never_shown(
    front50_state: Front50State, serve: Serve, tmp_path: Path
) -> None:
    with serve(front50_state, "gate") as gate:
        url = gate.store_url.replace("://", "://alice:hunter2@")
        planned = cli(small(tmp_path), url, "plan")
        assert planned.exit_code == 2, planned.output
        assert "hunter2" not in planned.output
        assert any(line.startswith(f"note: {gate.store_url}: ") for line in planned.stderr.splitlines())
        assert {r.authorization for r in front50_state.requests} == {"Basic YWxpY2U6aHVudGVyMg=="}
        wrong = cli(small(tmp_path / "b"), url.replace("hunter2", "hunter3"), "plan")
        assert wrong.exit_code == 1
        assert wrong.stderr == (
            f"error: cannot list the pipelines in {gate.store_url}: HTTP 401: Full authentication is required "
            "to access this resource. Check the credentials (docs/http-store.md) and that their user may read "
            "every pipeline.\n"
        )


def test_gate_session_cookie_from_a_file(
    front50_state: Front50State, serve: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cookie = tmp_path / "cookie"
    cookie.write_text("abc123\n")
    monkeypatch.setenv("PIPELINE_SYNC_HTTP_COOKIE_FILE", str(cookie))
    with serve(front50_state, "gate") as gate:
        store = open_store(gate.store_url)
        assert isinstance(store, GateStore) and store.read_live() == {}
        assert store._user() == "carol"
    assert {r.cookie for r in front50_state.requests} == {"SESSION=abc123"}


@pytest.mark.parametrize(
    ("url", "environ", "message"),
    [
        (
            "front50+http://front50:8080?x=1",
            {},
            "the store URL front50+http://front50:8080?x=1 must name a host (and port) and nothing after the "
            "path: write it as front50+http://HOST:PORT.",
        ),
        (
            "gate+https://bob:s3cret@:8084",
            {},
            "the store URL gate+https://***@:8084 must name a host (and port) and nothing after the path: "
            "write it as gate+https://HOST:PORT.",
        ),
        (
            "gate+https://gate:8084",
            {"PIPELINE_SYNC_HTTP_CLIENT_CERT": "/c.pem"},
            "PIPELINE_SYNC_HTTP_CLIENT_CERT and PIPELINE_SYNC_HTTP_CLIENT_KEY go together: set both (the "
            "client certificate and its key, PEM files) or neither.",
        ),
        (
            "gate+https://gate:8084",
            {"PIPELINE_SYNC_HTTP_PASSWORD_FILE": "/no/such/file"},
            "cannot read /no/such/file (PIPELINE_SYNC_HTTP_PASSWORD_FILE): No such file or directory; fix the "
            "path or its permissions.",
        ),
        (
            "front50+http://front50:8080",
            {"PIPELINE_SYNC_HTTP_RETRIES": "many"},
            "PIPELINE_SYNC_HTTP_RETRIES is 'many': set it to a number of at least 0, or unset it.",
        ),
    ],
)
def test_bad_http_store_settings_are_named_without_secrets(
    url: str, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(StoreError) as caught:
        open_store(url, environ)
    assert str(caught.value) == message
    assert "s3cret" not in str(caught.value)


def test_the_store_describes_itself_without_credentials(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    environ = {
        "PIPELINE_SYNC_HTTP_USER": "bob",
        "PIPELINE_SYNC_HTTP_PASSWORD_FILE": str(password),
        "PIPELINE_SYNC_HTTP_CLIENT_CERT": str(cert),
        "PIPELINE_SYNC_HTTP_CLIENT_KEY": str(key),
    }
    store = open_store("gate+https://gate.example.com:8084/api/", environ)
    assert isinstance(store, GateStore)
    assert store.describe() == "gate+https://gate.example.com:8084/api"
    assert store.client.session.cert == (str(cert), str(key))
    assert store.client.session.auth == ("bob", "s3cret")
    assert "s3cret" not in repr(store.client.settings)
    front50 = open_store("front50+http://front50:8080", {})
    assert isinstance(front50, Front50HttpStore) and front50.describe() == "front50+http://front50:8080"


# -- drift and rollback from Front50's history -------------------------------------------------------


def test_drift_and_rollback_read_front50s_history(
    front50: StandIn, front50_state: Front50State, tmp_path: Path
) -> None:
    work = small(tmp_path)
    url = front50.store_url
    assert plan_and_apply(work, url, "carol", "--select", "svc/prod/*")[1].exit_code == 0
    defaults = work / "catalog" / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace("description: plain", "description: changed"))
    assert plan_and_apply(work, url, "carol", "--select", "svc/prod/*")[1].exit_code == 0
    prod_id = pipeline_id_for("svc/prod/deploy")
    assert front50_state.pipelines[prod_id]["description"] == "changed"

    listed = cli(work, url, "rollback", "svc/prod/deploy", "--list")
    assert listed.exit_code == 0, listed.output
    tokens = [line.split()[0] for line in listed.stdout.strip().splitlines()]
    assert tokens == [document_token(version) for version in front50_state.history[prod_id]]
    assert len(tokens) == 2
    assert listed.stdout.splitlines()[0].endswith("(live)")
    planned = cli(work, url, "rollback", "svc/prod/deploy", "--out", str(work / "rb.json"))
    assert planned.exit_code == 0, planned.output
    applied = cli(work, url, "apply", str(work / "rb.json"), "--approver", "erin")
    assert applied.exit_code == 0, applied.output
    restored = front50_state.pipelines[prod_id]
    assert (restored["description"], restored["lastModifiedBy"]) == ("plain", "erin")
    assert restored["pipelineSync"]["approvedBy"] == "erin" and "restoredFrom" in restored["pipelineSync"]

    edit_in_deck(front50_state, prod_id)
    front50_state.requests.clear()
    drift = cli(work, url, "plan", "--select", "svc/prod/*", "--json")
    [entry] = json.loads(drift.stdout)["entries"]
    assert (entry["status"], entry["drift_fields"]) == ("drift", ["root['description']"])
    # The drift's history is read once: the version it compares with is the one listed then.
    history_reads = [r for r in front50_state.requests if r.path.endswith("/history")]
    assert len(history_reads) == 1, history_reads


# -- Dagster: the same resource, the same approval path -------------------------------------------


def test_dagster_publishes_a_persons_approval_through_front50_as_that_person(
    front50: StandIn, front50_state: Front50State, tmp_path: Path
) -> None:
    import dagster as dg
    from test_dagster import KEY as PROD_KEY
    from test_dagster import add_partitions, approve, plan_partition, sensor_tick

    from pipeline_sync.definitions import defs
    from pipeline_sync.defs.resources import CatalogResource, Front50Resource

    root = example(tmp_path)
    with dg.instance_for_test() as instance:
        resources = {
            "catalog": CatalogResource(
                catalog_dir=str(root / "catalog"), templates_dir=str(root / "templates")
            ),
            "front50": Front50Resource(store_url=front50.store_url, cache_dir=str(tmp_path / "cache")),
        }
        env = {"instance": instance, "resources": resources, "root": root}
        add_partitions(instance, root)
        meta = plan_partition(env, PROD_KEY)
        assert meta["status"] == "create" and front50_state.writes() == []
        assert approve(env, PROD_KEY, meta["plan_digest"]).success  # erin
        [request] = sensor_tick(instance).run_requests
        result = defs.resolve_job_def("publish_job").execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            run_config=request.run_config,
            resources=resources,
            raise_on_error=False,
        )
        assert result.success
    [save] = posts(front50_state)
    assert (save.body["id"], save.user) == (pipeline_id_for(PROD_KEY), "erin")
    assert front50_state.pipelines[pipeline_id_for(PROD_KEY)]["lastModifiedBy"] == "erin"


# -- import through the API (issue 16 works on every store) ----------------------------------------

HAND_MADE = {
    "id": "0f3b5c8e-1d2a-4c6e-9f70-123456789abc",
    "application": "billing",
    "name": "Deploy to Prod",
    "index": 0,
    "description": "Helm {{ .Values.image }}, SpEL ${#stage('Bake')['status']}",
    "triggers": [],
    "stages": [{"refId": "1", "type": "wait", "name": "Wait", "waitTime": 30, "requisiteStageRefIds": []}],
    "updateTs": "1700000000000",
    "lastModifiedBy": "bob@example.com",
}


@pytest.mark.parametrize("kind", ["front50", "gate"])
def test_import_through_the_api_adopts_with_only_the_lock_changed(
    kind: str, front50: StandIn, gate: StandIn, front50_state: Front50State, tmp_path: Path
) -> None:
    url = {"front50": front50, "gate": gate}[kind].store_url
    front50_state.pipelines[HAND_MADE["id"]] = dict(HAND_MADE)
    front50_state.applications["billing"] = {"name": "BILLING", "email": "billing-team@example.com"}
    work = build_project(tmp_path / "work", defaults="stacks:\n  prod: {}\n", services={}, templates={}).root

    imported = cli(work, url, "import")

    assert imported.exit_code == 0, imported.output
    assert "1 imported, 0 skipped" in imported.output
    assert "billing-team@example.com" in (work / "catalog" / "services" / "billing.yaml").read_text()
    before = len(posts(front50_state))
    planned, applied = plan_and_apply(work, url, "carol")
    assert planned.exit_code == 2, planned.output
    assert "Summary: 1 update" in planned.stdout
    assert applied.exit_code == 0, applied.output
    [saved] = posts(front50_state)[before:]
    assert saved.body is not None and saved.body["description"] == HAND_MADE["description"]
    assert saved.body["locked"]["ui"] is True
    if kind == "front50":
        assert saved.user == "carol"
    again = cli(work, url, "plan")
    assert again.exit_code == 0, again.output
