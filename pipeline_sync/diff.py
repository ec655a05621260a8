"""Semantic diffs of pipelines: keyed views for DeepDiff, YAML and unified text, fleet signatures.

A live document may nest as deep as Front50 reads (1,000 levels); DeepDiff and YAML recurse a
few frames a level. Diffs show the first SHOWN_DEPTH levels: anything deeper is a placeholder
naming its depth and digest, so a change down there still shows, at the level it is cut.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml
from deepdiff import DeepDiff

from pipeline_sync.canonical import canonical_json, sha256_hex
from pipeline_sync.nesting import nesting_depth

# Lists whose items have an identity: diff them by it, not by position.
KEYED_LISTS = {
    "stages": "refId",
    "triggers": "id",
    "expectedArtifacts": "id",
    "parameterConfig": "name",
    "notifications": "name",
}

# How many levels of a document a diff shows: real pipelines nest 10 to 30.
SHOWN_DEPTH = 100

try:
    _Dumper: type[yaml.SafeDumper] = yaml.CSafeDumper  # type: ignore[assignment]
except AttributeError:  # pragma: no cover
    _Dumper = yaml.SafeDumper


def keyed_view(document: Mapping[str, Any]) -> dict[str, Any]:
    """Turn identity-bearing lists into maps keyed by that identity (stages by refId, ...)."""
    view: dict[str, Any] = {}
    for key, value in document.items():
        ident = KEYED_LISTS.get(key)
        if ident and isinstance(value, list) and _all_identified(value, ident):
            view[key] = {str(item[ident]): item for item in value}
        else:
            view[key] = value
    return view


def _all_identified(items: list[Any], ident: str) -> bool:
    seen = set()
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get(ident), str | int):
            return False
        seen.add(str(item[ident]))
    return len(seen) == len(items)


def shown(document: Mapping[str, Any]) -> Mapping[str, Any]:
    """document as diffs show it: itself, or cut SHOWN_DEPTH levels down when it nests deeper."""
    if nesting_depth(document, SHOWN_DEPTH) <= SHOWN_DEPTH:
        return document
    return {key: _cut(value, SHOWN_DEPTH - 1) for key, value in document.items()}


def _cut(value: Any, levels: int) -> Any:
    if not isinstance(value, dict | list | tuple):
        return value
    if levels == 0:
        return _placeholder(value)
    if isinstance(value, dict):
        return {k: _cut(v, levels - 1) for k, v in value.items()}
    return [_cut(v, levels - 1) for v in value]


def _placeholder(value: Any) -> str:
    depth = nesting_depth(value)
    try:
        digest = f"sha256 {sha256_hex(canonical_json(value))[:16]}"
    except (ValueError, TypeError):
        digest = "no digest: not plain JSON"
    return f"<{depth:,} more levels, too deep to show; {digest}>"


def semantic_diff(live: Mapping[str, Any] | None, desired: Mapping[str, Any] | None) -> dict[str, Any]:
    """A JSON-able DeepDiff of the keyed views (empty when equal), of the documents as shown."""
    old = keyed_view(shown(live)) if live is not None else {}
    new = keyed_view(shown(desired)) if desired is not None else {}
    result = DeepDiff(old, new, verbose_level=2)
    return json.loads(result.to_json()) if result else {}


def to_yaml(data: Any) -> str:
    """Block YAML, 100 columns wide; past 40 levels wider, so indentation doesn't split text word by word."""
    depth = nesting_depth(data, SHOWN_DEPTH)
    return yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=True,
        default_flow_style=False,
        allow_unicode=True,
        width=100 if depth <= 40 else 100 + 2 * depth,
    )


def unified_diff(live: Mapping[str, Any] | None, desired: Mapping[str, Any] | None, label: str) -> str:
    """A unified diff of the two documents (as shown) in YAML, for logs and Markdown."""
    old = to_yaml(shown(live)).splitlines(keepends=True) if live is not None else []
    new = to_yaml(shown(desired)).splitlines(keepends=True) if desired is not None else []
    return "".join(difflib.unified_diff(old, new, f"live/{label}", f"rendered/{label}"))


def changed_paths(diff: Mapping[str, Any]) -> list[str]:
    """The DeepDiff paths a diff touches, sorted, for showing which fields changed."""
    paths: set[str] = set()
    for section in diff.values():
        if isinstance(section, Mapping) or (
            isinstance(section, Iterable) and not isinstance(section, str | bytes)
        ):
            paths.update(str(p) for p in section)
    return sorted(paths)


def fleet_signature(diff: Mapping[str, Any], names: Iterable[str]) -> str:
    """A hash of the diff with the pipeline's own names blanked: equal for 'the same change'."""
    text = json.dumps(diff, sort_keys=True)
    for name in sorted({n for n in names if n}, key=len, reverse=True):
        text = re.sub(re.escape(name), "<name>", text)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
