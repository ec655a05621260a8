"""Safe YAML loading: duplicate keys, alias bombs, size and depth limits, line numbers, quoting."""

from __future__ import annotations

import contextlib
import gc
import random
import time
from typing import Any

import pytest

from pipeline_sync import yamlsafe
from pipeline_sync.errors import YamlDocumentError
from pipeline_sync.yamlsafe import (
    MAX_DOCUMENT_BYTES,
    MAX_EXPANDED_NODES,
    MAX_NESTING_DEPTH,
    QuotedText,
    format_key_path,
    load_yaml,
)

FILE = "catalog/services/svc.yaml"


def error_of(text: str) -> str:
    with pytest.raises(YamlDocumentError) as info:
        load_yaml(text, FILE)
    return str(info.value)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("stacks", "prod", "pipelines", 1), "stacks.prod.pipelines[1]"),
        (("vars",), "vars"),
        ((0, "name"), "[0].name"),
        (("stacks", "dev\n"), 'stacks["dev\\n"]'),
        (("stacks", "a.b"), 'stacks["a.b"]'),
        (("stacks", "ргоd"), 'stacks["ргоd"]'),
        ((), ""),
    ],
)
def test_format_key_path(path: tuple[str | int, ...], expected: str) -> None:
    assert format_key_path(path) == expected


def test_loads_data_and_remembers_lines() -> None:
    text = "name: svc\nstacks:\n  prod:\n    pipelines:\n      - deploy\n      - canary\n"
    data, lines = load_yaml(text, FILE)
    assert data == {"name": "svc", "stacks": {"prod": {"pipelines": ["deploy", "canary"]}}}
    assert lines.line_of(("name",)) == 1
    assert lines.line_of(("stacks", "prod")) == 3
    assert lines.line_of(("stacks", "prod", "pipelines", 1)) == 6
    assert lines.line_of(("stacks", "prod", "nope", 4)) == 3  # deepest known prefix


def test_empty_document_is_none() -> None:
    data, lines = load_yaml("# only a comment\n", FILE)
    assert data is None and lines.line_of(("x",)) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "name: a\nteam: b\nname: c\n",
            f"{FILE}:3: name: duplicate key 'name' (first defined on line 1); "
            "YAML would silently keep only the last one",
        ),
        (
            "stacks:\n  prod:\n    vars: {}\n    vars: {x: 1}\n",
            f"{FILE}:4: stacks.prod.vars: duplicate key 'vars' (first defined on line 3)",
        ),
        ("stacks: {prod: {}, dev: {}, prod: {}}\n", f"{FILE}:1: stacks.prod: duplicate key 'prod'"),
        ("l:\n  - {a: 1, a: 2}\n", f"{FILE}:2: l[0].a: duplicate key 'a'"),
    ],
)
def test_duplicate_keys_are_refused_with_line(text: str, expected: str) -> None:
    assert expected in error_of(text)


def test_merge_keys_may_override() -> None:
    data, _ = load_yaml("base: &b {a: 1, b: 1}\nchild:\n  <<: *b\n  b: 2\n", FILE)
    assert data["child"] == {"a": 1, "b": 2}


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_quickly() -> None:
    started = time.monotonic()
    message = error_of(billion_laughs())
    assert time.monotonic() - started < 2
    assert message.startswith(f"{FILE}:")
    assert f"expands to more than {MAX_EXPANDED_NODES} nodes through YAML aliases; refusing it" in message


def test_modest_aliases_are_fine() -> None:
    data, _ = load_yaml("a: &x [1, 2]\nb: [*x, *x]\n", FILE)
    assert data["b"] == [[1, 2], [1, 2]]


def test_recursive_alias_is_refused() -> None:
    assert error_of("a: &a [1, *a]\n") == f"{FILE}:1: recursive YAML alias"


def test_huge_document_is_refused_before_parsing() -> None:
    expected = f"{FILE}: document is larger than {MAX_DOCUMENT_BYTES} bytes"
    assert error_of("x: '" + "a" * MAX_DOCUMENT_BYTES + "'\n") == expected


def test_size_limit_counts_bytes_not_characters() -> None:
    text = "x: '" + "é" * (MAX_DOCUMENT_BYTES // 2 + 1) + "'\n"
    assert len(text) < MAX_DOCUMENT_BYTES
    assert "document is larger than" in error_of(text)


@pytest.mark.parametrize("levels", [MAX_NESTING_DEPTH + 5, 990])
def test_deep_nesting_is_refused_without_recursion_error(levels: int) -> None:
    mapping = "".join("  " * i + f"k{i}:\n" for i in range(levels)) + "  " * levels + "leaf\n"
    assert f"document nests deeper than {MAX_NESTING_DEPTH} levels" in error_of(mapping)
    flow = "x: " + "[" * levels + "]" * levels + "\n"
    assert "nest" in error_of(flow)


def test_ordinary_nesting_is_fine() -> None:
    depth = MAX_NESTING_DEPTH - 10
    data, _ = load_yaml("x: " + "[" * depth + "]" * depth + "\n", FILE)
    assert isinstance(data["x"], list)


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("name: svc\nstacks: [\n", 3, "YAML error:"),
        ("a: 1\n b: 2\n", 2, "YAML error:"),
        ("x: !!python/object/apply:os.system [echo hi]\n", 1, "could not determine a constructor"),
        ("a: 1\n---\nb: 2\n", 2, "YAML error: expected a single document in the stream, but found another"),
    ],
)
def test_syntax_errors_and_unsafe_tags_name_the_line(text: str, line: int, problem: str) -> None:
    message = error_of(text)
    assert message.startswith(f"{FILE}:{line}: ")
    assert problem in message


def test_keep_quoting_marks_quoted_and_block_scalars() -> None:
    text = "a: \"3\"\nb: '3'\nc: 3\nd: plain\ne: |\n  block\nf: >-\n  folded\n"
    data, _ = load_yaml(text, FILE, keep_quoting=True)
    assert {key for key, value in data.items() if isinstance(value, QuotedText)} == {"a", "b", "e", "f"}
    assert data == {"a": "3", "b": "3", "c": 3, "d": "plain", "e": "block\n", "f": "folded"}
    plain, _ = load_yaml(text, FILE)
    assert not any(isinstance(value, QuotedText) for value in plain.values())


def typed(value: Any) -> Any:
    """value with every type spelled out, so 1, 1.0, True and "1" never compare equal."""
    if isinstance(value, dict):
        return ("dict", [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return (type(value).__name__, [typed(item) for item in value])
    if isinstance(value, set):
        return ("set", sorted(typed(item) for item in value))
    return (type(value).__name__, value)


def constructed_by_pyyaml(text: str, keep_quoting: bool) -> Any:
    """The document as PyYAML's own construct_document builds it (same loader, same constructors)."""
    loader = (yamlsafe._QuotingLoader if keep_quoting else yamlsafe._Loader)(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def lines_by_check_nodes(text: str) -> dict[yamlsafe.KeyPath, int]:
    loader = yamlsafe._Loader(text)
    try:
        found: dict[yamlsafe.KeyPath, int] = {}
        yamlsafe._check_nodes(loader.get_single_node(), (), FILE, found)
        return found
    finally:
        loader.dispose()


SCALARS = (
    "a: 1\nb: 1.5\nc: true\nd: ~\ne: 2001-12-14\nf: 2001-12-14t21:59:43.10-05:00\ng: 0x1F\n"
    "h: 1_000\ni: .inf\nj: !!binary aGVsbG8=\nk: '3'\nl: |\n  block\nm: >-\n  folded\nn: no\no: ''\n"
    "p: !!str 3\nq: !!int '7'\nr: !!float 1\ns:\nt: 0o17\nu: 190:20:30\nv: -.5e3\n"
)


@pytest.mark.parametrize("keep_quoting", [False, True], ids=["plain", "keep_quoting"])
@pytest.mark.parametrize(
    "text",
    [
        SCALARS,
        "name: svc\nstacks:\n  prod:\n    pipelines: [deploy, 'canary', \"x\"]\n    vars: {a: [1, {b: c}]}\n",
        "- 1\n- [2, [3, {x: [4]}]]\n- {}\n- []\n",
        "plain string\n",
        "'quoted string'\n",
        "child:\n  <<: {a: 1, b: 1}\n  b: 2\n",  # a merge key with no alias: PyYAML flattens it
        "base: &b {a: 1, b: 1}\nchild:\n  <<: *b\n  b: 2\n",
        "x: &x {a: [1]}\ny: *x\n",
        "=: 1\nx: 2\n",  # `=` resolves to the value tag, which PyYAML's constructor turns into "="
        "1: a\n01: b\ntrue: c\nyes: d\n~: e\n2001-12-14: f\n1.5: g\n",
        "s: !!set {a, b}\no: !!omap [{a: 1}, {b: 2}]\np: !!pairs [{a: 1}, {a: 2}]\n",
        "m: !!map {a: 1}\nq: !!seq [1]\nr: !!str plain\n",
    ],
)
def test_data_is_what_pyyaml_constructs(text: str, keep_quoting: bool) -> None:
    """load_yaml builds plain strings, lists and maps directly: every value, type and quoting mark
    must be what PyYAML's own constructor makes of the same document."""
    data, lines = load_yaml(text, FILE, keep_quoting=keep_quoting)
    expected = constructed_by_pyyaml(text, keep_quoting)
    assert typed(data) == typed(expected)
    assert lines._lines == lines_by_check_nodes(text)  # the one-pass line map is the full walk's
    quoted = [v for v in (data.values() if isinstance(data, dict) else []) if isinstance(v, QuotedText)]
    assert len(quoted) == len(
        [v for v in (expected.values() if isinstance(expected, dict) else []) if isinstance(v, QuotedText)]
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # PyYAML fills nested maps after their parent's own values: `c` (line 3) fails first.
        (
            "a:\n  b: !!foo x\nc: !!bar y\n",
            f"{FILE}:3: YAML error: could not determine a constructor for the tag 'tag:yaml.org,2002:bar'",
        ),
        ("? [a, b]\n: 1\n", f"{FILE}:1: YAML error: while constructing a mapping, found unhashable key"),
        (
            "a: !!seq {x: 1}\n",
            f"{FILE}:1: YAML error: expected a sequence node, but found mapping",
        ),
    ],
)
def test_construction_errors_are_pyyamls(text: str, expected: str) -> None:
    assert error_of(text) == expected


def test_a_tree_too_large_is_refused_without_any_alias() -> None:
    text = "[" + "0," * MAX_EXPANDED_NODES + "0]\n"
    assert error_of(text) == (
        f"{FILE}:1: document expands to more than {MAX_EXPANDED_NODES} nodes through YAML aliases; "
        "refusing it"
    )
    data, _ = load_yaml("[" + "0," * (MAX_EXPANDED_NODES - 2) + "0]\n", FILE)
    assert len(data) == MAX_EXPANDED_NODES - 1


@pytest.mark.parametrize("text", [SCALARS, "a:\n  b: !!foo x\nc: !!bar y\n", "x: &x {a: [1]}\ny: *x\n"])
def test_a_load_leaves_no_garbage_cycle(text: str) -> None:
    """Catalog loads pause the cyclic GC: a load whose objects only the GC can free (a recursive
    closure, say) would keep every file's loader and nodes in memory until the load ends."""
    gc.collect()
    gc.disable()
    try:
        with contextlib.suppress(YamlDocumentError):
            load_yaml(text, FILE)
        assert gc.collect() == 0
    finally:
        gc.enable()


def outcome(text: str, keep_quoting: bool) -> tuple[str, Any, dict[yamlsafe.KeyPath, int] | None]:
    """What load_yaml makes of text: ("data", typed data, line map) or ("error", message, None)."""
    try:
        data, lines = load_yaml(text, FILE, keep_quoting=keep_quoting)
    except YamlDocumentError as exc:
        return ("error", str(exc), None)
    quoted = [isinstance(v, QuotedText) for v in (data.values() if isinstance(data, dict) else ())]
    return ("data", (typed(data), quoted), lines._lines)


_RANDOM_SCALARS = (
    *("0", "007", "12", "1_000", "-3", "+4", "0b101", "190:20:30", "!!int '12'", "!!int '１２'", "!!int 08"),
    "1",
    "x",
    "'q'",
    '"7"',
    "true",
    "~",
    "1.5",
    "0x1F",
    "2001-12-14",
    "|\n{pad}  block",
    "!!str 3",
)
_RANDOM_KEYS = ("a", "b", "c", "1", "'a'", "true", "~")


def _random_node(rng: random.Random, depth: int, indent: int, anchors: list[str]) -> str:
    """A block YAML value at indent (continuation lines included), nesting to about depth."""
    pad = " " * indent
    roll = rng.random()
    if depth <= 0 or roll < 0.35:
        if anchors and rng.random() < 0.1:
            return f"*{rng.choice(anchors)}"
        value = rng.choice(_RANDOM_SCALARS).format(pad=pad)
        if rng.random() < 0.1:
            anchors.append(f"s{len(anchors)}")
            return f"&{anchors[-1]} {value}"
        return value
    if roll < 0.45:
        return rng.choice(["[]", "{}", "[1, [2]]", "{a: 1, a: 2}", "{x: {y: z}}"])
    items = rng.randint(1, 3)
    if roll < 0.7:
        return "".join(f"\n{pad}- {_random_node(rng, depth - 1, indent + 2, anchors)}" for _ in range(items))
    return "".join(
        f"\n{pad}{rng.choice(_RANDOM_KEYS)}: {_random_node(rng, depth - 1, indent + 2, anchors)}"
        for _ in range(items)
    )


@pytest.mark.parametrize("keep_quoting", [False, True], ids=["plain", "keep_quoting"])
def test_the_one_pass_build_is_the_full_path_on_random_documents(
    keep_quoting: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one-pass walk (_plain_document) is a shortcut: on any document, its data, line map or
    refusal must be exactly those of the full checks and PyYAML's constructor."""
    rng = random.Random(19)
    texts = [f"top:{_random_node(rng, 5, 2, [])}\n" for _ in range(400)]
    shortcut = [outcome(text, keep_quoting) for text in texts]
    monkeypatch.setattr(yamlsafe, "_plain_document", lambda *args: None)
    full = [outcome(text, keep_quoting) for text in texts]
    for text, mine, theirs in zip(texts, shortcut, full, strict=True):
        assert mine == theirs, text
    assert {kind for kind, _, _ in full} == {"data", "error"}  # both kinds were drawn


@pytest.mark.parametrize("extra", [-1, 0, 1])
@pytest.mark.parametrize("leaf", ["scalar", "list", "map"])
def test_nesting_at_the_limit_is_the_full_paths(
    extra: int, leaf: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scalar, list or map at the deepest level allowed, and one level either side."""
    levels = MAX_NESTING_DEPTH + extra - 1
    value = {"scalar": "leaf", "list": "[leaf]", "map": "{k: leaf}"}[leaf]
    text = "".join("  " * i + f"k{i}:\n" for i in range(levels)) + "  " * levels + f"last: {value}\n"
    mine = outcome(text, False)
    monkeypatch.setattr(yamlsafe, "_plain_document", lambda *args: None)
    assert mine == outcome(text, False)


@pytest.mark.parametrize("entries", [MAX_EXPANDED_NODES // 2 - 1, MAX_EXPANDED_NODES // 2])
def test_a_map_too_large_is_refused_by_its_count_of_keys_and_values(entries: int) -> None:
    """Every key and value counts towards MAX_EXPANDED_NODES, as the full checks count them."""
    text = "{" + ",".join(f"{base36_key(i)}: 0" for i in range(entries)) + "}\n"
    if 1 + 2 * entries > MAX_EXPANDED_NODES:
        assert "document expands to more than" in error_of(text)
    else:
        assert len(load_yaml(text, FILE)[0]) == entries


def base36_key(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if not number:
            return "k" + out


@pytest.mark.parametrize("keep_quoting", [False, True], ids=["plain", "keep_quoting"])
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "x: !!int 08\n",
            "1: YAML error: cannot read '08' as !!int (invalid literal for int() with base 8: '08')",
        ),
        ("a: 1\nb:\n  - ok\n  - !!float abc\n", "4: YAML error: cannot read 'abc' as !!float"),
        ("x: !!bool maybe\n", "1: YAML error: cannot read 'maybe' as !!bool (KeyError: 'maybe')"),
        ("x: !!int ''\n", "1: YAML error: cannot read '' as !!int (string index out of range)"),
        (
            "x: !!timestamp 2020-13-01\n",
            "1: YAML error: cannot read '2020-13-01' as !!timestamp (month must be",
        ),
        ("x: !!int '" + "1" * 5000 + "'\n", "1: YAML error: cannot read '111"),
        ("a: [1, 2]\nb: &x !!int 0b2\nc: *x\n", "2: YAML error: cannot read '0b2' as !!int"),
        ("x: !!timestamp soon\n", "1: YAML error: cannot read 'soon' as !!timestamp ('NoneType' object"),
        ("x: !!timestamp ''\n", "1: YAML error: cannot read '' as !!timestamp"),
        ("a:\n  b: !!timestamp x\nc: !!int 08\n", "2: YAML error: cannot read 'x' as !!timestamp"),
    ],
)
def test_a_tagged_value_pyyaml_cannot_construct_is_a_yaml_error_at_its_line(
    text: str, expected: str, keep_quoting: bool
) -> None:
    """PyYAML's constructors raise ValueError, KeyError or IndexError for these, not YAMLError: they
    must come out as this file's YAML error at the value's line, like any other bad input."""
    with pytest.raises(YamlDocumentError) as info:
        load_yaml(text, FILE, keep_quoting=keep_quoting)
    assert str(info.value).startswith(f"{FILE}:{expected}")
    assert len(str(info.value)) < 300
