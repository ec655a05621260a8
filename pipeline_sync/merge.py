"""Layered variables: maps merge deeply, lists and scalars replace."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, TypeGuard


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: override's maps merged into base's, anything else replaced."""
    return merge_layers(base, override)


def merge_layers(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Merge layers lowest first, into a new tree that shares nothing with them.

    Each value is copied once, as it enters the result; maps already in the result (copies
    themselves) are merged into in place.
    """
    result: dict[str, Any] = {}
    for layer in layers:
        _merge_into(result, layer)
    return result


def _merge_into(owned: dict[str, Any], override: Mapping[str, Any]) -> None:
    for key, value in override.items():
        current = owned.get(key)
        if _is_mapping(current) and _is_mapping(value):
            if not isinstance(current, dict):
                current = owned[key] = dict(current)
            _merge_into(current, value)
        else:
            owned[key] = _copied(value)


# Values copy.deepcopy returns as they are; everything else a YAML load yields is a dict or list.
_ATOMS = frozenset({str, int, float, bool, type(None)})


def _is_mapping(value: Any) -> TypeGuard[Mapping[str, Any]]:
    """isinstance(value, Mapping), without the ABC check for the types YAML loads most."""
    kind = type(value)
    return kind is dict or (kind not in _ATOMS and kind is not list and isinstance(value, Mapping))


def _copied(value: Any) -> Any:
    """copy.deepcopy(value), built directly for the plain trees YAML loads (dicts, lists, atoms):
    deepcopy's memo and dispatch cost more than the copy. Keys are hashable, so never copied
    (deepcopy returns them as they are); any other type is left to deepcopy."""
    kind = type(value)
    if kind in _ATOMS:
        return value
    if kind is dict:
        return {key: _copied(item) for key, item in value.items()}
    if kind is list:
        return [_copied(item) for item in value]
    return copy.deepcopy(value)
