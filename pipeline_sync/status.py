"""How a plan entry reads to a person: the status words shown in the UI and logs (pure)."""

from __future__ import annotations

from typing import Any

from pipeline_sync.plan import PlanEntry, Status

_WORDS = {
    Status.IN_SYNC: "in sync",
    Status.CREATE: "changed (new pipeline)",
    Status.UPDATE: "changed",
    Status.DRIFT: "drifted",
    Status.DELETE: "changed (delete)",
    Status.CONFLICT: "conflict",
    Status.INVALID: "invalid",
    Status.ORPHAN: "orphan",
    Status.UNKNOWN: "unknown (catalog error)",
}


def display_status(entry: PlanEntry) -> str:
    """E.g. 'changed, pending approval' or 'drifted, pending approval' or 'in sync'."""
    words = _WORDS[entry.status]
    if entry.actionable:
        who = "auto-approved by stack policy" if _auto(entry) else "pending approval"
        return f"{words}, {who}"
    return words


def _auto(entry: PlanEntry) -> bool:
    return entry.approval == "auto" and entry.status in AUTO_APPROVABLE


# A stack policy may approve creates and updates; drift (a person's edit) and deletes
# always wait for a person.
AUTO_APPROVABLE = frozenset({Status.CREATE, Status.UPDATE})


def diff_markdown(entry: PlanEntry, limit: int = 60_000) -> str:
    """The unified diff as a Markdown code block, truncated for the UI."""
    text = entry.unified or "(no difference)"
    if len(text) > limit:
        text = text[:limit] + "\n... (truncated; see the run log for the full diff)\n"
    return f"```diff\n{text}\n```"


def entry_summary(entry: PlanEntry) -> dict[str, Any]:
    """Plain values describing an entry, for metadata and JSON."""
    return {
        "status": str(entry.status),
        "display_status": display_status(entry),
        "plan_digest": entry.digest,
        "pipeline_id": entry.pipeline_id or "",
        "application": entry.application or "",
        "name": entry.name or "",
        "live_etag": entry.live_etag or "absent",
        "approval_policy": entry.approval,
        "messages": "\n".join(entry.messages),
    }
