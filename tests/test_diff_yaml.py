"""to_yaml builds PyYAML's node tree itself and fleet_signature blanks names without a regex per
name: both must give exactly what PyYAML's representer and re.sub give, whatever the data."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline_sync import diff
from pipeline_sync.diff import blank_name, semantic_diff, to_yaml, yaml_events
from pipeline_sync.nesting import nesting_depth

ODD = [
    "",
    " ",
    "  leading",
    "trailing ",
    "multi\nline",
    "multi\nline\n",
    "\n",
    "a: b",
    "key:",
    ": x",
    "# comment",
    "a #b",
    "-",
    "- item",
    "?",
    "? x",
    "!tag",
    "&anchor",
    "*alias",
    "|",
    ">",
    "%",
    "@",
    "`",
    "'quoted'",
    '"double"',
    "it's",
    "{a: 1}",
    "[1, 2]",
    "ünïcödé",
    "日本語",
    "emoji 🚀",
    "\t tab",
    "\x00 nul",
    "\x1b[31m",
    "\u2028",
    "\ufeff",
    "123",
    "0123",
    "0x1F",
    "1e5",
    "1.0",
    ".5",
    "-1",
    "+1",
    ".inf",
    ".nan",
    "1_000",
    "12:30:00",
    "2024-01-01",
    "yes",
    "no",
    "Yes",
    "NO",
    "on",
    "off",
    "y",
    "n",
    "true",
    "False",
    "null",
    "~",
    "Null",
    "=",
    "<<",
    "${ trigger['tag'] }",
    "${ #stage('x')['status'] == 'SUCCEEDED' }",
    "word " * 40,
    "x" * 150,
    "a b\n\nc",
    "ends with colon:",
    "back\\slash",
]
SCALARS: list[Any] = [
    0,
    1,
    -7,
    10**30,
    True,
    False,
    None,
    0.0,
    -0.0,
    1.5,
    1e20,
    1e-7,
    float("inf"),
    float("-inf"),
    float("nan"),
    3.0,
]


def reference(data: Any, width: int = 100) -> str:
    """What to_yaml wrote before it built nodes itself."""
    return yaml.dump(
        data, Dumper=diff._Dumper, sort_keys=True, default_flow_style=False, allow_unicode=True, width=width
    )


def written_or_refused(write: Callable[[Any], str], data: Any) -> str | type[yaml.YAMLError]:
    """What write makes of data: its text, or the type of the YAML error it raises."""
    try:
        return write(data)
    except yaml.YAMLError as exc:
        return type(exc)


def random_document(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 6 and roll < 0.25:
        return {
            rng.choice([*ODD, "a", "b", "name", "stages"]): random_document(rng, depth + 1)
            for _ in range(rng.randint(0, 5))
        }
    if depth < 6 and roll < 0.4:
        return [random_document(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return rng.choice(ODD + SCALARS)


class Recording(yaml.SafeDumper):  # PyYAML's Python representer and serializer, events recorded
    def __init__(self) -> None:
        super().__init__(None, default_flow_style=False, sort_keys=True)
        self.events: list[yaml.Event] = []

    def emit(self, event: yaml.Event) -> None:
        self.events.append(event)


FIELDS = ("anchor", "tag", "implicit", "value", "style", "flow_style", "explicit")


def described(events: list[yaml.Event]) -> list[tuple[Any, ...]]:
    return [(type(e).__name__, *(getattr(e, f, "-") for f in FIELDS)) for e in events]


def serialized(data: Any) -> list[tuple[Any, ...]]:
    """The events of data's node as PyYAML's serializer emits them (stream and document left out)."""
    dumper = Recording()
    dumper.open()
    dumper.represent(data)
    dumper.close()
    return described(dumper.events[2:-2])


def ours(data: Any) -> list[tuple[Any, ...]]:
    events: list[yaml.Event] = []
    yaml_events(data, events.append)
    return described(events)


@pytest.mark.parametrize("value", ODD + SCALARS, ids=[repr(v)[:30] for v in ODD + SCALARS])
def test_every_odd_value_is_written_as_pyyaml_writes_it(value: Any) -> None:
    for data in (
        {"k": value},
        {value: 1} if isinstance(value, str) else {"k": [value]},
        [value, {"v": value}],
    ):
        assert ours(data) == serialized(data)
        assert to_yaml(data) == reference(data)


@pytest.mark.parametrize("seed", range(10))
def test_random_documents_are_written_as_pyyaml_writes_them(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(200):
        data = {"stages": [random_document(rng) for _ in range(3)], "name": random_document(rng)}
        assert ours(data) == serialized(data)
        assert to_yaml(data) == reference(data)


def test_the_example_pipelines_are_written_as_pyyaml_writes_them() -> None:
    from pipeline_sync.render_cache import RenderCache
    from pipeline_sync.rendering import Sources, render_all

    root = Path(__file__).resolve().parent.parent
    workspace = Sources.load(root / "catalog", root / "templates", render_cache=RenderCache.in_memory())
    documents = [o.rendered.document for o in render_all(workspace).values() if o.rendered is not None]
    assert len(documents) > 3
    for document in documents:
        assert to_yaml(document) == reference(document)
        assert to_yaml(semantic_diff(None, document)) == reference(semantic_diff(None, document))


def test_mixed_keys_that_cannot_be_sorted_stay_in_order_as_pyyaml_keeps_them() -> None:
    data = {"b": 1, 2: "x", "a": [None]}
    assert ours(data) == serialized(data)
    assert to_yaml(data) == reference(data) == "b: 1\n2: x\na:\n- null\n"


@pytest.mark.parametrize(
    ("label", "data"),
    [
        ("a list held twice", {"a": (shared := [1, 2]), "b": shared}),
        ("a mapping held twice", {"a": (inner := {"x": 1}), "b": [inner]}),
        ("a tuple", {"a": (1, 2)}),
        ("a subclass of dict", {"a": type("Sub", (dict,), {})(x=1)}),
        ("bytes", {"a": b"\x00\x01"}),
    ],
)
def test_anything_but_plain_json_is_left_to_pyyaml(label: str, data: Any) -> None:
    with pytest.raises(diff.NotPlainData):
        ours(data)
    got = written_or_refused(to_yaml, data)
    assert got == written_or_refused(reference, data)
    if "held twice" in label:
        assert isinstance(got, str) and "&id001" in got


def test_deep_documents_are_written_by_pyyaml_wider() -> None:
    data: Any = "leaf " * 30
    for _ in range(45):
        data = {"k": data}
    depth = nesting_depth(data)
    assert depth > diff.FAST_YAML_DEPTH
    assert to_yaml(data) == reference(data, width=100 + 2 * depth)


def test_the_resolver_memo_answers_as_the_resolver_does() -> None:
    plain = yaml.SafeDumper(None)
    for value in [*ODD, "", "yes", "123", "1.5", "null", "true"]:
        assert (
            diff._plain_tag(value)
            == diff._plain_tag(value)
            == plain.resolve(yaml.ScalarNode, value, (True, False))
        )


NAMES = ["stage", "k8s-dev", "svc-00002", "a", "a-b", "b-c-d", "x.y", "name", "(", "a+b", "ü"]


def regex_blank(text: str, name: str) -> str:
    return re.sub(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", "<name>", text)


@pytest.mark.parametrize(
    "text",
    [
        '{"stages": ["stage", "stage-2", "my stage", "stages"]}',
        "a-b-c-d a-b b-c-d",
        "aa a aa-a a",
        "k8s-dev-k8s-dev k8s-dev",
        "<name> name names name_x",
        "x.yx.y x.y",
        "ü üü aü ü",
        "",
        "a",
    ],
)
def test_blank_name_is_the_regex_it_replaces(text: str) -> None:
    for name in NAMES:
        assert blank_name(text, name) == regex_blank(text, name)


@pytest.mark.parametrize("seed", range(5))
def test_blank_name_is_the_regex_on_random_text(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = "ab-_ .<>1ü"
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4)))
        assert blank_name(text, name) == regex_blank(text, name)
