"""The top-level members of an object in canonical JSON, each with its own text: what a plan splices."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

# name -> (value, the member's text `"name":value`), in the text's order.
Members = dict[str, tuple[Any, str]]


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON that canonical_json writes")


# json's own (C) scanners: a string's end and value, and any value's. Not in typeshed's stubs.
_SCAN_STRING: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]
_SCAN_VALUE: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder(
    parse_constant=_refuse_constant
).scan_once  # type: ignore[attr-defined]


def json_members(text: str) -> Members | None:
    """The top-level members of text, parsed by json's own scanner (each value exactly as
    json.loads gives it); None unless text is an object written as canonical_json writes one: no
    whitespace outside strings at the top level, keys sorted and unique, no NaN or Infinity.
    Inside a value nothing is checked: a caller that relies on a member's text being canonical
    proves it (provenance.managed_texts: by a digest)."""
    if len(text) < 2 or text[0] != "{" or text[-1] != "}":
        return None
    members: Members = {}
    last = len(text) - 1
    at = 1
    previous: str | None = None
    try:
        while at < last:
            if text[at] != '"':
                return None
            name, colon = _SCAN_STRING(text, at + 1)
            if text[colon] != ":" or (previous is not None and name <= previous):
                return None
            value, end = _SCAN_VALUE(text, colon + 1)
            members[name] = (value, text[at:end])
            previous = name
            if end == last:
                return members
            if text[end] != ",":
                return None
            at = end + 1
    except (StopIteration, ValueError, IndexError, RecursionError):
        return None
    return members if at == 1 else None  # "{}", or a trailing comma
