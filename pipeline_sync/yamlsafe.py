"""Safe YAML loading: C loader when present, duplicate keys rejected, alias expansion bounded, lines kept."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import yaml

from pipeline_sync.errors import SourceLocation, YamlDocumentError

try:
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader

MAX_DOCUMENT_BYTES = 1_048_576
MAX_EXPANDED_NODES = 200_000

KeyPath = tuple[str | int, ...]
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")


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


def load_yaml(text: str, file: str) -> tuple[Any, LineMap]:
    """Parse one YAML document safely, returning the data and a line map."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_DOCUMENT_BYTES:
        raise YamlDocumentError(SourceLocation(file), f"document is larger than {MAX_DOCUMENT_BYTES} bytes")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, LineMap({})
        _check_expansion(node, file)
        lines: dict[KeyPath, int] = {}
        _check_nodes(node, (), file, lines)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise YamlDocumentError(SourceLocation(file, line=line), f"YAML error: {problem}") from None
    except yaml.YAMLError as exc:
        raise YamlDocumentError(SourceLocation(file), f"YAML error: {exc}") from None
    finally:
        loader.dispose()
    return data, LineMap(lines)


def _children(node: yaml.Node) -> Iterator[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        yield from node.value
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield key
            yield value


def _check_expansion(root: yaml.Node, file: str) -> None:
    """Refuse documents whose aliases expand past MAX_EXPANDED_NODES (billion laughs)."""
    sizes: dict[int, int] = {}
    on_stack: set[int] = set()

    def size(node: yaml.Node) -> int:
        ident = id(node)
        if ident in sizes:
            return sizes[ident]
        if ident in on_stack:
            raise YamlDocumentError(
                SourceLocation(file, line=node.start_mark.line + 1), "recursive YAML alias"
            )
        on_stack.add(ident)
        total = 1
        for child in _children(node):
            total += size(child)
            if total > MAX_EXPANDED_NODES:
                raise YamlDocumentError(
                    SourceLocation(file, line=node.start_mark.line + 1),
                    f"document expands to more than {MAX_EXPANDED_NODES} nodes "
                    "through YAML aliases; refusing it",
                )
        on_stack.discard(ident)
        sizes[ident] = total
        return total

    size(root)


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
