"""How a plan reads to a person: status words, metadata values, change summaries and Markdown (pure)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pipeline_sync.diff import change_summary
from pipeline_sync.plan import Plan, PlanEntry, fleet_summary
from pipeline_sync.status import ERRORS, STATUSES, Status
from pipeline_sync.terminal import clipped

# GitHub refuses a comment over 65,536 characters; GitLab's notes allow more. Stay well under both.
COMMENT_LIMIT = 60_000
# One change's diff in a comment: a big pipeline's create is about 10,000 characters.
DIFF_LIMIT = 20_000
# The statuses that need a person (conflict, invalid, unknown, catalog errors) take at most this.
ATTENTION_LIMIT = 15_000
# How many items a summary line names before it says "and N more".
LISTED = 12
KEYS_LISTED = 20
# A count per stack fits a comment's width up to this many stacks; past it, totals only.
STACK_COLUMNS = 8


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
    return code_block(text, "diff")


def code_block(text: str, info: str = "") -> str:
    """text in a fenced block whose fence no backtick run in text can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text.rstrip(chr(10))}\n{fence}"


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


def change_lines(entry: PlanEntry) -> list[str]:
    """The semantic summary shown above a diff: what a create or delete is; else the fields that
    change and the stages added, removed or changed, by refId."""
    if entry.status is Status.CREATE and entry.desired is not None:
        stages = entry.desired.get("stages")
        refs = (
            [str(s.get("refId")) for s in stages if isinstance(s, Mapping)]
            if isinstance(stages, list)
            else []
        )
        named = f" ({listed(refs)})" if refs and "None" not in refs else ""
        count = len(stages) if isinstance(stages, list) else 0
        return [
            f"new pipeline {entry.name!r} in application {entry.application!r}: "
            f"{count} stage{'s' if count != 1 else ''}{named}"
        ]
    if entry.status is Status.DELETE:
        return [f"deletes pipeline {entry.name!r} of application {entry.application!r}"]
    summary = change_summary(entry.diff)
    lines = []
    if summary.fields:
        lines.append(f"fields changed: {listed(summary.fields)}")
    if summary.stages_added:
        lines.append(f"stages added (refId): {listed(summary.stages_added)}")
    if summary.stages_removed:
        lines.append(f"stages removed (refId): {listed(summary.stages_removed)}")
    if summary.stages_changed:
        stages = [
            f"{ref} ({listed(paths, 6)})" if paths else ref for ref, paths in summary.stages_changed.items()
        ]
        lines.append(f"stages changed (refId): {listed(stages, 8)}")
    return lines


def listed(items: Sequence[str], most: int = LISTED) -> str:
    """'a, b, c' or 'a, b, ... and 7 more'."""
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


def cluster_phrase(cluster: Mapping[str, Any]) -> str:
    """'the same change in 212 pipelines (dev: 100, prod: 112)' for a fleet_summary cluster."""
    stacks = ", ".join(f"{s}: {n}" for s, n in cluster["stacks"].items())
    return f"the same change in {cluster['count']} pipelines ({stacks})"


def cluster_lines(summary: dict[str, Any], *, limit: int | None = None, code: str = "") -> list[str]:
    """One line per change shared by several pipelines: 'the same change in N pipelines (...)'."""
    clusters = [c for c in summary["clusters"] if c["count"] > 1][:limit]
    return [f"{cluster_phrase(c)}, e.g. {code}{c['example']}{code}" for c in clusters]


def elsewhere_line(plan: Plan) -> str | None:
    """How many pipelines other catalogs manage on the same store, or None when there are none."""
    if not plan.elsewhere:
        return None
    parts = ", ".join(f"{n} by {name or 'an unnamed catalog'}" for name, n in plan.elsewhere.items())
    return f"managed elsewhere (left alone): {parts}"


def _counts_table(summary: Mapping[str, Any]) -> list[str]:
    return ["| status | count |", "|---|---|", *(f"| {s} | {n} |" for s, n in summary["counts"].items())]


def fleet_markdown(
    summary: dict[str, Any], plan: Plan, changed: int, link: Callable[[str], str] | None = None
) -> str:
    """The fleet's plan as Markdown: counts, shared changes, and the keys that need a person
    (each a link to link(key), when given: the Dagster UI passes its partition pages)."""
    lines = [
        f"**{len(plan.entries)} pipelines**, {changed} with a new plan since the last run.",
        "",
    ]
    lines += _counts_table(summary)
    clusters = cluster_lines(summary, limit=10, code="`")
    if clusters:
        lines += ["", "**Fleet clusters**", *(f"- {line}" for line in clusters)]
    for title in ("drift", "conflict", "invalid", "pending"):
        keys = summary[title]
        if keys:
            shown = ", ".join(f"[`{k}`]({link(k)})" if link else f"`{k}`" for k in keys[:50]) + (
                f" and {len(keys) - 50} more" if len(keys) > 50 else ""
            )
            lines += ["", f"**{title}** ({len(keys)}): {shown}"]
    elsewhere = elsewhere_line(plan)
    if elsewhere:
        lines += ["", elsewhere]
    for warning in plan.warnings[:20]:
        lines += ["", f"warning: {warning}"]
    return "\n".join(lines)


# -- the pull-request comment ------------------------------------------------------------------


def plan_markdown(
    plan: Plan,
    *,
    catalog_errors: Iterable[str] = (),
    saved_as: str | None = None,
    limit: int = COMMENT_LIMIT,
    notes: Iterable[str] = (),
) -> str:
    """The plan as one review comment of at most limit characters: counts per stack, one
    collapsible unified diff per distinct change (entries with equal signatures share one),
    the statuses that need a person with their reasons, and where the full plan is.

    What does not fit is counted and left to the full plan (saved_as, from `plan --out`)."""
    summary = fleet_summary(plan, limit=KEYS_LISTED)
    if saved_as:
        apply = _code(f"pipeline-sync apply {saved_as}")
        full = f"the full plan is {_code(saved_as)} ({apply} applies exactly it)"
    else:
        full = f"save the full plan with {_code('pipeline-sync plan --out plan.json')}"
    head = "\n".join(_header(plan, summary))
    notes_text = "\n".join(f"> {note}" for note in notes)
    if notes_text:
        head = f"{head}\n\n{notes_text}"
    attention = _bounded(_attention(plan, list(catalog_errors)), ATTENTION_LIMIT, full)
    footer = f"---\n\n<sub>{full[0].upper()}{full[1:]}.</sub>\n"
    budget = limit - len(head) - len(attention) - len(footer) - 500  # 500: the "not shown" line
    clusters = summary["clusters"]
    blocks: list[str] = []
    for cluster in clusters:
        block = _change_block(plan, cluster, budget - sum(len(b) + 2 for b in blocks))
        if block is None:
            break
        blocks.append(block)
    parts = [head]
    if clusters:
        pipelines = sum(c["count"] for c in clusters)
        parts.append(f"### {_count(len(clusters), 'distinct change')} in {_count(pipelines, 'pipeline')}")
        parts += blocks
        rest = clusters[len(blocks) :]
        if rest:
            more = sum(c["count"] for c in rest)
            parts.append(
                f"_{_count(len(rest), 'more change')} ({_count(more, 'pipeline')}) did not fit in this "
                f"comment: {full}._"
            )
    if attention:
        parts.append(attention)
    return "\n\n".join([*parts, footer])


def _header(plan: Plan, summary: Mapping[str, Any]) -> list[str]:
    counts = ", ".join(f"{n} {s}" for s, n in summary["counts"].items()) or "nothing planned"
    stacks = list(summary["by_stack"]) if len(summary["by_stack"]) <= STACK_COLUMNS else []
    lines = [
        "## pipeline-sync plan",
        "",
        f"**{_count(len(plan.entries), 'pipeline')}**: {counts}.",
    ]
    if summary["counts"]:
        lines += [
            "",
            _row(["status", "total", *(_inline(s) for s in stacks)]),
            _row(["---", *["---:"] * (1 + len(stacks))]),
        ]
        for status, total in summary["counts"].items():
            lines.append(
                _row([status, str(total), *(str(summary["by_stack"][s].get(status, 0)) for s in stacks)])
            )
    return lines


def _row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _change_block(plan: Plan, cluster: Mapping[str, Any], room: int) -> str | None:
    """One distinct change as a <details> block of at most room characters, or None if even its
    summary and a few lines of its diff do not fit."""
    example = plan.entries[cluster["example"]]
    status = "/".join(cluster["status"])
    if cluster["count"] > 1:
        title = f"<b>{html.escape(status)}</b>: {html.escape(cluster_phrase(cluster))}, e.g. "
    else:
        title = f"<b>{html.escape(status)}</b> "
    lines = ["<details>", f"<summary>{title}<code>{html.escape(example.key)}</code></summary>", ""]
    lines += [f"- {_inline(clipped(m, 600))}" for m in example.messages[:3]]
    lines += [f"- {_inline(line)}" for line in change_lines(example)]
    keys: list[str] = cluster["keys"]
    if cluster["count"] > 1:
        more = cluster["count"] - len(keys)
        named = ", ".join(_code(k) for k in keys) + (f" and {more} more" if more > 0 else "")
        lines += [
            "",
            f"Pipelines: {named}",
            "",
            f"The diff of {_code(example.key)}; the others differ from it only in their names and ids:",
        ]
    head = "\n".join(lines) + "\n\n"
    tail = "\n\n</details>"
    diff_room = min(DIFF_LIMIT, room - len(head) - len(tail) - 200)
    if diff_room < 400:
        return None
    return head + _diff(example, diff_room) + tail


def _diff(entry: PlanEntry, room: int) -> str:
    """entry's unified diff in a fenced block, cut at a line boundary to fit in room."""
    text = entry.unified or "(no difference)"
    block = code_block(text, "diff")
    if len(block) <= room:
        return block
    lines = text.splitlines(keepends=True)
    kept, size = [], 0
    for line in lines:
        if size + len(line) > room - 200:
            break
        kept.append(line)
        size += len(line)
    if not kept:  # one line longer than the room: cut inside it
        kept = [text[: max(room - 200, 0)] + "\n"]
    note = f"\n_The diff is cut after {len(kept)} of {len(lines)} lines._"
    return code_block("".join(kept), "diff") + note


def _attention(plan: Plan, catalog_errors: list[str]) -> list[str]:
    """'Needs a person' items: catalog errors, then conflict, invalid and unknown entries with their
    reasons; then orphans, pipelines managed elsewhere and warnings."""
    items = [f"- **catalog error**: {_inline(clipped(e, 600))}" for e in catalog_errors]
    for entry in plan.entries.values():
        if entry.status in ERRORS:
            reasons = "; ".join(clipped(m, 600) for m in entry.messages[:4]) or STATUSES[entry.status].words
            items.append(f"- **{entry.status}** {_code(entry.key)}: {_inline(reasons)}")
    others = [
        f"- **orphan** {_code(e.key)}: {_inline('; '.join(e.messages))}"
        for e in plan.entries.values()
        if e.status is Status.ORPHAN
    ]
    elsewhere = elsewhere_line(plan)
    others += [f"- {_inline(elsewhere)}"] if elsewhere else []
    others += [f"- warning: {_inline(clipped(w, 600))}" for w in plan.warnings]
    lines = ["### Needs a person", *items] if items else []
    if others:
        lines += ["", "### Left alone", *others]
    return lines


def _bounded(lines: list[str], limit: int, full: str) -> str:
    """lines joined, dropping the last ones (and saying how many) past limit characters."""
    kept: list[str] = []
    size = 0
    for index, line in enumerate(lines):
        if size + len(line) + 1 > limit - 300:
            dropped = sum(1 for item in lines[index:] if item.startswith("- "))
            kept.append(f"- _{dropped} more not shown: {full}._")
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'s' if n != 1 else ''}"


# CommonMark reads a backslash before any ASCII punctuation as that character, literally.
_MARKDOWN = re.compile(r"([\\`*_\[\]<>&|~@])")


def _inline(text: str) -> str:
    """text (a message, a name from a live pipeline) on one line of Markdown that renders exactly
    it: no emphasis, link, HTML tag, entity, table cell or mention can come out of it."""
    return _MARKDOWN.sub(r"\\\1", " ".join(text.split()))


def _code(text: str) -> str:
    """text as an inline code span that no backtick in it can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
