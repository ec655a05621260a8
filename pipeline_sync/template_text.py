"""Pipeline documents as template text: YAML that renders back to exactly that data, Jinja escaped.

A live pipeline's strings may hold text Jinja would act on (a Helm `{{ .Values.x }}` in an inline
manifest, SpEL written `${{...}}`). Each such string is wrapped in `{% raw %}...{% endraw %}`
(or, when it contains `endraw` itself, the `{` of every Jinja opening is written `{{ '{' }}`), and put in
double quotes so that YAML reads it as text. SpEL's `${#...}` needs nothing: the renderer never
opens a comment right after `$`. Var leaves become `{{ name }}` plain scalars, which the renderer
replaces with the catalog value itself, type and all.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

import yaml

# The `{` of each Jinja opening in the renderer's lexer: `{{`, `{%`, and `{#` except right after `$`.
# A lookahead, so that each `{` of `{{{{` is found.
JINJA_OPENING = re.compile(r"\{(?=[{%])|(?<!\$)\{(?=#)")
ENDRAW = re.compile(r"endraw")


@dataclass(frozen=True)
class Var:
    """A leaf a template takes from the catalog: `{{ name }}`."""

    name: str


class _Escaped(str):
    """A string holding Jinja escapes: always written double-quoted."""


def needs_escape(text: str) -> bool:
    return JINJA_OPENING.search(text) is not None


def escape(text: str) -> str:
    """text as template text that Jinja turns back into exactly text."""
    if not needs_escape(text):
        return text
    if ENDRAW.search(text) is None:
        return "{% raw %}" + text + "{% endraw %}"
    return JINJA_OPENING.sub("{{ '{' }}", text)


def dump_template(document: Any, header: str = "") -> str:
    """document as template text: block YAML in the document's own key order, escapes where needed."""
    nonce = f"psvar{secrets.token_hex(6)}"
    names: list[str] = []

    class Dumper(yaml.SafeDumper):
        def choose_scalar_style(self) -> str:
            """Double quotes where PyYAML would double every `'` (SpEL's `['tag']`): SpEL stays verbatim."""
            style: str = super().choose_scalar_style()
            value = getattr(self.event, "value", "")
            if style == "'" and "'" in value and not set(value) & set('"\\'):
                return '"'
            return style

    def represent_escaped(dumper: yaml.SafeDumper, value: _Escaped) -> yaml.ScalarNode:
        return dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style='"')

    def represent_var(dumper: yaml.SafeDumper, value: Var) -> yaml.ScalarNode:
        names.append(value.name)
        return dumper.represent_scalar("tag:yaml.org,2002:str", f"{nonce}x{len(names) - 1}x")

    Dumper.add_representer(_Escaped, represent_escaped)
    Dumper.add_representer(Var, represent_var)
    text = yaml.dump(
        _escaped(document),
        Dumper=Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=1_000_000_000,
    )
    text = re.sub(f"{nonce}x(\\d+)x", lambda m: "{{ " + names[int(m.group(1))] + " }}", text)
    return header + text


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return _Escaped(escape(value)) if needs_escape(value) else value
    if isinstance(value, dict):
        return {_escaped(k): _escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    return value
