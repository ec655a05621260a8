"""The `pipeline-sync` command: thin verbs over the core; exit codes follow terraform's convention.

`plan` exits 0 (nothing to do), 2 (changes pending) or 1 (errors, which win); with
`--exit-code detailed` it sums 2 (changes pending) and 4 (problems: conflict, invalid, unknown,
a catalog file failed), so CI sees pending changes while a conflict is open, and 1 stays "no plan".
A usage error exits 1, never click's 2, which would read as "changes pending".
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

import click

from pipeline_sync import engine
from pipeline_sync.adopt import adopt as adopt_pipeline
from pipeline_sync.approve_sign import read_approvals, sign_approvals, signing_notes, unsigned_note
from pipeline_sync.catalog import Catalog
from pipeline_sync.engine import ApplyResult, Selection
from pipeline_sync.errors import PipelineSyncError
from pipeline_sync.plan import Plan, PlanEntry, fleet_summary
from pipeline_sync.release import apply_release, plan_release, release_version, take_out_of_catalog
from pipeline_sync.rendering import Sources, render_all, select_keys
from pipeline_sync.report import change_lines, cluster_lines, elsewhere_line, plan_markdown
from pipeline_sync.rollback import apply_rollback, describe_versions, plan_rollback
from pipeline_sync.safefiles import UnsafeFileError, write_text_file
from pipeline_sync.signing import SignedApproval
from pipeline_sync.status import Status
from pipeline_sync.store import Store
from pipeline_sync.store.select import open_store
from pipeline_sync.terminal import printable, printable_line
from pipeline_sync.variables import unused_variables


def echo(message: object = "", *, err: bool = False, nl: bool = True) -> None:
    """Print text that may hold bucket keys, names or values: control and bidi characters are
    escaped, so a crafted key cannot move the cursor, clear a line or reorder what a reviewer reads."""
    click.echo(printable(str(message)), err=err, nl=nl)


EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2
# `plan --exit-code detailed` only: added to EXIT_CHANGES when entries or catalog files have problems.
EXIT_PROBLEMS = 4
EXIT_CODE_MODES = ("default", "detailed")
FORMATS = ("text", "json", "markdown")


class _UsageError(click.UsageError):
    """A usage error that exits 1."""

    exit_code = EXIT_ERROR


class _Commands(click.Group):
    """click's group, except that a usage error exits 1 (click's own is 2, which callers of `plan`
    read as "changes pending")."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise _UsageError(exc.format_message(), exc.ctx) from exc

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _UsageError(exc.format_message(), exc.ctx) from exc


def plan_exit_code(the_plan: Plan, *, catalog_failed: bool, mode: str = "default") -> int:
    """The exit code of a plan that was made: see the module docstring and docs/ci.md."""
    problems = the_plan.has_errors or catalog_failed
    if mode == "detailed":
        return (EXIT_CHANGES if the_plan.has_changes else 0) + (EXIT_PROBLEMS if problems else 0)
    if problems:
        return EXIT_ERROR
    return EXIT_CHANGES if the_plan.has_changes else EXIT_OK


def _workspace(ctx: click.Context) -> Sources:
    ws: Sources = ctx.obj["workspace_factory"]()
    for error in ws.catalog.errors:
        echo(f"error: {error}", err=True)
    return ws


def _store() -> Store:
    """The one place the CLI makes its store: --store, else PIPELINE_SYNC_STORE, else the bucket
    PIPELINE_SYNC_BUCKET names."""
    return open_store(click.get_current_context().obj.get("store_url"))


@click.group(cls=_Commands)
@click.option(
    "--catalog",
    "catalog_dir",
    default="catalog",
    show_default=True,
    type=click.Path(path_type=Path),
)
@click.option(
    "--templates",
    "templates_dir",
    default="templates",
    show_default=True,
    type=click.Path(path_type=Path),
)
@click.option(
    "--store",
    "store_url",
    default=None,
    metavar="URL",
    help="Where Front50 keeps its pipelines: s3://BUCKET/ROOT, postgresql://..., mysql://..., "
    "front50+http(s)://HOST:PORT or gate+http(s)://HOST:PORT "
    "(default: PIPELINE_SYNC_STORE, else PIPELINE_SYNC_BUCKET and PIPELINE_SYNC_ROOT).",
)
@click.version_option(package_name="pipeline-sync")
@click.pass_context
def main(ctx: click.Context, catalog_dir: Path, templates_dir: Path, store_url: str | None) -> None:
    """Spinnaker pipelines as code: render, validate, plan and apply against Front50's store."""
    ctx.ensure_object(dict)
    ctx.obj["store_url"] = store_url
    ctx.obj["workspace_factory"] = lambda: engine.load_workspace(catalog_dir, templates_dir)
    ctx.obj["dirs"] = (catalog_dir, templates_dir)


@main.command()
@click.pass_context
def validate(ctx: click.Context) -> None:
    """Render and validate every target; one line per problem, and a warning per catalog variable
    that no template reads (warnings leave the exit code alone)."""
    ws = _workspace(ctx)
    outcomes = render_all(ws)
    problems = [p for o in outcomes.values() for p in o.problems]
    for problem in problems:
        echo(problem)
    for warning in unused_variables(ws.catalog, ws.renderer):
        echo(f"warning: {warning}", err=True)
    invalid = sum(1 for o in outcomes.values() if not o.valid)
    failed = len(ws.catalog.errors)
    summary = (
        f"{len(outcomes)} targets: {len(outcomes) - invalid} valid, {invalid} invalid; "
        f"{failed} catalog file{'s' if failed != 1 else ''} failed"
    )
    note = unsigned_note(ws.catalog)
    if note:
        echo(f"note: {note}", err=True)
    echo(summary, err=bool(problems or failed))
    ctx.exit(EXIT_ERROR if problems or failed else EXIT_OK)


@main.command()
@click.option("--select", "pattern", default=None, help="Glob over service/stack/template keys.")
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Write Front50's layout under DIR."
)
@click.pass_context
def render(ctx: click.Context, pattern: str | None, out: Path | None) -> None:
    """Render pipelines: print them as JSON, or write DIR/pipelines/<id>/pipeline-metadata.json."""
    ws = _workspace(ctx)
    keys = select_keys(ws.catalog.targets, pattern)
    outcomes = render_all(ws, keys)
    failed = bool(ws.catalog.errors)
    printed: dict[str, Any] = {}
    for key, outcome in outcomes.items():
        if not outcome.valid or outcome.rendered is None:
            failed = True
            for problem in outcome.problems:
                echo(f"error: {problem}", err=True)
            continue
        if out is None:
            printed[key] = outcome.rendered.document
        else:
            parts = ("pipelines", outcome.rendered.pipeline_id, "pipeline-metadata.json")
            text = json.dumps(outcome.rendered.document, indent=2, sort_keys=True) + "\n"
            try:
                path = write_text_file(out, parts, text)
            except UnsafeFileError as exc:
                failed = True
                echo(f"error: [{key}] {exc}", err=True)
                continue
            echo(f"{key} -> {path}")
    if out is None:
        echo(json.dumps(printed, indent=2, sort_keys=True))
    ctx.exit(EXIT_ERROR if failed else EXIT_OK)


def compute_plan(ws: Sources, store: Store, pattern: str | None) -> Plan:
    return engine.plan(ws, store, Selection(pattern=pattern))


@main.command()
@click.option("--select", "pattern", default=None, help="Glob over service/stack/template keys.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Save the plan for `apply`.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(FORMATS),
    default=None,
    help="text (default): each change with a summary and its unified diff; json: per-key entries; "
    "markdown: a pull-request comment of at most 60,000 characters.",
)
@click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
@click.option(
    "--exit-code",
    "exit_codes",
    type=click.Choice(EXIT_CODE_MODES),
    default="default",
    show_default=True,
    help="default: 0 nothing to do, 2 changes pending, 1 errors. detailed: 0, plus 2 when changes "
    "are pending, plus 4 when entries or catalog files have problems; 1 only when no plan was made.",
)
@click.option("--verbose", "-v", is_flag=True, help="Also print each change's raw DeepDiff (text format).")
@click.option(
    "--check-permissions",
    "check_as",
    default=None,
    metavar="USER",
    help="Ask Fiat (PIPELINE_SYNC_FIAT_URL) whether USER may write each change; warn where an apply "
    "made as USER would be refused (docs/http-store.md).",
)
@click.pass_context
def plan(
    ctx: click.Context,
    pattern: str | None,
    out: Path | None,
    output_format: str | None,
    as_json: bool,
    exit_codes: str,
    verbose: bool,
    check_as: str | None,
) -> None:
    """Diff the catalog against Front50. Exit 0 nothing to do, 2 changes pending, 1 errors
    (with --exit-code detailed: 1 no plan, else 0 + 2 changes pending + 4 problems)."""
    if as_json and output_format not in (None, "json"):
        raise click.UsageError(
            f"--json is --format json; it cannot be combined with --format {output_format}."
        )
    output_format = "json" if as_json else output_format or "text"
    try:
        store = _store()
    except PipelineSyncError as exc:
        _workspace(ctx)  # its catalog errors first, as for any other failed plan
        echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_ERROR)
    try:
        # the store is read while the catalog loads and renders (engine.plan_loading)
        ws, the_plan = engine.plan_loading(lambda: _workspace(ctx), store, Selection(pattern=pattern))
    except PipelineSyncError as exc:
        echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_ERROR)
    if notice := getattr(store, "precondition_notice", None):  # the HTTP stores' race window
        echo(f"note: {store.describe()}: {notice}", err=True)
    if check_as is not None:
        from pipeline_sync.permissions import Fiat, permission_problems

        try:
            for problem in permission_problems(the_plan, Fiat.from_env(), check_as):
                echo(f"warning: {problem}", err=True)
        except PipelineSyncError as exc:
            echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_ERROR)
    if out is not None:
        try:
            out.write_text(the_plan.dumps() + "\n")
        except OSError as exc:
            echo(f"error: cannot save the plan to {out}: {exc.strerror or exc}; nothing was saved.", err=True)
            ctx.exit(EXIT_ERROR)
    pending = [k for k, e in the_plan.entries.items() if e.actionable]
    unsigned = unsigned_note(ws.catalog, pending)
    needs_signatures = signing_notes(ws.catalog, the_plan.entries.values())
    approval_notes = [*needs_signatures, *([unsigned] if unsigned else [])]
    if output_format == "json":
        echo(json.dumps(_json_entries(the_plan, ws.catalog, approval_notes), indent=2, sort_keys=True))
    elif output_format == "markdown":
        errors = [str(error) for error in ws.catalog.errors]
        saved = str(out) if out else None
        echo(plan_markdown(the_plan, catalog_errors=errors, saved_as=saved, notes=needs_signatures), nl=False)
    else:
        _print_plan(the_plan, verbose=verbose)
        for line in needs_signatures:
            echo(line)
        if unsigned:
            echo(f"note: {unsigned}", err=True)
        if out is not None:
            echo(f"\nSaved the plan to {out}. Apply exactly it with: pipeline-sync apply {out}")
    ctx.exit(plan_exit_code(the_plan, catalog_failed=bool(ws.catalog.errors), mode=exit_codes))


def _json_entries(the_plan: Plan, catalog: Catalog, notes: list[str]) -> dict[str, Any]:
    """The machine format: each entry (with who must sign its approval, and who signed the live
    version's), the fleet summary, warnings and the approval notes the text output prints."""
    return {
        "entries": [
            {
                "key": e.key,
                "status": str(e.status),
                "digest": e.digest,
                "pipeline_id": e.pipeline_id,
                "diff": e.diff,
                "messages": list(e.messages),
                "drift_kind": e.drift_kind,
                "drift_fields": list(e.drift_fields),
                "adopt": e.adopt,
                "approvers": _approvers_of(catalog, e.key),
                "live_signed_by": the_plan.signed_by.get(e.key),
            }
            for e in the_plan.entries.values()
        ],
        "summary": fleet_summary(the_plan),
        "warnings": list(the_plan.warnings),
        "notes": notes,
    }


def _approvers_of(catalog: Catalog, key: str) -> str | None:
    policy = catalog.approver_policy(key)
    return policy.describe() if policy is not None else None


def _print_entry(entry: PlanEntry, *, verbose: bool = False) -> None:
    """An entry's reasons, the summary of its change, and the unified diff of the pipeline as it
    will be written (what the UI and the Markdown report show); the raw DeepDiff with verbose."""
    _echo_lines(_entry_lines(entry, verbose=verbose))


def _entry_lines(entry: PlanEntry, *, verbose: bool = False) -> list[str]:
    """What _print_entry prints, one echo's message each."""
    lines = [f"  {message}" for message in entry.messages]
    lines.extend(f"  {line}" for line in change_lines(entry))
    if entry.drift_yaml:
        lines.append(
            "  what a person changed since pipeline-sync wrote it (carry a hotfix into the catalog):"
        )
        lines.append(_indented(entry.drift_yaml, "    "))
    if entry.unified:
        lines.append(_indented(entry.unified, "  "))
    if verbose and entry.diff_yaml:
        lines.append("  DeepDiff of the documents (stages keyed by refId):")
        lines.append(_indented(entry.diff_yaml, "    "))
    return lines


def _echo_lines(messages: list[str]) -> None:
    """echo(message) for each message, written to standard output at once: the same text, each
    message escaped on its own (a plan of a thousand changes printed 16,000 messages one by one)."""
    if messages:
        click.echo("\n".join(printable(message) for message in messages))


def _indented(text: str, prefix: str) -> str:
    return prefix + text.rstrip().replace("\n", "\n" + prefix)


def _print_plan(the_plan: Plan, *, verbose: bool = False) -> None:
    lines: list[str] = []
    for entry in the_plan.entries.values():
        if entry.status is Status.IN_SYNC:
            continue
        lines.append(f"\n{entry.status}: {printable_line(entry.key)}  (digest {entry.digest})")
        if entry.key in the_plan.signed_by:
            lines.append(f"  the live version's approval was signed by {the_plan.signed_by[entry.key]}")
        lines.extend(_entry_lines(entry, verbose=verbose))
    _echo_lines(lines)  # before the warnings, which go to standard error
    for warning in the_plan.warnings:
        echo(f"warning: {warning}", err=True)
    summary = fleet_summary(the_plan)
    echo("\nSummary: " + ", ".join(f"{n} {s}" for s, n in summary["counts"].items()))
    deletes = [k for k, e in the_plan.entries.items() if e.status is Status.DELETE]
    if deletes:
        echo(f"Deletes ({len(deletes)}): " + ", ".join(printable_line(k) for k in deletes))
    for line in cluster_lines(summary):
        echo(f"  {line}")
    elsewhere = elsewhere_line(the_plan)
    if elsewhere:
        echo(elsewhere.capitalize())


@main.command()
@click.argument("plan_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--select", "pattern", default=None, help="Apply only entries matching this glob.")
@click.option("--approver", default=None, help="Recorded in the audit trail (default: the OS user).")
@click.option(
    "--sign",
    "sign_keys",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="KEYFILE",
    help="Sign an approval of each entry whose stack has approvers: a private key, or a public key "
    "whose private half is in ssh-agent. Repeat for several people.",
)
@click.option(
    "--approval",
    "approval_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="FILE",
    help="A signed approval another person made (`pipeline-sync approve KEY --digest D --sign KEYFILE "
    "--print`). Repeat for several.",
)
@click.option("--principal", default=None, help="Who --sign signs as (default: the key's principal).")
@click.option("--valid-for", default="1h", show_default=True, help="How long --sign approvals stay valid.")
@click.pass_context
def apply(
    ctx: click.Context,
    plan_file: Path,
    pattern: str | None,
    approver: str | None,
    sign_keys: tuple[Path, ...],
    approval_files: tuple[Path, ...],
    principal: str | None,
    valid_for: str,
) -> None:
    """Apply exactly the saved plan's entries that are still current; refuse stale ones.

    Entries whose stack declares approvers need signed approvals from enough distinct people:
    sign here with --sign, and bring other people's with --approval."""
    try:
        saved = Plan.from_json(json.loads(plan_file.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        echo(f"error: {plan_file} is not a pipeline-sync plan: {exc}", err=True)
        ctx.exit(EXIT_ERROR)
    chosen = [e for key in select_keys(saved.entries, pattern) if (e := saved.entries[key]).actionable]
    if not chosen:
        echo("Nothing to apply: the plan has no create, update, drift or delete entries.")
        ctx.exit(EXIT_OK)
    try:
        store = _store()
    except PipelineSyncError as exc:
        echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_ERROR)
    who = approver or getpass.getuser()
    approved = {e.key: e.digest for e in chosen if e.rollback_version is None and release_version(e) is None}
    ws = _workspace(ctx)
    try:
        signed = read_approvals(approval_files)
        signed += sign_approvals(
            ws.catalog, store, chosen, sign_keys, principal=principal, valid_for=valid_for
        )
    except PipelineSyncError as exc:
        echo(f"error: {exc} Nothing was written.", err=True)
        ctx.exit(EXIT_ERROR)
    for stray in sorted({s.statement.key for s in signed} - {e.key for e in chosen}):
        echo(
            f"warning: a signed approval names {stray}, which this apply does not write; it is ignored.",
            err=True,
        )
    results: list[ApplyResult] = []
    if approved:
        results += engine.apply(ws, store, approved, approver=who, signed=signed)
    results += [_apply_restore(ws, store, e, who, signed) for e in chosen if e.rollback_version is not None]
    results += [_apply_restore(ws, store, e, who, signed) for e in chosen if release_version(e) is not None]
    for result in results:
        stream_err = not result.ok
        signers = f" (signed by {result.signed_by})" if result.signed_by else ""
        echo(f"{result.outcome}: {result.message}{signers}", err=stream_err)
    applied = sum(1 for r in results if r.outcome == "applied")
    echo(f"{applied} applied, {sum(1 for r in results if not r.ok)} refused or failed (approver: {who})")
    ctx.exit(EXIT_OK if all(r.ok for r in results) else EXIT_ERROR)


def _apply_restore(
    ws: Sources, store: Store, entry: PlanEntry, who: str, signed: list[SignedApproval]
) -> ApplyResult:
    """A rollback or release entry, written only with the signed approvals its stack's approvers
    require (for a release the key has left the catalog: its stack's, Catalog.approver_policy)."""
    decision = engine.signed_approval(ws.catalog, store, entry.key, entry.digest, signed, approver=who)
    if decision.refusal is not None:
        return ApplyResult(
            entry.key, decision.refusal.outcome, decision.refusal.message, status=str(entry.status)
        )
    if release_version(entry) is not None:
        return apply_release(store, entry, approver=decision.actor)
    return apply_rollback(store, entry, approver=decision.approver, marker=decision.marker)


@main.command()
@click.argument("key")
@click.option("--digest", required=True, help="The plan digest shown by the plan (metadata or `plan`).")
@click.option(
    "--approver", default=None, help="Who approves (default: the OS user; with --sign: the key's principal)."
)
@click.option(
    "--sign",
    "sign_key",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="KEYFILE",
    help="Sign the approval (needed where the stack has approvers): a private key, or a public key "
    "whose private half is in ssh-agent.",
)
@click.option("--principal", default=None, help="Who --sign signs as (default: the key's principal).")
@click.option(
    "--valid-for", default="24h", show_default=True, help="How long the signed approval stays valid."
)
@click.option(
    "--print",
    "print_only",
    is_flag=True,
    help="Print the signed approval (for the Dagster launchpad's signed_statement, or `apply --approval`) "
    "instead of recording it in Dagster.",
)
@click.pass_context
def approve(
    ctx: click.Context,
    key: str,
    digest: str,
    approver: str | None,
    sign_key: Path | None,
    principal: str | None,
    valid_for: str,
    print_only: bool,
) -> None:
    """Approve one pipeline's plan in Dagster (needs DAGSTER_HOME); the approval sensor publishes it.
    With --sign --print, print a signed approval instead, for the launchpad or `apply --approval`."""
    from pipeline_sync.approve import approve_in_dagster
    from pipeline_sync.approve_sign import sign_one

    if print_only and sign_key is None:
        raise click.UsageError("--print prints a signed approval: give the key to sign with, --sign KEYFILE.")
    statement = ""
    if sign_key is not None:
        try:
            ws = _workspace(ctx)
            signed = sign_one(
                ws.catalog, _store(), key, digest, sign_key, principal=principal, valid_for=valid_for
            )
        except PipelineSyncError as exc:
            echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_ERROR)
        if print_only:
            click.echo(signed.text(), nl=False)
            ctx.exit(EXIT_OK)
        statement = signed.text()
        approver = signed.statement.principal
    who = approver or getpass.getuser()
    ok, message = approve_in_dagster(key, digest, who, statement)
    echo(message, err=not ok)
    ctx.exit(EXIT_OK if ok else EXIT_ERROR)


@main.command()
@click.argument("application", required=False)
@click.argument("name", required=False)
@click.option("--all", "everything", is_flag=True, help="Adopt every unmanaged pipeline the catalog renders.")
@click.pass_context
def adopt(ctx: click.Context, application: str | None, name: str | None, everything: bool) -> None:
    """Take over an unmanaged pipeline in place: pin its id into its catalog target.
    `adopt APP NAME` adopts one; `adopt 'APP/NAME-GLOB'` or `adopt --all` adopts each match."""
    if everything or name is None:
        _adopt_many(ctx, application, everything)
    catalog_dir, templates_dir = ctx.obj["dirs"]
    assert application is not None and name is not None
    try:
        done = adopt_pipeline(catalog_dir, templates_dir, _store(), application, name)
    except PipelineSyncError as exc:
        echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_ERROR)
    entry = done.entry
    echo(f"Adopting pipeline {done.pipeline_id} ({entry.application}/{entry.name}) as {done.key}.")
    echo(f"Pinned its id in {done.file}: stacks.{entry.stack}.ids.{done.key.split('/')[-1]}")
    echo("\nHow the live pipeline differs from what the catalog renders (applying writes the catalog's):")
    echo(entry.unified or "(no difference)")
    echo(
        f"Next: commit the catalog change, then `pipeline-sync plan --select {done.key} --out plan.json` "
        "(an update that adopts it, same id) and `pipeline-sync apply plan.json`."
    )
    ctx.exit(EXIT_OK)


@main.command()
@click.argument("key")
@click.option(
    "--to", "to_version", default=None, help="The S3 version id to restore (default: the previous)."
)
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Save the rollback plan for `apply`."
)
@click.option("--list", "list_versions", is_flag=True, help="List the stored versions and exit.")
@click.pass_context
def rollback(
    ctx: click.Context, key: str, to_version: str | None, out: Path | None, list_versions: bool
) -> None:
    """Plan restoring an earlier S3 version of KEY (partition key or pipeline id); apply it like a plan."""
    ws = ctx.obj["workspace_factory"]()
    catalog_id = ws.renderer.pipeline_id(key) if key in ws.catalog.targets else None
    try:
        store = _store()
        if list_versions:
            for line in describe_versions(store, key, catalog_id):
                echo(line)
            ctx.exit(EXIT_OK)
        entry = plan_rollback(store, key, catalog_id=catalog_id, to_version=to_version)
    except PipelineSyncError as exc:
        echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_ERROR)
    echo(f"\nrollback ({entry.status}): {printable_line(entry.key)}  (digest {entry.digest})")
    _print_entry(entry)
    if out is not None:
        out.write_text(Plan({entry.key: entry}).dumps() + "\n")
        echo(f"\nSaved the rollback to {out}. Apply exactly it with: pipeline-sync apply {out}")
    else:
        echo("\nNothing saved: pass --out PLAN.json to save this rollback for `pipeline-sync apply`.")
    echo(
        f"After it is applied, the next reconcile shows the catalog's version of {entry.key} again as an "
        "update (stacks with approval: auto apply it on their own): revert the catalog or template "
        "change too, or the next approved plan undoes this rollback."
    )
    ctx.exit(EXIT_OK)


# -- bringing an existing fleet under management (import, release) -----------------------------


@main.command("import")
@click.option("--select", "pattern", default=None, help="Glob over APPLICATION/NAME of live pipelines.")
@click.option("--stack", default="imported", show_default=True, help="The stack imported targets go on.")
@click.option("--dry-run", is_flag=True, help="Print what would be written; write nothing.")
@click.pass_context
def import_command(ctx: click.Context, pattern: str | None, stack: str, dry_run: bool) -> None:
    """Write a template and a pinned catalog target for each unmanaged live pipeline selected."""
    from pipeline_sync.importer import import_pipelines

    catalog_dir, templates_dir = ctx.obj["dirs"]
    try:
        report = import_pipelines(
            catalog_dir, templates_dir, _store(), select=pattern, stack=stack, dry_run=dry_run
        )
    except PipelineSyncError as exc:
        echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_ERROR)
    verb = "Would import" if dry_run else "Imported"
    for done in report.imported:
        echo(
            f"{verb} {done.application}/{done.name} ({done.pipeline_id}) as {done.key}: {done.template_file}"
        )
    for skipped in report.skipped:
        echo(
            f"skipped {skipped.application}/{skipped.name} ({skipped.pipeline_id}): {skipped.reason}",
            err=True,
        )
    for note in report.notes:
        echo(note[0].upper() + note[1:] + ".")
    if dry_run:
        for shown in sorted(report.files):
            echo(report.file_diff(shown).rstrip("\n"))
    echo(
        f"{len(report.imported)} imported, {len(report.skipped)} skipped"
        + (" (dry run: nothing written)" if dry_run else "")
    )
    if report.imported and not dry_run:
        echo(
            "Next: `pipeline-sync plan --out plan.json` shows each as an adoption whose only change is "
            "pipeline-sync's lock and marker; a person approves it with `pipeline-sync apply plan.json`."
        )
    ctx.exit(EXIT_ERROR if report.skipped else EXIT_OK)


@main.command()
@click.argument("key")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Save the release plan for `apply` (required).",
)
@click.option("--dry-run", is_flag=True, help="Show the plan; leave the catalog as it is and save nothing.")
@click.pass_context
def release(ctx: click.Context, key: str, out: Path | None, dry_run: bool) -> None:
    """Un-adopt KEY: plan restoring the pipeline as it was before pipeline-sync first wrote it
    (unmanaged, no lock), and take KEY out of the catalog; apply the plan like any other."""
    if out is None and not dry_run:
        raise click.UsageError(
            "release needs --out PLAN.json (it takes the target out of the catalog) or --dry-run."
        )
    catalog_dir, templates_dir = ctx.obj["dirs"]
    try:
        planned = plan_release(catalog_dir, templates_dir, _store(), key)
    except PipelineSyncError as exc:
        echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_ERROR)
    entry = planned.entry
    echo(f"\nrelease ({entry.status}): {printable_line(entry.key)}  (digest {entry.digest})")
    _print_entry(entry)
    if dry_run:
        echo("\nDry run: the catalog is unchanged and nothing was saved.")
        ctx.exit(EXIT_OK)
    assert out is not None
    try:
        out.write_text(Plan({entry.key: entry}).dumps() + "\n")
        take_out_of_catalog(planned)
    except (OSError, PipelineSyncError) as exc:
        echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_ERROR)
    echo(f"\nTook {key} out of {planned.service_file} ({planned.template_file} is left in place).")
    echo(f"Saved the release to {out}. A person applies exactly it with: pipeline-sync apply {out}")
    ctx.exit(EXIT_OK)


def _adopt_many(ctx: click.Context, pattern: str | None, everything: bool) -> None:
    """`adopt GLOB` / `adopt --all`: one line per pipeline, pinned, refused or skipped, and why."""
    from pipeline_sync.adopt import adopt_matching

    if everything == (pattern is not None):
        raise click.UsageError("adopt takes APPLICATION NAME, a glob over APPLICATION/NAME, or --all.")
    catalog_dir, templates_dir = ctx.obj["dirs"]
    try:
        outcomes = adopt_matching(catalog_dir, templates_dir, _store(), pattern or "*")
    except PipelineSyncError as exc:
        echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_ERROR)
    for done in outcomes:
        what = f" as {done.key}" if done.key else ""
        line = f"{done.outcome}: {done.application}/{done.name} ({done.pipeline_id}){what}: {done.message}"
        echo(line, err=done.outcome == "refused")
    words = ("pinned", "refused", "skipped")
    counts = {word: sum(1 for o in outcomes if o.outcome == word) for word in words}
    echo(", ".join(f"{n} {word}" for word, n in counts.items()))
    if counts["pinned"]:
        echo(
            "Next: commit the catalog change, then `pipeline-sync plan --out plan.json` (updates that adopt "
            "them, same ids; a person approves each) and `pipeline-sync apply plan.json`."
        )
    ctx.exit(EXIT_ERROR if counts["refused"] else EXIT_OK)


@main.command("templatize")
@click.option(
    "--max-difference",
    type=click.FloatRange(0.0, 1.0),
    default=0.5,
    show_default=True,
    help="The share of leaf values two pipelines may differ in and still share a template.",
)
@click.option("--dry-run", is_flag=True, help="Print what would be written; write nothing.")
@click.pass_context
def templatize_command(ctx: click.Context, max_difference: float, dry_run: bool) -> None:
    """Group same-shape one-off templates into shared ones; differing values become catalog variables.
    Every target must render byte-identical canonical JSON before and after, or nothing is written."""
    from pipeline_sync.templatize import templatize

    catalog_dir, templates_dir = ctx.obj["dirs"]
    try:
        report = templatize(catalog_dir, templates_dir, max_difference=max_difference, dry_run=dry_run)
    except PipelineSyncError as exc:
        echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_ERROR)
    templates = Path(templates_dir).name
    for group in report.groups:
        shared = f"{templates}/{group.template}.yaml.j2"
        echo(f"{shared} is shared by {len(group.keys)} pipelines: {', '.join(group.keys)}")
        for variable in group.variables:
            renamed = f" ({variable.renamed_from!r} was taken)" if variable.renamed_from else ""
            echo(f"  {variable.name}{renamed} <- {variable.path}: {variable.placement}")
    for note in report.not_unified:
        echo(f"not unified: {note}")
    if dry_run:
        for shown in sorted(report.files):
            echo(report.file_diff(shown).rstrip("\n"))
    echo(f"Proved: all {report.checked} targets render byte-identical canonical JSON before and after.")
    echo(report.summary + (" (dry run: nothing written)" if dry_run else ""))
    ctx.exit(EXIT_OK)
