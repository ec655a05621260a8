"""Semantic diffs of pipelines: keyed views for DeepDiff, YAML and unified text, summaries, signatures.

A live document may nest as deep as Front50 reads (1,000 levels); DeepDiff and YAML recurse a
few frames a level. Diffs show the first SHOWN_DEPTH levels: anything deeper is a placeholder
naming its depth and digest, so a change down there still shows, at the level it is cut.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from deepdiff import DeepDiff
from deepdiff.path import parse_path

from pipeline_sync.block_yaml import NotSimple, block_yaml, float_text
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
# block_yaml writes exactly what libyaml's emitter writes: used only when that is the emitter.
_DIRECT = _Dumper is getattr(yaml, "CSafeDumper", None)


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


# DeepDiff reports a mapping as changed whole (old and new value) when fewer than this share of
# its keys are on both sides; DeepDiff's own default, passed explicitly so pruning agrees with it.
DIFF_DEEPER = 0.33


def semantic_diff(live: Mapping[str, Any] | None, desired: Mapping[str, Any] | None) -> dict[str, Any]:
    """A JSON-able DeepDiff of the keyed views (empty when equal), of the documents as shown.

    Values equal on both sides are pruned first (without_equal_values), so DeepDiff walks only
    what differs: a template change touches a few fields of each pipeline. The report is exactly
    DeepDiff's of the unpruned documents."""
    old = keyed_view(shown(live)) if live is not None else {}
    new = keyed_view(shown(desired)) if desired is not None else {}
    old, new = without_equal_values(old, new)
    changed: dict[str, Any] = {}
    if _scalar_changes(old, new, "root", changed):
        return {"values_changed": changed} if changed else {}
    result = DeepDiff(old, new, verbose_level=2, threshold_to_diff_deeper=DIFF_DEEPER)
    return json.loads(result.to_json()) if result else {}


# Scalars whose change DeepDiff reports as {"new_value": ..., "old_value": ...} and nothing more
# (a float may differ from itself, a string with a line break gets a unified diff too).
_REPORTED_AS_VALUES = frozenset({str, int, bool, type(None)})


def _scalar_changes(old: Any, new: Any, path: str, changed: dict[str, Any]) -> bool:
    """The common case of a template change, without DeepDiff: True when old and new have the same
    shape (the same keys in every mapping, lists of the same lengths) and differ only in values
    of a mapping's keys that are strings without a line break, integers, booleans or None, of the
    same type on both sides. Then changed holds DeepDiff's values_changed report of them, by
    DeepDiff's path, in DeepDiff's order (the new mapping's key order); '__' keys are skipped as
    DeepDiff skips them. False (changed to be thrown away) for anything else: DeepDiff decides."""
    if type(old) is not dict or type(new) is not dict or old.keys() != new.keys():
        return False
    for key, after in new.items():
        if type(key) is not str:
            return False
        if key.startswith("__"):
            continue
        before = old[key]
        kind = type(before)
        if kind is not type(after):
            return False
        if kind is dict:
            if not _scalar_changes(before, after, path + _key_path(key), changed):
                return False
        elif kind is list:
            if not _same_shape_list(before, after, path + _key_path(key), changed):
                return False
        elif before != after:
            if kind not in _REPORTED_AS_VALUES or (kind is str and ("\n" in before or "\n" in after)):
                return False
            changed[path + _key_path(key)] = {"new_value": after, "old_value": before}
    return True


def _same_shape_list(old: list[Any], new: list[Any], path: str, changed: dict[str, Any]) -> bool:
    """_scalar_changes for a list: items compared by position, where only mappings may differ
    (DeepDiff matches lists of scalars by sequence, which this leaves to it)."""
    if len(old) != len(new):
        return False
    for index, (before, after) in enumerate(zip(old, new, strict=True)):
        kind = type(before)
        if kind is not type(after):
            return False
        if kind is dict:
            if not _scalar_changes(before, after, f"{path}[{index}]", changed):
                return False
        elif kind is list or kind not in _REPORTED_AS_VALUES or before != after:
            return False
    return True


def _key_path(key: str) -> str:
    """DeepDiff's path step for a string key (path.stringify_element with its quote_str)."""
    return f'["{key}"]' if "'" in key else f"['{key}']"


def without_equal_values(old: Any, new: Any) -> tuple[Any, Any]:
    """old and new without what DeepDiff would report nothing about: of mappings DeepDiff compares
    key by key, every key both hold an equal value at is left out of both, as long as fewer shared
    keys still leave DeepDiff comparing key by key (DIFF_DEEPER); the equal values of the keys kept
    for that are replaced by None on both sides. DeepDiff walks only what differs.

    Mappings DeepDiff reports changed whole (DIFF_DEEPER) and lists (compared by position or by
    sequence matching) are left as they are: their reports show their values."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return old, new
    # What DeepDiff counts (ignore_private_variables): '__' keys it neither compares nor counts.
    old_keys = [k for k in old if not _private(k)]
    new_keys = [k for k in new if not _private(k)]
    shared_keys = set(old_keys) & set(new_keys)
    shared, union = len(shared_keys), len(set(old_keys) | set(new_keys))
    if _whole(shared, union):
        return old, new
    pruned_old, pruned_new = dict(old), dict(new)
    equal = []
    for key in old_keys:
        if key not in shared_keys:
            continue
        a, b = old[key], new[key]
        if strictly_equal(a, b):
            equal.append(key)
        elif isinstance(a, dict) and isinstance(b, dict):
            pruned_old[key], pruned_new[key] = without_equal_values(a, b)
    dropped = len(equal)
    while dropped and _whole(shared - dropped, union - dropped):
        dropped -= 1
    for key in equal[:dropped]:
        del pruned_old[key], pruned_new[key]
    for key in equal[dropped:]:
        pruned_old[key] = pruned_new[key] = None
    return pruned_old, pruned_new


def _private(key: object) -> bool:
    return isinstance(key, str) and key.startswith("__")


def _whole(shared: int, union: int) -> bool:
    """DeepDiff's test (threshold_to_diff_deeper) for reporting a mapping as changed whole."""
    return union > 1 and shared / union < DIFF_DEEPER


def strictly_equal(a: Any, b: Any) -> bool:
    """a == b with the types DeepDiff tells apart kept apart (1, 1.0 and True are three values)."""
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is str:
        return bool(a == b)
    if isinstance(a, dict):
        if a.keys() != b.keys():
            return False
        for key, value in a.items():  # noqa: SIM110 - a loop, not all() over a generator: faster
            if not strictly_equal(value, b[key]):
                return False
        return True
    if isinstance(a, list | tuple):
        if len(a) != len(b):
            return False
        for x, y in zip(a, b, strict=True):  # noqa: SIM110 - as above
            if not strictly_equal(x, y):
                return False
        return True
    return bool(a == b)


# Up to this depth to_yaml writes plain JSON data itself (block_yaml, else yaml_events); deeper, PyYAML does.
FAST_YAML_DEPTH = 40


def to_yaml(data: Any) -> str:
    """Block YAML, 100 columns wide; past 40 levels wider, so indentation doesn't split text word by word.

    The text is exactly `yaml.dump(data, Dumper=CSafeDumper, sort_keys=True, ...)`: plain JSON
    data up to 40 levels deep is written directly (block_yaml) or, when that declines, by the
    same (C) emitter from the events yaml_events makes, a few times faster than PyYAML's (Python)
    representer and serializer; anything else is dumped by PyYAML itself."""
    direct = _written_directly(data)
    if direct is not None:
        return direct
    depth = nesting_depth(data, SHOWN_DEPTH)
    return _yaml_text(data, depth)


def _written_directly(data: Any) -> str | None:
    """block_yaml's text of data when data nests at most FAST_YAML_DEPTH levels (so its width is
    100) and is data block_yaml writes; None otherwise. No depth is measured first: block_yaml
    declines deeper data itself."""
    if not _DIRECT or _Dumper.yaml_path_resolvers:
        return None
    try:
        return block_yaml(data, 100, _plain_tag, _emitted, max_depth=FAST_YAML_DEPTH)
    except NotSimple:
        return None


def _yaml_text(data: Any, depth: int) -> str:
    """to_yaml of data nesting depth levels deep."""
    width = 100 if depth <= 40 else 100 + 2 * depth
    if depth <= FAST_YAML_DEPTH and not _Dumper.yaml_path_resolvers:
        try:
            return _emitted(data, width)
        except Exception:  # not plain JSON data, or not dumpable: PyYAML's own dump decides
            pass
    return yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=True,
        default_flow_style=False,
        allow_unicode=True,
        width=width,
    )


class NotPlainData(ValueError):
    """Data yaml_events leaves to PyYAML's representer: another type, or a value held twice (an alias)."""


_STR_TAG = "tag:yaml.org,2002:str"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_NULL_TAG = "tag:yaml.org,2002:null"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
# The resolver the dumper consults (its class's implicit resolvers), asked once per scalar text.
_RESOLVER = _Dumper(io.StringIO())
_RESOLVED: dict[str, str] = {}
RESOLVED_MAX = 200_000


def _plain_tag(value: str) -> str:
    """Resolver.resolve(ScalarNode, value, (True, False)): the tag value read as a plain scalar
    would get (a function of the text alone while no path resolvers are registered)."""
    tag = _RESOLVED.get(value)
    if tag is None:
        tag = str(_RESOLVER.resolve(yaml.ScalarNode, value, (True, False)))  # type: ignore[no-untyped-call]
        if len(_RESOLVED) >= RESOLVED_MAX:
            _RESOLVED.clear()
        _RESOLVED[value] = tag
    return tag


def yaml_events(data: Any, emit: Callable[[yaml.Event], Any]) -> None:
    """emit each event of data's node, exactly as PyYAML's serializer would for the node tree
    SafeRepresenter(sort_keys=True, default_flow_style=False) makes of data (no path resolvers):
    data of exact types dict, list, str, int, float, bool and None, no container held twice.

    Raises NotPlainData for anything else (a tuple, a subclass, a shared list: PyYAML would
    write an anchor); what was emitted before then is to be thrown away."""
    _emit(data, emit, set())


# The events _emit makes, and a string's two possible `implicit` pairs (plain, quoted), made once.
_Scalar, _SeqStart, _SeqEnd = yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.SequenceEndEvent
_MapStart, _MapEnd = yaml.MappingStartEvent, yaml.MappingEndEvent
_READ_AS_STRING, _READ_AS_OTHER = (True, True), (False, True)


def _emit(data: Any, emit: Callable[[yaml.Event], Any], seen: set[int]) -> None:
    kind = type(data)
    if kind is str:
        tag = _RESOLVED.get(data) or _plain_tag(data)
        emit(_Scalar(None, _STR_TAG, _READ_AS_STRING if tag == _STR_TAG else _READ_AS_OTHER, data))
        return
    if kind is dict or kind is list:
        if id(data) in seen:
            raise NotPlainData("a container held twice: PyYAML writes an alias")
        seen.add(id(data))
        if kind is list:
            emit(_SeqStart(None, _SEQ_TAG, True, flow_style=False))
            for item in data:
                _emit(item, emit, seen)
            emit(_SeqEnd())
            return
        items = list(data.items())
        try:  # noqa: SIM105 - exactly represent_mapping's sort, or its order when it can't (no context manager per mapping)
            items = sorted(items)
        except TypeError:
            pass
        emit(_MapStart(None, _MAP_TAG, True, flow_style=False))
        for key, value in items:
            _emit(key, emit, seen)
            _emit(value, emit, seen)
        emit(_MapEnd())
        return
    if kind is bool:
        tag, text = _BOOL_TAG, "true" if data else "false"
    elif kind is int:
        tag, text = _INT_TAG, str(data)
    elif data is None:
        tag, text = _NULL_TAG, "null"
    elif kind is float:
        tag, text = _FLOAT_TAG, float_text(data)
    else:
        raise NotPlainData(f"{kind.__name__} is not plain JSON data")
    emit(yaml.ScalarEvent(None, tag, (_plain_tag(text) == tag, False), text))


def _emitted(data: Any, width: int) -> str:
    """yaml.dump_all's steps, with the document's events given instead of represented and serialized."""
    stream = io.StringIO()
    dumper = _Dumper(stream, default_flow_style=False, allow_unicode=True, width=width, sort_keys=True)
    try:
        dumper.open()
        dumper.emit(yaml.DocumentStartEvent(explicit=False))
        yaml_events(data, dumper.emit)
        dumper.emit(yaml.DocumentEndEvent(explicit=False))
        dumper.close()
    finally:
        dumper.dispose()
    return stream.getvalue()


def _shown_yaml(document: Mapping[str, Any]) -> str:
    """to_yaml(shown(document)): written directly when it can be (then it nests at most 40 levels,
    and shown(document) is document), else measuring the depth once where nothing is cut."""
    direct = _written_directly(document)
    if direct is not None:
        return direct
    depth = nesting_depth(document, SHOWN_DEPTH)
    return _yaml_text(document, depth) if depth <= SHOWN_DEPTH else to_yaml(shown(document))


def unified_diff(live: Mapping[str, Any] | None, desired: Mapping[str, Any] | None, label: str) -> str:
    """A unified diff of the two documents (as shown) in YAML, for logs and Markdown."""
    old = _shown_yaml(live).splitlines(keepends=True) if live is not None else []
    new = _shown_yaml(desired).splitlines(keepends=True) if desired is not None else []
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
    """A hash of the diff with the pipeline's own names blanked: equal for 'the same change'.

    A name is blanked where it stands alone ('k8s-dev', 'deploy-stage'), never inside a longer
    word: a stack named 'stage' must not turn the diff's 'stages' into '<name>s'. (A name that is
    a whole field name, a stack called 'stages', still blanks that field: its changes then
    cluster apart from other stacks' in the report, and nothing else depends on it.)"""
    text = json.dumps(diff, sort_keys=True)
    for name in sorted({n for n in names if n}, key=len, reverse=True):
        text = blank_name(text, name)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


_WORD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


def blank_name(text: str, name: str) -> str:
    """text with name replaced by '<name>' where it stands alone: exactly
    re.sub(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", "<name>", text) for a name that is
    not empty, without compiling a pattern per name (the names of each pipeline differ)."""
    found = text.find(name)
    if found < 0:
        return text
    size, parts, start = len(name), [], 0
    while found >= 0:
        end = found + size
        alone = (found == 0 or text[found - 1] not in _WORD) and (end == len(text) or text[end] not in _WORD)
        if alone:
            parts.append(text[start:found])
            parts.append("<name>")
            start = end
        found = text.find(name, end if alone else found + 1)
    parts.append(text[start:])
    return "".join(parts)


@dataclass(frozen=True)
class ChangeSummary:
    """What a diff changes, as a reviewer reads it: fields by path, stages by refId."""

    fields: tuple[str, ...] = ()
    stages_added: tuple[str, ...] = ()
    stages_removed: tuple[str, ...] = ()
    # refId -> the fields of that stage that change ("" for the stage as a whole).
    stages_changed: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


_ADDED = ("dictionary_item_added", "iterable_item_added", "attribute_added")
_REMOVED = ("dictionary_item_removed", "iterable_item_removed", "attribute_removed")


def change_summary(diff: Mapping[str, Any]) -> ChangeSummary:
    """Summarise a semantic_diff: which top-level fields change (as paths), which stages are added,
    removed or changed (by refId, as keyed_view keys them; by position where they have none)."""
    changes: dict[tuple[str | int, ...], str] = {}
    for section, found in diff.items():
        kind = "added" if section in _ADDED else "removed" if section in _REMOVED else "changed"
        for text, value in _paths_of(found):
            for path, what in _expanded(_elements(text), kind, value):
                changes[path] = what
    fields: list[str] = []
    added: list[str] = []
    removed: list[str] = []
    changed: dict[str, list[str]] = {}
    for path, kind in sorted(changes.items(), key=lambda item: [str(p) for p in item[0]]):
        if path[:1] != ("stages",) or len(path) < 2:
            fields.append(format_path(path))
        elif len(path) == 2 and kind == "added":
            added.append(_stage_name(path[1]))
        elif len(path) == 2 and kind == "removed":
            removed.append(_stage_name(path[1]))
        else:
            changed.setdefault(_stage_name(path[1]), []).append(format_path(path[2:]))
    return ChangeSummary(
        tuple(fields),
        tuple(added),
        tuple(removed),
        {stage: tuple(p for p in paths if p) for stage, paths in changed.items()},
    )


def format_path(path: Sequence[str | int]) -> str:
    """('stages', 'deploy', 'overrides', 0) as stages.deploy.overrides[0]; odd keys quoted."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


_PLAIN = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")


def _stage_name(ident: str | int) -> str:
    return f"#{ident}" if isinstance(ident, int) else format_path((ident,))


def _paths_of(found: Any) -> list[tuple[str, Any]]:
    if isinstance(found, Mapping):
        return [(str(path), value) for path, value in found.items()]
    if isinstance(found, Iterable) and not isinstance(found, str | bytes):
        return [(str(path), None) for path in found]
    return []


def _elements(path: str) -> tuple[str | int, ...]:
    try:
        parts = parse_path(path)  # type: ignore[no-untyped-call]  # deepdiff ships no types
    except Exception:  # a path DeepDiff itself did not write (a hand-edited plan file): show it whole
        return (path,)
    return tuple(p if isinstance(p, int) else str(p) for p in parts)


def _expanded(
    path: tuple[str | int, ...], kind: str, value: Any
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """DeepDiff reports a mapping it finds mostly replaced as one change of the whole (the root,
    all of `stages`, one stage): down to a stage's own fields, split it into its keys."""
    if kind == "changed" and len(path) < 3 and isinstance(value, Mapping):
        old, new = value.get("old_value"), value.get("new_value")
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            for key in sorted({*old, *new}, key=str):
                if key not in old:
                    yield (*path, str(key)), "added"
                elif key not in new:
                    yield (*path, str(key)), "removed"
                elif old[key] != new[key]:
                    yield from _expanded(
                        (*path, str(key)), "changed", {"old_value": old[key], "new_value": new[key]}
                    )
            return
    yield path, kind
