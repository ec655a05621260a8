"""The fast paths of rendering give exactly what the algorithms they replaced gave.

Each replaced algorithm is kept here, verbatim, as the oracle: render._Filler (filling values into
a parsed document), sandbox.value_size, front50_model.limit_problems without its quick walk,
identity's artifact and trigger ids (uuid.uuid5), and load_yaml on every render where render now
parses each distinct text once. They run on hostile and random inputs, and on every target of a
synthetic fleet and of the example catalog.
"""

from __future__ import annotations

import datetime
import math
import random
import re
import sys
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from bench import synth
from pipeline_sync import front50_model, identity, render, rendering
from pipeline_sync.errors import RenderError, SourceLocation
from pipeline_sync.front50_model import MAX_DEPTH, MAX_NAME_CHARS, MAX_NUMBER_DIGITS, limit_problems
from pipeline_sync.render import _Filler
from pipeline_sync.render_cache import RenderCache
from pipeline_sync.rendering import Sources
from pipeline_sync.sandbox import MAX_OUTPUT_CHARS, TemplateBudgetExceeded, value_size
from pipeline_sync.yamlsafe import MAX_NESTING_DEPTH, QuotedText, load_yaml

REPO = Path(__file__).resolve().parent.parent
PREFIX = "PSV0123456789abcdefN"
PATTERN = re.compile(re.escape(PREFIX) + r"(\d+)Z")


# --- the oracles: the algorithms as they were before their fast paths -------------------------


class OldFiller:
    """Puts the values behind placeholders into a parsed document: as data, never as YAML.

    A placeholder that is a whole plain scalar (`x: {{ v }}`) becomes the value itself, type
    and all; anywhere else (quoted, in a block scalar, inside other text, in a key) it becomes
    str(value), as Jinja would have printed it. A value's own text may hold placeholders
    (a macro's output joined with `~`): those expand too, never re-parsed as YAML.
    """

    def __init__(
        self,
        pattern: re.Pattern[str],
        prefix: str,
        values: list[Any],
        fail: Callable[[str, str], RenderError],
    ) -> None:
        self._pattern = pattern
        self._nonce = prefix.lower()
        self._values = values
        self._fail = fail
        self._texts: dict[int, str] = {}
        self._expanding: set[int] = set()
        self._spent = 0

    def fill(self, item: Any, path: str) -> Any:
        """The parsed document item at path, with its placeholders filled in."""
        if isinstance(item, str):
            whole = self._pattern.fullmatch(item)
            if whole and not isinstance(item, QuotedText):
                return self.value(self._values[int(whole.group(1))], path, 0)
            return self.text(item, path)
        if isinstance(item, dict):
            return self._mapping(item, path, lambda value, sub: self.fill(value, sub))
        if isinstance(item, list):
            return [self.fill(v, f"{path}[{i}]") for i, v in enumerate(item)]
        return self._scalar(item, path, "template")

    def value(self, item: Any, path: str, depth: int) -> Any:
        """A copy of a value the template inserted whole, checked to be plain JSON data."""
        if depth > MAX_NESTING_DEPTH:
            raise self._fail(
                path, f"a value nests deeper than {MAX_NESTING_DEPTH} levels (or contains itself)"
            )
        if isinstance(item, str):
            return self.text(item, path)
        self._charge(1, path)
        if isinstance(item, dict):
            return self._mapping(item, path, lambda value, sub: self.value(value, sub, depth + 1))
        if isinstance(item, list | tuple):
            return [self.value(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(item)]
        return self._scalar(item, path, "catalog")

    def text(self, item: str, path: str) -> str:
        """item with every placeholder replaced by its value's text, as a plain str."""
        out = self._pattern.sub(lambda m: self._text_of(int(m.group(1)), path), item)
        if self._nonce in out.lower():
            raise self._fail(
                path,
                "a filter or string operation changed the text a macro or block produced "
                "(upper, slicing, ...) so a value in it can no longer be placed; "
                "apply it to the values instead",
            )
        self._charge(len(out), path)
        return str(out)

    def _text_of(self, index: int, path: str) -> str:
        if index in self._texts:
            return self._texts[index]
        if index in self._expanding or index >= len(self._values):
            raise self._fail(path, "a template built a placeholder of its own; that is not allowed")
        self._expanding.add(index)
        expanded = self.text(str(self._values[index]), path)
        self._expanding.discard(index)
        self._texts[index] = expanded
        return expanded

    def _mapping(self, item: dict[Any, Any], path: str, fill: Callable[[Any, str], Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in item.items():
            if not isinstance(key, str):
                raise self._fail(path, f"mapping key {key!r} is not a string; quote it")
            new_key = self.text(key, path)
            sub = f"{path}.{new_key}" if path else new_key
            if new_key in out:
                raise self._fail(sub, f"key {new_key!r} appears twice once values are filled in")
            out[new_key] = fill(value, sub)
        return out

    def _scalar(self, item: Any, path: str, source: str) -> Any:
        if item is None or isinstance(item, bool | int):
            return item
        if isinstance(item, float):
            if not math.isfinite(item):
                raise self._fail(path, "value is not a finite number")
            return item
        if isinstance(item, datetime.date | datetime.datetime):
            raise self._fail(path, f"value {item!s} parsed as a date; quote it in the {source}")
        raise self._fail(
            path,
            f"a {type(item).__name__} value is not JSON data; "
            "convert it in the template (for example with |list or |string)",
        )

    def _charge(self, size: int, path: str) -> None:
        self._spent += size
        if self._spent > 2 * MAX_OUTPUT_CHARS:
            raise self._fail(path, f"the filled-in pipeline is larger than {2 * MAX_OUTPUT_CHARS} characters")


class OracleFiller(OldFiller):
    """OldFiller called as render._fill calls _Filler: the document's own place is None."""

    def fill(self, item: Any, path: Any) -> Any:
        return super().fill(item, "" if path is None else path)


def old_value_size(value: Any, limit: int = MAX_OUTPUT_CHARS) -> int:
    """Characters (strings) plus nodes (everything else) in value, counted up to just past limit.

    A value nested deeper than MAX_NESTING_DEPTH (a list that contains itself) is refused.
    """
    total, pending = 0, [(value, 0)]
    while pending and total <= limit:
        item, depth = pending.pop()
        if depth > MAX_NESTING_DEPTH:
            raise TemplateBudgetExceeded(
                f"a value the template outputs nests deeper than {MAX_NESTING_DEPTH} levels "
                "(or contains itself)"
            )
        total += len(item) if isinstance(item, str) else 1
        if isinstance(item, dict):
            pending.extend((child, depth + 1) for pair in item.items() for child in pair)
        elif isinstance(item, list | tuple):
            pending.extend((child, depth + 1) for child in item)
    return total


# --- filling values into a parsed document -----------------------------------------------------


def placeholder(index: int) -> str:
    return f"{PREFIX}{index}Z"


def typed(value: Any) -> Any:
    """value with the exact type of every item kept (and nan comparable), to compare results exactly."""
    if isinstance(value, dict):
        return (type(value).__name__, [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return (type(value).__name__, [typed(v) for v in value])
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, value)


def filled(filler: Callable[..., Any], node: Any, values: list[Any]) -> Any:
    """What filling node gives: the typed result, the refusal's words, or the exception's type."""

    def fail(path: str, message: str) -> RenderError:
        return RenderError("svc/dev/deploy", SourceLocation("templates/deploy.yaml.j2", path), message)

    try:
        return typed(filler(PATTERN, PREFIX, values, fail).fill(node, None))
    except RenderError as exc:
        return ("refused", str(exc))
    except (IndexError, RecursionError) as exc:
        return ("raised", type(exc).__name__)


def nest(levels: int, inner: Any = 1) -> Any:
    for _ in range(levels):
        inner = [inner]
    return inner


def contains_itself() -> list[Any]:
    looped: list[Any] = ["x"]
    looped.append(looped)
    return looped


P0, P1, P2 = placeholder(0), placeholder(1), placeholder(2)
BIG = "x" * (2 * MAX_OUTPUT_CHARS // 3 + 1)
HALF = "x" * (MAX_OUTPUT_CHARS // 2 + 1)
FILL_CASES: list[tuple[str, Any, list[Any]]] = [
    ("a whole plain placeholder is the value, type and all", {"a": P0}, [{"k": [1, 2.5, None, True]}]),
    ("a quoted placeholder is text", {"a": QuotedText(P0)}, [3]),
    ("placeholders inside text", {"a": f"x-{P0}-{P1}", "b": QuotedText(f"{P1}{P0}")}, ["one", 2]),
    ("a value's own placeholders expand", {"a": P1, "b": [P1]}, ["inner", f"<{P0}>"]),
    ("a value that names itself", {"a": P0}, [f"<{P0}>"]),
    ("two values that name each other", {"a": [f"{P0}"]}, [f"<{P1}>", f"<{P0}>"]),
    ("a value naming a placeholder past the end", {"a": {"b": P0}}, [f"<{placeholder(9)}>"]),
    ("a whole placeholder past the end", {"a": placeholder(5)}, ["x"]),
    ("a lower-cased placeholder", {"a": [1, PREFIX.lower() + "0z"]}, ["x"]),
    ("an upper-cased placeholder", {"a": {"b": PREFIX.upper() + "0Z"}}, ["x"]),
    ("a mixed-case nonce", {"a": "Psv0123456789ABCDEFn0Z"}, []),
    ("a mangled placeholder in a value", {"a": P0}, [PREFIX.lower()]),
    ("a mangled placeholder in a key", {"a": {PREFIX.lower(): 1}}, []),
    ("a placeholder key", {P0: 1, "b": QuotedText(P0)}, ["k"]),
    ("keys that collide once filled", {"a": {P0: 1, "b": 2}}, ["b"]),
    ("keys of a value that collide once filled", {"a": P0}, [{"b": 1, P1: 2}, "b"]),
    ("a number key in the template", {"a": {1: "x"}}, []),
    ("a null key in a value", {"a": P0}, [{None: "x"}]),
    ("a path through lists", {"s": [{"t": [0, P0]}]}, [float("nan")]),
    ("an empty key at the top", {"": {"b": P0}}, [datetime.date(2024, 1, 1)]),
    ("an empty key further in", {"a": {"": [P0]}}, [{1, 2}]),
    ("infinity in the template", {"a": [float("inf")]}, []),
    ("a date in the template", {"a": [[datetime.date(2024, 1, 1)]]}, []),
    ("a datetime in a value", {"a": P0}, [[datetime.datetime(2024, 1, 1, 3, 4)]]),
    ("a value that nests too deep", {"a": {"b": P0}}, [nest(MAX_NESTING_DEPTH + 2)]),
    ("a value that nests as deep as allowed", {"a": P0}, [nest(MAX_NESTING_DEPTH)]),
    ("a value that contains itself", {"a": P0}, [contains_itself()]),
    ("tuples in a value", {"a": P0}, [(1, "x", (2, P1)), "y"]),
    ("output past the budget", {"a": P0, "b": [P0], "c": QuotedText(P0)}, [BIG]),
    (
        "constant text and values past the budget together",
        {"a": "c" * MAX_OUTPUT_CHARS, "b": [P0, P0]},
        [HALF],
    ),
    (
        "constant text and values just within the budget",
        {"a": "c" * MAX_OUTPUT_CHARS, "b": [P0, P0]},
        [HALF[1:]],
    ),
    ("output past the budget in keys", {"a": P1, P0: 1, "b": {P0: 2}}, [BIG, BIG]),
    ("a document that is a list", [P0, QuotedText("q"), 1, None, 2.5], ["v"]),
    ("a document that is one placeholder", P0, [{"a": 1}]),
    ("a document that is a number", 3, []),
    ("quoted keys and values", {QuotedText("k"): QuotedText("v"), "n": QuotedText("")}, []),
    ("non-ASCII text", {"ä": "K Ünï", "b": f"İ{P0}"}, ["ß"]),
]


@pytest.mark.parametrize(("node", "values"), [c[1:] for c in FILL_CASES], ids=[c[0] for c in FILL_CASES])
def test_filling_gives_what_the_old_filler_gave(node: Any, values: list[Any]) -> None:
    assert filled(_Filler, node, values) == filled(OracleFiller, node, values)


PIECES = [
    "",
    "a",
    "b",
    "-",
    ".",
    "[0]",
    "0",
    "Z",
    "psv",
    "K",
    "İ",
    PREFIX,
    PREFIX.lower(),
    PREFIX.upper(),
    *(placeholder(i) for i in (0, 1, 2, 3, 4, 99)),
]


def random_text(rng: random.Random) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 3)))


def random_scalar(rng: random.Random, in_value: bool) -> Any:
    choices: list[Any] = [None, True, False, 0, 7, -3, 2.5, 10**30, float("nan"), float("inf")]
    choices += [datetime.date(2024, 1, 2), frozenset({1})]
    roll = rng.random()
    if roll < 0.3:
        return random_text(rng)
    if roll < 0.45:
        return placeholder(rng.randint(0, 5))
    if roll < 0.6 and not in_value:
        return QuotedText(random_text(rng))
    return rng.choice(choices) if rng.random() < 0.3 else rng.choice(choices[:7])


def random_key(rng: random.Random, in_value: bool) -> Any:
    if rng.random() < 0.03:
        return rng.choice([1, None, True, 2.5])
    key = random_text(rng)
    return QuotedText(key) if not in_value and rng.random() < 0.3 else key


def random_node(rng: random.Random, depth: int, in_value: bool) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.45:
        return random_scalar(rng, in_value)
    if roll < 0.75:
        return {
            random_key(rng, in_value): random_node(rng, depth + 1, in_value) for _ in range(rng.randint(0, 4))
        }
    items = [random_node(rng, depth + 1, in_value) for _ in range(rng.randint(0, 4))]
    return tuple(items) if in_value and rng.random() < 0.3 else items


def random_case(seed: int) -> tuple[Any, list[Any]]:
    rng = random.Random(seed)
    values = [random_node(rng, 1, True) for _ in range(rng.randint(0, 5))]
    if values and rng.random() < 0.05:
        values.append(contains_itself())
    return random_node(rng, 0, False), values


def test_filling_random_documents_gives_what_the_old_filler_gave() -> None:
    outcomes = []
    for seed in range(3000):
        node, values = random_case(seed)
        fast = filled(_Filler, node, values)
        assert fast == filled(OracleFiller, node, values), f"seed {seed}"
        outcomes.append(fast[0])
    # Both kinds of outcome are common, so the comparison covers both.
    assert outcomes.count("refused") > 500
    assert len(outcomes) - outcomes.count("refused") - outcomes.count("raised") > 500


def planned(node: Any, values: list[Any]) -> Any:
    """What a planned fill alone gives: the typed result, "no plan", or "falls back"."""
    plan = render.plan_fill(node, PATTERN, PREFIX)
    if plan is None:
        return "no plan"

    def fail(path: str, message: str) -> RenderError:
        return RenderError("svc/dev/deploy", SourceLocation("templates/deploy.yaml.j2", path), message)

    try:
        return typed(_Filler(PATTERN, PREFIX, values, fail).run(plan))
    except (RenderError, render._Refill, IndexError, RecursionError):
        return "falls back"


def through_fill_document(plan_it: bool) -> Callable[..., Any]:
    """fill_document (planned or not) called as filled() calls a filler class."""

    class Filling:
        def __init__(self, *arguments: Any) -> None:
            self.arguments = arguments

        def fill(self, node: Any, where: None) -> Any:
            plan = render.plan_fill(node, PATTERN, PREFIX) if plan_it else None
            return render.fill_document(node, plan, *self.arguments)

    return Filling


def test_a_planned_fill_gives_what_the_old_filler_gave_or_leaves_it_to_the_filler() -> None:
    outcomes = []
    cases = [case[1:] for case in FILL_CASES] + [random_case(seed) for seed in range(3000)]
    for index, (node, values) in enumerate(cases):
        oracle = filled(OracleFiller, node, values)
        alone = planned(node, values)
        if alone in ("no plan", "falls back"):
            assert oracle[0] in ("refused", "raised"), f"case {index}: {alone} but {oracle}"
        else:
            assert alone == oracle, f"case {index}"
        assert filled(through_fill_document(True), node, values) == oracle, f"case {index}"
        assert filled(through_fill_document(False), node, values) == oracle, f"case {index}"
        outcomes.append(alone if isinstance(alone, str) else "filled")
    # Each way through a planned fill is common, so each is compared.
    assert min(outcomes.count(way) for way in ("no plan", "falls back", "filled")) > 300


# --- the size of a value a template outputs ---------------------------------------------------


class Text(str):
    pass


def sized(measure: Callable[[Any], int], value: Any) -> Any:
    try:
        return measure(value)
    except TemplateBudgetExceeded as exc:
        return str(exc)


SIZE_CASES: list[Any] = [
    "",
    "abc",
    Text("a text subclass"),
    0,
    10**40,
    None,
    True,
    2.5,
    {1, 2, 3},
    b"bytes",
    [],
    ("a", 1),
    {"key": ["v", {"w": None}]},
    {1: 2},
    nest(MAX_NESTING_DEPTH),
    nest(MAX_NESTING_DEPTH + 1),
    contains_itself(),
    "x" * (MAX_OUTPUT_CHARS + 5),
    ["x" * MAX_OUTPUT_CHARS, "y", ["z"]],
]


@pytest.mark.parametrize("value", SIZE_CASES, ids=[f"case{i}" for i in range(len(SIZE_CASES))])
def test_value_size_is_what_it_was(value: Any) -> None:
    assert sized(value_size, value) == sized(old_value_size, value)


def test_value_size_of_random_values_is_what_it_was() -> None:
    for seed in range(500):
        value = random_node(random.Random(seed), 0, True)
        assert sized(value_size, value) == sized(old_value_size, value), f"seed {seed}"


# --- Jackson's limits: limit_problems' quick walk never hides what its full walk finds ------------


def full_walk(document: Any, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    with monkeypatch.context() as patched:
        patched.setattr(front50_model, "_plainly_within_limits", lambda document: False)
        return list(limit_problems(document))


LIMIT_CASES: list[Any] = [
    {"name": "deploy", "stages": [{"refId": "1", "n": 3, "f": 2.5, "b": True, "z": None}]},
    {"a": "x" * (front50_model.MAX_STRING_CHARS + 1)},
    {"a": ["x" * front50_model.MAX_STRING_CHARS]},
    {"k" * (MAX_NAME_CHARS + 1): 1},
    {"k" * MAX_NAME_CHARS: 1},
    {"a": [10**MAX_NUMBER_DIGITS]},
    {"a": [-(10**MAX_NUMBER_DIGITS)]},
    {"a": [10**MAX_NUMBER_DIGITS - 1, -(10**MAX_NUMBER_DIGITS) + 1]},
    nest(MAX_DEPTH - 1),
    nest(MAX_DEPTH),
    nest(MAX_DEPTH + 1),
    {"a": nest(MAX_DEPTH - 2, {})},
    {"a": nest(MAX_DEPTH - 1, {})},
    {1: "a number key", "b": [1]},
    {("a", "tuple"): 1},
    {"a": Text("a subclass")},
    {"a": [{"b": QuotedText("quoted")}]},
    10**MAX_NUMBER_DIGITS,
    True,
    "x" * (front50_model.MAX_STRING_CHARS + 1),
    "short",
    None,
    2.5,
    [],
    {},
]


@pytest.mark.parametrize("document", LIMIT_CASES, ids=[f"case{i}" for i in range(len(LIMIT_CASES))])
def test_limit_problems_finds_what_its_full_walk_finds(
    document: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = full_walk(document, monkeypatch)
    assert list(limit_problems(document)) == found
    if front50_model._plainly_within_limits(document):
        assert found == []


def test_limit_problems_quick_walk_answers_for_a_plain_pipeline_at_the_depth_limit() -> None:
    # Not needed for correctness (the full walk would answer the same), but the quick walk
    # is what keeps validation cheap, so it must cover ordinary documents, even deep ones.
    assert front50_model._plainly_within_limits({"stages": [{"a": 1, "b": "x", "c": None}]})
    assert front50_model._plainly_within_limits(nest(MAX_DEPTH))
    assert not front50_model._plainly_within_limits(nest(MAX_DEPTH + 1))


# --- whole fleets: the fast paths together render what the old algorithms render ----------------


@pytest.fixture(scope="module")
def synthetic_fleet(tmp_path_factory: pytest.TempPathFactory) -> synth.Fleet:
    return synth.write_fleet(tmp_path_factory.mktemp("fleet") / "fleet", 300)


def render_every_target(catalog_dir: Path, templates_dir: Path) -> dict[str, Any]:
    workspace = Sources.load(catalog_dir, templates_dir, render_cache=RenderCache.in_memory())
    rendered = {}
    for key in sorted(workspace.catalog.targets):
        outcome, references, _ = rendering._render_tracked(workspace, workspace.catalog.targets[key])
        canonical = outcome.rendered.canonical if outcome.rendered is not None else None
        rendered[key] = (canonical, outcome.problems, references)
    return rendered


def use_the_old_algorithms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "_Filler", OracleFiller)
    monkeypatch.setattr(render, "PARSE_MEMO_CHARS", 0)  # every render parses its own text
    monkeypatch.setattr(render, "value_size", old_value_size)
    monkeypatch.setattr(front50_model, "_plainly_within_limits", lambda document: False)
    monkeypatch.setattr(identity, "_child_id", old_child_id)


@pytest.mark.parametrize("fleet", ["synthetic", "example"])
def test_every_target_renders_as_the_old_algorithms_render_it(
    fleet: str, synthetic_fleet: synth.Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    if fleet == "synthetic":
        dirs = (synthetic_fleet.catalog_dir, synthetic_fleet.root / "templates")
    else:
        dirs = (REPO / "catalog", REPO / "templates")
    fast = render_every_target(*dirs)
    use_the_old_algorithms(monkeypatch)
    assert render_every_target(*dirs) == fast
    assert sum(1 for canonical, _, _ in fast.values() if canonical is not None) >= (
        290 if fleet == "synthetic" else 3
    )


def containers(value: Any) -> list[int]:
    found = [id(value)] if isinstance(value, dict | list) else []
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return found + [i for child in children for i in containers(child)]


def test_renders_of_one_text_share_no_container_and_a_changed_document_changes_no_other_render(
    synthetic_fleet: synth.Fleet,
) -> None:
    workspace = Sources.load(
        synthetic_fleet.catalog_dir, synthetic_fleet.root / "templates", render_cache=RenderCache.in_memory()
    )
    target = workspace.catalog.targets[sorted(workspace.catalog.targets)[0]]
    first = workspace.renderer.render(target)
    second = workspace.renderer.render(target)
    assert first.canonical == second.canonical
    (parsed,) = workspace.renderer._parsed.values()
    assert parsed.plan is not None  # the second render planned the fill the third one runs
    assert not set(containers(first.document)) & set(containers(second.document))
    for container in [first.document, *first.document["stages"], *first.document["expectedArtifacts"]]:
        container.clear()  # what a caller may do to its own document
    assert workspace.renderer.render(target).canonical == second.canonical


def test_the_parse_memo_keeps_at_most_its_bound_and_still_renders_right(
    synthetic_fleet: synth.Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    dirs = (synthetic_fleet.catalog_dir, synthetic_fleet.root / "templates")
    expected = render_every_target(*dirs)
    workspace = Sources.load(*dirs, render_cache=RenderCache.in_memory())
    texts = {}
    original = render.load_yaml

    def parse(text: str, file: str, *, keep_quoting: bool = False) -> Any:
        texts[text] = None
        return original(text, file, keep_quoting=keep_quoting)

    monkeypatch.setattr(render, "load_yaml", parse)
    monkeypatch.setattr(render, "PARSE_MEMO_CHARS", 15_000)  # room for two or three texts
    got = {}
    for key in sorted(workspace.catalog.targets):
        outcome, references, _ = rendering._render_tracked(workspace, workspace.catalog.targets[key])
        canonical = outcome.rendered.canonical if outcome.rendered is not None else None
        got[key] = (canonical, outcome.problems, references)
        kept = workspace.renderer._parsed
        assert sum(len(text) for text in kept) == workspace.renderer._parsed_chars <= 15_000
        assert all(kept[text].document == load_yaml(text, "t", keep_quoting=True)[0] for text in kept)
    assert got == expected
    assert len(texts) > 3  # texts were dropped and parsed again


# --- artifact and trigger ids ------------------------------------------------------------------


def old_child_id(pipeline_id: str, kind: str, name: str) -> str:
    try:
        parent = uuid.UUID(pipeline_id)
    except ValueError:
        parent = uuid.uuid5(identity.PIPELINE_NAMESPACE, pipeline_id)
    return str(uuid.uuid5(parent, f"{kind}/{name}"))


def child_id(derive: Callable[[str, str, str], str], pipeline_id: str, kind: str, name: str) -> str:
    try:
        return derive(pipeline_id, kind, name)
    except (ValueError, TypeError) as exc:  # UnicodeEncodeError: a lone surrogate
        return f"{type(exc).__name__}: {exc}"


PIPELINE_IDS = [
    identity.pipeline_id_for("svc/dev/deploy"),
    identity.pipeline_id_for("svc/dev/deploy").upper(),
    "{" + identity.pipeline_id_for("a/b/c") + "}",
    "urn:uuid:" + identity.pipeline_id_for("a/b/c"),
    identity.pipeline_id_for("a/b/c").replace("-", ""),
    "12345678_1234_1234_1234_1234567890ab",
    " 2345678123412341234123456789012",
    "١٢٣٤٥٦٧٨١٢٣٤١٢٣٤١٢٣٤١٢٣٤٥٦٧٨٩٠١٢",
    "a pinned id that is no UUID",
    "",
    "ünïcode",
    "\ud800",
]
NAMES = ["artifact/workload-chart", "0/git", "", "ß/☃", "\udfff"]


@pytest.mark.parametrize("pipeline_id", PIPELINE_IDS)
@pytest.mark.parametrize("name", NAMES)
def test_artifact_and_trigger_ids_are_what_uuid5_gave(pipeline_id: str, name: str) -> None:
    for kind in ("artifact", "trigger"):
        assert child_id(identity._child_id, pipeline_id, kind, name) == child_id(
            old_child_id, pipeline_id, kind, name
        )


def test_ids_of_random_pipelines_and_names_are_what_uuid5_gave() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        pipeline_id = rng.choice([str(uuid.UUID(int=rng.getrandbits(128))), random_text(rng)])
        name = random_text(rng)
        assert identity._child_id(pipeline_id, "artifact", name) == old_child_id(
            pipeline_id, "artifact", name
        )


def test_renders_in_threads_share_the_parse_memo_safely(
    synthetic_fleet: synth.Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    dirs = (synthetic_fleet.catalog_dir, synthetic_fleet.root / "templates")
    expected = render_every_target(*dirs)
    workspace = Sources.load(*dirs, render_cache=RenderCache.in_memory())
    monkeypatch.setattr(render, "PARSE_MEMO_CHARS", 6_000)  # room for one text: dropped all the time
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch as often as they can
    try:
        with ThreadPoolExecutor(4) as pool:
            rounds = list(pool.map(lambda _: render_all_of(workspace), range(4)))
    finally:
        sys.setswitchinterval(interval)
    assert all(got == expected for got in rounds)
    kept = workspace.renderer._parsed
    assert sum(len(text) for text in kept) == workspace.renderer._parsed_chars <= 6_000


def render_all_of(workspace: Sources) -> dict[str, Any]:
    rendered = {}
    for key in sorted(workspace.catalog.targets):
        outcome, references, _ = rendering._render_tracked(workspace, workspace.catalog.targets[key])
        canonical = outcome.rendered.canonical if outcome.rendered is not None else None
        rendered[key] = (canonical, outcome.problems, references)
    return rendered


def test_a_render_adds_its_text_to_the_memo_only_under_the_memo_lock(synthetic_fleet: synth.Fleet) -> None:
    workspace = Sources.load(
        synthetic_fleet.catalog_dir, synthetic_fleet.root / "templates", render_cache=RenderCache.in_memory()
    )
    target = workspace.catalog.targets[sorted(workspace.catalog.targets)[0]]
    renderer = workspace.renderer
    with renderer._parsed_lock:
        rendering_thread = threading.Thread(target=renderer.render, args=(target,))
        rendering_thread.start()
        rendering_thread.join(0.5)
        assert rendering_thread.is_alive()  # waiting for the lock this test holds
        assert renderer._parsed == {}
    rendering_thread.join()
    assert len(renderer._parsed) == 1
