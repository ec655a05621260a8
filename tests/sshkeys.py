"""Real OpenSSH keys for signed-approval tests: made with ssh-keygen in the test's tmp_path."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from conftest import DEPLOY_TEMPLATE, build_project

from pipeline_sync.signing import (
    SignedApproval,
    Statement,
    now_utc,
    parse_signed,
    sign,
    statement_for,
)

ALICE = "alice@example.com"
BOB = "bob@example.com"
MALLORY = "mallory@example.com"


@dataclass(frozen=True)
class Keys:
    """alice (ed25519, and a second ed25519 key on her laptop), bob (ECDSA): both listed in
    signers; mallory (ed25519) is not listed anywhere."""

    alice: Path
    alice_laptop: Path
    bob: Path
    mallory: Path
    signers: str  # allowed_signers text listing alice's two keys and bob's

    def fingerprint(self, key: Path) -> str:
        done = subprocess.run(
            ["ssh-keygen", "-l", "-f", f"{key}.pub"], capture_output=True, text=True, check=True
        )
        return done.stdout.split()[1]


def make_keys(folder: Path) -> Keys:
    folder.mkdir(parents=True, exist_ok=True)
    kinds = {"alice": "ed25519", "alice_laptop": "ed25519", "bob": "ecdsa", "mallory": "ed25519"}
    for name, kind in kinds.items():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", name, "-f", str(folder / name)], check=True
        )

    def line(principal: str, name: str) -> str:
        key_type, key = (folder / f"{name}.pub").read_text().split()[:2]
        return f"{principal} {key_type} {key}\n"

    signers = (
        "# who may approve prod\n" + line(ALICE, "alice") + line(ALICE, "alice_laptop") + line(BOB, "bob")
    )
    return Keys(folder / "alice", folder / "alice_laptop", folder / "bob", folder / "mallory", signers)


def statement(key: str, digest: str, store: str, principal: str, *, hours: float = 1) -> Statement:
    """A statement valid for hours from now (negative: expired that long ago)."""
    now = now_utc()
    if hours < 0:
        return statement_for(
            key,
            digest,
            store,
            principal,
            now=now + timedelta(hours=2 * hours),
            valid_for=timedelta(hours=-hours),
        )
    return statement_for(key, digest, store, principal, now=now, valid_for=timedelta(hours=hours))


def signed(
    key_file: Path, key: str, digest: str, store: str, principal: str, *, hours: float = 1
) -> SignedApproval:
    return sign(statement(key, digest, store, principal, hours=hours), key_file)


def signed_in_namespace(key_file: Path, text: str, namespace: str) -> SignedApproval:
    """text signed by key_file in another namespace (a git commit signature, say)."""
    done = subprocess.run(
        ["ssh-keygen", "-Y", "sign", "-q", "-f", str(key_file), "-n", namespace],
        input=text,
        capture_output=True,
        text=True,
        check=True,
    )
    return parse_signed(text + done.stdout)


def signed_project(root: Path, keys: Keys, *, stack: str = "", service: dict[str, Any] | None = None) -> Path:
    """prod requires two of alice and bob (approvers/prod), dev is approved by stack policy."""
    defaults = (
        "vars: {description: plain}\nstacks:\n  dev: {approval: auto}\n"
        f"  prod: {{approvers: approvers/prod, approvals: 2{stack}}}\n"
    )
    stacks = {"dev": {"pipelines": ["deploy"]}, "prod": {"pipelines": ["deploy"], **(service or {})}}
    project = build_project(
        root, defaults=defaults, services={"svc": {"stacks": stacks}}, templates={"deploy": DEPLOY_TEMPLATE}
    )
    (project.catalog_dir / "approvers").mkdir()
    (project.catalog_dir / "approvers" / "prod").write_text(keys.signers)
    return project.root
