"""How a plan entry reads to a person: status words, metadata values and the Markdown diff (pure)."""

from __future__ import annotations

from typing import Any

from pipeline_sync.plan import Plan, PlanEntry
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


def cluster_lines(summary: dict[str, Any], *, limit: int | None = None, code: str = "") -> list[str]:
    """One line per change shared by several pipelines: 'the same change in N pipelines (...)'."""
    clusters = [c for c in summary["clusters"] if c["count"] > 1][:limit]
    lines = []
    for cluster in clusters:
        stacks = ", ".join(f"{s}: {n}" for s, n in cluster["stacks"].items())
        example = f"{code}{cluster['example']}{code}"
        lines.append(f"the same change in {cluster['count']} pipelines ({stacks}), e.g. {example}")
    return lines


def elsewhere_line(plan: Plan) -> str | None:
    """How many pipelines other catalogs manage on the same store, or None when there are none."""
    if not plan.elsewhere:
        return None
    parts = ", ".join(f"{n} by {name or 'an unnamed catalog'}" for name, n in plan.elsewhere.items())
    return f"managed elsewhere (left alone): {parts}"


def fleet_markdown(summary: dict[str, Any], plan: Plan, changed: int) -> str:
    """The fleet's plan as Markdown: counts, shared changes, and the keys that need a person."""
    lines = [
        f"**{len(plan.entries)} pipelines**, {changed} with a new plan since the last run.",
        "",
    ]
    lines += ["| status | count |", "|---|---|"]
    lines += [f"| {status} | {n} |" for status, n in summary["counts"].items()]
    clusters = cluster_lines(summary, limit=10, code="`")
    if clusters:
        lines += ["", "**Fleet clusters**", *(f"- {line}" for line in clusters)]
    for title in ("drift", "conflict", "invalid", "pending"):
        keys = summary[title]
        if keys:
            shown = ", ".join(f"`{k}`" for k in keys[:50]) + (
                f" and {len(keys) - 50} more" if len(keys) > 50 else ""
            )
            lines += ["", f"**{title}** ({len(keys)}): {shown}"]
    elsewhere = elsewhere_line(plan)
    if elsewhere:
        lines += ["", elsewhere]
    for warning in plan.warnings[:20]:
        lines += ["", f"warning: {warning}"]
    return "\n".join(lines)
