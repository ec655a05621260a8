"""Adoption: match an unmanaged live pipeline to its catalog target and pin its id in the service file."""

from __future__ import annotations

import copy
import fnmatch
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline_sync import engine
from pipeline_sync.catalog import Target
from pipeline_sync.engine import Selection
from pipeline_sync.errors import CatalogError, PipelineSyncError
from pipeline_sync.live import LiveObject
from pipeline_sync.names import dns_label_problem
from pipeline_sync.plan import PlanEntry
from pipeline_sync.rendering import Sources, render_all
from pipeline_sync.safefiles import read_text_file
from pipeline_sync.status import Status
from pipeline_sync.store import Store
from pipeline_sync.yamlsafe import load_yaml


class AdoptError(PipelineSyncError):
    """The pipeline can't be adopted: not found, already managed, no matching target, or no safe edit."""


@dataclass(frozen=True)
class Adoption:
    """A pinned adoption: the file edited and the plan entry that now takes the pipeline over."""

    key: str
    pipeline_id: str
    file: Path
    entry: PlanEntry


def adopt(catalog_dir: Path, templates_dir: Path, store: Store, application: str, name: str) -> Adoption:
    """Pin the id of the unmanaged pipeline application/name into its catalog target.

    The service file is edited in place (one inserted `ids` entry; comments and layout kept)
    and put back if the edited catalog does not plan that pipeline as an adopting update.
    """
    live = store.read_live()
    obj = find_unmanaged(live, application, name)
    workspace = Sources.load(catalog_dir, templates_dir)
    target = match_target(workspace, application, name)
    _check_pinnable(target, obj, live)
    path = Path(catalog_dir) / Path(*Path(target.source_file).parts[1:])
    original = read_text_file(path, root=Path(catalog_dir), what="catalog file")
    path.write_text(pin_id(original, target.source_file, target.stack, target.template, obj.pipeline_id))
    try:
        entry = _adopting_entry(Sources.load(catalog_dir, templates_dir), target.key, store, obj)
    except BaseException:
        path.write_text(original, encoding="utf-8")
        raise
    return Adoption(target.key, obj.pipeline_id, path, entry)


def find_unmanaged(live: Mapping[str, LiveObject], application: str, name: str) -> LiveObject:
    """The one live pipeline named name in application (case-insensitively), which must be unmanaged."""
    found = [
        obj
        for obj in live.values()
        if (obj.summary.application or "").lower() == application.lower()
        and (obj.summary.name or "").lower() == name.lower()
    ]
    if not found:
        raise AdoptError(
            f"no pipeline named {name!r} in application {application!r} is in the bucket "
            "(names are compared case-insensitively, as Front50 does)"
        )
    managed = [(obj, obj.summary.marker) for obj in found]
    for obj, marker in managed:
        if marker is not None:
            raise AdoptError(
                f"pipeline {obj.pipeline_id} ({application}/{name}) is already managed by pipeline-sync "
                f"as {marker['key']!r}; there is nothing to adopt"
            )
    if len(found) > 1:
        ids = ", ".join(sorted(obj.pipeline_id for obj in found))
        raise AdoptError(
            f"{len(found)} pipelines are named {name!r} in application {application!r} ({ids}); "
            "Front50 allows one per name: delete or rename the others in Deck first"
        )
    return found[0]


def match_target(workspace: Sources, application: str, name: str) -> Target:
    """The catalog target whose service has this application and whose rendered name is name
    (both compared case-insensitively, as Front50 does)."""
    catalog = workspace.catalog
    service = catalog.service_of(application)
    if service is not None and service in catalog.failed_services:
        error = next(f.error for f in catalog.failures if f.service == service)
        raise AdoptError(f"the catalog file of service {service!r} failed to load: {error}")
    keys = sorted(k for k, t in catalog.targets.items() if t.service == service)
    if service is not None and not keys:
        raise AdoptError(
            f"service {service!r} (application {catalog.application_of(service)!r}) lists no pipelines: "
            f"add the template that renders {name!r} to one of its stacks, then adopt"
        )
    if service is None:
        file = application.lower() if dns_label_problem(application.lower()) is None else "<service>"
        raise AdoptError(
            f"no catalog service has application {application!r} (compared case-insensitively, as "
            f"Front50 does): add catalog/services/{file}.yaml (its `name`, or its `application:`, "
            f"is the application) with the template that renders {name!r}, then adopt"
            + _failed_files(catalog.errors)
        )
    outcomes = render_all(workspace, keys)
    names = {k: str(o.rendered.document.get("name", "")) for k, o in outcomes.items() if o.rendered}
    matches = [k for k, rendered in names.items() if rendered.lower() == name.lower()]
    if len(matches) != 1:
        listing = ", ".join(f"{k} -> {n!r}" for k, n in sorted(names.items())) or "none rendered"
        unrendered = sorted(set(keys) - set(names))
        if unrendered:
            listing += f"; failed to render: {', '.join(unrendered)}"
        why = "no target" if not matches else f"{len(matches)} targets"
        raise AdoptError(
            f"cannot tell which catalog target pipeline {name!r} of {application!r} is: {why} of service "
            f"{service!r} renders that name ({listing}). Make exactly one template render it, then adopt."
        )
    return workspace.catalog.targets[matches[0]]


def _failed_files(errors: list[CatalogError]) -> str:
    if not errors:
        return ""
    files = ", ".join(sorted({e.location.file for e in errors}))
    return f" (these catalog files failed to load and may be the one: {files})"


def _check_pinnable(target: Target, obj: LiveObject, live: Mapping[str, LiveObject]) -> None:
    if target.pinned_id == obj.pipeline_id:
        raise AdoptError(
            f"{target.key} already pins id {obj.pipeline_id} in {target.source_file}; "
            f"run `pipeline-sync plan --select {target.key}` to see the adopting update"
        )
    if target.pinned_id is not None:
        raise AdoptError(
            f"{target.key} already pins another id ({target.pinned_id}) in {target.source_file}; "
            "remove that pin first if this pipeline should replace it"
        )
    for other in live.values():
        marker = other.summary.marker
        if marker is not None and marker["key"] == target.key:
            raise AdoptError(
                f"{target.key} is already managed at id {other.pipeline_id}; adopting {obj.pipeline_id} "
                "too would make two pipelines of one target. Delete one of them in Deck first."
            )


def _adopting_entry(workspace: Sources, key: str, store: Store, obj: LiveObject) -> PlanEntry:
    target = workspace.catalog.targets.get(key)
    if target is None or target.pinned_id != obj.pipeline_id:
        raise AdoptError(f"the edited catalog does not pin {obj.pipeline_id} on {key}; the file was put back")
    entry = engine.plan(workspace, store, Selection.of([key])).entries[key]
    if entry.status is not Status.UPDATE or not entry.adopt:
        raise AdoptError(
            f"after pinning, {key} plans as {entry.status}, not as an adopting update, so the file was "
            "put back: " + "; ".join(entry.messages)
        )
    return entry


# -- many at once ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdoptOutcome:
    """What bulk adoption did with one live pipeline: pinned, refused or skipped, and why."""

    outcome: str  # pinned | refused | skipped
    application: str
    name: str
    pipeline_id: str
    message: str
    key: str | None = None


def adopt_matching(catalog_dir: Path, templates_dir: Path, store: Store, pattern: str) -> list[AdoptOutcome]:
    """Adopt every live pipeline whose `application/name` matches the glob pattern, one by one.

    Managed and unreadable pipelines are skipped; a pipeline adopt refuses is reported with its
    reason, and the others carry on.
    """
    outcomes = []
    live = store.read_live()
    order = sorted(
        live.values(), key=lambda o: ((o.summary.application or "").lower(), (o.summary.name or "").lower())
    )
    for obj in order:
        application, name = obj.summary.application, obj.summary.name
        if application is None or name is None:
            if pattern == "*" or obj.problem:
                outcomes.append(
                    AdoptOutcome("skipped", application or "?", name or "?", obj.pipeline_id, _unnamed(obj))
                )
            continue
        if not fnmatch.fnmatchcase(f"{application}/{name}", pattern):
            continue
        marker = obj.summary.marker
        if marker is not None:
            message = f"already carries a pipeline-sync marker ({marker['key']}); not adopted again"
            outcomes.append(AdoptOutcome("skipped", application, name, obj.pipeline_id, message))
            continue
        try:
            done = adopt(catalog_dir, templates_dir, store, application, name)
        except PipelineSyncError as exc:
            outcomes.append(AdoptOutcome("refused", application, name, obj.pipeline_id, str(exc)))
            continue
        message = f"pinned in {done.file}: stacks.{done.entry.stack}.ids.{done.key.split('/')[-1]}"
        outcomes.append(AdoptOutcome("pinned", application, name, obj.pipeline_id, message, done.key))
    return outcomes


def _unnamed(obj: LiveObject) -> str:
    if obj.problem:
        return f"unreadable ({obj.problem}); left alone"
    return "it has no application or no name; left alone"


# -- the targeted edit of a service file ------------------------------------------------------


def pin_id(text: str, file: str, stack: str, template: str, pipeline_id: str) -> str:
    """text with `stacks.<stack>.ids.<template>: <pipeline_id>` added, everything else untouched.

    One insertion, placed by the YAML parser's marks, so comments and layout stay as they are.
    The result is parsed again and must equal the original data plus that one id.
    """
    expected = _with_pin(text, file, stack, template, pipeline_id)
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    stack_node = _child(_child(root, "stacks"), stack)
    if not isinstance(stack_node, yaml.MappingNode):
        raise _cannot_edit(file, stack, template, pipeline_id)
    ids_node = _child(stack_node, "ids")
    if ids_node is None:
        edited = _insert(text, stack_node, "ids", f"{{{_scalar(template)}: {_scalar(pipeline_id)}}}")
    elif isinstance(ids_node, yaml.MappingNode):
        edited = _insert(text, ids_node, _scalar(template), _scalar(pipeline_id))
    else:
        raise _cannot_edit(file, stack, template, pipeline_id)
    try:
        data, _ = load_yaml(edited, file)
    except CatalogError:
        data = None
    if data != expected:
        raise _cannot_edit(file, stack, template, pipeline_id)
    return edited


def _with_pin(text: str, file: str, stack: str, template: str, pipeline_id: str) -> dict[str, Any]:
    data, _ = load_yaml(text, file)
    expected: dict[str, Any] = copy.deepcopy(data)
    stack_data = expected["stacks"][stack]
    ids = stack_data.setdefault("ids", {})
    if not isinstance(ids, dict):
        raise _cannot_edit(file, stack, template, pipeline_id)
    ids[template] = pipeline_id
    return expected


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            found: yaml.Node = value_node
            return found
    return None


def _insert(text: str, mapping: yaml.MappingNode, key: str, value: str) -> str:
    """Insert `key: value` into a flow mapping (before its `}`) or a block one (before its first key)."""
    if mapping.flow_style:
        close = text.rindex("}", 0, mapping.end_mark.index)
        inner = text[mapping.start_mark.index + 1 : close]
        at = mapping.start_mark.index + 1 + len(inner.rstrip())
        separator = ", " if mapping.value else ""
        return text[:at] + f"{separator}{key}: {value}" + text[at:]
    first_key: yaml.Node = mapping.value[0][0]
    at, column = first_key.start_mark.index, first_key.start_mark.column
    return str(text[:at] + f"{key}: {value}\n" + " " * column + text[at:])


def _scalar(value: str) -> str:
    """value as a YAML scalar that reads back as the same string (quoted only when it must be)."""
    try:
        plain = (
            yaml.safe_load(value) == value
            and value.strip() == value
            and not set(value) & set(":#{}[],&*!|>'\"%@`")
        )
    except yaml.YAMLError:
        plain = False
    return value if plain else json.dumps(value)


def _cannot_edit(file: str, stack: str, template: str, pipeline_id: str) -> AdoptError:
    return AdoptError(
        f"cannot edit {file} safely; add this under stacks.{stack} by hand: "
        f"`ids: {{{_scalar(template)}: {_scalar(pipeline_id)}}}`"
    )
