"""Front50 facts every store shares: who writes, its timestamps, the application object, change markers."""

from __future__ import annotations

import json
import time
from typing import Any

from pipeline_sync.errors import StoreError
from pipeline_sync.names import application_name_problem

WRITER = "pipeline-sync"


def now_ms() -> int:
    return int(time.time() * 1000)


def next_change_stamp(last_seen: int | None, *, newest_object_ms: int | None = None) -> int:
    """A change signal Front50 will see as new: past the last value it may hold, even when this
    machine's clock is behind (Front50 reloads only on a strictly newer value)."""
    candidates = [now_ms()]
    if last_seen is not None:
        candidates.append(last_seen + 1)
    if newest_object_ms is not None:
        candidates.append(newest_object_ms + 1)
    return max(candidates)


def change_marker_body(stamp: int) -> bytes:
    """{"lastModified": <epoch ms as a JSON number>}, as Front50 writes it."""
    return json.dumps({"lastModified": stamp}).encode()


def read_change_marker(body: bytes | None) -> int | None:
    """The marker's value as Front50 reads it (Map<String, Long>: a numeric string converts)."""
    if body is None:
        return None
    try:
        value = json.loads(body).get("lastModified")
        return int(value)
    except (ValueError, TypeError, AttributeError):
        return 0  # Front50 reads anything else as 0


class ApplicationNameError(StoreError):
    """An application object was not created: its name is not one Front50 and Deck accept."""


def application_document(application: str, email: str | None) -> dict[str, Any]:
    """The smallest application object Front50 loads: `name` upper-cased, as Front50's
    Application.getName() gives it (its id, and a store's key, is the name lower-cased).

    Refuses a name the catalog could not hold: it becomes a key, and must never leave its prefix.
    """
    problem = application_name_problem(application)
    if problem:
        raise ApplicationNameError(
            f"the application object for {application!r} was not created: {problem}; "
            "set the service's `application:` to a name Front50 and Deck accept"
        )
    stamp = str(now_ms())
    return {
        "name": application.upper(),
        "email": email or "",
        "createTs": stamp,
        "updateTs": stamp,
        "lastModifiedBy": WRITER,
        "cloudProviders": "",
    }
