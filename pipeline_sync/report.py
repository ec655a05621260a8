"""How a plan entry reads to a person: status words, metadata values and the Markdown diff (pure)."""

from __future__ import annotations

from typing import Any

from pipeline_sync.plan import PlanEntry
from pipeline_sync.status import STATUSES


def display_status(entry: PlanEntry) -> str:
    """E.g. 'changed, pending approval' or 'drifted, pending approval' or 'in sync'."""
    words = STATUSES[entry.status].words
    if entry.actionable:
        who = "auto-approved by stack policy" if entry.policy_approvable else "pending approval"
        return f"{words}, {who}"
    return words


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
