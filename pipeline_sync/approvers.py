"""Who may approve a target: the stack's allowed_signers file and how many distinct people it takes.

A stack in defaults.yaml may declare `approvers:` (an OpenSSH allowed_signers file, relative to
the catalog) and `approvals: N`. A service may only make its stack stricter: more approvals, or
a signers file whose every entry its stack's file has too. Verification of the signatures is
signing.verify; this module decides which of a set of signed approvals count, and whether they
are enough.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pipeline_sync.signing import SignedApproval, SigningError, verify

_KEY_TYPE_PREFIXES = ("ssh-", "ecdsa-", "sk-")
# An option that widens what a line accepts: a service's file may not add it.
_WIDENING_OPTIONS = frozenset({"cert-authority"})


@dataclass(frozen=True)
class SignerEntry:
    """One allowed_signers line: its principals, its options, and the public key."""

    principals: tuple[str, ...]
    options: frozenset[str]
    key_type: str
    key: str
    line: int


@dataclass(frozen=True)
class ApproverPolicy:
    """A target's approvers: the allowed_signers text as the catalog was loaded, and N."""

    file: str  # as messages name it, e.g. catalog/approvers/prod.allowed_signers
    text: str
    approvals: int
    entries: tuple[SignerEntry, ...]

    def principals_of(self, key_type: str, key: str) -> list[str]:
        """The literal principals this file lists for a public key (patterns are not names)."""
        return sorted(
            {
                p
                for e in self.entries
                if (e.key_type, e.key) == (key_type, key)
                for p in e.principals
                if not any(c in p for c in "*?!")
            }
        )

    def describe(self) -> str:
        people = (
            "1 signed approval"
            if self.approvals == 1
            else f"{self.approvals} signed approvals by distinct people"
        )
        return f"{people} from {self.file}"


def parse_allowed_signers(text: str) -> tuple[SignerEntry, ...]:
    """The entries of an allowed_signers file (ssh-keygen(1) ALLOWED SIGNERS); ValueError naming
    the line of the first one that is not `principals [options] keytype base64-key [comment]`."""
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = _fields(line)
        if len(fields) >= 2 and not fields[1].startswith(_KEY_TYPE_PREFIXES):
            options, rest = frozenset(_split_options(fields[1])), fields[2:]
        else:
            options, rest = frozenset(), fields[1:]
        if len(fields) < 3 or len(rest) < 2 or not rest[0].startswith(_KEY_TYPE_PREFIXES):
            raise ValueError(f"line {number} is not 'principals [options] keytype base64-key'")
        principals = tuple(p for p in fields[0].strip('"').split(",") if p)
        if not principals:
            raise ValueError(f"line {number} names no principal")
        entries.append(SignerEntry(principals, options, rest[0], rest[1], number))
    if not entries:
        raise ValueError("it lists no signer")
    return tuple(entries)


def _fields(line: str) -> list[str]:
    """Whitespace-separated fields; a double-quoted stretch (an option value) stays in one."""
    fields, current, quoted = [], "", False
    for char in line:
        if char == '"':
            quoted = not quoted
        if char.isspace() and not quoted:
            if current:
                fields.append(current)
            current = ""
        else:
            current += char
    if current:
        fields.append(current)
    return fields


def _split_options(text: str) -> list[str]:
    options, current, quoted = [], "", False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            options.append(current)
            current = ""
        else:
            current += char
    return [*options, current]


def looser_entries(narrow: Sequence[SignerEntry], wide: Sequence[SignerEntry]) -> list[str]:
    """Why narrow (a service's file) accepts something wide (its stack's) does not: one reason per
    line that names a (principal, key) wide lacks, or drops a restriction wide's line has."""
    problems = []
    for entry in narrow:
        for principal in entry.principals:
            matches = [
                w
                for w in wide
                if (w.key_type, w.key) == (entry.key_type, entry.key) and principal in w.principals
            ]
            if not matches:
                problems.append(
                    f"line {entry.line} lets {principal} sign with a key the stack's file does not list "
                    "for them"
                )
            elif not any(
                w.options <= entry.options and not (entry.options - w.options) & _WIDENING_OPTIONS
                for w in matches
            ):
                problems.append(
                    f"line {entry.line} drops or widens the options the stack's file gives {principal}"
                )
    return problems


@dataclass(frozen=True)
class Approver:
    """A signed approval that verified: who, with which key, and the proof."""

    principal: str
    fingerprint: str
    signed: SignedApproval


@dataclass(frozen=True)
class Judgement:
    """Which signed approvals of one plan count, why the others do not, and whether it is enough."""

    approvers: tuple[Approver, ...]
    problems: tuple[str, ...]
    required: int

    @property
    def enough(self) -> bool:
        return len(self.approvers) >= self.required

    @property
    def principals(self) -> list[str]:
        return [a.principal for a in self.approvers]


def judge(
    policy: ApproverPolicy,
    signed: Iterable[SignedApproval],
    *,
    key: str,
    digest: str,
    store: str,
    now: datetime,
) -> Judgement:
    """The distinct people whose signed approvals of (key, digest) in store verify against policy.

    A person counts once however many approvals they sign, and one key counts once however many
    principals the file lists for it, so one person can never make two approvals.
    """
    counted: list[Approver] = []
    problems: list[str] = []
    for approval in signed:
        statement = approval.statement
        if statement.key != key:
            continue  # an approval of another pipeline: not about this one
        who = statement.principal
        if statement.digest != digest:
            problems.append(
                f"{who} approved digest {statement.digest[:12]}, not the current plan {digest[:12]} "
                "(a re-plan voids earlier approvals)"
            )
            continue
        if statement.store != store:
            problems.append(f"{who} approved a write to {statement.store}, not to {store}")
            continue
        try:
            fingerprint = verify(approval, policy.text, policy.file)
        except SigningError as exc:
            problems.append(str(exc).rstrip("."))
            continue
        if statement.expires <= now:
            problems.append(f"the approval of {who} expired at {statement.expires:%Y-%m-%d %H:%M:%S} UTC")
            continue
        if any(a.principal == who or a.fingerprint == fingerprint for a in counted):
            continue
        counted.append(Approver(who, fingerprint, approval))
    counted.sort(key=lambda a: a.principal)  # the record reads the same whoever signed first
    return Judgement(tuple(counted), tuple(problems), policy.approvals)


def refusal_message(judgement: Judgement, key: str, policy: ApproverPolicy) -> str:
    """The one-line reason a write of key waits for more signed approvals."""
    have = judgement.principals
    counted = f"{len(have)} counted ({', '.join(have)})" if have else "none counted"
    reasons = "; ".join(judgement.problems)
    return (
        f"{key}: needs {policy.describe()}; {counted}"
        + (f"; not counted: {reasons}" if reasons else "")
        + ". Nothing was written. Sign with `pipeline-sync approve KEY --digest D --sign KEYFILE` "
        "or `pipeline-sync apply PLAN.json --sign KEYFILE`."
    )
