"""Safe YAML loading: C loader when present, duplicate keys rejected, alias expansion bounded, lines kept."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from pipeline_sync.errors import SourceLocation, YamlDocumentError
from pipeline_sync.terminal import clipped

try:
    _Base: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Base = yaml.SafeLoader

_STR_TAG = "tag:yaml.org,2002:str"
_INT_TAG = "tag:yaml.org,2002:int"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MAP_TAG = "tag:yaml.org,2002:map"

# Plain scalars this short have their resolved tag remembered (most repeat: keys, stack and
# template names, numbers, booleans); at most this many are kept.
_MEMO_VALUE_CHARS = 64
_MEMO_ENTRIES = 8192
_implicit_tags: dict[str, str] = {}


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """The safe loader, resolving tags as it does, with less work per node: neither it nor
    PyYAML's safe loader has path resolvers, so descending and ascending track nothing, and a
    plain scalar's implicit tag depends on its text alone."""

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        if self.yaml_path_resolvers:  # pragma: no cover - none are ever added
            super().descend_resolver(current_node, current_index)

    def ascend_resolver(self) -> None:
        if self.yaml_path_resolvers:  # pragma: no cover - none are ever added
            super().ascend_resolver()

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: tuple[bool, bool]) -> str:
        if self.yaml_path_resolvers:  # pragma: no cover - none are ever added
            return str(super().resolve(kind, value, implicit))
        if kind is not yaml.ScalarNode:  # what BaseResolver.resolve returns for them, directly
            return _SEQ_TAG if kind is yaml.SequenceNode else _MAP_TAG
        if not implicit[0]:  # quoted: no implicit resolver applies
            return _STR_TAG
        tag = _implicit_tags.get(value)
        if tag is None:
            tag = str(super().resolve(kind, value, implicit))
            if len(value) <= _MEMO_VALUE_CHARS and len(_implicit_tags) < _MEMO_ENTRIES:
                _implicit_tags[value] = tag
        return tag


MAX_DOCUMENT_BYTES = 1_048_576
MAX_EXPANDED_NODES = 200_000
# A pipeline nests a dozen levels, an inline Kubernetes manifest a few more; the bound keeps
# every recursive walk (ours, PyYAML's constructor, render's fill) far from Python's stack limit.
MAX_NESTING_DEPTH = 100

KeyPath = tuple[str | int, ...]
_PLAIN_KEY = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_-]*\Z")  # \Z: "$" would accept "dev\n"


def format_key_path(path: KeyPath) -> str:
    """Render ('stacks', 'prod', 'pipelines', 1) as stacks.prod.pipelines[1]."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _PLAIN_KEY.match(part):
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
        else:
            out += f".{part}" if out else part
    return out


class LineMap:
    """Maps key paths of a loaded document to 1-based line numbers."""

    def __init__(self, lines: dict[KeyPath, int]) -> None:
        self._lines = lines

    def line_of(self, path: KeyPath) -> int | None:
        """The line of the deepest known prefix of path."""
        for end in range(len(path), -1, -1):
            line = self._lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None


class QuotedText(str):
    """A string that was a quoted or block scalar in the YAML text (load_yaml(keep_quoting=True))."""


class _QuotingLoader(_Loader):  # type: ignore[misc, valid-type]
    """The safe loader, but quoted and block scalars come back as QuotedText."""


def _construct_str(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str:
    value = loader.construct_scalar(node)
    return QuotedText(value) if node.style else value


_QuotingLoader.add_constructor("tag:yaml.org,2002:str", _construct_str)


def load_yaml(text: str, file: str, *, keep_quoting: bool = False) -> tuple[Any, LineMap]:
    """Parse one YAML document safely, returning the data and a line map.

    keep_quoting returns quoted and block scalars as QuotedText, so a caller can tell
    `x: "3"` (a string, whatever it holds) from `x: 3`.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_DOCUMENT_BYTES:
        raise YamlDocumentError(SourceLocation(file), f"document is larger than {MAX_DOCUMENT_BYTES} bytes")
    loader = (_QuotingLoader if keep_quoting else _Loader)(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, LineMap({})
        found = _plain_document(loader, node, keep_quoting)
        if found is None:  # anything unusual: every check and PyYAML's constructor, in their order
            _check_graph(node, file)
            lines: dict[KeyPath, int] = {}
            _check_nodes(node, (), file, lines)
            try:
                data = loader.construct_document(node)
            except _CONSTRUCTION_ERRORS:  # `!!int 08`: PyYAML's constructor raises, not a YAMLError
                raise _unconstructible(loader, node, file) from None
        else:
            data, lines = found
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        # PyYAML splits a sentence in two ("expected a single document in the stream",
        # "but found another document"): keep both halves.
        problem = ", ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
        raise YamlDocumentError(SourceLocation(file, line=line), f"YAML error: {problem}") from None
    except yaml.YAMLError as exc:
        raise YamlDocumentError(SourceLocation(file), f"YAML error: {exc}") from None
    except RecursionError:  # pragma: no cover - _check_graph bounds the depth first
        raise YamlDocumentError(SourceLocation(file), "document is nested too deeply") from None
    finally:
        loader.dispose()
    return data, LineMap(lines)


# Keys the safe constructor treats specially (flatten_mapping): `<<` merges, `=` is a value key.
_SPECIAL_KEY_TAGS = frozenset({"tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"})


class _Unusual(Exception):
    """A document _plain_document leaves to the full checks and PyYAML's constructor."""


def _plain_document(
    loader: yaml.SafeLoader, root: yaml.Node, keep_quoting: bool
) -> tuple[Any, dict[KeyPath, int]] | None:
    """The data and line map of an ordinary document, in one pass over its nodes; None for any
    other, which load_yaml then takes through _check_graph, _check_nodes and construct_document.

    Ordinary: a tree (no node reached twice, so no alias) of at most MAX_EXPANDED_NODES nodes
    nesting at most MAX_NESTING_DEPTH levels (so _check_graph refuses nothing), without a
    duplicate key (so _check_nodes refuses nothing, and its line map is the one built here, in
    its order), without the keys PyYAML's constructor treats specially (`<<`, `=`) or keys that
    are not scalars, and that PyYAML's constructors build without an error: plain strings, lists
    and maps directly, every other scalar by the loader's own constructor. What is refused, and
    the message and line of each refusal, therefore stay exactly those of the full path."""
    builder = _PlainBuilder(loader, keep_quoting)
    try:
        data = builder.build(root, (), 1)
    except Exception:  # the full path decides, and words, every refusal
        _reset_construction(loader)
        return None
    return (data, builder.lines) if len(builder.seen) <= MAX_EXPANDED_NODES else None


def _reset_construction(loader: yaml.SafeLoader) -> None:
    """Forget what a construction that raised left half done, as construct_document does at its end."""
    loader.constructed_objects = {}
    loader.recursive_objects = {}
    loader.state_generators = []
    loader.deep_construct = False


class _PlainBuilder:
    """_plain_document's walk. A class, not nested functions: a recursive closure is a reference
    cycle, which would keep every loader alive until the cyclic GC runs (paused during loads)."""

    def __init__(self, loader: yaml.SafeLoader, keep_quoting: bool) -> None:
        self.loader = loader
        self.keep_quoting = keep_quoting
        self.seen: set[int] = set()
        self.lines: dict[KeyPath, int] = {}

    def build(self, node: Any, path: KeyPath, depth: int) -> Any:  # a yaml.Node; exact type checks
        seen, lines = self.seen, self.lines
        if depth > MAX_NESTING_DEPTH or id(node) in seen:
            raise _Unusual
        seen.add(id(node))
        lines.setdefault(path, node.start_mark.line + 1)
        kind, tag = type(node), node.tag
        if kind is yaml.ScalarNode:
            return self.scalar(node)
        if len(seen) > MAX_EXPANDED_NODES:
            raise _Unusual
        if kind is yaml.SequenceNode and tag == _SEQ_TAG:
            return [self.build(child, (*path, index), depth + 1) for index, child in enumerate(node.value)]
        if kind is not yaml.MappingNode or tag != _MAP_TAG:
            raise _Unusual  # sets, ordered maps, pairs, explicit tags on collections
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if type(key_node) is not yaml.ScalarNode or key_node.tag in _SPECIAL_KEY_TAGS:
                raise _Unusual
            name = str(key_node.value)
            if id(key_node) in seen:
                raise _Unusual
            seen.add(id(key_node))
            child = (*path, name)
            if child in lines:  # a duplicate key: paths are set only for keys already seen here
                raise _Unusual
            lines[child] = key_node.start_mark.line + 1
            key = self.scalar(key_node)
            if type(value_node) is yaml.ScalarNode:  # build(value_node, child, depth + 1), inline
                if depth >= MAX_NESTING_DEPTH or id(value_node) in seen:
                    raise _Unusual
                seen.add(id(value_node))  # its line: its key's, set above
                mapping[key] = self.scalar(value_node)
            else:
                mapping[key] = self.build(value_node, child, depth + 1)
        return mapping

    def scalar(self, node: Any) -> Any:
        tag, value = node.tag, node.value
        if tag == _STR_TAG:
            return QuotedText(value) if self.keep_quoting and node.style else value
        if tag == _INT_TAG and value.isascii() and value.isdigit() and (value[0] != "0" or value == "0"):
            return int(value)  # what construct_yaml_int makes of plain decimal digits (0 aside: octal)
        return self.loader.construct_object(node, deep=True)


# What PyYAML's scalar constructors raise for a tagged scalar they cannot read: `!!int 08` (not
# octal), `!!float x`, `!!bool maybe`, `!!int ''`, `!!timestamp 2020-13-01`, and `!!timestamp x`
# (an AttributeError: its constructor reads the groups of a regular expression that did not match).
_CONSTRUCTION_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError)


def _unconstructible(loader: yaml.SafeLoader, root: yaml.Node, file: str) -> YamlDocumentError:
    """The error for the first scalar, in the text's order, that PyYAML's constructor cannot make."""
    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if not isinstance(node, yaml.ScalarNode):
            stack.extend(reversed(_children(node)))
            continue
        _reset_construction(loader)
        try:
            loader.construct_object(node, deep=True)
        except yaml.YAMLError:
            continue  # not this kind of failure
        except _CONSTRUCTION_ERRORS as exc:
            tag = node.tag.removeprefix("tag:yaml.org,2002:")
            detail = f"{type(exc).__name__}: {exc}" if isinstance(exc, KeyError) else str(exc)
            return YamlDocumentError(
                SourceLocation(file, line=node.start_mark.line + 1),
                f"YAML error: cannot read {clipped(node.value, 80)!r} as !!{tag} ({clipped(detail, 80)})",
            )
    return YamlDocumentError(SourceLocation(file), "YAML error: a value cannot be constructed")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    return []


def _check_graph(root: yaml.Node, file: str) -> None:
    """Refuse alias bombs (billion laughs), recursive aliases and deep nesting, before expanding.

    Iterative, so a deep document cannot exhaust Python's stack here; sizes and depths are
    memoised per node, so the walk is linear in the text even when aliases fan out.
    """
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        ident = id(node)
        if expanded:
            on_path.discard(ident)
            kids = _children(node)
            sizes[ident] = 1 + sum(sizes[id(kid)] for kid in kids)
            depths[ident] = 1 + max((depths[id(kid)] for kid in kids), default=0)
            _check_budget(node, sizes[ident], depths[ident], file)
        elif ident in on_path:
            line = node.start_mark.line + 1
            raise YamlDocumentError(SourceLocation(file, line=line), "recursive YAML alias")
        elif ident not in sizes:
            on_path.add(ident)
            stack.append((node, True))
            stack.extend((kid, False) for kid in _children(node) if id(kid) not in sizes)


def _check_budget(node: yaml.Node, size: int, depth: int, file: str) -> None:
    location = SourceLocation(file, line=node.start_mark.line + 1)
    if size > MAX_EXPANDED_NODES:
        raise YamlDocumentError(
            location,
            f"document expands to more than {MAX_EXPANDED_NODES} nodes through YAML aliases; refusing it",
        )
    if depth > MAX_NESTING_DEPTH:
        raise YamlDocumentError(location, f"document nests deeper than {MAX_NESTING_DEPTH} levels")


def _check_nodes(node: yaml.Node, path: KeyPath, file: str, lines: dict[KeyPath, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.SequenceNode):
        for index, child in enumerate(node.value):
            _check_nodes(child, (*path, index), file, lines)
    elif isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                _check_nodes(value_node, path, file, lines)
                continue
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "<complex key>"
            line = key_node.start_mark.line + 1
            if key in seen:
                raise YamlDocumentError(
                    SourceLocation(file, format_key_path((*path, key)), line),
                    f"duplicate key {key!r} (first defined on line {seen[key]}); "
                    "YAML would silently keep only the last one",
                )
            seen[key] = line
            lines[(*path, key)] = line
            _check_nodes(value_node, (*path, key), file, lines)
