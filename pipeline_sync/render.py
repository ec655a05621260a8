"""Render a target's template into a Spinnaker pipeline: sandboxed Jinja2, inert values, stable ids."""

from __future__ import annotations

import copy
import datetime
import math
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2
from jinja2 import pass_context
from jinja2.runtime import Context

from pipeline_sync.canonical import canonical_json, sha256_hex
from pipeline_sync.catalog import TEMPLATE_SUFFIX, Catalog, Target
from pipeline_sync.errors import RenderError, SourceLocation, YamlDocumentError
from pipeline_sync.identity import assign_identities, pipeline_id_for
from pipeline_sync.names import partition_key
from pipeline_sync.sandbox import (
    MAX_OUTPUT_CHARS,
    MAX_RENDER_SECONDS,
    BudgetedSandbox,
    RenderBudget,
    TemplateBudgetExceeded,
    current_budget,
)
from pipeline_sync.yamlsafe import load_yaml


@dataclass(frozen=True)
class RenderedPipeline:
    """A rendered, identity-stamped pipeline and its canonical JSON."""

    key: str
    pipeline_id: str
    document: Mapping[str, Any]
    canonical: str

    @property
    def digest(self) -> str:
        return sha256_hex(self.canonical)


class Renderer:
    """Renders targets of one catalog with templates compiled once and cached."""

    def __init__(self, templates_dir: Path, catalog: Catalog) -> None:
        self._templates_dir = Path(templates_dir)
        self._catalog = catalog
        self._env = BudgetedSandbox(finalize=_record_value)
        self._cache: dict[str, jinja2.Template] = {}
        # A fresh nonce per renderer: template text can never contain a real placeholder.
        self._placeholder_prefix = f"PSV{secrets.token_hex(8)}N"
        self._placeholder = re.compile(re.escape(self._placeholder_prefix) + r"(\d+)Z")

    def pipeline_id(self, key: str) -> str:
        target = self._catalog.targets.get(key)
        if target is not None and target.pinned_id:
            return target.pinned_id
        return pipeline_id_for(key)

    def template_file(self, template: str) -> str:
        return f"{self._templates_dir.name}/{template}{TEMPLATE_SUFFIX}"

    def render(self, target: Target) -> RenderedPipeline:
        """Render one target; raises RenderError naming file, line and partition."""
        file = self.template_file(target.template)
        compiled = self._compiled(target)
        budget = RenderBudget(
            deadline=time.monotonic() + MAX_RENDER_SECONDS,
            placeholder_prefix=self._placeholder_prefix,
        )
        token = current_budget.set(budget)
        try:
            context = {**target.context, "pipeline_id": self._pipeline_id_function(target)}
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
        document = self._parse(text, target, file)
        document = self._fill(document, budget.placeholders, target, file)
        if not isinstance(document, dict):
            raise RenderError(
                target.key,
                SourceLocation(file),
                f"template must render a YAML mapping (a pipeline), got {type(document).__name__}",
            )
        pipeline_id = self.pipeline_id(target.key)
        assign_identities(document, pipeline_id, target.service)
        try:
            canonical = canonical_json(document)
        except ValueError as exc:
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
            source = path.read_text(encoding="utf-8")
            tree = self._env.parse(source, target.template, str(path))
            code = self._env.compile(self._env.guard_loops(tree), target.template, str(path))
            compiled = self._env.template_class.from_code(self._env, code, self._env.make_globals(None), None)
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(
                target.key, SourceLocation(file, line=exc.lineno), f"template syntax error: {exc.message}"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise RenderError(target.key, SourceLocation(file), f"cannot read template: {exc}") from None
        self._cache[target.template] = compiled
        return compiled

    def _pipeline_id_function(self, target: Target) -> Callable[[str, str, str], str]:
        catalog = self._catalog

        def pipeline_id(app_name: str, stack: str, template: str) -> str:
            key = partition_key(str(app_name), str(stack), str(template))
            if key not in catalog.targets and str(app_name) not in catalog.failed_services:
                raise RenderError(
                    target.key,
                    SourceLocation(self.template_file(target.template)),
                    f"pipeline_id({app_name!r}, {stack!r}, {template!r}) names no catalog target",
                )
            return self.pipeline_id(key)

        return pipeline_id

    def _parse(self, text: str, target: Target, file: str) -> Any:
        try:
            data, _ = load_yaml(text, file)
        except YamlDocumentError as exc:
            line = exc.location.line
            where = f" (line {line} of the rendered output)" if line else ""
            raise RenderError(
                target.key, SourceLocation(file), f"rendered YAML is invalid{where}: {exc.message}"
            ) from None
        return data

    def _fill(self, node: Any, values: list[Any], target: Target, file: str) -> Any:
        """Replace placeholders with the values they stand for, as data, never as YAML."""

        def text_of(match: re.Match[str]) -> str:
            return str(values[int(match.group(1))])

        def fill(item: Any, path: str) -> Any:
            if isinstance(item, str):
                whole = self._placeholder.fullmatch(item)
                if whole:
                    return copy.deepcopy(values[int(whole.group(1))])
                return self._placeholder.sub(text_of, item) if self._placeholder_prefix in item else item
            if isinstance(item, dict):
                out = {}
                for key, value in item.items():
                    if not isinstance(key, str):
                        raise RenderError(
                            target.key,
                            SourceLocation(file, path),
                            f"mapping key {key!r} is not a string; quote it in the template",
                        )
                    new_key = self._placeholder.sub(text_of, key)
                    out[new_key] = fill(value, f"{path}.{new_key}" if path else new_key)
                return out
            if isinstance(item, list):
                return [fill(v, f"{path}[{i}]") for i, v in enumerate(item)]
            if isinstance(item, datetime.date | datetime.datetime):
                raise RenderError(
                    target.key,
                    SourceLocation(file, path),
                    f"value {item!s} parsed as a date; quote it in the template",
                )
            if isinstance(item, float) and not math.isfinite(item):
                raise RenderError(target.key, SourceLocation(file, path), "value is not a finite number")
            if isinstance(item, bytes | set):
                raise RenderError(
                    target.key, SourceLocation(file, path), f"{type(item).__name__} values are not JSON"
                )
            return item

        return fill(node, "")


@pass_context
def _record_value(context: Context, value: Any) -> str:
    """Jinja finalize: every {{ expression }} becomes a placeholder, its value kept aside.

    pass_context keeps Jinja from folding constant expressions at compile time, which
    would record them into no render's budget.
    """
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises here: finalize would otherwise hide it
    budget = current_budget.get()
    budget.check_time()
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
