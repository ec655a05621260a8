"""Render a target's template into a Spinnaker pipeline: sandboxed Jinja2, inert values, stable ids."""

from __future__ import annotations

import datetime
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2
from jinja2 import pass_context
from jinja2.runtime import Context

from pipeline_sync.canonical import canonical_json, sha256_hex
from pipeline_sync.catalog import TEMPLATE_SUFFIX, Catalog, Target
from pipeline_sync.errors import RenderError, SourceLocation, YamlDocumentError
from pipeline_sync.identity import assign_identities
from pipeline_sync.names import partition_key
from pipeline_sync.safefiles import UnsafeFileError, read_text_file
from pipeline_sync.sandbox import (
    MAX_OUTPUT_CHARS,
    MAX_RENDER_SECONDS,
    BudgetedSandbox,
    RenderBudget,
    TemplateBudgetExceeded,
    TemplateText,
    current_budget,
    value_size,
)
from pipeline_sync.yamlsafe import MAX_NESTING_DEPTH, QuotedText, load_yaml

# The rendered texts a renderer keeps parsed, by their total length: every value a template
# outputs is a placeholder, so most targets of one template render the very same text (the
# bench's 10,000 targets render 4 texts). A parsed text and its fill plan take about 50 bytes
# per character, so the memo stays under about 50 MB.
PARSE_MEMO_CHARS = 1_000_000

# One pipeline_id() call a template made while rendering: (app_name, stack, template, answer),
# the arguments as the function saw them (str), the answer None when they named no target.
Reference = tuple[str, str, str, str | None]


@dataclass(frozen=True)
class RenderedPipeline:
    """A rendered, identity-stamped pipeline and its canonical JSON."""

    key: str
    pipeline_id: str
    document: Mapping[str, Any]
    canonical: str

    @cached_property
    def digest(self) -> str:
        """sha256 of the canonical JSON, computed once (the dataclass is frozen)."""
        return sha256_hex(self.canonical)


class Renderer:
    """Renders targets of one catalog with templates compiled once and cached."""

    def __init__(self, templates_dir: Path, catalog: Catalog) -> None:
        self._templates_dir = Path(templates_dir)
        self._catalog = catalog
        self._env = BudgetedSandbox(finalize=_record_value)
        self._cache: dict[str, jinja2.Template] = {}
        self._sources: dict[str, str] = {}
        # A fresh nonce per renderer: template text can never contain a real placeholder.
        self._placeholder_prefix = f"PSV{secrets.token_hex(8)}N"
        self._placeholder = re.compile(re.escape(self._placeholder_prefix) + r"(\d+)Z")
        # Rendered text -> its parsed document, shared by every render of that text: never
        # changed, _fill builds a new document from it (oldest dropped past PARSE_MEMO_CHARS).
        self._parsed: dict[str, _Parsed] = {}
        self._parsed_chars = 0
        self._parsed_lock = threading.Lock()  # renders in threads may add texts at once

    def pipeline_id(self, key: str) -> str:
        return self._catalog.pipeline_id(key)

    def referenced_id(self, app_name: str, stack: str, template: str) -> str | None:
        """What a template's pipeline_id(app_name, stack, template) returns; None when it raises
        because the arguments name no catalog target (of a service that loaded).

        app_name is a Spinnaker application, matched case-insensitively as Front50 does, and
        mapped to the service whose key the id is derived from (the catalog refuses two services
        of one application).
        """
        service = self._catalog.service_of(app_name)
        if service is None:
            return None
        key = partition_key(service, stack, template)
        if key not in self._catalog.targets and service not in self._catalog.failed_services:
            return None
        return self.pipeline_id(key)

    def template_source(self, target: Target) -> str:
        """The exact text of target's template that this renderer compiled (compiling it on first
        use); raises RenderError like render() when the template cannot be read or compiled."""
        self._compiled(target)
        return self._sources[target.template]

    def template_file(self, template: str) -> str:
        return f"{self._templates_dir.name}/{template}{TEMPLATE_SUFFIX}"

    def render(self, target: Target, *, references: list[Reference] | None = None) -> RenderedPipeline:
        """Render one target; raises RenderError naming file, line and partition.

        references, when given, receives every pipeline_id() call the template made, in order.
        """
        file = self.template_file(target.template)
        compiled = self._compiled(target)
        budget = RenderBudget(
            deadline=time.monotonic() + MAX_RENDER_SECONDS,
            placeholder_prefix=self._placeholder_prefix,
        )
        token = current_budget.set(budget)
        try:
            context = {**target.context, "pipeline_id": self._pipeline_id_function(target, references)}
            text = _join_bounded(compiled.generate(context))
        except TemplateBudgetExceeded as exc:
            raise RenderError(target.key, SourceLocation(file), str(exc)) from None
        except RecursionError:
            raise RenderError(target.key, SourceLocation(file), "template recursion went too deep") from None
        except Exception as exc:  # a template can raise anything (1/0, [].pop()): never crash the fleet
            line = _template_line(exc.__traceback__, compiled.filename)
            raise RenderError(target.key, SourceLocation(file, line=line), _describe(exc)) from None
        finally:
            current_budget.reset(token)
        document = self._fill(self._parse(text, target, file), budget.placeholders, target, file)
        if not isinstance(document, dict):
            raise RenderError(
                target.key,
                SourceLocation(file),
                f"template must render a YAML mapping (a pipeline), got {type(document).__name__}",
            )
        pipeline_id = self.pipeline_id(target.key)
        assign_identities(document, pipeline_id, target.application)
        try:
            canonical = canonical_json(document)
        except (TypeError, ValueError) as exc:
            raise RenderError(target.key, SourceLocation(file), f"not representable as JSON: {exc}") from None
        return RenderedPipeline(
            key=target.key, pipeline_id=pipeline_id, document=document, canonical=canonical
        )

    def _compiled(self, target: Target) -> jinja2.Template:
        cached = self._cache.get(target.template)
        if cached is not None:
            return cached
        path = self._templates_dir / f"{target.template}{TEMPLATE_SUFFIX}"
        file = self.template_file(target.template)
        try:
            source = read_text_file(path, root=self._templates_dir, what="template")
            tree = self._env.parse(source, target.template, str(path))
            code = self._env.compile(self._env.guard_loops(tree), target.template, str(path))
            compiled = self._env.template_class.from_code(self._env, code, self._env.make_globals(None), None)
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(
                target.key, SourceLocation(file, line=exc.lineno), f"template syntax error: {exc.message}"
            ) from None
        except UnsafeFileError as exc:
            raise RenderError(target.key, SourceLocation(file), str(exc)) from None
        except (RecursionError, SyntaxError, MemoryError):  # Jinja's and Python's compilers recurse
            message = "template nests too deeply to compile"
            raise RenderError(target.key, SourceLocation(file), message) from None
        self._sources[target.template] = source
        self._cache[target.template] = compiled
        return compiled

    def _pipeline_id_function(
        self, target: Target, references: list[Reference] | None = None
    ) -> Callable[[str, str, str], str]:
        def pipeline_id(app_name: str, stack: str, template: str) -> str:
            answer = self.referenced_id(str(app_name), str(stack), str(template))
            if references is not None:
                references.append((str(app_name), str(stack), str(template), answer))
            if answer is None:
                raise RenderError(
                    target.key,
                    SourceLocation(self.template_file(target.template)),
                    f"pipeline_id({app_name!r}, {stack!r}, {template!r}) names no catalog target"
                    + _service_hint(self._catalog, str(app_name)),
                )
            return answer

        return pipeline_id

    def _parse(self, text: str, target: Target, file: str) -> _Parsed:
        """The document text parses to, parsed once per distinct text (see _parsed)."""
        known = self._parsed.get(text)
        if known is not None:
            return known
        try:
            data, _ = load_yaml(text, file, keep_quoting=True)
        except YamlDocumentError as exc:
            line = exc.location.line
            where = f" (line {line} of the rendered output)" if line else ""
            raise RenderError(
                target.key, SourceLocation(file), f"rendered YAML is invalid{where}: {exc.message}"
            ) from None
        parsed = _Parsed(data)
        self._remember(text, parsed)
        return parsed

    def _remember(self, text: str, parsed: _Parsed) -> None:
        if len(text) > PARSE_MEMO_CHARS:
            return
        with self._parsed_lock:
            if text in self._parsed:
                return
            while self._parsed and self._parsed_chars + len(text) > PARSE_MEMO_CHARS:
                oldest = next(iter(self._parsed))
                del self._parsed[oldest]
                self._parsed_chars -= len(oldest)
            self._parsed[text] = parsed
            self._parsed_chars += len(text)

    def _fill(self, parsed: _Parsed, values: list[Any], target: Target, file: str) -> Any:
        """Replace placeholders with the values they stand for, as data, never as YAML."""

        def fail(path: str, message: str) -> RenderError:
            return RenderError(target.key, SourceLocation(file, path), message)

        parsed.renders += 1
        if parsed.renders == 2:  # a text rendered again: worth planning its fill once
            parsed.plan = plan_fill(parsed.document, self._placeholder, self._placeholder_prefix)
        pattern, prefix = self._placeholder, self._placeholder_prefix
        try:
            return fill_document(parsed.document, parsed.plan, pattern, prefix, values, fail)
        except RecursionError:
            raise fail("", "a value nests too deeply (or contains itself)") from None


@dataclass
class _Parsed:
    """A rendered text's document, as load_yaml parsed it (never changed: fills copy it), how
    many renders filled it in, and the plan of its fill once it is rendered a second time."""

    document: Any
    renders: int = 0
    plan: FillPlan | None = None


# How _Filler.run fills one item of a parsed document: (kind, what). _CONSTANT: what is the
# item filled in; _WHOLE: what is the index of the value the item is; _ONLY: what is the index
# of the one placeholder that is all of a text; _TEXT: what is a text's pieces, literal text
# (str) and placeholder indexes (int) in turn; _LIST: what is a list of item plans; _MAPPING:
# what is ([(key, or the item plan of a key with placeholders, whether it has them, kind,
# what), ...], whether keys can collide once filled).
_CONSTANT, _WHOLE, _ONLY, _TEXT, _LIST, _MAPPING = range(6)
ItemPlan = tuple[int, Any]
# A document's plan: the size every filled copy of its constant text has, and its item plan.
FillPlan = tuple[int, ItemPlan]


class _Refill(Exception):
    """A planned fill met something _Filler.fill refuses: fill_document then fills it that way."""


def fill_document(
    document: Any,
    plan: FillPlan | None,
    pattern: re.Pattern[str],
    prefix: str,
    values: list[Any],
    fail: Callable[[str, str], RenderError],
) -> Any:
    """document with its placeholders filled in: by its plan when it has one, else (and whenever
    the planned fill meets a refusal) by _Filler.fill, which says why and where."""
    if plan is not None:
        try:
            return _Filler(pattern, prefix, values, fail).run(plan)
        except (RenderError, _Refill, IndexError, RecursionError):
            pass
    return _Filler(pattern, prefix, values, fail).fill(document, None)


def plan_fill(document: Any, pattern: re.Pattern[str], prefix: str) -> FillPlan | None:
    """How _Filler.run fills document with any values exactly as _Filler.fill does, the work that
    depends on the document alone done once; None when filling it is refused whatever the values
    (a key that is not a string, a date, a changed placeholder)."""
    planner = _Planner(pattern, prefix)
    try:
        item = planner.plan(document)
    except (_Refill, RecursionError, ValueError):  # ValueError: a placeholder index too long for int()
        return None
    return planner.constant_size, item


def _alternate(pieces: list[str]) -> Iterator[tuple[bool, str]]:
    return ((index % 2 == 1, piece) for index, piece in enumerate(pieces))


class _Planner:
    """plan_fill's walk: what _Filler.fill decides from the document alone, decided once."""

    def __init__(self, pattern: re.Pattern[str], prefix: str) -> None:
        self._pattern = pattern
        self._prefix = prefix
        self._nonce = prefix.lower()
        self.constant_size = 0

    def plan(self, item: Any) -> ItemPlan:
        if isinstance(item, str):
            if self._prefix not in item:
                return _CONSTANT, self._constant(item)
            whole = None if isinstance(item, QuotedText) else self._pattern.fullmatch(item)
            return (_WHOLE, int(whole.group(1))) if whole else self._text(item)
        if isinstance(item, dict):
            entries: list[tuple[Any, bool, int, Any]] = []
            for key, value in item.items():
                if not isinstance(key, str):
                    raise _Refill
                filled = self._prefix in key
                entries.append(
                    (self._text(key) if filled else self._constant(key), filled, *self.plan(value))
                )
            return _MAPPING, (entries, any(filled for _, filled, _, _ in entries))
        if isinstance(item, list):
            return _LIST, [self.plan(v) for v in item]
        if item is None or isinstance(item, bool | int):
            return _CONSTANT, item
        if isinstance(item, float) and math.isfinite(item):
            return _CONSTANT, item
        raise _Refill

    def _text(self, text: str) -> ItemPlan:
        """The plan of text that holds the placeholder prefix, as _Filler.text fills it."""
        pieces = self._pattern.split(text)  # literal text and placeholder indexes in turn
        if len(pieces) == 3 and not pieces[0] and not pieces[2]:
            return _ONLY, int(pieces[1])
        return _TEXT, tuple(int(piece) if odd else piece for odd, piece in _alternate(pieces))

    def _constant(self, text: str) -> str:
        """What _Filler.text makes of text without a placeholder, and the size it charges."""
        if self._nonce in text.lower():
            raise _Refill
        self.constant_size += len(text)
        return str(text)


# Where an item sits in the document, put into words only for a message: None for the document
# itself, else (where its container sits, its key or index).
_Where = tuple[Any, str | int] | None


def _path_text(where: _Where) -> str:
    """The path of where as messages write it: stages[0].name."""
    steps: list[str | int] = []
    while where is not None:
        where, step = where
        steps.append(step)
    path = ""
    for step in reversed(steps):
        if isinstance(step, int):
            path = f"{path}[{step}]"
        elif path:
            path = f"{path}.{step}"
        else:
            path = step
    return path


class _Filler:
    """Puts the values behind placeholders into a parsed document: as data, never as YAML.

    A placeholder that is a whole plain scalar (`x: {{ v }}`) becomes the value itself, type
    and all; anywhere else (quoted, in a block scalar, inside other text, in a key) it becomes
    str(value), as Jinja would have printed it. A value's own text may hold placeholders
    (a macro's output joined with `~`): those expand too, never re-parsed as YAML.
    Text without the placeholder prefix can hold no placeholder, so no pattern runs over it.
    """

    def __init__(
        self,
        pattern: re.Pattern[str],
        prefix: str,
        values: list[Any],
        fail: Callable[[str, str], RenderError],
    ) -> None:
        self._pattern = pattern
        self._prefix = prefix
        self._nonce = prefix.lower()
        self._values = values
        self._fail_at = fail
        self._texts: dict[int, str] = {}
        self._expanding: set[int] = set()
        self._spent = 0

    def run(self, plan: FillPlan) -> Any:
        """The document plan_fill planned, filled in; raises where fill may refuse (in other words)."""
        constant_size, item = plan
        self._charge(constant_size, None)
        return self._run(*item)

    def _run(self, kind: int, what: Any) -> Any:
        if kind == _CONSTANT:
            return what
        if kind == _WHOLE:
            return self.value(self._values[what], None, 0)
        if kind == _ONLY:  # _text_of checked the text as text() would: it only needs charging
            only = self._text_of(what, None)
            self._charge(len(only), None)
            return only
        if kind == _TEXT:
            out = "".join([self._text_of(p, None) if isinstance(p, int) else p for p in what])
            if self._nonce in out.lower():
                raise _Refill
            self._charge(len(out), None)
            return out
        if kind == _LIST:
            return [w if k == _CONSTANT else self._run(k, w) for k, w in what]
        entries, keys_may_collide = what
        out_map: dict[str, Any] = {}
        for key, filled, k, w in entries:
            if filled:
                key = self._run(*key)
            if keys_may_collide and key in out_map:
                raise _Refill
            out_map[key] = w if k == _CONSTANT else self._run(k, w)
        return out_map

    def fill(self, item: Any, where: _Where) -> Any:
        """The parsed document item at where, with its placeholders filled in."""
        if isinstance(item, str):
            if self._prefix in item and not isinstance(item, QuotedText):
                whole = self._pattern.fullmatch(item)
                if whole:
                    return self.value(self._values[int(whole.group(1))], where, 0)
            return self.text(item, where)
        if isinstance(item, dict):
            return self._mapping(item, where, None)
        if isinstance(item, list):
            return [self.fill(v, (where, i)) for i, v in enumerate(item)]
        return self._scalar(item, where, "template")

    def value(self, item: Any, where: _Where, depth: int) -> Any:
        """A copy of a value the template inserted whole, checked to be plain JSON data."""
        if depth > MAX_NESTING_DEPTH:
            raise self._fail(
                where, f"a value nests deeper than {MAX_NESTING_DEPTH} levels (or contains itself)"
            )
        if isinstance(item, str):
            return self.text(item, where)
        self._charge(1, where)
        if isinstance(item, dict):
            return self._mapping(item, where, depth)
        if isinstance(item, list | tuple):
            return [self.value(v, (where, i), depth + 1) for i, v in enumerate(item)]
        return self._scalar(item, where, "catalog")

    def text(self, item: str, where: _Where) -> str:
        """item with every placeholder replaced by its value's text, as a plain str."""
        out = item
        if self._prefix in item:
            out = self._pattern.sub(lambda m: self._text_of(int(m.group(1)), where), item)
        if self._nonce in out.lower():
            raise self._fail(
                where,
                "a filter or string operation changed the text a macro or block produced "
                "(upper, slicing, ...) so a value in it can no longer be placed; "
                "apply it to the values instead",
            )
        self._charge(len(out), where)
        return str(out)

    def _text_of(self, index: int, where: _Where) -> str:
        if index in self._texts:
            return self._texts[index]
        if index in self._expanding or index >= len(self._values):
            raise self._fail(where, "a template built a placeholder of its own; that is not allowed")
        self._expanding.add(index)
        expanded = self.text(str(self._values[index]), where)
        self._expanding.discard(index)
        self._texts[index] = expanded
        return expanded

    def _mapping(self, item: dict[Any, Any], where: _Where, depth: int | None) -> dict[str, Any]:
        """A filled copy of a mapping: of the template's (depth None) or in a value at depth."""
        out: dict[str, Any] = {}
        for key, value in item.items():
            if not isinstance(key, str):
                raise self._fail(where, f"mapping key {key!r} is not a string; quote it")
            new_key = self.text(key, where)
            sub = (where, new_key)
            if new_key in out:
                raise self._fail(sub, f"key {new_key!r} appears twice once values are filled in")
            out[new_key] = self.fill(value, sub) if depth is None else self.value(value, sub, depth + 1)
        return out

    def _scalar(self, item: Any, where: _Where, source: str) -> Any:
        if item is None or isinstance(item, bool | int):
            return item
        if isinstance(item, float):
            if not math.isfinite(item):
                raise self._fail(where, "value is not a finite number")
            return item
        if isinstance(item, datetime.date | datetime.datetime):
            raise self._fail(where, f"value {item!s} parsed as a date; quote it in the {source}")
        raise self._fail(
            where,
            f"a {type(item).__name__} value is not JSON data; "
            "convert it in the template (for example with |list or |string)",
        )

    def _charge(self, size: int, where: _Where) -> None:
        self._spent += size
        if self._spent > 2 * MAX_OUTPUT_CHARS:
            limit = 2 * MAX_OUTPUT_CHARS
            raise self._fail(where, f"the filled-in pipeline is larger than {limit} characters")

    def _fail(self, where: _Where, message: str) -> RenderError:
        return self._fail_at(_path_text(where), message)


def _service_hint(catalog: Catalog, app_name: str) -> str:
    """Why a service's own name may not work as pipeline_id()'s first argument."""
    application = catalog.applications.get(app_name)
    if application is None or application.lower() == app_name.lower():
        return ""
    return (
        f"; its first argument is the Spinnaker application, and service {app_name!r} is application "
        f"{application!r}: call pipeline_id({application!r}, ...) or pass app_name"
    )


@pass_context
def _record_value(context: Context, value: Any) -> str:
    """Jinja finalize: every {{ expression }} becomes a placeholder, its value kept aside.

    A macro's or block's own output (TemplateText) passes through as text: its values are
    placeholders already. pass_context keeps Jinja from folding constant expressions at
    compile time, which would record them into no render's budget.
    """
    budget = current_budget.get()
    budget.tick()
    if isinstance(value, str):  # value_size of text is its length
        if isinstance(value, TemplateText):
            return value
        size = len(value)
    else:
        if isinstance(value, jinja2.Undefined):
            str(value)  # StrictUndefined raises here: finalize would otherwise hide it
        size = value_size(value)
    budget.charge(size)
    budget.placeholders.append(value)
    return f"{budget.placeholder_prefix}{len(budget.placeholders) - 1}Z"


def _join_bounded(chunks: Any) -> str:
    parts: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_OUTPUT_CHARS:
            raise TemplateBudgetExceeded(f"template output is larger than {MAX_OUTPUT_CHARS} characters")
        parts.append(chunk)
    return "".join(parts)


def _template_line(tb: TracebackType | None, filename: str | None) -> int | None:
    line = None
    while tb is not None:
        if filename and tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _describe(exc: BaseException) -> str:
    if isinstance(exc, jinja2.UndefinedError):
        return f"undefined variable: {exc.message}; define it in the catalog (vars) or fix the template"
    if isinstance(exc, jinja2.exceptions.SecurityError):
        return f"the template sandbox refused: {exc}"
    if isinstance(exc, RenderError):
        return exc.message
    return str(exc) if isinstance(exc, jinja2.TemplateError) else f"{type(exc).__name__}: {exc}"
