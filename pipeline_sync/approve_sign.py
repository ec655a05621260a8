"""The CLI's side of signed approvals: sign statements with a person's key, read approval files."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from pipeline_sync.approvers import ApproverPolicy
from pipeline_sync.catalog import Catalog
from pipeline_sync.plan import PlanEntry
from pipeline_sync.signing import (
    SignedApproval,
    SigningError,
    now_utc,
    parse_duration,
    public_key_of,
    sign,
    split_signed,
    statement_for,
    store_identity,
)
from pipeline_sync.store import Store

README_SECTION = "README, Signed approvals"


def resolve_principal(policy: ApproverPolicy, key: str, key_file: Path, principal: str | None) -> str:
    """Who key_file signs as: principal when given, else the one principal policy lists for its key."""
    if principal:
        return principal
    found = policy.principals_of(*public_key_of(key_file))
    if not found:
        raise SigningError(
            f"{key_file} is not a key {policy.file} lists (the approvers of {key}); sign with a listed key, "
            "or name the principal with --principal."
        )
    if len(found) > 1:
        raise SigningError(
            f"{policy.file} lists the key {key_file} for {', '.join(found)}; choose one with --principal."
        )
    return found[0]


def sign_one(
    catalog: Catalog,
    store: Store,
    key: str,
    digest: str,
    key_file: Path,
    *,
    principal: str | None,
    valid_for: str,
) -> SignedApproval:
    """A signed approval of (key, digest) in store by key_file's principal, valid for valid_for."""
    policy = catalog.approver_policy(key)
    if policy is None:
        raise SigningError(
            f"{key} has no approvers (its stack declares no `approvers:`), so its approvals are unsigned; "
            "approve it without --sign."
        )
    who = resolve_principal(policy, key, key_file, principal)
    statement = statement_for(
        key, digest, store_identity(store), who, now=now_utc(), valid_for=parse_duration(valid_for)
    )
    return sign(statement, key_file)


def sign_approvals(
    catalog: Catalog,
    store: Store,
    entries: Iterable[PlanEntry],
    key_files: Sequence[Path],
    *,
    principal: str | None,
    valid_for: str,
) -> list[SignedApproval]:
    """One signed approval per key file for every entry whose stack has approvers."""
    signed: list[SignedApproval] = []
    if not key_files:
        return signed
    for entry in entries:
        if catalog.approver_policy(entry.key) is None:
            continue
        for key_file in key_files:
            signed.append(
                sign_one(
                    catalog,
                    store,
                    entry.key,
                    entry.digest,
                    key_file,
                    principal=principal,
                    valid_for=valid_for,
                )
            )
    return signed


def read_approvals(files: Iterable[Path]) -> list[SignedApproval]:
    """The signed approvals in files (each may hold several, one after another)."""
    found: list[SignedApproval] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SigningError(f"cannot read the signed approval {path}: {exc}") from None
        found += split_signed(text, source=str(path))
    return found


def signing_notes(catalog: Catalog, entries: Iterable[PlanEntry]) -> list[str]:
    """One line per stack whose pending changes need signed approvals, saying how many and whose."""
    needs: dict[str, list[str]] = {}
    for entry in entries:
        policy = catalog.approver_policy(entry.key) if entry.actionable else None
        if policy is not None:
            needs.setdefault(policy.describe(), []).append(entry.key)
    return [
        f"Signed approvals: {_count(keys)} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}) "
        f"{'needs' if len(keys) == 1 else 'need'} {need}: pipeline-sync approve KEY --digest D --sign "
        "KEYFILE [--print], or apply --sign / --approval."
        for need, keys in sorted(needs.items())
    ]


def _count(keys: list[str]) -> str:
    return "1 pending change" if len(keys) == 1 else f"{len(keys)} pending changes"


def unsigned_note(catalog: Catalog, keys: Iterable[str] | None = None) -> str | None:
    """The note `validate` and `plan` print: which stacks' approvals are names, not signatures."""
    stacks = catalog.unsigned_stacks()
    if keys is not None:
        planned = {k.split("/")[1] for k in keys if k.count("/") == 2}
        stacks = [s for s in stacks if s in planned]
    if not stacks:
        return None
    return (
        f"approvals of stack{'s' if len(stacks) > 1 else ''} {', '.join(stacks)} are unsigned (a typed "
        f"name); declare `approvers:` in {catalog.root.name}/defaults.yaml to require SSH-signed "
        f"approvals ({README_SECTION})."
    )
