"""Block YAML text of plain JSON data, written directly: exactly the text libyaml's emitter writes
for the events diff.yaml_events makes (block style, two-space indent, sorted keys, unicode kept).

Why: a template change diffs a thousand pipelines, and each diff writes both documents as YAML.
Through the C emitter every node costs a Python event object and its conversion, about 4 us;
here a node costs a dictionary lookup and a string append.

How it stays exact: the layout of libyaml's block emitter for mappings and sequences is a few
fixed rules (yaml_emitter_emit_block_mapping_key, _block_sequence_item, write_indent). A scalar's
text is decided here only for printable ASCII without line breaks, by libyaml's own analysis
(yaml_emitter_analyze_scalar, _select_scalar_style) and its line folding at spaces past the
width (write_plain_scalar, write_single_quoted_scalar). Any other scalar (non-ASCII, a line
break, a control character) is written by the emitter itself, in a small document that puts it
at the same column and indent, and its text is cut out of that document. Anything else (a key
that is not a string, a container held twice, another type) raises NotSimple, and the caller
takes the event path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import yaml

STR_TAG = "tag:yaml.org,2002:str"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"

# A first character that makes a plain scalar impossible (yaml_emitter_analyze_scalar).
_FIRST_INDICATORS = frozenset("#,[]{}&*!|>'\"%@`")
# libyaml takes a width at most twice its indent (2) as 80, and a negative one as no limit.
_NARROWEST_WIDTH = 4
# libyaml writes a mapping key longer than this (in bytes) as a complex key ("? key").
_SIMPLE_KEY_MAX = 128

# Each string's one-line text as a value or key, once known (a function of the string alone);
# "" for a string simple_text leaves to the emitter.
_TEXT_MAX_ENTRIES = 200_000
_texts: dict[str, str] = {}
# What the emitter wrote for a scalar simple_text does not decide, by (type, value, column, indent,
# width).
_WRITTEN_MAX_ENTRIES = 20_000
_written: dict[tuple[type, Any, int, int, int], str] = {}


class NotSimple(ValueError):
    """Data this writer leaves to the event path."""


def block_yaml(
    data: Any,
    width: int,
    plain_tag: Callable[[str], str],
    emitted: Callable[[Any, int], str],
    *,
    max_depth: int,
) -> str:
    """The YAML text of data (a non-empty dict or list of plain JSON data) at this width.

    plain_tag(text) is the tag the dumper's resolver gives text read as a plain scalar; emitted
    (data, width) is the event path's text, used only for a scalar this writer does not decide.
    Data nesting deeper than max_depth levels raises NotSimple, so a caller that writes deeper
    data at another width need not measure the depth first."""
    if width <= _NARROWEST_WIDTH:
        raise NotSimple("libyaml replaces a width this narrow (80 for 0 to 4, none when negative)")
    writer = _Writer(width, plain_tag, emitted)
    if type(data) is dict and data:
        writer.mapping(data, 0, "", max_depth)
    elif type(data) is list and data:
        writer.sequence(data, 0, "", max_depth)
    else:
        raise NotSimple("only a non-empty mapping or sequence is written directly")
    writer.out.append("\n")
    return "".join(writer.out)


def simple_text(value: str, plain_tag: Callable[[str], str]) -> str | None:
    """value as libyaml writes it in one line, as a block mapping key or value, when value is
    printable ASCII without a line break: plain when it may be, else single-quoted. None for any
    other string."""
    if not (value.isascii() and value.isprintable()):
        return None
    if not value:
        return "''"  # plain '' would read as null
    first = value[0]
    followed_by_space = len(value) == 1 or value[1] == " "
    indicator = (
        first in _FIRST_INDICATORS
        or (first in "?:-" and followed_by_space)
        or value.startswith(("---", "..."))
        or ": " in value
        or value.endswith(":")
        or " #" in value
    )
    if indicator or first == " " or value[-1] == " " or plain_tag(value) != STR_TAG:
        return "'" + value.replace("'", "''") + "'"
    return value


class _Writer:
    """One document's text, appended to out as the emitter would write it."""

    def __init__(
        self, width: int, plain_tag: Callable[[str], str], emitted: Callable[[Any, int], str]
    ) -> None:
        self.width = width
        self.plain_tag = plain_tag
        self.emitted = emitted
        self.out: list[str] = []
        self.seen: set[int] = set()

    def mapping(self, data: dict[Any, Any], indent: int, first: str, room: int) -> None:
        """data's keys from column indent; first is written before the first key (a new line and
        the indent, or the space after a sequence's "-" that the mapping continues); room: the
        levels data may still nest, itself included."""
        self._enter(data, room)
        out = self.out
        line = "\n" + " " * indent
        lead = first
        try:
            keys = sorted(data)
        except TypeError:
            raise NotSimple("keys of more than one type") from None
        for key in keys:
            if type(key) is not str:
                raise NotSimple("a key that is not a string")
            text = self.key_text(key)
            value = data[key]
            out.append(lead)
            out.append(text)
            out.append(":")
            lead = line
            kind = type(value)
            if kind is dict:
                if value:
                    self.mapping(value, indent + 2, "\n" + " " * (indent + 2), room - 1)
                else:
                    out.append(self.empty(value, " {}", room))
            elif kind is list:
                if value:
                    self.sequence(value, indent, line, room - 1)  # indentless under a mapping key
                else:
                    out.append(self.empty(value, " []", room))
            else:
                out.append(self.scalar(value, indent + len(text) + 1, indent + 2))

    def sequence(self, data: list[Any], indent: int, first: str, room: int) -> None:
        """data's items, each "-" at column indent; first is written before the first "-"."""
        self._enter(data, room)
        out = self.out
        line = "\n" + " " * indent
        lead = first
        for item in data:
            out.append(lead)
            out.append("-")
            lead = line
            kind = type(item)
            if kind is dict:
                if item:
                    self.mapping(item, indent + 2, " ", room - 1)
                else:
                    out.append(self.empty(item, " {}", room))
            elif kind is list:
                if item:
                    self.sequence(item, indent + 2, " ", room - 1)
                else:
                    out.append(self.empty(item, " []", room))
            else:
                out.append(self.scalar(item, indent + 1, indent + 2))

    def _enter(self, container: Any, room: int) -> None:
        """Refuse a container that nests past max_depth (room levels left, itself included; an
        empty one counts as a level, as nesting.nesting_depth counts it, which decides the width)
        or that was met before: PyYAML writes any container held twice, even an empty one, as an
        anchor and an alias."""
        if room < 1:
            raise NotSimple("nested deeper than max_depth")
        if id(container) in self.seen:
            raise NotSimple("a container held twice: PyYAML writes an alias")
        self.seen.add(id(container))

    def empty(self, container: Any, text: str, room: int) -> str:
        """An empty container's flow text, one level below a container with room levels."""
        self._enter(container, room - 1)
        return text

    def key_text(self, key: str) -> str:
        text = _texts.get(key)
        if text is None:
            text = _remembered(key, self.plain_tag)
        if text and len(key) <= _SIMPLE_KEY_MAX:
            return text
        found = self.emitted({key: 0}, self.width)
        if not found.endswith(": 0\n") or "\n" in found[:-4] or found.startswith("?"):
            raise NotSimple("a key libyaml writes as a complex key")
        return found[:-4]

    def scalar(self, value: Any, column: int, indent: int) -> str:
        """The text of a scalar after an indicator ending at column (":" or "-"), its leading space
        included; indent: where a folded line continues."""
        kind = type(value)
        if kind is str:
            text = _texts.get(value)
            if text is None:
                text = _remembered(value, self.plain_tag)
            if not text:
                return self._written_by_emitter(value, column, indent)
            if column + 1 + len(text) <= self.width or " " not in text:
                return " " + text
            return _folded(value, text[0] != "'", column, indent, self.width)
        if kind is bool:
            return " true" if value else " false"
        if value is None:
            return " null"
        if kind is int:
            text = str(value)
            if self.plain_tag(text) == _INT_TAG:
                return " " + text
        elif kind is float:
            text = float_text(value)
            if self.plain_tag(text) == _FLOAT_TAG:
                return " " + text
        else:
            raise NotSimple(f"{kind.__name__} is not plain JSON data")
        return self._written_by_emitter(value, column, indent)

    def _written_by_emitter(self, value: Any, column: int, indent: int) -> str:
        """The emitter's text of value at this column and continuation indent, cut out of a
        document that nests mappings to put it there: after "k...k:" for a mapping value, after
        "-" for a sequence item."""
        memo = (type(value), value, column, indent, self.width)
        known = _written.get(memo)
        if known is not None:
            return known
        base = indent - 2
        wrappers = "".join(" " * (2 * level) + "a:\n" for level in range(base // 2))
        if column == indent - 1:  # a sequence item: "-" at column base
            inner: Any = {"k": [value]}
            prefix = f"{wrappers}{' ' * base}k:\n{' ' * base}-"
        else:  # a mapping value: a key of the same length ends at column
            key = "k" * (column - base - 1)
            inner = {key: value}
            prefix = f"{wrappers}{' ' * base}{key}:"
        for _ in range(base // 2):
            inner = {"a": inner}
        found = self.emitted(inner, self.width)
        if base % 2 or not found.startswith(prefix) or not found.endswith("\n"):
            raise NotSimple("a scalar the emitter writes in a way this writer does not place")
        text = found[len(prefix) : -1]
        if len(_written) >= _WRITTEN_MAX_ENTRIES:
            _written.clear()
        _written[memo] = text
        return text


def _remembered(value: str, plain_tag: Callable[[str], str]) -> str:
    text = simple_text(value, plain_tag) or ""
    if len(_texts) >= _TEXT_MAX_ENTRIES:
        _texts.clear()
    _texts[value] = text
    return text


_SPACE_RUNS = re.compile("( +)")


def _folded(value: str, plain: bool, column: int, indent: int, width: int) -> str:
    """A printable-ASCII scalar that runs past width, folded at single spaces as libyaml folds:
    at a space once the column is past width; never within a run of spaces (libyaml folds only at
    a space neither preceded nor followed by one) nor, quoted, at the first or last character."""
    parts = [" " if plain else " '"]
    column += len(parts[0])
    pieces = _SPACE_RUNS.split(value)  # words at even indexes (maybe empty), space runs at odd
    last = len(pieces) - 1
    for index, piece in enumerate(pieces):
        if index % 2 == 0:
            if not plain and "'" in piece:
                piece = piece.replace("'", "''")
            parts.append(piece)
            column += len(piece)
        elif (
            len(piece) == 1
            and column > width
            and (plain or (pieces[index - 1] and (index < last - 1 or pieces[last])))
        ):
            parts.append("\n" + " " * indent)
            column = indent
        else:
            parts.append(piece)
            column += len(piece)
    if not plain:
        parts.append("'")
    return "".join(parts)


def float_text(data: float) -> str:
    """SafeRepresenter.represent_float's text."""
    inf = yaml.SafeDumper.inf_value
    if data != data or (data == 0.0 and data == 1.0):
        return ".nan"
    if data == inf:
        return ".inf"
    if data == -inf:
        return "-.inf"
    value = repr(data).lower()
    if "." not in value and "e" in value:
        value = value.replace("e", ".0e", 1)
    return value
