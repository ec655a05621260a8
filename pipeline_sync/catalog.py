"""Load catalog/ into validated models and expand it into one target per service/stack/template."""

from __future__ import annotations

import difflib
import functools
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline_sync.approvers import ApproverPolicy, SignerEntry, looser_entries, parse_allowed_signers
from pipeline_sync.errors import CatalogError, SourceLocation
from pipeline_sync.identity import pipeline_id_for
from pipeline_sync.merge import merge_layers
from pipeline_sync.names import (
    PINNED_ID,
    VARIABLE_NAME,
    application_name_problem,
    dns_label_problem,
    partition_key,
)
from pipeline_sync.safefiles import SourceReader, UnsafeFileError, read_text_file
from pipeline_sync.yamlsafe import LineMap, format_key_path, load_yaml

DEFAULTS_FILE = "defaults.yaml"
SERVICES_DIR = "services"
SERVICE_SUFFIXES = (".yaml", ".yml")
TEMPLATE_SUFFIX = ".yaml.j2"

# Names the template context defines itself; a catalog variable may not shadow them.
RESERVED_CONTEXT_NAMES = frozenset(
    {
        "app_name",
        "product",
        "team",
        "email",
        "namespace",
        "git_repo",
        "stack",
        "template",
        "pipeline_id",
        "range",
        "loop",
        "self",
        "varargs",
        "kwargs",
        "caller",
    }
)

Approval = Literal["auto", "manual"]


def _check_dns_label(value: str) -> str:
    problem = dns_label_problem(value)
    if problem:
        raise ValueError(problem)
    return value


DnsLabel = Annotated[str, AfterValidator(_check_dns_label)]


def _check_application_name(value: str) -> str:
    problem = application_name_problem(value)
    if problem:
        raise ValueError(problem)
    return value


ApplicationName = Annotated[str, AfterValidator(_check_application_name)]


def _check_variables(value: dict[str, Any]) -> dict[str, Any]:
    for name in value:
        if not isinstance(name, str) or not VARIABLE_NAME.match(name):
            raise ValueError(f"variable name {name!r} is not an identifier ([A-Za-z_][A-Za-z0-9_]*)")
        if name in RESERVED_CONTEXT_NAMES:
            raise ValueError(f"variable {name!r} shadows a name the template context defines; rename it")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# `approvals:` (distinct people whose signed approvals a write needs): 1 to this many.
MAX_APPROVALS = 10
Approvals = Annotated[int, Field(ge=1, le=MAX_APPROVALS)]


class StackDefaults(_Strict):
    vars: dict[str, Any] = Field(default_factory=dict)
    approval: Approval = "manual"
    # An OpenSSH allowed_signers file, relative to the catalog directory: who may sign approvals.
    approvers: str | None = None
    approvals: Approvals | None = None

    _vars = field_validator("vars")(_check_variables)


class CatalogIdentity(_Strict):
    """Which catalog this is, written into every marker so catalogs sharing a store never claim
    each other's pipelines; formerly lists earlier ids still owned ("" = markers without an id)."""

    id: DnsLabel
    formerly: list[str] = Field(default_factory=list)


class Defaults(_Strict):
    vars: dict[str, Any] = Field(default_factory=dict)
    stacks: dict[DnsLabel, StackDefaults]
    prune: bool = False
    catalog: CatalogIdentity | None = None

    _vars = field_validator("vars")(_check_variables)


class ServiceStack(_Strict):
    pipelines: list[DnsLabel]
    vars: dict[str, Any] = Field(default_factory=dict)
    ids: dict[str, str] = Field(default_factory=dict)
    approval: Approval | None = None
    approvers: str | None = None  # stricter only: a subset of the stack's allowed_signers
    approvals: Approvals | None = None  # stricter only: at least the stack's

    _vars = field_validator("vars")(_check_variables)

    @field_validator("pipelines")
    @classmethod
    def _template_names(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a template is listed twice")
        return value

    @field_validator("ids")
    @classmethod
    def _pinned_ids(cls, value: dict[str, str]) -> dict[str, str]:
        for template, pinned in value.items():
            if not PINNED_ID.match(pinned):
                raise ValueError(
                    f"pinned id {pinned!r} for {template!r} must be lower-case letters, "
                    "digits, '-' or '_' (at most 128)"
                )
        return value


class Service(_Strict):
    name: DnsLabel
    # The Spinnaker application; the name (which keys, ids and partitions use) when absent.
    application: ApplicationName | None = None
    product: str
    team: str
    namespace: str
    git_repo: str
    email: str | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    stacks: dict[str, ServiceStack]
    prune: bool | None = None

    _vars = field_validator("vars")(_check_variables)


@dataclass(frozen=True)
class Target:
    """One pipeline to manage: a (service, stack, template) with its merged variables."""

    key: str
    service: str
    application: str  # the Spinnaker application, as the service file spells it
    stack: str
    template: str
    source_file: str
    approval: Approval
    prune: bool
    pinned_id: str | None
    # What the template context is made of (see `context`), shared by the stack's targets.
    context_source: _ContextSource = field(repr=False)
    # Who must sign an approval of this target (None: approvals are unsigned names).
    approvers: ApproverPolicy | None = None

    @property
    def context(self) -> dict[str, Any]:
        """The template's context: the merged variables and the names the context defines itself.

        Made the first time one of its stack's targets is asked (one partition's run asks for its
        own service's alone), then kept: later calls return the same dict (two threads asking
        first at once may each get one of two equal dicts)."""
        return self.context_source.context(self.template)


# The names a target's context defines itself, in the context's order, after the variables.
_CONTEXT_NAMES = ("app_name", "product", "team", "email", "namespace", "git_repo", "stack")


@dataclass(frozen=True, slots=True)
class _ContextSource:
    """A service stack's variable layers (lowest first), the values of _CONTEXT_NAMES and its
    templates: what its targets' contexts are made of. Merging copies every value, so it is done
    once per stack, when the first of its targets is asked for its context, not for every stack
    at load time. It keeps neither the service's model nor its line map, and once merged only the
    contexts themselves."""

    layers: tuple[Mapping[str, Any], ...]
    names: tuple[Any, ...]
    templates: tuple[str, ...]
    made: dict[str, dict[str, Any]] | None = field(default=None, compare=False, repr=False)

    def context(self, template: str) -> dict[str, Any]:
        made = self.made
        if made is None:  # two threads may both make them, equal: the last one kept is used after
            variables = merge_layers(*self.layers)
            names = dict(zip(_CONTEXT_NAMES, self.names, strict=True))
            made = {each: {**variables, **names, "template": each} for each in self.templates}
            object.__setattr__(self, "made", made)
        return made[template]


@dataclass(frozen=True)
class VariableSetting:
    """One variable as a catalog file sets it (`vars:` of defaults, a stack, a service or a
    service's stack): where, and the keys of the targets whose templates it reaches."""

    name: str
    location: SourceLocation
    keys: tuple[str, ...]


@dataclass(frozen=True)
class ServiceFailure:
    """A service file that failed to load: its targets are unknown, not absent."""

    service: str
    error: CatalogError


@dataclass(frozen=True)
class Catalog:
    """The loaded catalog: good targets, failed services and the global prune default."""

    root: Path
    targets: dict[str, Target] = field(default_factory=dict)
    failures: list[ServiceFailure] = field(default_factory=list)
    prune: bool = False
    defaults_error: CatalogError | None = None
    # None: a catalog without `catalog: {id: ...}`; its markers carry no catalog id.
    catalog_id: str | None = None
    former_ids: frozenset[str | None] = frozenset()
    # service -> its Spinnaker application, for every service file that parsed (loaded or not).
    applications: Mapping[str, str] = field(default_factory=dict)
    # What `settings` is made of, when first asked for (a run that plans one partition never asks).
    setting_sources: tuple[_FileSettings, ...] = field(default=(), repr=False)
    # stack -> its approvers as defaults.yaml declares them (for keys that left the catalog).
    stack_approvers: Mapping[str, ApproverPolicy] = field(default_factory=dict)
    # Every stack defaults.yaml declares, for `validate` and `plan` to name the unsigned ones.
    stacks: tuple[str, ...] = ()

    @cached_property
    def settings(self) -> tuple[VariableSetting, ...]:
        """Every variable the loaded files set, in file order, for `validate`'s unused-variable warnings."""
        return _settings(self.setting_sources, self.targets.values())

    def unsigned_stacks(self) -> list[str]:
        """Stacks where some target's approvals are plain names, not signatures (no approvers)."""
        found = {t.stack for t in self.targets.values() if t.approvers is None}
        return [stack for stack in self.stacks if stack in found]

    def approver_policy(self, key: str) -> ApproverPolicy | None:
        """Who must sign approvals of key: its target's approvers, or for a key that left the
        catalog (a delete) its stack's, as defaults.yaml declares them."""
        target = self.targets.get(key)
        if target is not None:
            return target.approvers
        parts = key.split("/")
        return self.stack_approvers.get(parts[1]) if len(parts) == 3 else None

    def owns_marker_of(self, catalog_id: object) -> bool:
        """True when a marker naming catalog_id (None: no id) was written by this catalog."""
        return catalog_id == self.catalog_id or catalog_id in self.former_ids

    def pipeline_id(self, key: str) -> str:
        """The id this catalog gives key: pinned in the service file, else derived from the key."""
        target = self.targets.get(key)
        if target is not None and target.pinned_id:
            return target.pinned_id
        return pipeline_id_for(key)

    def application_of(self, service: str) -> str:
        """service's Spinnaker application: its `application:`, else its name. A service whose
        file is gone or unreadable gets its name too: the default is all the catalog can vouch for."""
        return self.applications.get(service, service)

    def service_of(self, application: str) -> str | None:
        """The service whose application this is (case-insensitively, as Front50 compares), else a
        failed service of that name whose file never said; None when no service or several claim it."""
        name = application.lower()
        if name in self._services_by_application:
            return self._services_by_application[name]
        if name in self.failed_services and name not in self.applications:
            return name
        return None

    @cached_property
    def _services_by_application(self) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        for service, application in self.applications.items():
            name = application.lower()
            found[name] = None if name in found else service  # None: claimed twice, a catalog error
        return found

    @property
    def failed_services(self) -> frozenset[str]:
        return frozenset(f.service for f in self.failures)

    @property
    def errors(self) -> list[CatalogError]:
        found = [self.defaults_error] if self.defaults_error else []
        return found + [f.error for f in self.failures]


def load_catalog(catalog_dir: Path, templates_dir: Path) -> Catalog:
    """Load the catalog; a broken service file fails only that service's targets."""
    catalog_dir = Path(catalog_dir)
    known_templates = available_templates(templates_dir)
    try:
        defaults, defaults_lines = _load_defaults(catalog_dir)
        stack_approvers = _stack_approvers(catalog_dir, defaults, defaults_lines)
    except CatalogError as exc:
        return Catalog(root=catalog_dir, defaults_error=exc)
    loaded: dict[str, list[Target]] = {}
    parsed: dict[str, _ServiceFile] = {}
    failures: dict[str, CatalogError] = {}
    files = _service_files(catalog_dir)
    # Each stack's defaults merged once: a service's variables merge onto a fresh copy of them.
    stack_vars = {name: merge_layers(defaults.vars, stack.vars) for name, stack in defaults.stacks.items()}
    with SourceReader(catalog_dir, what="catalog file") as reader:
        for service, paths in files.items():
            try:
                _refuse_duplicates(paths, catalog_dir)
                parsed[service] = _read_service(paths[0], catalog_dir, reader)
                loaded[service] = _targets_of(
                    parsed[service], catalog_dir, defaults, known_templates, stack_approvers, stack_vars
                )
            except CatalogError as exc:
                failures[service] = exc
    for service, error in _shared_applications(parsed).items():
        if loaded.pop(service, None) is not None:
            failures[service] = error
    identity = defaults.catalog
    targets = {target.key: target for service in files for target in loaded.get(service, ())}
    defaults_file = _relative(catalog_dir / DEFAULTS_FILE, catalog_dir)
    return Catalog(
        root=catalog_dir,
        targets=targets,
        setting_sources=(
            _file_settings(defaults_file, None, defaults_lines, defaults.vars, defaults.stacks),
            *(
                _file_settings(found.file, name, found.lines, found.service.vars, found.service.stacks)
                for name, found in parsed.items()  # in file order, as loaded is
                if name in loaded
            ),
        ),
        failures=[ServiceFailure(service, failures[service]) for service in files if service in failures],
        applications={service: found.application for service, found in parsed.items()},
        prune=defaults.prune,
        catalog_id=identity.id if identity else None,
        former_ids=frozenset(i or None for i in identity.formerly) if identity else frozenset(),
        stack_approvers=stack_approvers,
        stacks=tuple(defaults.stacks),
    )


def available_templates(templates_dir: Path) -> frozenset[str]:
    """Template names by file name alone; an entry that is not a regular file inside templates/
    (a FIFO, a directory, a link leading out) is still listed, and refused when a target uses it."""
    return frozenset(p.name[: -len(TEMPLATE_SUFFIX)] for p in Path(templates_dir).glob(f"*{TEMPLATE_SUFFIX}"))


def _service_name_of(path: Path) -> str:
    return path.stem  # svc.prod.yaml -> "svc.prod", which no service name can match


def _service_files(catalog_dir: Path) -> dict[str, list[Path]]:
    """Service files by the service their name claims; dotfiles (editor locks, backups) skipped."""
    folder = catalog_dir / SERVICES_DIR
    found: dict[str, list[Path]] = {}
    # By name: the order Path sorts a folder's entries in, without comparing Path objects.
    for path in sorted(folder.iterdir(), key=lambda entry: entry.name) if folder.is_dir() else []:
        if path.suffix in SERVICE_SUFFIXES and not path.name.startswith("."):
            found.setdefault(_service_name_of(path), []).append(path)
    return found


def _refuse_duplicates(paths: list[Path], catalog_dir: Path) -> None:
    """svc.yaml and svc.yml would both define svc: neither may silently win."""
    if len(paths) > 1:
        files = [_relative(path, catalog_dir) for path in paths]
        raise CatalogError(
            SourceLocation(files[-1]),
            f"service {_service_name_of(paths[0])!r} is defined by {' and '.join(files)}; keep one file",
        )


def _relative(path: Path, catalog_dir: Path) -> str:
    """catalog/services/svc.yaml for path catalog_dir/services/svc.yaml (its name, then the rest)."""
    text, folder = str(path), str(catalog_dir)
    if folder not in ("", ".", "/") and text.startswith(f"{folder}/"):
        return f"{catalog_dir.name}/{text[len(folder) + 1 :]}"  # what relative_to gives, on POSIX
    return f"{catalog_dir.name}/{path.relative_to(catalog_dir).as_posix()}"


def _read_model(
    path: Path, catalog_dir: Path, model: type[_Strict], reader: SourceReader | None = None
) -> tuple[Any, LineMap, str]:
    file = _relative(path, catalog_dir)
    try:
        if reader is None:
            text = read_text_file(path, root=catalog_dir, what="catalog file")
        else:
            text = reader.read(path)
    except UnsafeFileError as exc:
        raise CatalogError(SourceLocation(file), str(exc)) from None
    data, lines = load_yaml(text, file)
    if not isinstance(data, dict):
        raise CatalogError(SourceLocation(file, line=1), "expected a mapping at the top level")
    try:
        return model.model_validate(data), lines, file
    except ValidationError as exc:
        raise _as_catalog_error(exc, file, lines, model, data) from None


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to word (a typo's likely intent), or None when none is close."""
    found = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.75)
    return found[0] if found else None


def _as_catalog_error(
    exc: ValidationError, file: str, lines: LineMap, model: type[_Strict], data: Any
) -> CatalogError:
    """The file's first problem, unknown keys first: a typo'd key is reported at its own line with
    the key it likely meant, and the "missing" error of that key is its consequence, not counted."""
    problems = [(_location(error["loc"]), error) for error in exc.errors()]
    unknown = [(loc, error) for loc, error in problems if error["type"] == "extra_forbidden"]
    unknown.sort(key=lambda found: lines.line_of(found[0]) or 0)  # the first typo in the file first
    guesses = {loc: _guess(model, data, loc) for loc, _ in unknown}
    explained = {(*loc[:-1], guess) for loc, guess in guesses.items() if guess}
    rest = [(loc, e) for loc, e in problems if e["type"] != "extra_forbidden" and loc not in explained]
    ordered = unknown + rest
    loc, first = ordered[0]
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = _unknown_key_message(model, loc, guesses[loc])
    elif first["type"] == "missing":
        message = f"required key {loc[-1]!r} is missing"
    message = message.removeprefix("Value error, ")
    more = len(ordered) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''} in this file)"
    return CatalogError(SourceLocation(file, format_key_path(loc), lines.line_of(loc)), message)


def _location(loc: tuple[Any, ...]) -> tuple[str | int, ...]:
    return tuple(part for part in loc if isinstance(part, str | int) and part != "[key]")


def _unknown_key_message(model: type[_Strict], loc: tuple[str | int, ...], guess: str | None) -> str:
    if guess:
        return f"unknown key {loc[-1]!r} (did you mean {guess!r}?)"
    known = ", ".join(sorted(_fields_at(model, loc[:-1])))
    return f"unknown key {loc[-1]!r}; check its spelling against the catalog reference (keys here: {known})"


def _guess(model: type[_Strict], data: Any, loc: tuple[str | int, ...]) -> str | None:
    """The field the unknown key at loc likely meant: a close one the mapping does not set yet."""
    mapping = data
    for part in loc[:-1]:
        mapping = mapping.get(part) if isinstance(mapping, dict) else None
    present = set(mapping) if isinstance(mapping, dict) else set()
    return did_you_mean(str(loc[-1]), _fields_at(model, loc[:-1]) - present)


def _fields_at(model: type[_Strict], path: tuple[str | int, ...]) -> frozenset[str]:
    """The field names of the model that validates the mapping at path (empty when none does)."""
    annotation: Any = model
    for part in path:
        inner = _unwrapped(annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            found = inner.model_fields.get(str(part))
            annotation = found.annotation if found else None
        elif get_origin(inner) in (dict, list):
            annotation = get_args(inner)[-1]
        else:
            return frozenset()
    inner = _unwrapped(annotation)
    return (
        frozenset(inner.model_fields)
        if isinstance(inner, type) and issubclass(inner, BaseModel)
        else frozenset()
    )


def _unwrapped(annotation: Any) -> Any:
    """X from Annotated[X, ...], X | None and Optional[X]."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _unwrapped(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        return _unwrapped(options[0]) if len(options) == 1 else annotation
    return annotation


def _load_defaults(catalog_dir: Path) -> tuple[Defaults, LineMap]:
    path = catalog_dir / DEFAULTS_FILE
    if not path.exists() and not path.is_symlink():  # a dangling link is refused when read
        raise CatalogError(
            SourceLocation(_relative(path, catalog_dir)),
            "catalog defaults file is missing; it must declare at least `stacks:`",
        )
    defaults, lines, _ = _read_model(path, catalog_dir, Defaults)
    assert isinstance(defaults, Defaults)
    return defaults, lines


@dataclass(frozen=True)
class _VariablesBlock:
    """One `vars:` map of a catalog file: its key path, and each name it sets with its line."""

    where: tuple[str, ...]
    stack: str | None  # the stack whose targets it reaches; None: every target of the file's
    names: tuple[tuple[str, int | None], ...]


@dataclass(frozen=True)
class _FileSettings:
    """The `vars:` maps of defaults.yaml (service None) or of one loaded service file."""

    file: str
    service: str | None
    blocks: tuple[_VariablesBlock, ...]


def _file_settings(
    file: str, service: str | None, lines: LineMap, variables: Mapping[str, Any], stacks: Mapping[str, Any]
) -> _FileSettings:
    """The file's `vars:` and each stack's `stacks.<stack>.vars:`, with their lines: what
    Catalog.settings is made of later, kept without the file's model or line map."""
    blocks: list[tuple[tuple[str, ...], str | None, Mapping[str, Any]]] = [(("vars",), None, variables)]
    blocks += [(("stacks", stack, "vars"), stack, settings.vars) for stack, settings in stacks.items()]
    return _FileSettings(
        file,
        service,
        tuple(
            _VariablesBlock(where, stack, tuple((name, lines.line_of((*where, name))) for name in names))
            for where, stack, names in blocks
            if names  # most stacks set no variable of their own
        ),
    )


def _settings(files: Iterable[_FileSettings], targets: Iterable[Target]) -> tuple[VariableSetting, ...]:
    """Every variable the files set, in file order, with the keys of the targets it reaches:
    defaults.yaml's reach every target (a stack's, that stack's), a service file's its own."""
    by_service: dict[str | None, list[Target]] = {None: []}
    for target in targets:
        by_service[None].append(target)
        by_service.setdefault(target.service, []).append(target)
    found = []
    for settings in files:
        reached = by_service.get(settings.service, [])
        for block in settings.blocks:
            keys = tuple(t.key for t in reached if block.stack is None or t.stack == block.stack)
            found += [
                VariableSetting(
                    name, SourceLocation(settings.file, format_key_path((*block.where, name)), line), keys
                )
                for name, line in block.names
            ]
    return tuple(found)


@dataclass(frozen=True)
class _ServiceFile:
    """A service file that parsed and whose name matches the file: its application is known."""

    service: Service
    lines: LineMap
    file: str

    @property
    def application(self) -> str:
        return self.service.application or self.service.name

    def error(self, loc: tuple[str | int, ...], message: str) -> CatalogError:
        return CatalogError(SourceLocation(self.file, format_key_path(loc), self.lines.line_of(loc)), message)


def _read_service(path: Path, catalog_dir: Path, reader: SourceReader) -> _ServiceFile:
    service, lines, file = _read_model(path, catalog_dir, Service, reader)
    assert isinstance(service, Service)
    found = _ServiceFile(service, lines, file)
    if service.name != _service_name_of(path):
        raise found.error(("name",), f"service name {service.name!r} must match its file name {path.name!r}")
    return found


def _shared_applications(parsed: Mapping[str, _ServiceFile]) -> dict[str, CatalogError]:
    """An error for each service whose application another service also has (case-insensitively,
    as Front50 compares): their pipelines would share one application, and pipeline_id() could
    not tell which service an application names."""
    groups: dict[str, list[str]] = {}
    for service in sorted(parsed):
        groups.setdefault(parsed[service].application.lower(), []).append(service)
    errors = {}
    for services in groups.values():
        for service in services if len(services) > 1 else ():
            found = parsed[service]
            claimants = [parsed[other] for other in services if other != service]
            others = ", ".join(f"{other.file} ({other.application!r})" for other in claimants)
            where = ("application",) if found.service.application else ("name",)
            errors[service] = found.error(
                where,
                f"service {service!r} has application {found.application!r}, and so does {others}; "
                "Front50 compares application names case-insensitively, so give each service its own "
                "`application:`",
            )
    return errors


def _stack_approvers(catalog_dir: Path, defaults: Defaults, lines: LineMap) -> dict[str, ApproverPolicy]:
    """Each stack's approvers as defaults.yaml declares them; a CatalogError for the first problem."""
    file = _relative(catalog_dir / DEFAULTS_FILE, catalog_dir)

    def fail(loc: tuple[str | int, ...], message: str) -> CatalogError:
        return CatalogError(SourceLocation(file, format_key_path(loc), lines.line_of(loc)), message)

    found = {}
    for name, stack in defaults.stacks.items():
        where = ("stacks", name)
        if stack.approvals is not None and stack.approvers is None:
            raise fail(
                (*where, "approvals"), "`approvals:` counts signed approvals; declare `approvers:` too"
            )
        if stack.approvers is None:
            continue
        if stack.approval == "auto":
            raise fail(
                (*where, "approval"),
                "`approval: auto` cannot be combined with `approvers:`: stack policy can never sign; "
                "remove one of them",
            )
        text, entries = _signers_file(
            catalog_dir, stack.approvers, functools.partial(fail, (*where, "approvers"))
        )
        found[name] = ApproverPolicy(
            _relative(catalog_dir / stack.approvers, catalog_dir), text, stack.approvals or 1, entries
        )
    return found


def _signers_file(
    catalog_dir: Path, relative: str, fail: Callable[[str], CatalogError]
) -> tuple[str, tuple[SignerEntry, ...]]:
    """The text and entries of an allowed_signers file named relative to the catalog directory."""
    if Path(relative).is_absolute():
        raise fail(f"approvers file {relative!r} must be a path relative to the catalog directory")
    try:
        text = read_text_file(catalog_dir / relative, root=catalog_dir, what="approvers file")
    except UnsafeFileError as exc:
        raise fail(f"approvers file {relative!r}: {exc}") from None
    try:
        return text, parse_allowed_signers(text)
    except ValueError as exc:
        raise fail(f"approvers file {relative!r} is not an OpenSSH allowed_signers file: {exc}") from None


def _service_approvers(
    found: _ServiceFile, catalog_dir: Path, stack_name: str, stack: ServiceStack, base: ApproverPolicy | None
) -> ApproverPolicy | None:
    """The approvers of a service's stack: its stack's, made stricter (never looser) by the service."""
    where = ("stacks", stack_name)
    if stack.approvals is not None and base is None and stack.approvers is None:
        raise found.error(
            (*where, "approvals"), "`approvals:` counts signed approvals; declare `approvers:` too"
        )
    if base is not None and stack.approvals is not None and stack.approvals < base.approvals:
        raise found.error(
            (*where, "approvals"),
            f"approvals: {stack.approvals} is fewer than the {base.approvals} stack {stack_name!r} requires; "
            "a service may only make its stack stricter",
        )
    if stack.approval == "auto" and (base is not None or stack.approvers is not None):
        raise found.error(
            (*where, "approval"),
            "`approval: auto` cannot apply to a stack with approvers: stack policy can never sign",
        )
    if stack.approvers is None and stack.approvals is None:
        return base
    policy = base
    if stack.approvers is not None:
        text, entries = _signers_file(
            catalog_dir, stack.approvers, lambda m: found.error((*where, "approvers"), m)
        )
        if base is not None:
            looser = looser_entries(entries, base.entries)
            if looser:
                raise found.error(
                    (*where, "approvers"),
                    f"approvers file {stack.approvers!r} is looser than {base.file}: {'; '.join(looser)}; "
                    "a service may only narrow its stack's signers",
                )
        file = _relative(catalog_dir / stack.approvers, catalog_dir)
        policy = ApproverPolicy(file, text, base.approvals if base else 1, entries)
    assert policy is not None
    return ApproverPolicy(
        policy.file, policy.text, max(policy.approvals, stack.approvals or 1), policy.entries
    )


def _targets_of(
    found: _ServiceFile,
    catalog_dir: Path,
    defaults: Defaults,
    known_templates: frozenset[str],
    stack_approvers: Mapping[str, ApproverPolicy] | None = None,
    stack_vars: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Target]:
    """The service's targets; stack_vars: each stack's defaults.yaml variables, merged already."""
    service, fail, file = found.service, found.error, found.file
    targets = []
    for stack_name, stack in service.stacks.items():
        if stack_name not in defaults.stacks:
            declared = ", ".join(sorted(defaults.stacks)) or "none"
            defaults_file = _relative(catalog_dir / DEFAULTS_FILE, catalog_dir)
            raise fail(
                ("stacks", stack_name),
                f"stack {stack_name!r} is not declared in {defaults_file} (declared: {declared})",
            )
        for index, template in enumerate(stack.pipelines):
            if template not in known_templates:
                raise fail(
                    ("stacks", stack_name, "pipelines", index),
                    f"template {template!r} does not exist (templates/{template}{TEMPLATE_SUFFIX}); "
                    f"known: {', '.join(sorted(known_templates)) or 'none'}",
                )
        for template in stack.ids:
            if template not in stack.pipelines:
                raise fail(
                    ("stacks", stack_name, "ids", template),
                    f"pinned id for {template!r}, which this stack does not list in `pipelines`",
                )
        stack_defaults = defaults.stacks[stack_name]
        approvers = _service_approvers(
            found, catalog_dir, stack_name, stack, (stack_approvers or {}).get(stack_name)
        )
        layers: tuple[Mapping[str, Any], ...]
        if stack_vars is None:
            layers = (defaults.vars, stack_defaults.vars, service.vars, stack.vars)
        else:  # the same tree (merging is applied layer by layer), copied afresh for this service
            layers = (stack_vars[stack_name], service.vars, stack.vars)
        context_source = _ContextSource(
            layers,
            # _CONTEXT_NAMES' values, in its order
            (
                found.application,
                service.product,
                service.team,
                service.email,
                service.namespace,
                service.git_repo,
                stack_name,
            ),
            tuple(stack.pipelines),
        )
        for template in stack.pipelines:
            key = partition_key(service.name, stack_name, template)
            targets.append(
                Target(
                    key=key,
                    service=service.name,
                    application=found.application,
                    stack=stack_name,
                    template=template,
                    source_file=file,
                    # A stack with approvers is never approved by policy (one of them must sign).
                    approval="manual" if approvers else stack.approval or stack_defaults.approval,
                    prune=defaults.prune if service.prune is None else service.prune,
                    pinned_id=stack.ids.get(template),
                    context_source=context_source,
                    approvers=approvers,
                )
            )
    return targets
