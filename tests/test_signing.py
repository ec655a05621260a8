"""Signed approvals, unit by unit: the statement, ssh-keygen verification, counting people, the
catalog's approvers (stricter only), and the engine's rule that policy never signs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import build_project
from s3support import workspace_of
from sshkeys import ALICE, BOB, Keys, make_keys, signed, signed_in_namespace, signed_project, statement

from pipeline_sync import engine
from pipeline_sync.approvers import ApproverPolicy, judge, parse_allowed_signers
from pipeline_sync.errors import CatalogError
from pipeline_sync.signing import (
    NAMESPACE,
    SigningError,
    now_utc,
    parse_signed,
    parse_statement,
    split_signed,
    verify,
)
from pipeline_sync.store.s3 import S3Store

KEY = "svc/prod/deploy"
OTHER_KEY = "svc/dev/deploy"
DIGEST = "a" * 64
OTHER_DIGEST = "b" * 64
STORE = "s3://front50-test/front50"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


def policy_of(keys: Keys, approvals: int = 2) -> ApproverPolicy:
    return ApproverPolicy(
        "catalog/approvers/prod", keys.signers, approvals, parse_allowed_signers(keys.signers)
    )


# -- the statement -----------------------------------------------------------------------------


def test_statement_text_is_canonical() -> None:
    text = statement(KEY, DIGEST, STORE, ALICE).text()
    lines = text.splitlines()
    assert lines[:5] == [
        "pipeline-sync approval v1",
        f"key: {KEY}",
        f"digest: {DIGEST}",
        f"store: {STORE}",
        f"principal: {ALICE}",
    ]
    assert lines[5].startswith("expires: 20") and lines[5].endswith("Z") and text.endswith("Z\n")
    assert parse_statement(text).text() == text


GOOD = statement(KEY, DIGEST, STORE, ALICE).text()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace("v1", "v2"), "not a pipeline-sync approval statement: it must start with"),
        (GOOD + "extra: 1\n", "not a pipeline-sync approval statement"),
        (GOOD.rstrip("\n"), "not a pipeline-sync approval statement"),
        (GOOD.replace("digest: ", "digest:  "), "approval statement digest ' aaaa"),
        (GOOD.replace("key: ", "kee: "), "approval statement line 'kee: svc/prod/deploy' should be 'key: '"),
        (
            GOOD.replace(KEY, "svc/prod"),
            "approval statement key 'svc/prod' is not a service/stack/template key.",
        ),
        (GOOD.replace(ALICE, "alice,bob"), "approval statement principal 'alice,bob' must be one"),
        (GOOD.replace(ALICE, "*"), "approval statement principal '*' must be one"),
        (GOOD.replace("Z\n", "+00:00\n"), "approval statement expiry"),
    ],
)
def test_statements_that_are_not_canonical_are_refused(text: str, message: str) -> None:
    with pytest.raises(SigningError) as caught:
        parse_statement(text)
    assert str(caught.value).startswith(message)


# -- verification with ssh-keygen ----------------------------------------------------------------


@pytest.mark.parametrize("who", ["alice", "alice_laptop", "bob"])
def test_listed_keys_verify_with_their_fingerprint(keys: Keys, who: str) -> None:
    key_file = getattr(keys, who)
    principal = BOB if who == "bob" else ALICE
    approval = signed(key_file, KEY, DIGEST, STORE, principal)
    assert verify(approval, keys.signers, "prod.signers") == keys.fingerprint(key_file)
    assert approval.fingerprint == keys.fingerprint(key_file)
    assert parse_signed(approval.text()) == approval  # the text round-trips: files, launchpad


def test_verification_refuses_each_forgery_with_its_reason(keys: Keys) -> None:
    cases: list[tuple[Any, str]] = [
        (
            signed(keys.mallory, KEY, DIGEST, STORE, ALICE),
            f"the approval claiming {ALICE} was signed by key {keys.fingerprint(keys.mallory)}, which "
            "prod.signers does not list (or lists as not valid now).",
        ),
        (
            signed(keys.alice, KEY, DIGEST, STORE, BOB),
            f"the approval claiming {BOB} was signed by key {keys.fingerprint(keys.alice)}, which "
            f"prod.signers lists for {ALICE}, not {BOB}.",
        ),
        (
            signed_in_namespace(keys.alice, GOOD, "git"),
            f"the signature of {ALICE} was made for namespace 'git', not '{NAMESPACE}': it signs something "
            "else, not an approval.",
        ),
        (
            parse_signed(signed(keys.alice, KEY, DIGEST, STORE, ALICE).text().replace(DIGEST, OTHER_DIGEST)),
            f"the signature of {ALICE} ({keys.fingerprint(keys.alice)}) does not match the statement: it was "
            "changed after it was signed.",
        ),
    ]
    for approval, message in cases:
        with pytest.raises(SigningError) as caught:
            verify(approval, keys.signers, "prod.signers")
        assert str(caught.value) == message


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (
            lambda t: t.split("-----BEGIN")[0],
            "x is not a signed approval: expected the statement followed by",
        ),
        (
            lambda t: t.replace("U1NIU0lH", "AAAAAAAA"),
            "x: the SSH signature is unreadable (no SSHSIG magic).",
        ),
        (lambda t: t + t.split("-----BEGIN")[1], "x is not a signed approval"),
    ],
)
def test_malformed_signed_approvals_are_refused(keys: Keys, mangle: Any, message: str) -> None:
    text = signed(keys.alice, KEY, DIGEST, STORE, ALICE).text()
    with pytest.raises(SigningError) as caught:
        parse_signed(mangle(text), source="x")
    assert str(caught.value).startswith(message)


def test_a_file_may_hold_several_signed_approvals(keys: Keys) -> None:
    one = signed(keys.alice, KEY, DIGEST, STORE, ALICE)
    two = signed(keys.bob, KEY, DIGEST, STORE, BOB)
    assert split_signed(one.text() + "\n" + two.text(), source="f") == [one, two]
    with pytest.raises(SigningError) as caught:
        split_signed(one.text() + "trailing words\n", source="f")
    assert str(caught.value) == "f: text after the last signature is not a signed approval."


# -- counting people ----------------------------------------------------------------------------


def test_two_people_are_enough_for_prod(keys: Keys) -> None:
    found = judge(
        policy_of(keys),
        [signed(keys.alice, KEY, DIGEST, STORE, ALICE), signed(keys.bob, KEY, DIGEST, STORE, BOB)],
        key=KEY,
        digest=DIGEST,
        store=STORE,
        now=now_utc(),
    )
    assert found.enough and found.principals == [ALICE, BOB] and found.problems == ()
    assert [a.fingerprint for a in found.approvers] == [
        keys.fingerprint(keys.alice),
        keys.fingerprint(keys.bob),
    ]


def test_the_same_person_twice_counts_once(keys: Keys) -> None:
    twice = signed(keys.alice, KEY, DIGEST, STORE, ALICE)
    found = judge(
        policy_of(keys),
        [twice, twice, signed(keys.alice_laptop, KEY, DIGEST, STORE, ALICE)],
        key=KEY,
        digest=DIGEST,
        store=STORE,
        now=now_utc(),
    )
    assert found.principals == [ALICE] and not found.enough


def test_one_key_listed_for_two_principals_counts_once(keys: Keys) -> None:
    key_type, key = Path(f"{keys.alice}.pub").read_text().split()[:2]
    text = f"{ALICE} {key_type} {key}\n{BOB} {key_type} {key}\n"
    policy = ApproverPolicy("two-names", text, 2, parse_allowed_signers(text))
    found = judge(
        policy,
        [signed(keys.alice, KEY, DIGEST, STORE, ALICE), signed(keys.alice, KEY, DIGEST, STORE, BOB)],
        key=KEY,
        digest=DIGEST,
        store=STORE,
        now=now_utc(),
    )
    assert found.principals == [ALICE] and not found.enough


def test_approvals_of_anything_else_do_not_count(keys: Keys) -> None:
    found = judge(
        policy_of(keys, approvals=1),
        [
            signed(keys.alice, KEY, DIGEST, STORE, ALICE, hours=-1),
            signed(keys.alice, KEY, OTHER_DIGEST, STORE, ALICE),
            signed(keys.alice, KEY, DIGEST, "s3://front50-test/other-root", ALICE),
            signed(keys.alice, OTHER_KEY, DIGEST, STORE, ALICE),
            signed(keys.mallory, KEY, DIGEST, STORE, ALICE),
        ],
        key=KEY,
        digest=DIGEST,
        store=STORE,
        now=now_utc(),
    )
    assert found.principals == [] and not found.enough
    expired, digest, store, mallory = found.problems
    assert expired.startswith(f"the approval of {ALICE} expired at ") and expired.endswith(" UTC")
    assert digest == (
        f"{ALICE} approved digest bbbbbbbbbbbb, not the current plan aaaaaaaaaaaa (a re-plan voids earlier approvals)"
    )
    assert store == f"{ALICE} approved a write to s3://front50-test/other-root, not to {STORE}"
    assert mallory.startswith(
        f"the approval claiming {ALICE} was signed by key {keys.fingerprint(keys.mallory)}"
    )


# -- the catalog: approvers per stack, stricter only --------------------------------------------


def test_the_catalog_gives_each_target_its_approvers(tmp_path: Path, keys: Keys) -> None:
    catalog = workspace_of(signed_project(tmp_path, keys)).catalog
    policy = catalog.targets[KEY].approvers
    assert policy is not None and policy.approvals == 2 and policy.file == "catalog/approvers/prod"
    assert policy.text == keys.signers and catalog.targets[KEY].approval == "manual"
    assert catalog.targets[OTHER_KEY].approvers is None
    assert catalog.unsigned_stacks() == ["dev"]
    assert catalog.approver_policy("gone/prod/deploy") == catalog.stack_approvers["prod"]
    assert catalog.approver_policy("gone/dev/deploy") is None


def test_a_service_may_make_its_stack_stricter(tmp_path: Path, keys: Keys) -> None:
    root = signed_project(tmp_path, keys, service={"approvals": 3, "approvers": "approvers/alice-only"})
    alice_only = "".join(line for line in keys.signers.splitlines(True) if line.startswith(ALICE))
    (root / "catalog" / "approvers" / "alice-only").write_text(alice_only)
    policy = workspace_of(root).catalog.targets[KEY].approvers
    assert policy is not None and policy.approvals == 3 and policy.file == "catalog/approvers/alice-only"


def _mallory_line(keys: Keys) -> str:
    return f"{ALICE} " + " ".join(Path(f"{keys.mallory}.pub").read_text().split()[:2]) + "\n"


@pytest.mark.parametrize(
    ("stack", "service", "narrow", "where", "message"),
    [
        (
            "",
            {"approvals": 1},
            None,
            "catalog/services/svc.yaml:14: stacks.prod.approvals",
            "approvals: 1 is fewer than the 2 stack 'prod' requires; a service may only make its stack stricter",
        ),
        (
            "",
            {"approvers": "approvers/narrow"},
            "mallory",
            "catalog/services/svc.yaml:14: stacks.prod.approvers",
            "approvers file 'approvers/narrow' is looser than catalog/approvers/prod: line 1 lets "
            f"{ALICE} sign with a key the stack's file does not list for them; a service may only narrow "
            "its stack's signers",
        ),
        (
            "",
            {"approvers": "approvers/narrow"},
            "cert-authority",
            "catalog/services/svc.yaml:14: stacks.prod.approvers",
            "approvers file 'approvers/narrow' is looser than catalog/approvers/prod: line 1 drops or widens "
            f"the options the stack's file gives {ALICE}; a service may only narrow its stack's signers",
        ),
        (
            "",
            {"approval": "auto"},
            None,
            "catalog/services/svc.yaml:14: stacks.prod.approval",
            "`approval: auto` cannot apply to a stack with approvers: stack policy can never sign",
        ),
        (
            ", approval: auto",
            {},
            None,
            "catalog/defaults.yaml:4: stacks.prod.approval",
            "`approval: auto` cannot be combined with `approvers:`: stack policy can never sign; remove one of them",
        ),
        (
            "",
            {"approvers": "/etc/ssh/allowed_signers"},
            None,
            "catalog/services/svc.yaml:14: stacks.prod.approvers",
            "approvers file '/etc/ssh/allowed_signers' must be a path relative to the catalog directory",
        ),
        (
            "",
            {"approvers": "approvers/missing"},
            None,
            "catalog/services/svc.yaml:14: stacks.prod.approvers",
            "approvers file 'approvers/missing': ",
        ),
        (
            "",
            {"approvers": "approvers/narrow"},
            "garbage",
            "catalog/services/svc.yaml:14: stacks.prod.approvers",
            "approvers file 'approvers/narrow' is not an OpenSSH allowed_signers file: line 1 is not "
            "'principals [options] keytype base64-key'",
        ),
    ],
)
def test_a_looser_or_broken_approvers_setting_is_a_catalog_error(
    tmp_path: Path,
    keys: Keys,
    stack: str,
    service: dict[str, Any],
    narrow: str | None,
    where: str,
    message: str,
) -> None:
    root = signed_project(tmp_path, keys, stack=stack, service=service)
    first = keys.signers.splitlines(True)[1]
    lines = {
        "mallory": _mallory_line(keys),
        "cert-authority": first.replace(f"{ALICE} ", f"{ALICE} cert-authority "),
        "garbage": "alice@example.com not-a-key\n",
    }
    if narrow:
        (root / "catalog" / "approvers" / "narrow").write_text(lines[narrow])
    catalog = workspace_of(root).catalog
    [error] = catalog.errors
    assert isinstance(error, CatalogError)
    assert str(error.location) == where
    assert error.message.startswith(message)
    assert KEY not in catalog.targets


def test_approvals_without_approvers_is_a_catalog_error(tmp_path: Path) -> None:
    project = build_project(tmp_path, defaults="stacks:\n  dev: {}\n  prod: {approvals: 2}\n")
    [error] = project.load().errors
    assert str(error) == (
        "catalog/defaults.yaml:3: stacks.prod.approvals: `approvals:` counts signed approvals; declare "
        "`approvers:` too"
    )


# -- the engine: policy never signs, and a name is not a signature -------------------------------


def test_policy_can_never_approve_a_stack_with_approvers(tmp_path: Path, keys: Keys, store: S3Store) -> None:
    ws = workspace_of(signed_project(tmp_path, keys))
    plan = engine.plan(ws, store)
    approved = {KEY: plan.entries[KEY].digest, OTHER_KEY: plan.entries[OTHER_KEY].digest}
    refusal = (
        f"{KEY}: stack policy cannot approve it: its stack requires 2 signed approvals by distinct people "
        "from catalog/approvers/prod, and a policy signs nothing"
    )
    assert engine.policy_refusals(ws, store, approved) == {KEY: refusal, OTHER_KEY: None}
    good = [
        signed(keys.alice, KEY, approved[KEY], STORE, ALICE),
        signed(keys.bob, KEY, approved[KEY], STORE, BOB),
    ]
    results = engine.apply(
        ws, store, {KEY: approved[KEY]}, approver=engine.AUTO_APPROVER, policy=True, signed=good
    )
    assert [(r.outcome, r.message) for r in results] == [("refused", refusal)]
    assert store.read_pipeline(ws.catalog.pipeline_id(KEY)) is None


def test_an_unsigned_approval_of_a_signed_stack_writes_nothing(
    tmp_path: Path, keys: Keys, store: S3Store
) -> None:
    ws = workspace_of(signed_project(tmp_path, keys))
    digest = engine.plan(ws, store).entries[KEY].digest
    [result] = engine.apply(ws, store, {KEY: digest}, approver="the-cto")
    assert (result.outcome, result.message) == (
        "refused",
        f"{KEY}: needs 2 signed approvals by distinct people from catalog/approvers/prod; none counted. "
        "Nothing was written. Sign with `pipeline-sync approve KEY --digest D --sign KEYFILE` or "
        "`pipeline-sync apply PLAN.json --sign KEYFILE`.",
    )
    assert store.read_pipeline(ws.catalog.pipeline_id(KEY)) is None


def test_two_signatures_write_and_the_marker_records_them(tmp_path: Path, keys: Keys, store: S3Store) -> None:
    ws = workspace_of(signed_project(tmp_path, keys))
    digest = engine.plan(ws, store).entries[KEY].digest
    good = [signed(keys.alice, KEY, digest, STORE, ALICE), signed(keys.bob, KEY, digest, STORE, BOB)]
    [result] = engine.apply(ws, store, {KEY: digest}, approver="ignored", signed=good)
    assert result.outcome == "applied" and result.approver == f"{ALICE}, {BOB}"
    live = store.read_pipeline(ws.catalog.pipeline_id(KEY))
    assert live is not None
    marker = live.document["pipelineSync"]
    fingerprints = [keys.fingerprint(keys.alice), keys.fingerprint(keys.bob)]
    assert marker["approvedBy"] == f"{ALICE}, {BOB}"
    assert marker["signedBy"] == f"{ALICE} ({fingerprints[0]}), {BOB} ({fingerprints[1]})"
    assert result.signed_by == marker["signedBy"]
    for recorded, approval, fingerprint in zip(marker["signatures"], good, fingerprints, strict=True):
        assert recorded == {
            "principal": approval.statement.principal,
            "fingerprint": fingerprint,
            "statement": approval.statement_text,
            "signature": approval.signature,
        }
        again = parse_signed(recorded["statement"] + recorded["signature"])
        assert verify(again, keys.signers, "prod") == fingerprint  # anyone can check the pipeline itself
    assert live.summary.marker is not None and live.summary.marker["signedBy"] == marker["signedBy"]
