"""Templatize: same-shape one-off templates become one shared template, differing leaves catalog vars.

A one-off template is a static template (no Jinja but escapes, as `import` writes them) that one
target uses. Their renders are grouped by shape (the same keys and list lengths everywhere,
differing only in leaf values), at most one target per service and stack in a group, and no
further apart than the difference threshold (the share of leaves that differ from the group's
first pipeline). Each group of two or more gets one shared template; each leaf that differs in
the group becomes a catalog variable named from its field path (`manifest_namespace`): values a
stack shares go to `defaults.yaml` stack vars, a value most of the group shares to `defaults.yaml`
vars, the rest to the service file. The group's template names stay, as links to the shared
template, so keys, ids and markers do not change. Before anything is written, every target of
the catalog is rendered before and after in a scratch copy: any byte of difference in any
target's canonical JSON refuses the whole run.
"""

from __future__ import annotations

import difflib
import os
import re
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import nodes

from pipeline_sync import catalog_edit
from pipeline_sync.canonical import canonical_json
from pipeline_sync.catalog import DEFAULTS_FILE, RESERVED_CONTEXT_NAMES, TEMPLATE_SUFFIX, Target
from pipeline_sync.errors import PipelineSyncError
from pipeline_sync.importer import keeping_triggers_without_ids
from pipeline_sync.names import dns_label_problem
from pipeline_sync.rendering import RenderOutcome, Sources, render_all
from pipeline_sync.safefiles import read_text_file
from pipeline_sync.scratch import edited_copy
from pipeline_sync.spel import SpelEnvironment
from pipeline_sync.template_text import Var, dump_template
from pipeline_sync.yamlsafe import format_key_path

DEFAULT_MAX_DIFFERENCE = 0.5
Path_ = tuple[str | int, ...]


class TemplatizeError(PipelineSyncError):
    """Templatize refused: the catalog does not load, or a render would change."""


@dataclass(frozen=True)
class Variable:
    """One leaf moved into the catalog: its name, field path, and where its values went."""

    name: str
    path: str
    placement: str  # "stack vars", "defaults vars + service overrides", "service vars"
    renamed_from: str | None = None


@dataclass(frozen=True)
class Group:
    """Targets that now share one template."""

    template: str
    keys: tuple[str, ...]
    variables: tuple[Variable, ...]


@dataclass(frozen=True)
class TemplatizeReport:
    """What templatize did (or would do), and the proof it ran."""

    pipelines: int
    templates_after: int
    groups: tuple[Group, ...]
    not_unified: tuple[str, ...]
    checked: int
    files: Mapping[str, str | None] = field(default_factory=dict)  # shown path -> new text (None: a link)
    originals: Mapping[str, str | None] = field(default_factory=dict)

    @property
    def variables(self) -> int:
        return sum(len(g.variables) for g in self.groups)

    @property
    def summary(self) -> str:
        return f"{self.pipelines} pipelines → {self.templates_after} templates, {self.variables} variables"

    def file_diff(self, shown: str) -> str:
        old, new = self.originals.get(shown), self.files.get(shown)
        if new is None:
            return f"--- a/{shown}\n+++ b/{shown} (now a link to the shared template)\n"
        before = [] if old is None else old.splitlines(keepends=True)
        origin = "/dev/null" if old is None else f"a/{shown}"
        return "".join(difflib.unified_diff(before, new.splitlines(keepends=True), origin, f"b/{shown}"))


@dataclass(frozen=True)
class _Member:
    target: Target
    document: dict[str, Any]
    leaves: dict[Path_, Any]


def templatize(
    catalog_dir: Path,
    templates_dir: Path,
    *,
    max_difference: float = DEFAULT_MAX_DIFFERENCE,
    dry_run: bool = False,
) -> TemplatizeReport:
    """Group one-off templates and prove every render unchanged; write only when proven (and not dry_run)."""
    catalog_dir, templates_dir = Path(catalog_dir), Path(templates_dir)
    workspace = Sources.load(catalog_dir, templates_dir)
    if workspace.catalog.errors:
        raise TemplatizeError(
            "the catalog does not load, so nothing is templatized: "
            + "; ".join(str(e) for e in workspace.catalog.errors)
        )
    before = render_all(workspace, use_cache=False)
    members = _one_offs(workspace, templates_dir, before)
    clusters = _clusters(members, max_difference)
    groups, edits = _plan_groups(workspace, catalog_dir, templates_dir, clusters)
    singles = [c[0] for c in clusters if len(c) == 1]
    not_unified = _length_notes(clusters)
    checked = _prove(catalog_dir, templates_dir, edits, before)
    root = catalog_dir.parent
    report = TemplatizeReport(
        pipelines=len(members),
        templates_after=len(groups) + len(singles),
        groups=tuple(groups),
        not_unified=tuple(not_unified),
        checked=checked,
        files={_shown(p, root): t for p, t in edits.files.items()},
        originals={_shown(p, root): edits.originals.get(p) for p in edits.files},
    )
    if not dry_run and groups:
        edits.write()
    return report


# -- which templates are one-offs, and their shapes ----------------------------------------------


def _one_offs(
    workspace: Sources, templates_dir: Path, outcomes: Mapping[str, RenderOutcome]
) -> list[_Member]:
    uses = Counter(t.template for t in workspace.catalog.targets.values())
    found = []
    for key in sorted(outcomes):
        outcome = outcomes[key]
        target = outcome.target
        path = templates_dir / f"{target.template}{TEMPLATE_SUFFIX}"
        if uses[target.template] != 1 or not outcome.valid or outcome.rendered is None or path.is_symlink():
            continue
        if not is_static(workspace.renderer.template_source(target)):
            continue
        rendered = {k: v for k, v in outcome.rendered.document.items() if k not in ("id", "application")}
        document = keeping_triggers_without_ids(rendered)
        found.append(_Member(target, document, dict(leaves(document))))
    return found


def is_static(source: str) -> bool:
    """True when a template has no Jinja but text, raw blocks and `{{ '{' }}` escapes."""
    tree = SpelEnvironment().parse(source)
    for node in tree.find_all(nodes.Node):
        if isinstance(node, nodes.Output | nodes.TemplateData):
            continue
        if isinstance(node, nodes.Const) and node.value == "{":
            continue
        return False
    return True


def leaves(value: Any, path: Path_ = ()) -> list[tuple[Path_, Any]]:
    """(path, value) of every scalar in a document."""
    if isinstance(value, dict):
        return [item for key, child in value.items() for item in leaves(child, (*path, key))]
    if isinstance(value, list):
        return [item for index, child in enumerate(value) for item in leaves(child, (*path, index))]
    return [(path, value)]


def shape(value: Any, *, lengths: bool = True) -> Any:
    """The structure of a document: keys and (with lengths) list lengths, with every scalar alike."""
    if isinstance(value, dict):
        return ("map", tuple((k, shape(value[k], lengths=lengths)) for k in sorted(value)))
    if isinstance(value, list):
        return ("list", tuple(shape(v, lengths=lengths) for v in value)) if lengths else ("list",)
    return "leaf"


def _difference(a: _Member, b: _Member) -> float:
    differing = sum(1 for path, value in a.leaves.items() if _canon(b.leaves[path]) != _canon(value))
    return differing / max(1, len(a.leaves))


def _canon(value: Any) -> str:
    return canonical_json(value)


def _clusters(members: list[_Member], max_difference: float) -> list[list[_Member]]:
    by_shape: dict[Any, list[_Member]] = defaultdict(list)
    for member in members:
        by_shape[shape(member.document)].append(member)
    clusters: list[list[_Member]] = []
    for same in by_shape.values():
        local: list[list[_Member]] = []
        for member in same:
            scope = (member.target.service, member.target.stack)
            for cluster in local:
                scopes = {(m.target.service, m.target.stack) for m in cluster}
                if scope not in scopes and _difference(cluster[0], member) <= max_difference:
                    cluster.append(member)
                    break
            else:
                local.append([member])
        clusters.extend(local)
    return sorted(clusters, key=lambda c: c[0].target.key)


def _length_notes(clusters: list[list[_Member]]) -> list[str]:
    """Say which pipelines were left out of a group only because a list (stages, ...) differs in length."""
    heads = [cluster[0] for cluster in clusters]
    notes = []
    for cluster in clusters:
        if len(cluster) != 1:
            continue
        single = cluster[0]
        for other in heads:
            if other is single or shape(other.document, lengths=False) != shape(
                single.document, lengths=False
            ):
                continue
            first, second = sorted((other, single), key=lambda m: m.target.key)
            where = _length_difference(first.document, second.document)
            if where is not None:
                path, left, right = where
                notes.append(
                    f"{first.target.key} and {second.target.key} differ in the length of {path} "
                    f"({left} vs {right}): lists of different lengths are not unified"
                )
    return sorted(set(notes))


def _length_difference(a: Any, b: Any, path: Path_ = ()) -> tuple[str, int, int] | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) & set(b)):
            found = _length_difference(a[key], b[key], (*path, key))
            if found:
                return found
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return format_key_path(path), len(a), len(b)
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _length_difference(x, y, (*path, index))
            if found:
                return found
    return None


# -- the new templates and catalog variables -----------------------------------------------------


@dataclass
class _Edits:
    """Files templatize writes: texts (None for a link to shared), with their texts before."""

    catalog_dir: Path
    templates_dir: Path
    files: dict[Path, str | None] = field(default_factory=dict)
    links: dict[Path, str] = field(default_factory=dict)  # alias path -> shared file name
    originals: dict[Path, str | None] = field(default_factory=dict)

    def read(self, path: Path) -> str:
        current = self.files.get(path)
        if current is not None:
            return current
        text = read_text_file(path, root=self.catalog_dir, what="catalog file")
        self.originals.setdefault(path, text)
        return text

    def write(self) -> None:
        for path, original in self.originals.items():
            if path.is_file() and path not in self.links and path.read_text(encoding="utf-8") != original:
                raise TemplatizeError(
                    f"{path} changed while templatizing; nothing was written. Run it again."
                )
        for path, text in sorted(self.files.items(), key=lambda item: str(item[0])):
            if path in self.links:
                continue
            assert text is not None
            if self.originals.get(path) is None:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    out.write(text)
            else:
                path.write_text(text, encoding="utf-8")
        for alias, shared in self.links.items():
            temporary = alias.with_name(f".{alias.name}.templatize")
            os.symlink(shared, temporary)
            os.replace(temporary, alias)


def _plan_groups(
    workspace: Sources, catalog_dir: Path, templates_dir: Path, clusters: list[list[_Member]]
) -> tuple[list[Group], _Edits]:
    edits = _Edits(catalog_dir, templates_dir)
    taken = set(RESERVED_CONTEXT_NAMES) | {s.name for s in workspace.catalog.settings}
    template_names = {p.name[: -len(TEMPLATE_SUFFIX)] for p in templates_dir.glob(f"*{TEMPLATE_SUFFIX}")}
    groups = []
    for cluster in clusters:
        if len(cluster) < 2:
            continue
        name = _shared_name([m.target.template for m in cluster], template_names)
        template_names.add(name)
        variables, document = _variables(cluster, taken)
        for variable, values in variables:
            _place(edits, catalog_dir, cluster, variable, values)
        shared = templates_dir / f"{name}{TEMPLATE_SUFFIX}"
        header = (
            f"# Shared by {len(cluster)} pipelines (`pipeline-sync templatize`); their templates link here.\n"
            "# Its variables are set in the catalog: defaults.yaml and the service files.\n"
        )
        edits.files[shared] = dump_template(document, header)
        edits.originals[shared] = None
        for member in cluster:
            alias = templates_dir / f"{member.target.template}{TEMPLATE_SUFFIX}"
            edits.originals[alias] = read_text_file(alias, root=templates_dir, what="template")
            edits.files[alias] = None
            edits.links[alias] = shared.name
        groups.append(Group(name, tuple(m.target.key for m in cluster), tuple(v for v, _ in variables)))
    return groups, edits


def _shared_name(templates: list[str], taken: set[str]) -> str:
    """The tokens every name ends with (else starts with), else `shared`; unique among templates."""
    split = [t.split("-") for t in templates]
    suffix: list[str] = []
    for tokens in zip(*[list(reversed(s)) for s in split], strict=False):
        if len(set(tokens)) != 1:
            break
        suffix.insert(0, tokens[0])
    prefix: list[str] = []
    for tokens in zip(*split, strict=False):
        if len(set(tokens)) != 1:
            break
        prefix.append(tokens[0])
    base = "-".join(suffix) or "-".join(prefix) or "shared"
    if dns_label_problem(base) is not None:
        base = "shared"
    name, counter = base, 1
    while name in taken:
        counter += 1
        name = f"{base}-{counter}"
    return name


def _variables(
    cluster: list[_Member], taken: set[str]
) -> tuple[list[tuple[Variable, dict[str, Any]]], dict[str, Any]]:
    """The group's variables with each target's value, and the shared document with Var leaves."""
    seed = cluster[0]
    differing = [p for p, v in seed.leaves.items() if any(_canon(m.leaves[p]) != _canon(v) for m in cluster)]
    short = {p: _short_name(p) for p in differing}
    counts = Counter(short.values())
    found = []
    document = _copy(seed.document)
    for path in differing:
        wanted = short[path] if counts[short[path]] == 1 else _full_name(path)
        name, renamed = wanted, None
        counter = 1
        while name in taken:
            counter += 1
            name = f"{wanted}_{counter}"
        if name != short[path]:
            renamed = short[path]
        taken.add(name)
        values = {m.target.key: m.leaves[path] for m in cluster}
        placement = _placement(cluster, values)
        found.append((Variable(name, format_key_path(path), placement, renamed), values))
        _set(document, path, Var(name))
    return found, document


def _short_name(path: Path_) -> str:
    """`manifest_namespace` for stages[0].manifests[0].metadata.namespace: the nearest list, singular,
    then the field."""
    keys = [p for p in path if isinstance(p, str)]
    last = keys[-1] if keys else "value"
    listed = [
        path[i - 1] for i in range(1, len(path)) if isinstance(path[i], int) and isinstance(path[i - 1], str)
    ]
    if listed and listed[-1] != last:
        return _identifier(f"{_singular(str(listed[-1]))}_{last}")
    return _identifier(last)


def _full_name(path: Path_) -> str:
    return _identifier("_".join(_singular(p) if isinstance(p, str) else str(p) for p in path))


def _singular(word: str) -> str:
    return word[:-1] if word.endswith("s") and len(word) > 1 else word


def _identifier(text: str) -> str:
    snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", text).lower()
    snake = re.sub(r"[^a-z0-9_]+", "_", snake).strip("_") or "value"
    return snake if not snake[0].isdigit() else f"v_{snake}"


def _placement(cluster: list[_Member], values: Mapping[str, Any]) -> str:
    by_stack: dict[str, set[str]] = defaultdict(set)
    for member in cluster:
        by_stack[member.target.stack].add(_canon(values[member.target.key]))
    sizes = Counter(m.target.stack for m in cluster)
    if len(by_stack) >= 2 and all(len(v) == 1 for v in by_stack.values()) and max(sizes.values()) >= 2:
        return "stack vars"
    _, count = Counter(_canon(v) for v in values.values()).most_common(1)[0]
    if count >= 2:
        return "defaults vars + service overrides"
    return "service vars"


def _place(
    edits: _Edits, catalog_dir: Path, cluster: list[_Member], variable: Variable, values: dict[str, Any]
) -> None:
    defaults = catalog_dir / DEFAULTS_FILE
    defaults_shown = f"{catalog_dir.name}/{DEFAULTS_FILE}"
    if variable.placement == "stack vars":
        for stack in sorted({m.target.stack for m in cluster}):
            value = next(values[m.target.key] for m in cluster if m.target.stack == stack)
            text = edits.read(defaults)
            edits.files[defaults] = catalog_edit.set_vars(
                text, defaults_shown, ("stacks", stack, "vars"), {variable.name: value}
            )
        return
    overrides = cluster
    if variable.placement.startswith("defaults"):
        common = Counter(_canon(v) for v in values.values()).most_common(1)[0][0]
        value = next(v for v in values.values() if _canon(v) == common)
        edits.files[defaults] = catalog_edit.set_vars(
            edits.read(defaults), defaults_shown, ("vars",), {variable.name: value}
        )
        overrides = [m for m in cluster if _canon(values[m.target.key]) != common]
    per_service = Counter(m.target.service for m in cluster)
    for member in overrides:
        target = member.target
        path = catalog_dir / Path(*Path(target.source_file).parts[1:])
        where: tuple[str, ...] = (
            ("vars",) if per_service[target.service] == 1 else ("stacks", target.stack, "vars")
        )
        edits.files[path] = catalog_edit.set_vars(
            edits.read(path), target.source_file, where, {variable.name: values[target.key]}
        )


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _set(document: Any, path: Path_, value: Any) -> None:
    node = document
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


# -- the proof -------------------------------------------------------------------------------------


def _prove(catalog_dir: Path, templates_dir: Path, edits: _Edits, before: Mapping[str, RenderOutcome]) -> int:
    """Render every target after the edits, in a scratch copy; refuse unless each is byte-identical."""
    texts = {path: text for path, text in edits.files.items() if text is not None}
    with edited_copy(catalog_dir, templates_dir, texts, edits.links) as workspace:
        if workspace.catalog.errors:
            raise TemplatizeError(
                "templatize refused: the edited catalog would not load ("
                + "; ".join(str(e) for e in workspace.catalog.errors)
                + "); nothing was written"
            )
        after = render_all(workspace, use_cache=False)
    changed = sorted(
        k for k in set(before) | set(after) if _rendered(before.get(k)) != _rendered(after.get(k))
    )
    if changed:
        raise TemplatizeError(
            f"templatize refused: {len(changed)} target(s) would render differently "
            f"({', '.join(changed[:10])}); "
            "every target must render byte-identical canonical JSON before and after, so nothing was written"
        )
    return len(after)


def _rendered(outcome: RenderOutcome | None) -> tuple[str | None, tuple[str, ...]]:
    if outcome is None:
        return None, ("absent",)
    return (outcome.rendered.canonical if outcome.rendered else None), outcome.problems


def _shown(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
