"""Name rules: catalog names become S3 keys, Spinnaker ids and Dagster partition keys."""

from __future__ import annotations

import re

# \A and \Z, not ^ and $: "$" also matches before a trailing newline, so "dev\n" would pass.
DNS_LABEL = re.compile(r"\A[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
PINNED_ID = re.compile(r"\A[a-z0-9][a-z0-9_-]{0,127}\Z")
VARIABLE_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")
PARTITION_KEY = re.compile(
    r"\A[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z"
)
FORBIDDEN_PIPELINE_NAME_CHARS = frozenset("\\^/?%#")
# A Spinnaker application name (a service file's `application:`). Front50 accepts any non-blank
# name by default (front50-core ApplicationNameValidator has no regex unless configured); Deck's
# per-cloud validators together allow letters, digits, '_', '.' and '-' (AWS, Titus: [a-zA-Z0-9_.];
# Kubernetes, Cloud Foundry: a letter, then [a-zA-Z0-9-]; GCE: letters and digits), at most 250
# characters (AWS). The name is lower-cased into Front50's application key, so it must stay one
# safe path segment: a letter or digit first, and never '/', '..', spaces or control characters.
# ASCII only: Python's and Java's upper() and lower() agree on ASCII, not beyond it.
APPLICATION_NAME = re.compile(r"\A[A-Za-z0-9](?:[A-Za-z0-9_-]|\.(?!\.))*\Z")
MAX_APPLICATION_NAME = 250
APPLICATION_RULE = (
    "letters, digits, '_', '-' and '.', starting with a letter or digit, no '..', "
    f"at most {MAX_APPLICATION_NAME} characters"
)


def dns_label_problem(name: object) -> str | None:
    """Why name is not a lower-case DNS label, or None when it is one."""
    if not isinstance(name, str):
        return f"must be a string, got {type(name).__name__}"
    if len(name) > 63:
        return f"{name!r} is longer than 63 characters"
    if not DNS_LABEL.match(name):
        return (
            f"{name!r} is not a lower-case DNS label "
            "(a-z, 0-9 and '-', starting and ending with a letter or digit)"
        )
    return None


def application_name_problem(name: object) -> str | None:
    """Why name is not an application name Front50 and Deck accept and a key can hold, or None."""
    if not isinstance(name, str):
        return f"must be a string, got {type(name).__name__}"
    if len(name) > MAX_APPLICATION_NAME:
        return (
            f"application name {name[:20] + '...'!r} is {len(name)} characters long; "
            f"Deck accepts at most {MAX_APPLICATION_NAME}"
        )
    if not APPLICATION_NAME.match(name):
        return f"{name!r} is not a Spinnaker application name ({APPLICATION_RULE})"
    return None


def is_partition_key(key: str) -> bool:
    """True when key is service/stack/template with every part a DNS label of at most 63."""
    return bool(PARTITION_KEY.match(key)) and all(len(p) <= 63 for p in key.split("/"))


def partition_key(service: str, stack: str, template: str) -> str:
    return f"{service}/{stack}/{template}"


def split_key(key: str) -> tuple[str, str | None, str | None]:
    """(service, stack, template) of a key; stack and template are None when key has no three parts
    (a marker may name anything)."""
    parts = key.split("/")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    return parts[0], None, None
