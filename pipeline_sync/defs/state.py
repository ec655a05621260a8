"""What the instance remembers between runs: each partition's last plan, and leftover keys.

Kept in the instance's key-value cursor table (run storage), so a nightly reconcile can
write events only for partitions whose plan changed without reading every partition's history.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import dagster as dg

from pipeline_sync.plan import PlanEntry

PLAN_STATE_PREFIX = "pipeline_sync/plan/"
LEFTOVER_KEYS = "pipeline_sync/leftover_keys"
PLAN_ASSET = dg.AssetKey("pipeline_plan")
_CHUNK = 500


def state_value(entry: PlanEntry) -> str:
    return f"{entry.status}:{entry.digest}"


def read_plan_state(instance: dg.DagsterInstance, keys: Iterable[str]) -> dict[str, str]:
    wanted = [PLAN_STATE_PREFIX + k for k in keys]
    found: dict[str, str] = {}
    for start in range(0, len(wanted), _CHUNK):
        values = instance.run_storage.get_cursor_values(set(wanted[start : start + _CHUNK]))
        found.update({k[len(PLAN_STATE_PREFIX) :]: v for k, v in values.items()})
    return found


def write_plan_state(instance: dg.DagsterInstance, entries: Iterable[PlanEntry]) -> None:
    values = {PLAN_STATE_PREFIX + e.key: state_value(e) for e in entries}
    items = list(values.items())
    for start in range(0, len(items), _CHUNK):
        instance.run_storage.set_cursor_values(dict(items[start : start + _CHUNK]))


def read_leftover_keys(instance: dg.DagsterInstance) -> list[str]:
    raw = instance.run_storage.get_cursor_values({LEFTOVER_KEYS}).get(LEFTOVER_KEYS)
    return list(json.loads(raw)) if raw else []


def write_leftover_keys(instance: dg.DagsterInstance, keys: Iterable[str]) -> None:
    instance.run_storage.set_cursor_values({LEFTOVER_KEYS: json.dumps(sorted(set(keys)))})


def latest_metadata(instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition: str) -> dict[str, Any]:
    """The newest materialization metadata of one partition, as plain values ({} if none)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return {}
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def as_metadata(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
