"""Structural validation of rendered Spinnaker pipelines, one at a time and across the fleet (pure)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any, TypeGuard

from pipeline_sync.front50_model import (
    PIPELINE_FIELDS,
    TRIGGER_GETTERS,
    Mismatch,
    limit_problems,
    mismatches,
)
from pipeline_sync.identity import artifact_references, expected_artifacts, legacy_expected_artifact
from pipeline_sync.names import FORBIDDEN_PIPELINE_NAME_CHARS, application_name_problem

# Typed Front50 fields that have a stricter rule of their own below (which also says why).
STRICTER_RULES = frozenset({"id", "name", "application", "stages", "triggers", "parameterConfig"})
FRONT50_STALLS = (
    "Front50 could not load this pipeline, and one it cannot load stops its cache refresh "
    "for every application"
)
# How many colliding targets or refIds a message names before it says "and N more".
MAX_NAMED = 3
MAX_LISTED_REFIDS = 10
SHORT_VALUE = 60

_MISSING: Any = object()

# (path, message): what each check finds, before it is tied to a partition.
Found = tuple[str, str]
# (path, mapping) of the mapping items of a list, e.g. ("stages[2]", stage).
Located = list[tuple[str, Mapping[str, Any]]]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one partition's pipeline, at a path inside it ("" = the whole document)."""

    partition: str
    path: str
    message: str

    def __str__(self) -> str:
        if self.path:
            return f"[{self.partition}] {self.path}: {self.message}"
        return f"[{self.partition}] {self.message}"


def validate_pipeline(partition: str, pipeline: Mapping[str, Any]) -> list[Problem]:
    """Every structural problem of one rendered, identity-stamped pipeline; never raises."""
    if not isinstance(pipeline, Mapping):
        return [Problem(partition, "", f"a pipeline must be a mapping, got {_kind(pipeline)}")]
    checks: tuple[Callable[[Mapping[str, Any]], Iterable[Found]], ...] = (
        limit_problems,
        _identity_problems,
        _front50_problems,
        _stage_problems,
        _artifact_problems,
        _parameter_problems,
        _trigger_problems,
    )
    return [Problem(partition, path, message) for check in checks for path, message in check(pipeline)]


def validate_fleet(pipelines: Mapping[str, Mapping[str, Any]]) -> dict[str, list[Problem]]:
    """Name and id collisions between the catalog's pipelines, by partition key (only keys with any)."""
    found: dict[str, list[Problem]] = {}
    for problem in (*_name_collisions(pipelines), *_id_collisions(pipelines)):
        found.setdefault(problem.partition, []).append(problem)
    return found


# --- identity and top-level fields -------------------------------------------------------------


def _identity_problems(pipeline: Mapping[str, Any]) -> Iterator[Found]:
    yield from _non_empty_string(
        pipeline, "name", "name", advice="; Front50 and Deck find pipelines by name: set it in the template"
    )
    yield from _non_empty_string(
        pipeline, "application", "application", advice="; the renderer sets it to the service's application"
    )
    application = pipeline.get("application")
    if isinstance(application, str) and application:
        yield from _application_name_problems(application)
    yield from _non_empty_string(
        pipeline, "id", "id", advice="; the renderer assigns it (or the catalog pins one): keep it"
    )
    name = pipeline.get("name")
    if isinstance(name, str):
        yield from _name_character_problems(name)


def _application_name_problems(application: str) -> Iterator[Found]:
    """A rendered application always passes (the catalog checked it); a restored version may not."""
    problem = application_name_problem(application)
    if problem:
        yield (
            "application",
            f"{problem}; Front50 keys the application by its name lower-cased, so pipeline-sync "
            "writes only names Front50 and Deck accept",
        )


def _name_character_problems(name: str) -> Iterator[Found]:
    bad = [c for c in dict.fromkeys(name) if c in FORBIDDEN_PIPELINE_NAME_CHARS]
    if bad:
        listed = ", ".join(repr(c) for c in bad)
        yield (
            "name",
            f"name {_short(name)} contains {listed}, which Deck forbids in pipeline names "
            "(\\ ^ / ? % #); use '-' instead",
        )


def _front50_problems(pipeline: Mapping[str, Any]) -> Iterator[Found]:
    """Values of Front50's typed Pipeline fields that Jackson cannot read (front50_model)."""
    for field, java_type in PIPELINE_FIELDS.items():
        if field in pipeline and field not in STRICTER_RULES:
            for mismatch in mismatches(field, java_type, pipeline[field], field):
                yield mismatch.path, _front50_message(mismatch)


def _front50_message(mismatch: Mismatch) -> str:
    field_type = PIPELINE_FIELDS[mismatch.field]
    subject = mismatch.field if mismatch.path == mismatch.field else f"each entry of {mismatch.field}"
    return (
        f"{subject} must be {mismatch.java_type.expected}, got {_kind(mismatch.value)}: "
        f"Front50 reads Pipeline.{mismatch.field} as {field_type.java}; {FRONT50_STALLS}"
    )


# --- stages and their graph --------------------------------------------------------------------


def _stage_problems(pipeline: Mapping[str, Any]) -> Iterator[Found]:
    stages = pipeline.get("stages", _MISSING)
    if not isinstance(stages, list):
        yield "stages", f"stages must be a list of stages (an empty list is allowed), got {_kind(stages)}"
        return
    for index, stage in enumerate(stages):
        yield from _stage_field_problems(f"stages[{index}]", stage)
    located = [(f"stages[{i}]", s) for i, s in enumerate(stages) if isinstance(s, Mapping)]
    if all(stage.get("refId") is None for _, stage in located):
        # A legacy linear pipeline: Orca (orca-web OperationsController.applyStageRefIds) numbers
        # its stages "0", "1", ... in order and chains each to the one before, replacing any
        # requisiteStageRefIds, so there is no graph to check.
        return
    yield from _refid_problems(located)
    owners = _refid_owners(located)
    yield from _duplicate_refids(located, owners)
    yield from _requisite_problems(located, owners)
    yield from _root_problems(located)
    yield from _cycle_problems(_successors(located, owners), list(owners))


def _stage_field_problems(path: str, stage: object) -> Iterator[Found]:
    if not isinstance(stage, Mapping):
        yield path, f"a stage must be a mapping with type and refId, got {_kind(stage)}"
        return
    yield from _non_empty_string(
        stage, "type", f"{path}.type", " naming the stage type, such as deployManifest"
    )


def _refid_problems(located: Located) -> Iterator[Found]:
    """refIds of a pipeline where some stage has one: then every stage needs a string refId."""
    numbered = next(path for path, stage in located if stage.get("refId") is not None)
    for path, stage in located:
        ref_id = stage.get("refId")
        if ref_id is None:
            yield (
                f"{path}.refId",
                f"this stage has no refId but {numbered} has one; Orca numbers stages itself only when "
                "no stage has a refId, so give every stage a refId (or remove them all)",
            )
        elif _is_number(ref_id):
            yield (
                f"{path}.refId",
                f'refId must be a string, got the number {ref_id}; use strings: refId: "{ref_id}" '
                "(Orca reads refIds as text and would never match it)",
            )
        elif not _is_text(ref_id):
            yield (
                f"{path}.refId",
                f"refId must be a non-empty string, got {_kind(ref_id)}; "
                "other stages name it in requisiteStageRefIds",
            )


def _refid_owners(located: Located) -> dict[str, str]:
    """refId -> path of the first stage that has it."""
    owners: dict[str, str] = {}
    for path, stage in located:
        ref_id = stage.get("refId")
        if _is_text(ref_id):
            owners.setdefault(ref_id, path)
    return owners


def _duplicate_refids(located: Located, owners: Mapping[str, str]) -> Iterator[Found]:
    for path, stage in located:
        ref_id = stage.get("refId")
        if _is_text(ref_id) and owners[ref_id] != path:
            yield (
                f"{path}.refId",
                f"refId {ref_id!r} is already used by {owners[ref_id]}; refIds must be unique, "
                "or requisiteStageRefIds cannot tell the stages apart",
            )


def _requisite_problems(located: Located, owners: Mapping[str, str]) -> Iterator[Found]:
    for path, stage in located:
        requisites = stage.get("requisiteStageRefIds")
        if requisites is None:  # Orca reads a missing or null list as no requisites
            continue
        if not isinstance(requisites, list):
            yield (
                f"{path}.requisiteStageRefIds",
                f"requisiteStageRefIds must be a list of refIds (use [] for none), got {_kind(requisites)}",
            )
            continue
        for index, requisite in enumerate(requisites):
            problem = _requisite_problem(requisite, owners)
            if problem:
                yield f"{path}.requisiteStageRefIds[{index}]", problem


def _requisite_problem(requisite: object, owners: Mapping[str, str]) -> str | None:
    if _is_number(requisite):
        return f'requisite must be a string refId, got the number {requisite}; use strings: "{requisite}"'
    if not isinstance(requisite, str):
        return f"requisite must be a string refId, got {_kind(requisite)}"
    if requisite not in owners:
        return f"requisite {requisite!r} names no stage of this pipeline; known refIds: {_listing(owners)}"
    return None


def _successors(located: Located, owners: Mapping[str, str]) -> dict[str, list[tuple[str, str]]]:
    """refId -> [(refId of a stage that waits for it, path of that requisite)], valid edges only."""
    successors: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for path, stage in located:
        ref_id = stage.get("refId")
        if not _is_text(ref_id):
            continue
        for index, requisite in enumerate(_list(stage.get("requisiteStageRefIds"))):
            if isinstance(requisite, str) and requisite in owners:
                successors[requisite].append((ref_id, f"{path}.requisiteStageRefIds[{index}]"))
    return successors


def _root_problems(located: Located) -> Iterator[Found]:
    if located and all(stage.get("requisiteStageRefIds") for _, stage in located):
        yield (
            "stages",
            (
                "no stage can start: every stage waits for another in requisiteStageRefIds; "
                "give the first stage requisiteStageRefIds: []"
            ),
        )


def _cycle_problems(successors: Mapping[str, list[tuple[str, str]]], order: list[str]) -> Iterator[Found]:
    for cycle, where in _cycles(successors, order):
        drawn = " -> ".join(cycle)
        if len(cycle) == 2:
            yield (
                where,
                f"stage {cycle[0]!r} waits for itself ({drawn}), so Orca would never start it; "
                "remove it from its requisiteStageRefIds",
            )
        else:
            yield (
                where,
                (
                    f"the stages form a cycle {drawn} (each waits for the one before it), which Orca refuses "
                    "as 'Invalid stage relationships'; remove one of these requisites"
                ),
            )


def _cycles(
    successors: Mapping[str, list[tuple[str, str]]], order: list[str]
) -> Iterator[tuple[list[str], str]]:
    """Each cycle a depth-first walk closes: refIds (the first repeated last) and the closing requisite.

    Iterative, so a long chain of stages cannot hit Python's recursion limit.
    """
    done: set[str] = set()
    for start in order:
        if start in done:
            continue
        trail, position = [start], {start: 0}
        pending = [iter(successors.get(start, ()))]
        while pending:
            step = next(pending[-1], None)
            if step is None:
                node = trail.pop()
                del position[node]
                done.add(node)
                pending.pop()
            elif step[0] in position:
                yield [*trail[position[step[0]] :], step[0]], step[1]
            elif step[0] not in done:
                position[step[0]] = len(trail)
                trail.append(step[0])
                pending.append(iter(successors.get(step[0], ())))


# --- expected artifacts ------------------------------------------------------------------------


def _artifact_problems(pipeline: Mapping[str, Any]) -> Iterator[Found]:
    view = _walkable(pipeline)
    located = _located_artifacts(view)
    yield from _artifact_identity_problems(located)
    known = {artifact.get("id") for _, artifact in located if _is_text(artifact.get("id"))}
    for path, container, slot in artifact_references(view):
        if container[slot] not in known:
            yield (
                path,
                (
                    f"{_short(container[slot])} names no expected artifact (by id or displayName); "
                    "declare it in expectedArtifacts or fix the reference"
                ),
            )


def _artifact_identity_problems(located: Located) -> Iterator[Found]:
    ids: dict[str, str] = {}
    names: dict[str, str] = {}
    for path, artifact in located:
        artifact_id, name = artifact.get("id"), artifact.get("displayName")
        if not _is_text(artifact_id):
            yield f"{path}.id", "an expected artifact needs an id, or a displayName to derive one from"
        elif artifact_id in ids:
            yield f"{path}.id", f"expected artifact id {artifact_id!r} is already used by {ids[artifact_id]}"
        else:
            ids[artifact_id] = path
        if isinstance(name, str) and name in names:
            yield (
                f"{path}.displayName",
                (f"displayName {name!r} is already used by {names[name]}; displayNames must be unique"),
            )
        elif isinstance(name, str):
            names[name] = path


def _walkable(pipeline: Mapping[str, Any]) -> dict[str, Any]:
    """A shallow copy identity's walkers iterate safely: non-list stages, triggers, inputArtifacts dropped."""
    stages = [_walkable_stage(stage) for stage in _list(pipeline.get("stages"))]
    return {**pipeline, "stages": stages, "triggers": _list(pipeline.get("triggers"))}


def _walkable_stage(stage: object) -> object:
    if isinstance(stage, dict) and not isinstance(stage.get("inputArtifacts", []), list):
        return {k: v for k, v in stage.items() if k != "inputArtifacts"}
    return stage


def _located_artifacts(view: dict[str, Any]) -> Located:
    """identity.expected_artifacts, each with its path (one object may sit at two paths: YAML aliases)."""
    paths: dict[int, list[str]] = defaultdict(list)
    _add_paths(paths, view.get("expectedArtifacts"), "expectedArtifacts")
    for index, stage in enumerate(view["stages"]):
        if isinstance(stage, dict):
            _add_paths(paths, stage.get("expectedArtifacts"), f"stages[{index}].expectedArtifacts")
            legacy = legacy_expected_artifact(stage)
            if legacy is not None:
                paths[id(legacy)].append(f"stages[{index}].expectedArtifact")
    return [(paths[id(artifact)].pop(0), artifact) for artifact in expected_artifacts(view)]


def _add_paths(paths: dict[int, list[str]], items: object, path: str) -> None:
    for index, item in enumerate(_list(items)):
        paths[id(item)].append(f"{path}[{index}]")


# --- parameters and triggers -------------------------------------------------------------------


def _parameter_problems(pipeline: Mapping[str, Any]) -> Iterator[Found]:
    yield from _list_of_mappings_problems(pipeline, "parameterConfig")
    seen: dict[str, str] = {}
    for path, parameter in _mapping_items(pipeline, "parameterConfig"):
        name = parameter.get("name", _MISSING)
        if not _is_text(name):
            yield f"{path}.name", f"a parameter needs a non-empty string name, got {_kind(name)}"
        elif name in seen:
            yield (
                f"{path}.name",
                (f"parameter {name!r} is already defined by {seen[name]}; parameter names must be unique"),
            )
        else:
            seen[name] = path


def _trigger_problems(pipeline: Mapping[str, Any]) -> Iterator[Found]:
    yield from _list_of_mappings_problems(pipeline, "triggers")
    for path, trigger in _mapping_items(pipeline, "triggers"):
        kind = trigger.get("type")
        yield from _non_empty_string(trigger, "type", f"{path}.type", " such as git, cron or pipeline")
        yield from _optional_bool(trigger, "enabled", f"{path}.enabled", f"; {TRIGGER_GETTERS['enabled']}")
        yield from _optional_list(trigger, "expectedArtifactIds", f"{path}.expectedArtifactIds")
        for field in _TRIGGER_FIELDS.get(kind, ()) if isinstance(kind, str) else ():
            yield from _non_empty_string(trigger, field, f"{path}.{field}", f" in a {kind} trigger")
        if kind == "pipeline":
            yield from _status_problems(trigger.get("status"), f"{path}.status")


def _status_problems(status: object, path: str) -> Iterator[Found]:
    for index, item in enumerate(_list(status)):
        if item is None:
            yield (
                f"{path}[{index}]",
                f"a pipeline trigger's status list cannot hold null ({TRIGGER_GETTERS['status']}); "
                "use successful, failed or canceled",
            )


_TRIGGER_FIELDS: Mapping[str, tuple[str, ...]] = {
    "cron": ("cronExpression",),
    "pipeline": ("application", "pipeline"),
}


# --- fleet -------------------------------------------------------------------------------------


def _name_collisions(pipelines: Mapping[str, Mapping[str, Any]]) -> Iterator[Problem]:
    for key, others in _collisions(pipelines, _application_and_name):
        pipeline = pipelines[key]
        yield Problem(
            key,
            "name",
            f"application {pipeline['application']!r} already has a pipeline named "
            f"{_short(pipeline['name'])} in {others} (Front50 refuses a second pipeline of one name, "
            "compared case-insensitively); "
            "give each its own name, e.g. put {{ stack }} in the template's name",
        )


def _id_collisions(pipelines: Mapping[str, Mapping[str, Any]]) -> Iterator[Problem]:
    for key, others in _collisions(pipelines, _lower_id):
        yield Problem(
            key,
            "id",
            f"id {pipelines[key]['id']!r} is also the id of {others}; every pipeline needs its own id, "
            "so if the catalog pins this id, pin it on only one target",
        )


def _collisions(
    pipelines: Mapping[str, Mapping[str, Any]], group_of: Callable[[Mapping[str, Any]], Hashable | None]
) -> Iterator[tuple[str, str]]:
    """(key, the other keys in words) for every key whose group it shares; one pass, dict grouping."""
    groups: dict[Hashable, list[str]] = defaultdict(list)
    for key, pipeline in pipelines.items():
        group = group_of(pipeline) if isinstance(pipeline, Mapping) else None
        if group is not None:
            groups[group].append(key)
    for members in groups.values():
        if len(members) > 1:
            members.sort()
            for key in members:
                yield key, _others(key, members)


def _others(key: str, members: list[str]) -> str:
    """The other members, at most MAX_NAMED of them by name, so a huge group stays linear."""
    named = list(islice((m for m in members if m != key), MAX_NAMED))
    words = ", ".join(repr(m) for m in named)
    rest = len(members) - 1 - len(named)
    return f"{words} and {rest} more" if rest else words


def _application_and_name(pipeline: Mapping[str, Any]) -> Hashable | None:
    application, name = pipeline.get("application"), pipeline.get("name")
    if isinstance(application, str) and isinstance(name, str):
        return application.lower(), name.lower()
    return None


def _lower_id(pipeline: Mapping[str, Any]) -> Hashable | None:
    pipeline_id = pipeline.get("id")
    return pipeline_id.lower() if isinstance(pipeline_id, str) else None


# --- small shared checks -----------------------------------------------------------------------


def _non_empty_string(
    mapping: Mapping[str, Any], key: str, path: str, qualifier: str = "", advice: str = ""
) -> Iterator[Found]:
    value = mapping.get(key, _MISSING)
    if not _is_text(value):
        yield path, f"{key} must be a non-empty string{qualifier}, got {_kind(value)}{advice}"


def _optional_bool(mapping: Mapping[str, Any], key: str, path: str, why: str = "") -> Iterator[Found]:
    value = mapping.get(key, _MISSING)
    if value is not _MISSING and not isinstance(value, bool):
        yield path, f"{key} must be true or false, got {_kind(value)}{why}"


def _optional_list(mapping: Mapping[str, Any], key: str, path: str) -> Iterator[Found]:
    value = mapping.get(key, _MISSING)
    if value is not _MISSING and not isinstance(value, list):
        yield path, f"{key} must be a list (use [] for none), got {_kind(value)}"


def _list_of_mappings_problems(pipeline: Mapping[str, Any], key: str) -> Iterator[Found]:
    yield from _optional_list(pipeline, key, key)
    for index, item in enumerate(_list(pipeline.get(key))):
        if not isinstance(item, Mapping):
            yield f"{key}[{index}]", f"each entry of {key} must be a mapping, got {_kind(item)}"


def _mapping_items(pipeline: Mapping[str, Any], key: str) -> Located:
    items = enumerate(_list(pipeline.get(key)))
    return [(f"{key}[{index}]", item) for index, item in items if isinstance(item, Mapping)]


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _is_text(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _listing(owners: Mapping[str, str]) -> str:
    names = sorted(owners)
    if not names:
        return "none"
    shown = ", ".join(repr(n) for n in names[:MAX_LISTED_REFIDS])
    extra = len(names) - MAX_LISTED_REFIDS
    return f"{shown} and {extra} more" if extra > 0 else shown


def _kind(value: object) -> str:
    """How a found value reads in a message, where something else was expected."""
    if value is _MISSING:
        return "nothing (the key is missing)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {_short(value)}" if value else "an empty string"
    if isinstance(value, Mapping):
        return "a mapping"
    return "a list" if isinstance(value, list) else f"a {type(value).__name__}"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= SHORT_VALUE else f"{text[: SHORT_VALUE - 4]}...{text[-1]}"
