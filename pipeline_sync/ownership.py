"""Whether a live pipeline is ours: proven from its body, its id and the catalog, never claimed (pure).

A marker is text anyone can write: Deck's "Copy from" copies it, a person can type one. So a
live pipeline is managed by this catalog only when all of these hold:
- its body carries a marker naming a partition key and this catalog's id (or a former one);
- its id is the id this catalog gives that key (pinned in the service file, else derived);
- its application is the application the catalog gives the key's service, compared
  case-insensitively as Front50 does (`application:` in the service file, else the service's name).
A copy has a new id, a forged marker sits on someone else's id: both fail, and stay unmanaged.

The id already binds the key (derived from it, or pinned in that key's service file); the
application is defence in depth: a pipeline at our id in another application is never taken
over, and never moved between applications. A key whose service file is gone (or never said
its application) gets only the default, the service's name: the marker cannot tell the
application, because anyone can write a marker. Such a pipeline in a custom application is left
alone (a warning), never deleted: keep the service file, with `stacks: {}`, to prune it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pipeline_sync.catalog import Catalog
from pipeline_sync.names import is_partition_key, split_key
from pipeline_sync.provenance import CATALOG_FIELD


class Owner(StrEnum):
    OURS = "ours"
    ELSEWHERE = "elsewhere"  # another catalog's marker: neither ours to change nor an orphan
    NONE = "none"  # no marker, or a marker that does not hold up


@dataclass(frozen=True)
class Ownership:
    owner: Owner
    key: str | None = None
    reason: str = ""
    catalog_id: str | None = None


def ownership(
    catalog: Catalog,
    pipeline_id: str,
    application: str | None,
    marker: Mapping[str, Any] | None,
) -> Ownership:
    """Who manages the live pipeline with this id, application and marker."""
    if marker is None:
        return Ownership(Owner.NONE, reason="it carries no pipeline-sync marker")
    key = marker.get("key")
    claimed_catalog = marker.get(CATALOG_FIELD)
    if not isinstance(key, str) or not is_partition_key(key):
        return Ownership(Owner.NONE, reason=f"its marker names no valid key ({_shown(key)})")
    if not catalog.owns_marker_of(claimed_catalog):
        name = claimed_catalog if isinstance(claimed_catalog, str) else "an unnamed catalog"
        return Ownership(
            Owner.ELSEWHERE,
            key=key,
            reason=f"its marker names catalog {name!r}",
            catalog_id=claimed_catalog if isinstance(claimed_catalog, str) else None,
        )
    expected = catalog.pipeline_id(key)
    if pipeline_id.lower() != expected.lower():
        return Ownership(
            Owner.NONE,
            key=key,
            reason=(
                f"its marker names {key}, whose id is {expected}, but it is {pipeline_id} "
                "(a copy made in Deck, or a marker written by hand)"
            ),
        )
    service = split_key(key)[0]
    expected_application = catalog.application_of(service)
    if not isinstance(application, str) or application.lower() != expected_application.lower():
        whose = (
            f"service {service!r}'s application; a pipeline is never moved between applications"
            if service in catalog.applications
            else f"service {service!r} has no readable file to say otherwise, so only its name is proven"
        )
        return Ownership(
            Owner.NONE,
            key=key,
            reason=(
                f"its marker names {key}, but its application is {_shown(application)}, "
                f"not {expected_application!r} ({whose})"
            ),
        )
    return Ownership(Owner.OURS, key=key)


def _shown(value: object) -> str:
    return repr(value)[:80]
