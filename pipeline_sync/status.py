"""Every plan status in one table: its words, and what may be done with an entry that has it (pure).

Adding a status means a row here and the planner rule that produces it; every presentation
(CLI text, Dagster metadata, Markdown, JSON) and every approval rule reads this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    IN_SYNC = "in-sync"
    DRIFT = "drift"
    CONFLICT = "conflict"
    INVALID = "invalid"
    DELETE = "delete"
    ORPHAN = "orphan"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class StatusRow:
    """What a status means: how it reads, and what an approval of it may do."""

    words: str
    actionable: bool = False  # applying it writes or deletes something
    error: bool = False  # `plan` exits 1 for it
    policy_may_approve: bool = False  # a stack's `approval: auto` covers it (never adoption)
    leftover: bool = False  # a managed pipeline whose target is not in the catalog


STATUSES: dict[Status, StatusRow] = {
    Status.CREATE: StatusRow("changed (new pipeline)", actionable=True, policy_may_approve=True),
    Status.UPDATE: StatusRow("changed", actionable=True, policy_may_approve=True),
    Status.IN_SYNC: StatusRow("in sync"),
    # A person's edit in Deck: only a person may decide to overwrite it.
    Status.DRIFT: StatusRow("drifted", actionable=True),
    Status.CONFLICT: StatusRow("conflict", error=True),
    Status.INVALID: StatusRow("invalid", error=True),
    # Deleting always waits for a person.
    Status.DELETE: StatusRow("changed (delete)", actionable=True, leftover=True),
    Status.ORPHAN: StatusRow("orphan", leftover=True),
    Status.UNKNOWN: StatusRow("unknown (catalog error)", error=True, leftover=True),
}

ACTIONABLE = frozenset(s for s, row in STATUSES.items() if row.actionable)
ERRORS = frozenset(s for s, row in STATUSES.items() if row.error)
LEFTOVERS = frozenset(s for s, row in STATUSES.items() if row.leftover)
AUTO_APPROVABLE = frozenset(s for s, row in STATUSES.items() if row.policy_may_approve)
