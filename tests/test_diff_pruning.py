"""semantic_diff prunes equal values before DeepDiff walks the documents: its report must be
exactly DeepDiff's of the unpruned documents, whatever the shapes."""

from __future__ import annotations

import json
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


def test_pruning_replaces_what_is_equal_and_keeps_every_key() -> None:
    old = {"same": {"deep": [1, 2]}, "diff": {"keep": 1, "change": 1}, "gone": 1}
    new = {"same": {"deep": [1, 2]}, "diff": {"keep": 1, "change": 2}, "new": 1}
    assert without_equal_values(old, new) == (
        {"same": None, "diff": {"keep": None, "change": 1}, "gone": 1},
        {"same": None, "diff": {"keep": None, "change": 2}, "new": 1},
    )
