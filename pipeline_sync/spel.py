"""Templates next to Spinnaker's SpEL: `{#` right after `$` (SpEL's `${#`) never opens a Jinja comment."""

from __future__ import annotations

import re
from typing import Any

import jinja2
from jinja2.lexer import TOKEN_COMMENT_BEGIN, Lexer


class SpelAwareLexer(Lexer):
    """Jinja's lexer, except that a comment cannot start at the `{#` of SpEL's `${#`.

    SpEL helper calls (`${#stage('Bake')}`, `${#judgment('x')}`, `${#toJson(...)}`) and shell's
    `${#array[@]}` then pass through as text, with no `{% raw %}`. Everything else is Jinja's own
    lexer: `{{ }}` and `{% %}` keep working inside SpEL, and `{# #}` comments anywhere else.
    """

    def __init__(self, environment: jinja2.Environment) -> None:
        super().__init__(environment)
        directives = self.rules["root"][0]
        comment_start = re.escape(environment.comment_start_string)
        begin = f"(?P<{TOKEN_COMMENT_BEGIN}>{comment_start}"
        pattern = directives.pattern.pattern
        if pattern.count(begin) != 1:  # a Jinja release that builds its root rule differently
            raise RuntimeError(
                f"Jinja {jinja2.__version__} lexes comments in a way pipeline_sync.spel does not know; "
                "update SpelAwareLexer for it"
            )
        spel_aware = pattern.replace(begin, f"(?P<{TOKEN_COMMENT_BEGIN}>(?<!\\$){comment_start}")
        self.rules["root"][0] = directives._replace(pattern=re.compile(spel_aware, directives.pattern.flags))


class SpelSyntax:
    """Mixin for a Jinja Environment: templates lex with SpelAwareLexer (one per environment)."""

    _spel_lexer: SpelAwareLexer | None = None

    @property
    def lexer(self) -> Lexer:
        if self._spel_lexer is None:
            environment: Any = self
            self._spel_lexer = SpelAwareLexer(environment)
        return self._spel_lexer


class SpelEnvironment(SpelSyntax, jinja2.Environment):
    """A plain Jinja Environment that reads templates as the renderer does (for parsing only)."""
