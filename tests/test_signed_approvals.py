"""Signed approvals end to end: through the CLI against a moto bucket, and through the approval
asset and approval_sensor on a real Dagster instance. prod needs two of alice and bob; every
forgery is refused with its reason, and nothing is written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pytest
from click.testing import CliRunner, Result
from moto import mock_aws
from s3support import BUCKET
from sshkeys import (
    ALICE,
    BOB,
    Keys,
    make_keys,
    signed,
    signed_in_namespace,
    signed_project,
    statement,
)
from test_dagster import add_partitions, plan_partition, sensor_tick
from test_dagster_trust import failure_of, publish

from pipeline_sync.cli import main
from pipeline_sync.defs.assets import approval
from pipeline_sync.defs.resources import CatalogResource, Front50Resource
from pipeline_sync.identity import pipeline_id_for
from pipeline_sync.plan import Plan
from pipeline_sync.signing import parse_signed, verify
from pipeline_sync.store.s3 import S3Store

KEY = "svc/prod/deploy"
DEV_KEY = "svc/dev/deploy"
STORE = f"s3://{BUCKET}/front50"
NEEDS = "needs 2 signed approvals by distinct people from catalog/approvers/prod"
HOW = (
    "Nothing was written. Sign with `pipeline-sync approve KEY --digest D --sign KEYFILE` or "
    "`pipeline-sync apply PLAN.json --sign KEYFILE`."
)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


# -- the CLI against a moto bucket ---------------------------------------------------------------


def cli(project: Path, *args: str | Path) -> Result:
    options = ["--catalog", str(project / "catalog"), "--templates", str(project / "templates")]
    return CliRunner().invoke(main, [*options, *map(str, args)])


def prod_body(store: S3Store) -> dict[str, Any] | None:
    live = store.read_pipeline(pipeline_id_for(KEY))
    return dict(live.document) if live is not None else None


@pytest.fixture
def planned(tmp_path: Path, keys: Keys, store: S3Store, bucket_env: None) -> tuple[Path, Path, str]:
    """(project, saved plan, prod's digest): a plan of dev and prod, nothing written yet."""
    project = signed_project(tmp_path / "project", keys)
    plan_file = tmp_path / "plan.json"
    result = cli(project, "plan", "--out", plan_file)
    assert result.exit_code == 2, result.output
    digest = Plan.from_json(json.loads(plan_file.read_text())).entries[KEY].digest
    return project, plan_file, digest


def approval_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.approval"
    path.write_text(text)
    return path


def test_validate_and_plan_name_the_stacks_whose_approvals_are_unsigned(
    planned: tuple[Path, Path, str],
) -> None:
    project, _, _ = planned
    note = (
        "note: approvals of stack dev are unsigned (a typed name); declare `approvers:` in "
        "catalog/defaults.yaml to require SSH-signed approvals (README, Signed approvals)."
    )
    assert note in cli(project, "validate").output
    assert note in cli(project, "plan").output


def test_one_signature_publishes_nothing_and_the_second_person_publishes(
    planned: tuple[Path, Path, str], keys: Keys, store: S3Store, tmp_path: Path
) -> None:
    project, plan_file, digest = planned
    first = cli(project, "apply", plan_file, "--select", KEY, "--sign", keys.alice)
    assert first.exit_code == 1
    assert f"refused: {KEY}: {NEEDS}; 1 counted ({ALICE}). {HOW}" in first.output
    assert prod_body(store) is None

    printed = cli(project, "approve", KEY, "--digest", digest, "--sign", keys.bob, "--print")
    assert printed.exit_code == 0, printed.output
    bob = parse_signed(printed.output)
    assert (bob.statement.key, bob.statement.digest, bob.statement.store) == (KEY, digest, STORE)
    assert bob.statement.principal == BOB

    second = cli(
        project, "apply", plan_file, "--select", KEY, "--sign", keys.alice,
        "--approval", approval_file(tmp_path, "bob", printed.output),
    )  # fmt: skip
    assert second.exit_code == 0, second.output
    signed_by = f"{ALICE} ({keys.fingerprint(keys.alice)}), {BOB} ({keys.fingerprint(keys.bob)})"
    assert f"(created application svc) (signed by {signed_by})\n1 applied, 0 refused" in second.output
    body = prod_body(store)
    assert body is not None
    marker = body["pipelineSync"]
    assert (marker["approvedBy"], marker["signedBy"]) == (f"{ALICE}, {BOB}", signed_by)
    for recorded in marker["signatures"]:
        proof = parse_signed(recorded["statement"] + recorded["signature"])
        assert verify(proof, keys.signers, "prod") == recorded["fingerprint"]


def test_the_same_person_with_two_keys_is_one_approval(
    planned: tuple[Path, Path, str], keys: Keys, store: S3Store
) -> None:
    project, plan_file, _ = planned
    result = cli(
        project, "apply", plan_file, "--select", KEY, "--sign", keys.alice, "--sign", keys.alice_laptop
    )
    assert result.exit_code == 1
    assert f"refused: {KEY}: {NEEDS}; 1 counted ({ALICE}). {HOW}" in result.output
    assert prod_body(store) is None


def test_an_unsigned_apply_of_a_signed_stack_writes_nothing(
    planned: tuple[Path, Path, str], store: S3Store
) -> None:
    project, plan_file, _ = planned
    result = cli(project, "apply", plan_file, "--approver", "the-cto")
    assert result.exit_code == 1
    assert f"refused: {KEY}: {NEEDS}; none counted. {HOW}" in result.output
    assert f"applied: {DEV_KEY}: create" in result.output  # dev's approvals are names, as before
    assert prod_body(store) is None


def forgeries(keys: Keys, digest: str) -> dict[str, tuple[str, str]]:
    """name -> (signed approval text, the reason it does not count)."""
    alice = signed(keys.alice, KEY, digest, STORE, ALICE)
    later = alice.statement.expires.replace(year=alice.statement.expires.year + 1)
    tampered = alice.text().replace(f"expires: {alice.statement.expires:%Y}", f"expires: {later:%Y}")
    git = signed_in_namespace(keys.alice, statement(KEY, digest, STORE, ALICE).text(), "git")
    mallory = keys.fingerprint(keys.mallory)
    return {
        "unknown key": (
            signed(keys.mallory, KEY, digest, STORE, ALICE).text(),
            f"the approval claiming {ALICE} was signed by key {mallory}, which catalog/approvers/prod "
            "does not list (or lists as not valid now)",
        ),
        "wrong namespace": (
            git.text(),
            f"the signature of {ALICE} was made for namespace 'git', not 'pipeline-sync-approval': it "
            "signs something else, not an approval",
        ),
        "expired": (signed(keys.alice, KEY, digest, STORE, ALICE, hours=-1).text(), "expired at"),
        "tampered": (
            tampered,
            f"the signature of {ALICE} ({keys.fingerprint(keys.alice)}) does not match the statement: it "
            "was changed after it was signed",
        ),
        "another store": (
            signed(keys.alice, KEY, digest, f"s3://{BUCKET}/staging", ALICE).text(),
            f"{ALICE} approved a write to s3://{BUCKET}/staging, not to {STORE}",
        ),
        "another digest": (
            signed(keys.alice, KEY, "0" * 64, STORE, ALICE).text(),
            f"{ALICE} approved digest 000000000000, not the current plan {digest[:12]}",
        ),
    }


@pytest.mark.parametrize(
    "case", ["unknown key", "wrong namespace", "expired", "tampered", "another store", "another digest"]
)
def test_each_forgery_is_refused_with_its_reason(
    planned: tuple[Path, Path, str], keys: Keys, store: S3Store, tmp_path: Path, case: str
) -> None:
    project, plan_file, digest = planned
    text, reason = forgeries(keys, digest)[case]
    result = cli(
        project, "apply", plan_file, "--select", KEY, "--sign", keys.bob,
        "--approval", approval_file(tmp_path, "forged", text),
    )  # fmt: skip
    assert result.exit_code == 1
    assert f"refused: {KEY}: {NEEDS}; 1 counted ({BOB}); not counted: " in result.output
    assert reason in result.output
    assert prod_body(store) is None


def test_an_approval_of_another_pipeline_counts_for_nothing(
    planned: tuple[Path, Path, str], keys: Keys, store: S3Store, tmp_path: Path
) -> None:
    project, plan_file, digest = planned
    other = signed(keys.alice, "web/prod/deploy", digest, STORE, ALICE).text()
    result = cli(
        project, "apply", plan_file, "--select", KEY, "--sign", keys.bob,
        "--approval", approval_file(tmp_path, "other", other),
    )  # fmt: skip
    assert result.exit_code == 1
    assert (
        "warning: a signed approval names web/prod/deploy, which this apply does not write" in result.output
    )
    assert f"refused: {KEY}: {NEEDS}; 1 counted ({BOB}). {HOW}" in result.output
    assert prod_body(store) is None


def test_a_re_plan_voids_earlier_approvals(
    planned: tuple[Path, Path, str], keys: Keys, store: S3Store, tmp_path: Path
) -> None:
    project, _, digest = planned
    alice = cli(project, "approve", KEY, "--digest", digest, "--sign", keys.alice, "--print")
    defaults = project / "catalog" / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace("description: plain", "description: changed"))
    replan = tmp_path / "replan.json"
    assert cli(project, "plan", "--out", replan).exit_code == 2
    new = Plan.from_json(json.loads(replan.read_text())).entries[KEY].digest
    assert new != digest
    result = cli(
        project, "apply", replan, "--select", KEY, "--sign", keys.bob,
        "--approval", approval_file(tmp_path, "alice", alice.output),
    )  # fmt: skip
    assert result.exit_code == 1
    assert (
        f"1 counted ({BOB}); not counted: {ALICE} approved digest {digest[:12]}, not the current plan "
        f"{new[:12]} (a re-plan voids earlier approvals)."
    ) in result.output
    assert prod_body(store) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--sign", "mallory"],
            "error: {mallory} is not a key catalog/approvers/prod lists (the approvers of svc/prod/deploy); "
            "sign with a listed key, or name the principal with --principal.",
        ),
        (["--print"], "--print prints a signed approval: give the key to sign with, --sign KEYFILE."),
        (
            ["--sign", "alice", "--valid-for", "forever"],
            "error: validity 'forever' is not a positive duration such as 30m, 8h or 2d.",
        ),
    ],
)
def test_approve_refuses_what_it_cannot_sign(
    planned: tuple[Path, Path, str], keys: Keys, args: list[str], message: str
) -> None:
    project, _, digest = planned
    paths = {"mallory": str(keys.mallory), "alice": str(keys.alice)}
    result = cli(project, "approve", KEY, "--digest", digest, *(paths.get(a, a) for a in args), "--print")
    assert result.exit_code == 1
    assert message.format(mallory=keys.mallory) in result.output


def test_approve_refuses_to_sign_a_stack_without_approvers(
    planned: tuple[Path, Path, str], keys: Keys
) -> None:
    project, _, _ = planned
    result = cli(project, "approve", DEV_KEY, "--digest", "a" * 64, "--sign", keys.alice, "--print")
    assert result.exit_code == 1
    assert (
        f"error: {DEV_KEY} has no approvers (its stack declares no `approvers:`), so its approvals are "
        "unsigned; approve it without --sign."
    ) in result.output


# -- the approval asset and approval_sensor on a real Dagster instance --------------------------


@pytest.fixture
def dagster_env(aws_env: None, tmp_path: Path, keys: Keys) -> Iterator[dict[str, Any]]:
    root = signed_project(tmp_path / "project", keys)
    with mock_aws(), dg.instance_for_test() as instance:
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        resources = {
            "catalog": CatalogResource(
                catalog_dir=str(root / "catalog"), templates_dir=str(root / "templates")
            ),
            "front50": Front50Resource(bucket=BUCKET, cache_dir=str(tmp_path / "cache")),
        }
        yield {"instance": instance, "resources": resources, "root": root}


def approve_signed(
    env: dict[str, Any], digest: str, text: str, approver: str = ""
) -> dg.ExecuteInProcessResult:
    config = {"approver": approver, "plan_digest": digest, "signed_statement": text}
    return dg.materialize(
        [approval],
        partition_key=KEY,
        instance=env["instance"],
        resources=env["resources"],
        run_config=dg.RunConfig(ops={"approval": {"config": config}}),
        raise_on_error=False,
    )


def written(env: dict[str, Any]) -> dict[str, Any] | None:
    store = env["resources"]["front50"].store()
    live = store.read_pipeline(pipeline_id_for(KEY))
    return dict(live.document) if live is not None else None


def test_dagster_publishes_only_once_two_people_have_signed(dagster_env: dict[str, Any], keys: Keys) -> None:
    env, instance = dagster_env, dagster_env["instance"]
    add_partitions(instance, env["root"])
    digest = plan_partition(env, KEY)["plan_digest"]

    unsigned = approve_signed(env, digest, "", approver="the-cto")
    assert failure_of(unsigned) == (
        f"Approval refused for {KEY}: its stack requires 2 signed approvals by distinct people from "
        f"catalog/approvers/prod, and this approval is unsigned. Run `pipeline-sync approve {KEY} --digest "
        f"{digest} --sign KEYFILE` (or paste its --print output into signed_statement). Nothing was approved."
    )
    alice = approve_signed(env, digest, signed(keys.alice, KEY, digest, STORE, ALICE).text())
    assert alice.success
    [event] = alice.get_asset_materialization_events()
    metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    assert (metadata["approver"], metadata["fingerprint"]) == (ALICE, keys.fingerprint(keys.alice))
    assert metadata["approvals_required"] == 2
    assert approve_signed(env, digest, signed(keys.alice_laptop, KEY, digest, STORE, ALICE).text()).success
    tick = sensor_tick(instance)
    assert tick.run_requests == []  # one person, twice: not yet

    # Publishing on alice's event alone is refused by the engine, whatever the run config says.
    early = publish(env, {"plan_digest": digest}, KEY)
    assert failure_of(early) == f"Not published: {KEY}: {NEEDS}; 1 counted ({ALICE}). {HOW}"
    assert written(env) is None

    assert approve_signed(env, digest, signed(keys.bob, KEY, digest, STORE, BOB).text()).success
    [request] = sensor_tick(instance, tick.cursor).run_requests
    config = request.run_config["ops"]["published_pipeline"]["config"]
    done = publish(env, config, KEY)
    assert done.success
    [published] = [
        e for e in done.get_asset_materialization_events() if e.asset_key == dg.AssetKey("published_pipeline")
    ]
    values = {k: v.value for k, v in published.materialization.metadata.items()}
    # alice's newest approval (her laptop key) is the one counted and recorded for her.
    signed_by = f"{ALICE} ({keys.fingerprint(keys.alice_laptop)}), {BOB} ({keys.fingerprint(keys.bob)})"
    assert (values["approver"], values["signed_by"]) == (f"{ALICE}, {BOB}", signed_by)
    body = written(env)
    assert body is not None and body["pipelineSync"]["signedBy"] == signed_by


@pytest.mark.parametrize(
    "case", ["unknown key", "wrong namespace", "expired", "tampered", "another store", "another digest"]
)
def test_dagster_refuses_each_forged_approval(dagster_env: dict[str, Any], keys: Keys, case: str) -> None:
    env = dagster_env
    add_partitions(env["instance"], env["root"])
    digest = plan_partition(env, KEY)["plan_digest"]
    text, reason = forgeries(keys, digest)[case]
    result = approve_signed(env, digest, text)
    message = failure_of(result)
    assert message.startswith(f"Approval refused for {KEY}: ") and message.endswith(". Nothing was approved.")
    assert reason in message
    assert sensor_tick(env["instance"]).run_requests == []
    assert written(env) is None


def test_dagster_refuses_a_statement_for_another_pipeline_or_person(
    dagster_env: dict[str, Any], keys: Keys
) -> None:
    env = dagster_env
    add_partitions(env["instance"], env["root"])
    digest = plan_partition(env, KEY)["plan_digest"]
    other = signed(keys.alice, "web/prod/deploy", digest, STORE, ALICE).text()
    assert failure_of(approve_signed(env, digest, other)) == (
        f"Approval refused for {KEY}: the signed statement approves web/prod/deploy, not {KEY}. Nothing was approved."
    )
    alice = signed(keys.alice, KEY, digest, STORE, ALICE).text()
    assert failure_of(approve_signed(env, digest, alice, approver="bob@example.com")) == (
        f"Approval refused for {KEY}: approver 'bob@example.com' is not the signed statement's principal "
        f"'{ALICE}'. Nothing was approved."
    )


def publish_prod(project: Path, plan_file: Path, keys: Keys) -> None:
    result = cli(project, "apply", plan_file, "--select", KEY, "--sign", keys.alice, "--sign", keys.bob)
    assert result.exit_code == 0, result.output


def test_plan_shows_who_signed_and_what_still_needs_signatures(
    planned: tuple[Path, Path, str], keys: Keys, tmp_path: Path
) -> None:
    project, plan_file, _ = planned
    publish_prod(project, plan_file, keys)
    defaults = project / "catalog" / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace("description: plain", "description: changed"))
    result = cli(project, "plan", "--select", KEY)
    assert result.exit_code == 2
    signers = f"{ALICE} ({keys.fingerprint(keys.alice)}), {BOB} ({keys.fingerprint(keys.bob)})"
    assert f"  the live version's approval was signed by {signers}\n" in result.output
    assert (
        f"Signed approvals: 1 pending change ({KEY}) needs 2 signed approvals by distinct people from "
        "catalog/approvers/prod: pipeline-sync approve KEY --digest D --sign KEYFILE [--print], or apply "
        "--sign / --approval.\n"
    ) in result.output
    assert "are unsigned" not in result.output  # the only pending change is in a signed stack


def test_a_rollback_of_a_signed_stack_needs_the_signatures_too(
    planned: tuple[Path, Path, str], keys: Keys, store: S3Store, tmp_path: Path
) -> None:
    project, plan_file, _ = planned
    store.client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    publish_prod(project, plan_file, keys)
    defaults = project / "catalog" / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace("description: plain", "description: changed"))
    replan = tmp_path / "replan.json"
    assert cli(project, "plan", "--out", replan).exit_code == 2
    publish_prod(project, replan, keys)
    rollback = tmp_path / "rollback.json"
    assert cli(project, "rollback", KEY, "--out", rollback).exit_code == 0
    unsigned = cli(project, "apply", rollback, "--approver", "the-cto")
    assert unsigned.exit_code == 1
    assert f"refused: {KEY}: {NEEDS}; none counted. {HOW}" in unsigned.output
    body = prod_body(store)
    assert body is not None and body["description"] == "changed"
    restored = cli(project, "apply", rollback, "--sign", keys.alice, "--sign", keys.bob)
    assert restored.exit_code == 0, restored.output
    body = prod_body(store)
    assert body is not None and body["description"] == "plain"
    marker = body["pipelineSync"]
    assert marker["approvedBy"] == f"{ALICE}, {BOB}" and "restoredFrom" in marker
    assert [s["principal"] for s in marker["signatures"]] == [ALICE, BOB]


@pytest.fixture
def agent(tmp_path: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An ssh-agent holding alice's key; yields a copy of her public key with no private key beside it."""
    socket = tmp_path / "agent.sock"
    started = subprocess.run(
        ["ssh-agent", "-s", "-a", str(socket)], capture_output=True, text=True, check=True
    )
    pid = int(started.stdout.split("SSH_AGENT_PID=")[1].split(";")[0])
    try:
        monkeypatch.setenv("SSH_AUTH_SOCK", str(socket))
        subprocess.run(["ssh-add", "-q", str(keys.alice)], check=True, capture_output=True)
        public = tmp_path / "agent-only" / "alice.pub"
        public.parent.mkdir()
        public.write_text(Path(f"{keys.alice}.pub").read_text())
        yield public
    finally:
        os.kill(pid, signal.SIGTERM)


def test_sign_uses_a_key_held_by_ssh_agent(
    planned: tuple[Path, Path, str], keys: Keys, store: S3Store, agent: Path, tmp_path: Path
) -> None:
    project, plan_file, digest = planned
    printed = cli(project, "approve", KEY, "--digest", digest, "--sign", agent, "--print")
    assert printed.exit_code == 0, printed.output
    assert parse_signed(printed.output).fingerprint == keys.fingerprint(keys.alice)
    result = cli(
        project, "apply", plan_file, "--select", KEY, "--sign", keys.bob,
        "--approval", approval_file(tmp_path, "alice", printed.output),
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def test_sign_with_a_public_key_the_agent_lacks_is_a_clear_error(
    planned: tuple[Path, Path, str], agent: Path, keys: Keys
) -> None:
    project, _, digest = planned
    bob = agent.parent / "bob.pub"
    bob.write_text(Path(f"{keys.bob}.pub").read_text())
    result = cli(project, "approve", KEY, "--digest", digest, "--sign", bob, "--print")
    assert result.exit_code == 1
    assert result.output.startswith(f"error: could not sign the approval of {KEY} with {bob}: ")


def test_plan_json_and_markdown_say_who_must_sign_and_who_signed(
    planned: tuple[Path, Path, str], keys: Keys
) -> None:
    project, plan_file, _ = planned
    publish_prod(project, plan_file, keys)
    defaults = project / "catalog" / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace("description: plain", "description: changed"))

    as_json = cli(project, "plan", "--format", "json")
    markdown = cli(project, "plan", "--format", "markdown")

    entries = {e["key"]: e for e in json.loads(as_json.stdout)["entries"]}
    signers = f"{ALICE} ({keys.fingerprint(keys.alice)}), {BOB} ({keys.fingerprint(keys.bob)})"
    assert entries[KEY]["approvers"] == "2 signed approvals by distinct people from catalog/approvers/prod"
    assert entries[KEY]["live_signed_by"] == signers
    assert entries[DEV_KEY]["approvers"] is None and entries[DEV_KEY]["live_signed_by"] is None
    need = f"Signed approvals: 1 pending change ({KEY}) needs 2 signed approvals by distinct people from "
    assert json.loads(as_json.stdout)["notes"][0].startswith(need)
    assert f"> {need}" in markdown.stdout
