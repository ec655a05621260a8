"""Signed approvals: the canonical approval statement, signed and verified with `ssh-keygen -Y`.

A statement binds one person (principal) to one plan of one pipeline in one store, until it
expires. It is signed as an SSH signature in the namespace `pipeline-sync-approval`, so a
signature made for git commits, or anything else, can never count as an approval.

A signed approval is the statement text followed by ssh-keygen's armored signature: one
text block that can be saved to a file, pasted into the Dagster launchpad, or stored with
an approval event, and checked again by anyone with the allowed_signers file.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline_sync.errors import PipelineSyncError
from pipeline_sync.names import is_partition_key
from pipeline_sync.store import Store

NAMESPACE = "pipeline-sync-approval"
HEADER = "pipeline-sync approval v1"
FIELDS = ("key", "digest", "store", "principal", "expires")
ARMOR_BEGIN = "-----BEGIN SSH SIGNATURE-----"
ARMOR_END = "-----END SSH SIGNATURE-----"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
DEFAULT_VALIDITY = timedelta(hours=24)
_DIGEST = re.compile(r"[0-9a-f]{64}")
# What a principal may be in an allowed_signers file, and nothing that could break a statement line.
_PRINCIPAL = re.compile(r"[^\s,\"*?!]{1,256}")
_PUBLIC_KEY_TYPES = ("ssh-", "ecdsa-", "sk-")
_TIMEOUT = 60


class SigningError(PipelineSyncError):
    """A statement could not be signed, parsed or verified; the message says why."""


@dataclass(frozen=True)
class Statement:
    """What one person approves: one plan digest of one partition key in one store, until expires."""

    key: str
    digest: str
    store: str
    principal: str
    expires: datetime

    def text(self) -> str:
        """The canonical bytes that are signed: fixed lines, fixed order, UTC to the second."""
        values = {
            "key": self.key,
            "digest": self.digest,
            "store": self.store,
            "principal": self.principal,
            "expires": self.expires.astimezone(UTC).strftime(TIME_FORMAT),
        }
        return "\n".join([HEADER, *(f"{name}: {values[name]}" for name in FIELDS)]) + "\n"


@dataclass(frozen=True)
class SignedApproval:
    """A statement and its armored SSH signature, as signed (statement_text is the signed bytes)."""

    statement: Statement
    statement_text: str
    signature: str

    def text(self) -> str:
        return self.statement_text + self.signature

    @property
    def fingerprint(self) -> str:
        """The SHA256 fingerprint of the key the signature says made it (verify proves it did)."""
        return signature_facts(self.signature).fingerprint


@dataclass(frozen=True)
class SignatureFacts:
    """What an SSH signature blob declares: its namespace and the signer's key fingerprint."""

    namespace: str
    fingerprint: str


def statement_for(
    key: str, digest: str, store: str, principal: str, *, now: datetime, valid_for: timedelta
) -> Statement:
    """A statement checked as parse_statement checks one, expiring valid_for after now."""
    statement = Statement(key, digest, store, principal, (now + valid_for).replace(microsecond=0))
    return parse_statement(statement.text())


def parse_statement(text: str) -> Statement:
    """The statement text, exactly canonical: any other spelling of it is refused, so the bytes a
    person signed are the only ones that mean this approval."""
    lines = text.split("\n")
    if lines[-1] != "" or len(lines) != len(FIELDS) + 2 or lines[0] != HEADER:
        raise SigningError(
            f"not a pipeline-sync approval statement: it must start with {HEADER!r} and have exactly "
            f"the lines {', '.join(FIELDS)}, each 'name: value', ending with a newline."
        )
    values: dict[str, str] = {}
    for name, line in zip(FIELDS, lines[1:-1], strict=True):
        prefix = f"{name}: "
        if not line.startswith(prefix):
            raise SigningError(
                f"approval statement line {line!r} should be {prefix!r} followed by the {name}."
            )
        values[name] = line[len(prefix) :]
    try:
        expires = datetime.strptime(values["expires"], TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise SigningError(
            f"approval statement expiry {values['expires']!r} is not YYYY-MM-DDTHH:MM:SSZ."
        ) from None
    statement = Statement(values["key"], values["digest"], values["store"], values["principal"], expires)
    _check_values(statement)
    if statement.text() != text:
        raise SigningError("approval statement is not in canonical form; sign it again with pipeline-sync.")
    return statement


def _check_values(statement: Statement) -> None:
    if not is_partition_key(statement.key):
        raise SigningError(f"approval statement key {statement.key!r} is not a service/stack/template key.")
    if not _DIGEST.fullmatch(statement.digest):
        raise SigningError(f"approval statement digest {statement.digest!r} is not a 64-digit plan digest.")
    if not statement.store or not statement.store.isprintable():
        raise SigningError("approval statement names no store.")
    if not _PRINCIPAL.fullmatch(statement.principal):
        raise SigningError(
            f"approval statement principal {statement.principal!r} must be one allowed_signers principal "
            "(no spaces, commas, quotes or wildcards)."
        )


def parse_signed(text: str, *, source: str = "the signed approval") -> SignedApproval:
    """A signed approval: statement text, then one armored SSH signature, nothing else."""
    normalised = text.replace("\r\n", "\n").strip("\n") + "\n"
    head, begin, rest = normalised.partition(ARMOR_BEGIN)
    if not begin or not rest.rstrip().endswith(ARMOR_END) or rest.count(ARMOR_END) != 1:
        raise SigningError(
            f"{source} is not a signed approval: expected the statement followed by one "
            f"{ARMOR_BEGIN} ... {ARMOR_END} block (pipeline-sync approve KEY --digest D --sign KEY --print)."
        )
    try:
        statement = parse_statement(head)
    except SigningError as exc:
        raise SigningError(f"{source}: {exc}") from None
    signature = begin + rest.rstrip() + "\n"
    signature_facts(signature, source=source)
    return SignedApproval(statement, head, signature)


def split_signed(text: str, *, source: str) -> list[SignedApproval]:
    """Every signed approval in text (a file may hold several, one after another)."""
    blocks: list[SignedApproval] = []
    rest = text.replace("\r\n", "\n")
    while rest.strip():
        head, end, rest = rest.partition(ARMOR_END)
        if not end:
            raise SigningError(f"{source}: text after the last signature is not a signed approval.")
        blocks.append(parse_signed(head + end, source=f"{source} (approval {len(blocks) + 1})"))
    if not blocks:
        raise SigningError(f"{source} holds no signed approval.")
    return blocks


def signature_facts(signature: str, *, source: str = "the signature") -> SignatureFacts:
    """The namespace and key fingerprint an armored SSHSIG blob declares (PROTOCOL.sshsig)."""
    body = "".join(line for line in signature.strip().splitlines()[1:-1])
    try:
        blob = base64.b64decode(body, validate=True)
        if blob[:6] != b"SSHSIG":
            raise ValueError("no SSHSIG magic")
        offset = 10  # magic, then the uint32 version
        public_key, offset = _ssh_string(blob, offset)
        namespace, offset = _ssh_string(blob, offset)
    except (ValueError, struct.error) as exc:
        raise SigningError(f"{source}: the SSH signature is unreadable ({exc}).") from None
    digest = base64.b64encode(hashlib.sha256(public_key).digest()).decode().rstrip("=")
    return SignatureFacts(namespace.decode("utf-8", "replace"), f"SHA256:{digest}")


def _ssh_string(blob: bytes, offset: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from(">I", blob, offset)
    end = offset + 4 + length
    if end > len(blob):
        raise ValueError("truncated")
    return blob[offset + 4 : end], end


# -- ssh-keygen ------------------------------------------------------------------------------


def ssh_keygen() -> str:
    found = shutil.which("ssh-keygen")
    if found is None:
        raise SigningError("ssh-keygen is not installed (OpenSSH 8.2 or later signs and verifies approvals).")
    return found


def _run(args: Sequence[str], data: str = "") -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [ssh_keygen(), *args], input=data, capture_output=True, text=True, timeout=_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SigningError(f"ssh-keygen could not run: {exc}") from None


def public_key_of(key_file: Path) -> tuple[str, str]:
    """(key type, base64 key) of key_file: a public key file (whose private half is in ssh-agent,
    as ssh-keygen -Y sign accepts), else a private key with KEY.pub beside it, else ssh-keygen -y."""
    for candidate in (key_file, key_file.with_name(key_file.name + ".pub")):
        try:
            fields = candidate.read_text(encoding="utf-8").split()
        except (OSError, UnicodeDecodeError):
            continue
        if len(fields) >= 2 and fields[0].startswith(_PUBLIC_KEY_TYPES):
            return fields[0], fields[1]
    done = _run(["-y", "-f", str(key_file)])
    fields = done.stdout.split()
    if done.returncode != 0 or len(fields) < 2:
        raise SigningError(
            f"cannot read the public key of {key_file}: {done.stderr.strip() or 'not an SSH key'}."
        )
    return fields[0], fields[1]


def sign(statement: Statement, key_file: Path) -> SignedApproval:
    """Sign statement with key_file (a private key, or a public key whose private half is in
    ssh-agent) in the approval namespace."""
    text = statement.text()
    done = _run(["-Y", "sign", "-q", "-f", str(key_file), "-n", NAMESPACE], text)
    if done.returncode != 0 or ARMOR_BEGIN not in done.stdout:
        reason = done.stderr.strip() or f"ssh-keygen exited {done.returncode}"
        raise SigningError(f"could not sign the approval of {statement.key} with {key_file}: {reason}")
    return parse_signed(text + done.stdout, source=f"the approval signed with {key_file}")


def verify(signed: SignedApproval, signers: str, signers_file: str) -> str:
    """The fingerprint of the key that signed, once the signature is proven: made in the approval
    namespace, by a key signers (allowed_signers text, named signers_file) lists for the
    statement's principal, over exactly these statement bytes. Else SigningError saying which."""
    principal = signed.statement.principal
    facts = signature_facts(signed.signature)
    if facts.namespace != NAMESPACE:
        raise SigningError(
            f"the signature of {principal} was made for namespace {facts.namespace!r}, not {NAMESPACE!r}: "
            "it signs something else, not an approval."
        )
    with tempfile.TemporaryDirectory(prefix="pipeline-sync-verify-") as tmp:
        allowed, sig = Path(tmp, "allowed_signers"), Path(tmp, "statement.sig")
        allowed.write_text(signers, encoding="utf-8")
        sig.write_text(signed.signature, encoding="utf-8")
        args = ["-f", str(allowed), "-n", NAMESPACE, "-s", str(sig)]
        done = _run(["-Y", "verify", "-I", principal, *args], signed.statement_text)
        if done.returncode == 0:
            return facts.fingerprint
        owners = _run(["-Y", "find-principals", "-f", str(allowed), "-s", str(sig)])
    found = sorted(set(owners.stdout.split())) if owners.returncode == 0 else []
    if not found:
        raise SigningError(
            f"the approval claiming {principal} was signed by key {facts.fingerprint}, which {signers_file} "
            "does not list (or lists as not valid now)."
        )
    if principal not in found:
        raise SigningError(
            f"the approval claiming {principal} was signed by key {facts.fingerprint}, which {signers_file} "
            f"lists for {', '.join(found)}, not {principal}."
        )
    raise SigningError(
        f"the signature of {principal} ({facts.fingerprint}) does not match the statement: it was changed "
        "after it was signed."
    )


def store_identity(store: Store) -> str:
    """Which store an approval is for: s3://bucket/root for S3 (two roots in one bucket are two
    Front50s), else the store's own description (a database URL without credentials)."""
    from pipeline_sync.store.s3 import S3Store

    if isinstance(store, S3Store):
        return f"s3://{store.settings.bucket}/{store.root}"
    return store.describe()


def now_utc() -> datetime:
    return datetime.now(UTC)


def parse_duration(text: str) -> timedelta:
    """'90m', '8h', '2d' -> a timedelta (an approval's validity)."""
    match = re.fullmatch(r"(\d{1,4})([mhd])", text.strip())
    if not match or int(match.group(1)) == 0:
        raise SigningError(f"validity {text!r} is not a positive duration such as 30m, 8h or 2d.")
    unit = {"m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
    return timedelta(**{unit: int(match.group(1))})
