"""Import: unmanaged live pipelines become one-off templates and pinned catalog targets, proven by a plan.

For each selected live pipeline without a pipeline-sync marker, `import_pipelines` writes
`templates/<application>-<name>.yaml.j2` (the pipeline as YAML, Jinja escaped, without its id,
application and server fields, which the catalog and Front50 give) and lists it on a stack of
the application's service file with the pipeline's id pinned, creating the service file from
Front50's application object when there is none. Before anything is written, the edited catalog
is planned against the store in a scratch copy: each pipeline must plan as an adoption whose
only change is pipeline-sync's lock and marker, or it is skipped with the reason. Nothing
existing is overwritten: a template file or target that already exists is a refusal.
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pipeline_sync import catalog_edit, engine
from pipeline_sync.catalog import DEFAULTS_FILE, SERVICES_DIR, TEMPLATE_SUFFIX, Catalog
from pipeline_sync.engine import Selection
from pipeline_sync.errors import PipelineSyncError, StoreError
from pipeline_sync.identity import KEEP_WITHOUT_ID
from pipeline_sync.live import LiveObject
from pipeline_sync.names import PINNED_ID, application_name_problem, partition_key
from pipeline_sync.ownership import Owner, ownership
from pipeline_sync.plan import PlanEntry
from pipeline_sync.provenance import DROPPED_ON_READ, SERVER_MANAGED_FIELDS, normalise
from pipeline_sync.rendering import Sources, render_all
from pipeline_sync.safefiles import read_text_file
from pipeline_sync.scratch import edited_copy
from pipeline_sync.status import Status
from pipeline_sync.store import Store
from pipeline_sync.template_text import dump_template
from pipeline_sync.yamlsafe import load_yaml

DEFAULT_STACK = "imported"
MAX_LABEL = 63
# Left to the catalog (id, application), to Front50 (server fields) or to pipeline-sync (the lock).
LEFT_OUT = frozenset(("id", "application", "locked", *SERVER_MANAGED_FIELDS, *DROPPED_ON_READ))


class ImportRefused(PipelineSyncError):
    """An import refused: of one pipeline (a file or target is in the way), or of all of them (the
    catalog does not load, a file changed while importing)."""


@runtime_checkable
class ApplicationSource(Protocol):
    """A store that can read Front50's application object (S3 and SQL can)."""

    def read_application(self, application: str) -> Mapping[str, Any] | None: ...


@dataclass(frozen=True)
class Imported:
    """One pipeline imported: its target key, its template and the service file that lists it."""

    key: str
    pipeline_id: str
    application: str
    name: str
    template_file: str
    service_file: str


@dataclass(frozen=True)
class Skipped:
    """A selected live pipeline that was not imported, and why."""

    pipeline_id: str
    application: str
    name: str
    reason: str


@dataclass(frozen=True)
class ImportReport:
    """What import did (or, with dry_run, would do): pipelines, refusals, and each file's new text."""

    imported: tuple[Imported, ...]
    skipped: tuple[Skipped, ...]
    files: Mapping[str, str] = field(default_factory=dict)  # path shown -> new text
    originals: Mapping[str, str | None] = field(default_factory=dict)  # path shown -> old text (None: new)
    notes: tuple[str, ...] = ()

    def file_diff(self, shown: str) -> str:
        """The unified diff of one file's change (a new file: all added lines)."""
        old = self.originals.get(shown)
        before = [] if old is None else old.splitlines(keepends=True)
        after = self.files[shown].splitlines(keepends=True)
        origin = "/dev/null" if old is None else f"a/{shown}"
        return "".join(difflib.unified_diff(before, after, origin, f"b/{shown}"))


def safe_label(text: str, *, fallback: str) -> str:
    """text as a lower-case DNS label (a-z, 0-9, '-'; at most 63): what names and keys need.

    A name that had to be cut keeps a short hash of the whole text, so two long names stay apart.
    """
    label = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if not label:
        return f"{fallback}-{_short_hash(text)}"
    if len(label) > MAX_LABEL:
        label = label[: MAX_LABEL - 7].rstrip("-") + "-" + _short_hash(text)
    return label


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:6]


def template_document(document: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a live pipeline a template says: name first, then the rest in the pipeline's order.

    A trigger without an id says `pipelineSyncNoId: true`, so the render keeps it without one
    (pipeline-sync would otherwise give it a stable id: a change the adoption must not make).
    """
    kept = {k: v for k, v in document.items() if k not in LEFT_OUT}
    if "name" in kept:
        kept = {"name": kept.pop("name"), **kept}
    return keeping_triggers_without_ids(kept)


def keeping_triggers_without_ids(document: dict[str, Any]) -> dict[str, Any]:
    """document with `pipelineSyncNoId: true` on each trigger that has no id (identity.KEEP_WITHOUT_ID)."""
    triggers = document.get("triggers")
    if isinstance(triggers, list):
        marked = [
            {**t, KEEP_WITHOUT_ID: True} if isinstance(t, dict) and not t.get("id") else t for t in triggers
        ]
        return {**document, "triggers": marked}
    return document


def template_header(application: str, pipeline_id: str) -> str:
    shown = application if application_name_problem(application) is None else "(see the service file)"
    return (
        f"# Imported by `pipeline-sync import` from pipeline {pipeline_id} of application {shown}.\n"
        "# The catalog gives its id (pinned) and application; edit it here from now on.\n"
    )


@dataclass
class _Staged:
    """Every file an import writes, by path under the project, with the text it had before."""

    catalog_dir: Path
    templates_dir: Path
    files: dict[Path, str] = field(default_factory=dict)
    originals: dict[Path, str | None] = field(default_factory=dict)

    def read(self, path: Path, root: Path) -> str | None:
        if path in self.files:
            return self.files[path]
        if not path.exists() and not path.is_symlink():
            self.originals.setdefault(path, None)
            return None
        text = read_text_file(path, root=root, what="catalog file")
        self.originals.setdefault(path, text)
        return text

    def write(self, path: Path, text: str) -> None:
        self.files[path] = text


def import_pipelines(
    catalog_dir: Path,
    templates_dir: Path,
    store: Store,
    *,
    select: str | None = None,
    stack: str = DEFAULT_STACK,
    dry_run: bool = False,
) -> ImportReport:
    """Import the unmanaged live pipelines whose `application/name` matches select (all when None)."""
    catalog_dir, templates_dir = Path(catalog_dir), Path(templates_dir)
    workspace = Sources.load(catalog_dir, templates_dir)
    catalog = workspace.catalog
    if catalog.errors:
        files = "; ".join(str(e) for e in catalog.errors)
        raise ImportRefused(f"the catalog does not load, so nothing is imported: {files}")
    live = store.read_live()
    chosen, skipped = _candidates(catalog, live, select)
    chosen, taken = _not_rendered_by_the_catalog(workspace, chosen)
    skipped += taken
    rejected: dict[str, str] = {}
    while True:  # each round either rejects a pipeline or ends
        wanted = [obj for obj in chosen if obj.pipeline_id not in rejected]
        staged, planned, refused = _stage(catalog_dir, templates_dir, catalog, store, wanted, stack)
        if not refused and planned:
            refused = _verify(catalog_dir, templates_dir, staged, store, planned, live)
        if not refused:
            break
        rejected.update(refused)
    skipped += [_skip(obj, rejected[obj.pipeline_id]) for obj in chosen if obj.pipeline_id in rejected]
    imported = tuple(p for p in planned if p.pipeline_id not in rejected)
    if not imported:
        staged = _Staged(catalog_dir, templates_dir)
    notes = _notes(staged, catalog_dir, stack)
    if not dry_run and imported:
        _write(staged)
    root = catalog_dir.parent
    return ImportReport(
        imported=imported,
        skipped=tuple(sorted(skipped, key=lambda s: (s.application.lower(), s.name.lower()))),
        files={_shown(p, root): t for p, t in staged.files.items()},
        originals={_shown(p, root): staged.originals.get(p) for p in staged.files},
        notes=notes,
    )


def _shown(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _skip(obj: LiveObject, reason: str) -> Skipped:
    return Skipped(obj.pipeline_id, obj.summary.application or "?", obj.summary.name or "?", reason)


def _candidates(
    catalog: Catalog, live: Mapping[str, LiveObject], select: str | None
) -> tuple[list[LiveObject], list[Skipped]]:
    """The selected live pipelines that can be imported, and the selected ones that cannot."""
    pinned = {t.pinned_id.lower(): k for k, t in catalog.targets.items() if t.pinned_id}
    chosen, skipped = [], []
    for obj in sorted(live.values(), key=lambda o: (o.summary.application or "", o.summary.name or "")):
        application, name = obj.summary.application, obj.summary.name
        shown = f"{application or '?'}/{name or '?'}"
        if select is not None and not fnmatch.fnmatchcase(shown, select):
            continue
        marker = obj.summary.marker
        owner = ownership(catalog, obj.pipeline_id, application, marker).owner if marker else Owner.NONE
        if owner is not Owner.NONE:
            continue  # managed, by this catalog or another: not a candidate, not a refusal
        reason = _why_not(catalog, obj, pinned)
        if reason is None:
            chosen.append(obj)
        else:
            skipped.append(_skip(obj, reason))
    return chosen, skipped


def _not_rendered_by_the_catalog(
    workspace: Sources, objs: list[LiveObject]
) -> tuple[list[LiveObject], list[Skipped]]:
    """objs without those whose application and name a catalog target renders already: those are
    taken over in place with `adopt`, not imported as a second pipeline of the same name."""
    catalog = workspace.catalog
    services = {catalog.service_of(str(o.summary.application)) for o in objs} - {None}
    keys = sorted(k for k, t in catalog.targets.items() if t.service in services)
    rendered: dict[tuple[str, str], str] = {}
    for key, outcome in render_all(workspace, keys).items() if keys else ():
        if outcome.rendered is not None:
            document = outcome.rendered.document
            rendered[(str(document.get("application")).lower(), str(document.get("name")).lower())] = key
    chosen: list[LiveObject] = []
    skipped: list[Skipped] = []
    for obj in objs:
        found = rendered.get((str(obj.summary.application).lower(), str(obj.summary.name).lower()))
        if found is None:
            chosen.append(obj)
            continue
        reason = (
            f"catalog target {found} renders this application and name already: take it over in place "
            f"with `pipeline-sync adopt {obj.summary.application} {json.dumps(obj.summary.name)}`"
        )
        skipped.append(_skip(obj, reason))
    return chosen, skipped


def _why_not(catalog: Catalog, obj: LiveObject, pinned: Mapping[str, str]) -> str | None:
    summary = obj.summary
    if obj.document is None or obj.problem:
        return f"it is unreadable ({obj.problem}); left alone"
    marker = summary.marker
    if marker is not None:
        return (
            f"it carries a pipeline-sync marker naming {marker.get('key')!r} that does not hold up (a copy "
            "made in Deck, or a marker written by hand); remove the marker in Deck to import it"
        )
    if summary.application is None or summary.name is None:
        return "it has no application or no name"
    problem = application_name_problem(summary.application)
    if problem:
        return f"its application cannot be a catalog service: {problem}"
    if obj.pipeline_id.lower() in pinned:
        key = pinned[obj.pipeline_id.lower()]
        return f"its id is already pinned in the catalog for {key}: run `pipeline-sync plan --select {key}`"
    if not PINNED_ID.match(obj.pipeline_id):
        rule = "lower-case letters, digits, '-' or '_', at most 128"
        return f"its id {obj.pipeline_id!r} cannot be pinned ({rule})"
    return None


def _names(catalog: Catalog, catalog_dir: Path, objs: list[LiveObject]) -> dict[str, tuple[str, str]]:
    """{pipeline id: (service, template)}, the template named from application and pipeline name;
    names that would collide within this import get a hash of the whole name each."""
    services = _service_names(catalog, catalog_dir, [str(o.summary.application) for o in objs])
    raw = {
        o.pipeline_id: safe_label(f"{o.summary.application}-{o.summary.name}", fallback="pipeline")
        for o in objs
    }
    counts: dict[str, int] = {}
    for template in raw.values():
        counts[template] = counts.get(template, 0) + 1
    names = {}
    for obj in objs:
        template = raw[obj.pipeline_id]
        if counts[template] > 1:
            whole = f"{obj.summary.application}/{obj.summary.name}"
            template = template[: MAX_LABEL - 7].rstrip("-") + "-" + _short_hash(whole)
        names[obj.pipeline_id] = (services[str(obj.summary.application)], template)
    return names


def _service_names(catalog: Catalog, catalog_dir: Path, applications: list[str]) -> dict[str, str]:
    """{application: service}: the catalog's service of it, else the application as a DNS label;
    a label whose file exists or another application of this import takes ends in a hash of the name."""
    found: dict[str, str] = {}
    claimed: dict[str, str] = {}  # label -> application (lower-case) that has it
    for application in sorted(set(applications)):
        existing = catalog.service_of(application)
        if existing is not None:
            found[application] = existing
            continue
        label = safe_label(application, fallback="app")
        taken = any(
            (catalog_dir / SERVICES_DIR / f"{label}{suffix}").exists() for suffix in (".yaml", ".yml")
        )
        if taken or claimed.get(label, application.lower()) != application.lower():
            label = label[: MAX_LABEL - 7].rstrip("-") + "-" + _short_hash(application)
        claimed[label] = application.lower()
        found[application] = label
    return found


def _stage(
    catalog_dir: Path,
    templates_dir: Path,
    catalog: Catalog,
    store: Store,
    objs: list[LiveObject],
    stack: str,
) -> tuple[_Staged, list[Imported], dict[str, str]]:
    """Every file edit importing objs takes, or the reason a pipeline cannot be staged."""
    staged = _Staged(catalog_dir, templates_dir)
    planned: list[Imported] = []
    refused: dict[str, str] = {}
    names = _names(catalog, catalog_dir, objs)
    stack_known = _stack_declared(catalog_dir, stack, staged)
    for obj in objs:
        service, template = names[obj.pipeline_id]
        try:
            if not stack_known:
                _declare_stack(staged, catalog_dir, stack)
                stack_known = True
            planned.append(_stage_one(staged, catalog, store, obj, service, template, stack))
        except PipelineSyncError as exc:
            refused[obj.pipeline_id] = str(exc)
    return staged, planned, refused


def _stack_declared(catalog_dir: Path, stack: str, staged: _Staged) -> bool:
    path = catalog_dir / DEFAULTS_FILE
    text = staged.read(path, catalog_dir) or ""
    data, _ = load_yaml(text, _rel(catalog_dir, path))
    return isinstance(data, dict) and isinstance(data.get("stacks"), dict) and stack in data["stacks"]


def _declare_stack(staged: _Staged, catalog_dir: Path, stack: str) -> None:
    path = catalog_dir / DEFAULTS_FILE
    text = staged.read(path, catalog_dir) or ""
    staged.write(path, catalog_edit.add_stack(text, _rel(catalog_dir, path), stack))


def _rel(root: Path, path: Path) -> str:
    return f"{root.name}/{path.relative_to(root).as_posix()}"


def _stage_one(
    staged: _Staged,
    catalog: Catalog,
    store: Store,
    obj: LiveObject,
    service: str,
    template: str,
    stack: str,
) -> Imported:
    catalog_dir, templates_dir = staged.catalog_dir, staged.templates_dir
    application, name = str(obj.summary.application), str(obj.summary.name)
    assert obj.document is not None
    template_path = templates_dir / f"{template}{TEMPLATE_SUFFIX}"
    template_shown = _rel(templates_dir, template_path)
    if template_path.exists() or template_path.is_symlink() or template_path in staged.files:
        raise ImportRefused(
            f"{template_shown} already exists; it is never overwritten (rename or remove it first)"
        )
    key = partition_key(service, stack, template)
    if key in catalog.targets:
        raise ImportRefused(f"target {key} is already in the catalog; it is never replaced")
    service_path = catalog_dir / SERVICES_DIR / f"{service}.yaml"
    service_shown = _rel(catalog_dir, service_path)
    existing = catalog.service_of(application)
    text = staged.read(service_path, catalog_dir)
    if existing is None:
        if (catalog_dir / SERVICES_DIR / f"{service}.yml").exists():
            raise ImportRefused(
                f"{service_shown[:-5]}.yml exists and is not application {application!r}'s service"
            )
        if text is not None and service_path not in staged.files:
            raise ImportRefused(
                f"{service_shown} exists but is not the service of application {application!r}; "
                "it is never overwritten: give that service its `application:` or rename it"
            )
        if text is None:
            text = new_service_text(service, application, _application_email(store, application))
    assert text is not None
    staged.write(
        service_path, catalog_edit.add_target(text, service_shown, stack, template, obj.pipeline_id.lower())
    )
    header = template_header(application, obj.pipeline_id)
    staged.write(template_path, dump_template(template_document(obj.document), header))
    return Imported(key, obj.pipeline_id, application, name, template_shown, service_shown)


def _application_email(store: Store, application: str) -> str | None:
    if not isinstance(store, ApplicationSource):
        return None
    try:
        found = store.read_application(application)
    except StoreError:
        return None  # the email is a convenience: the service file is written without it
    email = found.get("email") if found else None
    return email if isinstance(email, str) and email else None


def new_service_text(service: str, application: str, email: str | None) -> str:
    """A new service file for an imported application: Front50's owner email, the rest to fill in."""
    data: dict[str, Any] = {"name": service}
    if application != service:
        data["application"] = application
    data.update(product="", team="", namespace="", git_repo="")
    if email:
        data["email"] = email
    data["stacks"] = {}
    header = (
        f"# Created by `pipeline-sync import` for Spinnaker application {application}"
        + (" (email from its Front50 application object)" if email else "")
        + ".\n# Fill in product, team, namespace and git_repo when templates start to use them.\n"
    )
    return catalog_edit.dump_new(data, header)


def _verify(
    catalog_dir: Path,
    templates_dir: Path,
    staged: _Staged,
    store: Store,
    planned: list[Imported],
    live: Mapping[str, LiveObject],
) -> dict[str, str]:
    """{pipeline id: why} for each staged import that does not plan as a lock-and-marker-only adoption."""
    with edited_copy(catalog_dir, templates_dir, staged.files) as workspace:
        if workspace.catalog.errors:
            why = "; ".join(str(e) for e in workspace.catalog.errors)
            return {p.pipeline_id: f"the edited catalog does not load: {why}" for p in planned}
        keys = [p.key for p in planned]
        entries = engine.plan(workspace, store, Selection.of(keys)).entries
    found = {}
    for imported in planned:
        obj = live.get(imported.pipeline_id.lower())
        problem = adoption_problem(entries.get(imported.key), obj.document if obj else None)
        if problem is not None:
            found[imported.pipeline_id] = problem
    return found


def adoption_problem(entry: PlanEntry | None, live: Mapping[str, Any] | None) -> str | None:
    """Why entry is not an adoption of live that changes nothing but the lock and the marker, or None."""
    if entry is None or live is None:
        return "the edited catalog does not plan it"
    if entry.status is not Status.UPDATE or not entry.adopt or entry.desired is None:
        return f"it would plan as {entry.status}, not as an adoption: " + "; ".join(entry.messages)
    fields = only_lock_changes(live, entry.desired)
    if not fields:
        return None
    why = {
        "expectedArtifacts": "pipeline-sync gives expected artifacts without an id one",
        "application": "the catalog spells the application differently",
    }
    reasons = "".join(f"; {why[f]}" for f in fields if f in why)
    changed = ", ".join(fields)
    return f"its template would not render it unchanged (it would change {changed}{reasons}): left alone"


def only_lock_changes(live: Mapping[str, Any], desired: Mapping[str, Any]) -> list[str]:
    """The top-level fields other than the lock in which desired differs from live (Front50's view)."""
    old, new = normalise(live), normalise(desired)
    fields = sorted((set(old) | set(new)) - {"locked"})
    return [f for f in fields if old.get(f) != new.get(f)]


def _notes(staged: _Staged, catalog_dir: Path, stack: str) -> tuple[str, ...]:
    defaults = catalog_dir / DEFAULTS_FILE
    if defaults in staged.files:
        return (f"declared stack {stack!r} in {_rel(catalog_dir, defaults)} (approval: manual)",)
    return ()


def _write(staged: _Staged) -> None:
    """Write every staged file: new files only if still absent, edited ones only if still unchanged."""
    for path, original in staged.originals.items():
        if path not in staged.files:
            continue
        current = None if not path.exists() else path.read_text(encoding="utf-8")
        if current != original:
            raise ImportRefused(f"{path} changed while importing; nothing was written. Run import again.")
    for path, text in sorted(staged.files.items(), key=lambda item: str(item[0])):
        if staged.originals.get(path) is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            _create(path, text)
        else:
            path.write_text(text, encoding="utf-8")


def _create(path: Path, text: str) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except FileExistsError:
        raise ImportRefused(
            f"{path} appeared while importing; it is never overwritten. Run import again."
        ) from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
