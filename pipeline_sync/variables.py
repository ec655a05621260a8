"""Catalog variables that no template reads: `validate`'s warnings, at the line that sets them."""

from __future__ import annotations

from collections.abc import Iterable

import jinja2
from jinja2 import meta

from pipeline_sync.catalog import Catalog, Target, VariableSetting, did_you_mean
from pipeline_sync.errors import RenderError
from pipeline_sync.render import Renderer
from pipeline_sync.spel import SpelEnvironment


def names_read(source: str) -> frozenset[str]:
    """The names a template looks up in its context, parsed as the renderer parses it (SpEL's
    `${#` is text): every name it reads that it does not set itself."""
    return frozenset(meta.find_undeclared_variables(SpelEnvironment().parse(source)))


def unused_variables(catalog: Catalog, renderer: Renderer) -> list[str]:
    """A warning for each variable a catalog file sets that no template of the targets it reaches
    reads (a typo such as `replica:` for `replicas:`), naming the file, line and likely name.

    A variable reaching a template that cannot be read or parsed is not judged: rendering
    reports that template's problem."""
    reads = _reads_by_template(catalog.targets.values(), renderer)
    warnings = []
    for setting in catalog.settings:
        templates = sorted({catalog.targets[key].template for key in setting.keys})
        if not templates or any(reads[t] is None for t in templates):
            continue
        names = frozenset().union(*(reads[t] or () for t in templates))
        if setting.name not in names:
            warnings.append(_warning(setting, templates, names))
    return warnings


def _reads_by_template(targets: Iterable[Target], renderer: Renderer) -> dict[str, frozenset[str] | None]:
    reads: dict[str, frozenset[str] | None] = {}
    for target in targets:
        if target.template not in reads:
            try:
                reads[target.template] = names_read(renderer.template_source(target))
            except (RenderError, jinja2.TemplateSyntaxError):
                reads[target.template] = None
    return reads


def _warning(setting: VariableSetting, templates: list[str], names: frozenset[str]) -> str:
    guess = did_you_mean(setting.name, names)
    hint = f"; did you mean {guess!r}?" if guess else "; remove it, or use it in a template"
    return (
        f"{setting.location}: variable {setting.name!r} is set here, but no template it reaches "
        f"({', '.join(templates)}) reads it{hint}"
    )
