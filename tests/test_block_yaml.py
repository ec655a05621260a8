"""block_yaml writes block YAML itself: its text must be exactly the C emitter's, for any data it
accepts, at any column a scalar lands on; anything it does not decide goes to the emitter."""

from __future__ import annotations

import random
import string
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_diff_yaml import reference, written_or_refused  # reference: yaml.dump with diff._Dumper

from pipeline_sync import block_yaml, diff
from pipeline_sync.block_yaml import NotSimple, simple_text
from pipeline_sync.nesting import nesting_depth

pytestmark = pytest.mark.skipif(not diff._DIRECT, reason="block_yaml matches libyaml's emitter only")


def direct(data: Any, width: int = 100) -> str:
    return block_yaml.block_yaml(data, width, diff._plain_tag, diff._emitted, max_depth=diff.FAST_YAML_DEPTH)


def emitter_refused(data: Any, width: int) -> str:
    raise AssertionError(f"the emitter was asked to write {data!r}")


# Characters that change a scalar's style or folding, and some that do not.
ALPHABET = " :#-?'\"!&*|>%@`,[]{}.~=<+0123456789abcxyzABC_/\\$()é\t\n\x07\u2028\ufeff"


def texts() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(alphabet=ALPHABET, max_size=12),
        st.sampled_from(["", "yes", "null", "~", "123", "1e3", "0x1F", "2024-01-01", "---", "...", "true"]),
        # long text of words and runs of spaces: folded past the width
        st.lists(st.sampled_from(["word", "a", "it's", "b:c", "é", " ", "x" * 30, "'q'"]), max_size=40).map(
            " ".join
        ),
    )


SCALARS = st.one_of(
    texts(),
    st.integers(),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
)
KEYS = st.one_of(st.text(alphabet="abcxyz-_", min_size=1, max_size=10), texts(), st.just("k" * 128))
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.one_of(st.dictionaries(KEYS, DOCUMENTS, min_size=1), st.lists(DOCUMENTS, min_size=1)),
    width=st.sampled_from([100, 100, 60, 137]),
)
def test_any_document_it_writes_is_the_emitters_text(data: Any, width: int) -> None:
    try:
        got = direct(data, width)
    except NotSimple:
        return
    assert got == reference(data, width)


@pytest.mark.parametrize("seed", range(4))
def test_long_scalars_fold_where_the_emitter_folds_them_at_every_column(seed: int) -> None:
    """Every key length and nesting puts a scalar's start on another column; the words around
    the width (single and double spaces, quotes, a colon that quotes the whole text) decide
    each fold."""
    rng = random.Random(seed)
    words = ["w", "word", "it's", "b:c", "a: b", "x" * 17, "", "é"]
    for _ in range(300):
        value = " ".join(rng.choice(words) for _ in range(rng.randint(5, 40)))
        key = "k" * rng.randint(1, 40)
        leaf: Any = rng.choice([{key: value}, [value], [[value]], {key: [value, {key: value}]}])
        for _ in range(rng.randint(0, 12)):
            leaf = rng.choice([{"a": leaf}, [leaf], {"b": 1, "a": leaf}])
        data = leaf if isinstance(leaf, dict | list) else {"k": leaf}
        width = rng.choice([100, 80, 120])
        assert direct(data, width) == reference(data, width)


@pytest.mark.parametrize(
    "value",
    [" leading space", "trailing space ", "trailing ", "  two", "a  b c ", " ", "a b", "x" * 20 + " "],
)
@pytest.mark.parametrize("key_length", [95, 98, 99, 100, 101, 110, 128])
def test_a_scalar_that_starts_past_the_width_folds_as_the_emitter_folds_it(
    value: str, key_length: int
) -> None:
    """A long key puts a scalar's first character past the width: a quoted scalar never folds
    at its first or last character, a plain one folds at its first space."""
    key = "k" * key_length
    for data in ({key: value}, {key: [value]}, {"a": {key: value + " tail"}}):
        assert direct(data) == reference(data)


@pytest.mark.parametrize("empty", [{}, [], "leaf"])
@pytest.mark.parametrize("levels", [39, 40, 41])
def test_data_deeper_than_max_depth_is_declined_and_to_yaml_takes_the_wider_width(
    empty: Any, levels: int
) -> None:
    """Past 40 levels to_yaml writes wider: an empty container counts as a level, as
    nesting_depth counts it, so a document 40 levels deep ending in one is not written here."""
    data: Any = {"text": "word " * 30, "end": empty}
    for _ in range(levels - 1):
        data = {"k": data, "text": "word " * 30}
    depth = nesting_depth(data)
    if depth <= diff.FAST_YAML_DEPTH:
        assert direct(data) == reference(data)
    else:
        with pytest.raises(NotSimple):
            direct(data)
    assert diff.to_yaml(data) == reference(data, 100 if depth <= 40 else 100 + 2 * depth)


def test_plain_ascii_documents_never_ask_the_emitter() -> None:
    data = {
        "name": "Deploy",
        "stages": [{"refId": "1", "when": "it's a: b", "n": 3, "ok": True, "x": None, "f": 1.5}, [], {}],
        "long": "word " * 40 + "end",
        "quoted": "'",
        "nested": [["a", ["b"]], {"c": {"d": ["e"]}}],
    }
    assert block_yaml.block_yaml(data, 100, diff._plain_tag, emitter_refused, max_depth=40) == reference(data)


@pytest.mark.parametrize(
    "value",
    ["naïve café " * 12, "line\nbreak", "tab\there", "\x07", "\u2028", "日本語 " * 30, "trailing\n"],
    ids=repr,
)
def test_scalars_it_does_not_decide_are_the_emitters_own_at_the_same_place(value: str) -> None:
    assert simple_text(value, diff._plain_tag) is None
    for width in (100, 60, 100):  # the emitter's text at one width is not another's
        for data in (
            {"k": value},
            {"stages": [{"name": value, "kkkkkkkkkkkk": value}, value, [value]]},
            {"a": {"b": {"c": [[{"deep": value}]]}}},
        ):
            assert direct(data, width) == reference(data, width)


@pytest.mark.parametrize(
    ("label", "data"),
    [
        ("a key longer than a simple key", {"k" * 129: 1}),
        ("a key with a line break", {"a\nb": 1}),
        ("keys of two types", {"a": 1, 2: 3}),
        ("an integer key", {1: 2}),
        ("a list held twice", {"a": (shared := [1]), "b": shared}),
        ("an empty list held twice", {"a": (no_tags := []), "b": [no_tags]}),
        ("an empty mapping held twice", [(no_vars := {}), {"vars": no_vars}]),
        ("a tuple", {"a": (1, 2)}),
        ("a subclass of str", {"a": type("S", (str,), {})("x")}),
        ("an empty mapping at the top", {}),
        ("a scalar at the top", "text"),
    ],
)
def test_what_it_does_not_write_is_refused_and_to_yaml_still_matches(label: str, data: Any) -> None:
    with pytest.raises(NotSimple):
        direct(data)
    assert written_or_refused(diff.to_yaml, data) == written_or_refused(reference, data)


def test_simple_text_follows_libyamls_analysis_for_every_short_ascii_text() -> None:
    """Every text of up to two characters from the characters that matter, and a sample of
    longer ones: as a value and as a key, the one line the emitter writes."""
    chars = " :#-?'\"!&*|>%@`,[]{}.~ab1"
    candidates = [a + b for a in chars for b in ["", *chars]]
    rng = random.Random(0)
    candidates += ["".join(rng.choice(chars) for _ in range(rng.randint(3, 8))) for _ in range(3000)]
    candidates += ["---", "--- x", "...", "-1", "1.5", "0o17", "+.inf", "Yes", "off", "=", "<<"]
    for text in candidates:
        expected_value = reference({"k": text}, 10**6).removeprefix("k: ").removesuffix("\n")
        expected_key = reference({text: 0}, 10**6).removesuffix(": 0\n")
        assert simple_text(text, diff._plain_tag) == expected_value == expected_key, text


def test_to_yaml_takes_the_direct_path_for_pipelines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a test that passes by falling back: a pipeline's text comes from block_yaml."""
    calls = []
    real = block_yaml.block_yaml

    def counted(*args: Any, **kwargs: Any) -> str:
        text = real(*args, **kwargs)
        calls.append(text)
        return text

    monkeypatch.setattr(diff, "block_yaml", counted)
    document = {"application": "app", "stages": [{"refId": "a", "type": "wait", "waitTime": 30}], "x": []}
    assert diff.to_yaml(document) == reference(document)
    assert calls == [reference(document)]


def test_the_printable_ascii_alphabet_is_what_simple_text_takes() -> None:
    for code in range(128):
        char = chr(code)
        decided = simple_text(f"a{char}b", diff._plain_tag) is not None
        assert decided == (char in string.printable and char not in "\t\n\r\x0b\x0c"), repr(char)


def test_an_empty_list_anchored_in_yaml_keeps_its_alias() -> None:
    """What yamlsafe loads from `&none []` and `*none` is one list held twice: PyYAML writes an
    anchor and an alias for it, so to_yaml must too."""
    data = yaml.safe_load("stages:\n- refId: a\n  tags: &none []\n- refId: b\n  tags: *none\n")
    assert data["stages"][0]["tags"] is data["stages"][1]["tags"]
    assert diff.to_yaml(data) == reference(data)
    assert "&id001" in diff.to_yaml(data)


@pytest.mark.parametrize("width", [-1, 0, 1, 4])
def test_widths_libyaml_replaces_are_declined(width: int) -> None:
    with pytest.raises(NotSimple):
        direct({"k": "a b c d e f g h"}, width)


@pytest.mark.parametrize("width", [5, 6, 9])
def test_the_narrowest_widths_libyaml_keeps_fold_as_it_folds(width: int) -> None:
    data = {"k": "a b c d e f g h", "l": ["x y z " * 3, {"m": "it's a: b c"}]}
    assert direct(data, width) == reference(data, width)
