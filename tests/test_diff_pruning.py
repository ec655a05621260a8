"""semantic_diff prunes equal values before DeepDiff walks the documents: its report must be
exactly DeepDiff's of the unpruned documents, whatever the shapes."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from deepdiff import DeepDiff

from pipeline_sync.diff import keyed_view, semantic_diff, without_equal_values

STAGE = {"refId": "1", "type": "deploy", "overrides": [{"a": 1}], "account": {"name": "k8s", "n": 1}}


def unpruned(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    result = DeepDiff(keyed_view(old), keyed_view(new), verbose_level=2)
    return json.loads(result.to_json()) if result else {}


CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("equal", {"a": {"b": [1, 2]}, "c": 1}, {"c": 1, "a": {"b": [1, 2]}}),
    ("int to float", {"a": 1, "b": {"c": 2}}, {"a": 1.0, "b": {"c": 2}}),
    ("bool to int", {"a": True, "b": 2}, {"a": 1, "b": 2}),
    ("float to int inside", {"a": {"x": [1.0], "y": 1}}, {"a": {"x": [1], "y": 1}}),
    # Fewer than a third of the keys shared: DeepDiff shows the whole mapping, equal values included.
    (
        "a mapping changed whole",
        {"x": {"a": 1, "b": 2, "c": 3}, "k": 0},
        {"x": {"a": 1, "d": 2, "e": 3}, "k": 0},
    ),
    ("the root changed whole", {"a": 1, "b": 2, "c": 3}, {"a": 1, "d": 2, "e": 3}),
    ("exactly a third shared", {"a": {"q": 1}, "c": 2}, {"a": {"q": 1}, "d": 2}),
    ("equal items in a list", {"l": [{"a": 1, "b": {"c": 2}}, 5]}, {"l": [{"a": 1, "b": {"c": 3}}, 5]}),
    ("list grows", {"l": [{"a": 1}, {"a": 2}]}, {"l": [{"a": 0}, {"a": 1}, {"a": 2}]}),
    ("null to value", {"a": None, "b": {"c": None}}, {"a": {"x": 1}, "b": {"c": 0}}),
    (
        "keyed stages, one field",
        {"stages": [STAGE, {**STAGE, "refId": "2"}]},
        {"stages": [STAGE, {**STAGE, "refId": "2", "type": "wait"}]},
    ),
    ("keyed stages, one added", {"stages": [STAGE]}, {"stages": [STAGE, {**STAGE, "refId": "2"}]}),
    ("stage nested change", {"stages": [STAGE]}, {"stages": [{**STAGE, "account": {"name": "k8s", "n": 2}}]}),
    ("create", {}, {"stages": [STAGE], "name": "n"}),
]


@pytest.mark.parametrize(("old", "new"), [(o, n) for _, o, n in CASES], ids=[c[0] for c in CASES])
def test_pruned_diff_is_exactly_deepdiffs(old: dict[str, Any], new: dict[str, Any]) -> None:
    assert semantic_diff(old, new) == unpruned(old, new)


def test_pruning_leaves_out_equal_keys_and_keeps_what_differs() -> None:
    old = {"same": {"deep": [1, 2]}, "diff": {"keep": 1, "change": 1}, "gone": 1}
    new = {"same": {"deep": [1, 2]}, "diff": {"keep": 1, "change": 2}, "new": 1}
    assert without_equal_values(old, new) == (
        {"diff": {"change": 1}, "gone": 1},
        {"diff": {"change": 2}, "new": 1},
    )


def test_pruning_keeps_as_many_equal_keys_as_the_threshold_needs() -> None:
    # 2 of 5 keys shared (0.4): leaving out one equal key would make it 1 of 4 (0.25), which
    # DeepDiff reports changed whole; so both stay, as None.
    old = {"a": 1, "b": 2, "x": 1}
    new = {"a": 1, "b": 2, "y": 1, "z": 1}
    assert without_equal_values(old, new) == (
        {"a": None, "b": None, "x": 1},
        {"a": None, "b": None, "y": 1, "z": 1},
    )
    # 2 of 4 shared (0.5): one equal key can go (1 of 3 is a third, not under it), not both.
    old = {"a": 1, "b": 2, "x": 1}
    new = {"a": 1, "b": 2, "y": 1}
    assert without_equal_values(old, new) == ({"b": None, "x": 1}, {"b": None, "y": 1})


def test_private_keys_are_counted_as_deepdiff_counts_them() -> None:
    # DeepDiff neither compares nor counts '__' keys: of its keys none is shared, so it reports
    # the mapping changed whole, with the equal '__' values in it.
    old = {"m": {"__a": 1, "__b": 2, "x": 1}, "k": 1}
    new = {"m": {"__a": 1, "__b": 2, "y": 1}, "k": 1}
    assert without_equal_values(old, new) == ({"m": old["m"]}, {"m": new["m"]})
    assert semantic_diff(old, new) == unpruned(old, new)
    assert "old_value" in str(semantic_diff(old, new))


def _shapes(seed: int, count: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Pairs of documents that share most of their values, as a template change leaves them."""
    rng = random.Random(seed)
    leaves: list[Any] = [0, 1, 1.0, True, False, None, "", "a", "b", [1], [1.0], {}, [], {"a": 1}]

    def value(depth: int) -> Any:
        roll = rng.random()
        if depth < 3 and roll < 0.3:
            return {rng.choice("abcdefgh"): value(depth + 1) for _ in range(rng.randint(0, 6))}
        if depth < 3 and roll < 0.4:
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        return rng.choice(leaves)

    def changed(data: Any, depth: int) -> Any:
        if isinstance(data, dict):
            out = {k: changed(v, depth + 1) if rng.random() < 0.3 else v for k, v in data.items()}
            for _ in range(rng.randint(0, 2)):
                roll = rng.random()
                if roll < 0.4 and out:
                    del out[rng.choice(sorted(out))]
                elif roll < 0.8:
                    out[rng.choice("abcdefgh_")] = value(depth + 1)
                else:
                    out["__" + rng.choice("ab")] = value(depth + 1)
            return out
        if isinstance(data, list) and data and rng.random() < 0.5:
            return [changed(v, depth + 1) for v in data]
        return value(depth) if rng.random() < 0.5 else data

    pairs = []
    for _ in range(count):
        old = {k: value(1) for k in "abcdefghij"[: rng.randint(1, 10)]}
        old["stages"] = [{"refId": str(i), "x": value(2), "y": value(2)} for i in range(3)]
        pairs.append((old, changed(old, 0)))
    return pairs


@pytest.mark.parametrize("seed", range(8))
def test_pruned_diff_is_deepdiffs_on_random_shapes(seed: int) -> None:
    for old, new in _shapes(seed, 150):
        pruned = semantic_diff(old, new)
        assert pruned == unpruned(old, new)
        # The same report in the same order: text output shows it as DeepDiff ordered it.
        assert json.dumps(pruned) == json.dumps(unpruned(old, new))


KEYS = ["a", "b", "name", "it's", 'say "hi"', "both ' and \"", "__private", "x y", "[0]", "é"]
LEAVES: list[Any] = [
    0,
    1,
    -5,
    10**20,
    True,
    False,
    None,
    "",
    "a",
    "b",
    "two\nlines",
    "it's",
    1.5,
    float("nan"),
]


def _same_shape(seed: int, count: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Pairs of one shape whose leaves differ: what a template change makes, and its edge cases
    (a value of another type, a line break, a float, a change in a list of scalars)."""
    rng = random.Random(seed)

    def value(depth: int) -> Any:
        roll = rng.random()
        if depth < 4 and roll < 0.35:
            return {rng.choice(KEYS): value(depth + 1) for _ in range(rng.randint(1, 5))}
        if depth < 4 and roll < 0.5:
            return [value(depth + 1) for _ in range(rng.randint(1, 3))]
        return rng.choice(LEAVES)

    def leaves_changed(data: Any) -> Any:
        if isinstance(data, dict):  # keys in another order too: DeepDiff reports in the new order
            keys = list(data)
            if rng.random() < 0.5:
                rng.shuffle(keys)
            return {k: leaves_changed(data[k]) for k in keys}
        if isinstance(data, list):
            return [leaves_changed(v) for v in data]
        if rng.random() < 0.2:
            same_type = [leaf for leaf in LEAVES if type(leaf) is type(data)]
            return rng.choice(same_type if rng.random() < 0.9 else LEAVES)
        return data

    pairs = []
    for _ in range(count):
        old = {k: value(1) for k in rng.sample(KEYS, rng.randint(1, len(KEYS)))}
        old["stages"] = [{"refId": str(i), "x": value(2), "name": rng.choice(LEAVES)} for i in range(3)]
        pairs.append((old, leaves_changed(old)))
    return pairs


@pytest.mark.parametrize("seed", range(6))
def test_leaf_changes_are_reported_exactly_as_deepdiff_reports_them(seed: int) -> None:
    for old, new in _same_shape(seed, 150):
        ours = semantic_diff(old, new)
        assert json.dumps(ours) == json.dumps(unpruned(old, new))


def test_a_template_change_is_reported_without_deepdiff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The leaf-only case must not fall through to DeepDiff (it would pass the test above too)."""
    import pipeline_sync.diff as diff_module

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("DeepDiff was called for a leaf-only change")

    old = {
        "name": "deploy",
        "stages": [
            {"refId": "judge", "name": "Judge the canary at 3%", "weights": [{"w": 3}, {"w": 97}], "it's": 1},
            {"refId": "bake", "name": "Bake", "__note": "x", "enabled": True},
        ],
    }
    new = json.loads(json.dumps(old))
    new["stages"][0]["name"] = "Judge canary at 3%"
    new["stages"][0]["weights"][1]["w"] = 90
    new["stages"][0]["it's"] = 2
    new["stages"][1]["__note"] = "ignored, as DeepDiff ignores it"
    new["stages"][1]["enabled"] = False
    expected = unpruned(old, new)
    monkeypatch.setattr(diff_module, "DeepDiff", refused)
    assert json.dumps(semantic_diff(old, new)) == json.dumps(expected)
    assert set(expected["values_changed"]) == {
        "root['stages']['judge']['name']",
        "root['stages']['judge']['weights'][1]['w']",
        "root['stages']['judge'][\"it's\"]",
        "root['stages']['bake']['enabled']",
    }


@pytest.mark.parametrize(
    ("label", "old", "new"),
    [
        ("a string with a line break", {"a": "x\ny", "b": 1}, {"a": "x\nz", "b": 1}),
        ("a float", {"a": 1.5, "b": 1}, {"a": 2.5, "b": 1}),
        ("not a number", {"a": float("nan"), "b": 1}, {"a": float("nan"), "b": 1}),
        ("a type", {"a": 1, "b": 1}, {"a": "1", "b": 1}),
        ("a list of scalars", {"a": [1, 2, 3], "b": 1}, {"a": [1, 5, 3], "b": 1}),
        ("a key added", {"a": {"x": 1, "y": 1}, "b": 1}, {"a": {"x": 1, "y": 1, "z": 1}, "b": 1}),
        ("a private key added", {"a": {"x": 1}, "b": 1}, {"a": {"x": 2, "__z": 1}, "b": 1}),
        ("a list's length", {"a": [{"x": 1}], "b": 1}, {"a": [{"x": 1}, {"x": 2}], "b": 1}),
    ],
)
def test_what_is_not_a_leaf_change_goes_to_deepdiff(
    label: str, old: dict[str, Any], new: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline_sync.diff as diff_module

    calls = []
    real = diff_module.DeepDiff

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(diff_module, "DeepDiff", counted)
    assert json.dumps(semantic_diff(old, new)) == json.dumps(unpruned(old, new))
    assert calls, label
