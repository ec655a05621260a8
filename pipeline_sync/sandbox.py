"""A Jinja2 sandbox with budgets: loops, output size, string growth and time are bounded."""

from __future__ import annotations

import contextvars
import operator
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.sandbox import SandboxedEnvironment

from pipeline_sync.errors import PipelineSyncError

MAX_LOOP_ITERATIONS = 200_000
MAX_OUTPUT_CHARS = 4_000_000
MAX_RENDER_SECONDS = 10.0
MAX_SEQUENCE_GROWTH = 1_000_000
GUARD_NAME = "ps_guard_iter"


class TemplateBudgetExceeded(PipelineSyncError):
    """A template ran past a sandbox budget (a loop without end, a huge string)."""


@dataclass
class RenderBudget:
    """What one render may still spend."""

    deadline: float
    placeholder_prefix: str = ""
    iterations: int = 0
    placeholders: list[Any] = field(default_factory=list)

    def tick(self) -> None:
        self.iterations += 1
        if self.iterations > MAX_LOOP_ITERATIONS:
            raise TemplateBudgetExceeded(
                f"template loops ran more than {MAX_LOOP_ITERATIONS} iterations; is a loop without end?"
            )
        if self.iterations % 1024 == 0:
            self.check_time()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateBudgetExceeded(f"template took longer than {MAX_RENDER_SECONDS:.0f} s to render")


current_budget: contextvars.ContextVar[RenderBudget] = contextvars.ContextVar("render_budget")


def _guard_iter(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = current_budget.get()
    for item in iterable:
        budget.tick()
        yield item


class BudgetedSandbox(SandboxedEnvironment):
    """SandboxedEnvironment + StrictUndefined whose loops and binary ops are metered."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, **options: Any) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, **options)
        self.globals[GUARD_NAME] = _guard_iter

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "*":
            for seq, count in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(count, int)
                if sized and len(seq) * count > MAX_SEQUENCE_GROWTH:
                    raise TemplateBudgetExceeded(
                        f"a multiplication would build a sequence of {len(seq) * count} items"
                    )
            return operator.mul(left, right)
        if operator_name == "**":
            if isinstance(right, int | float) and abs(right) > 1000:
                raise TemplateBudgetExceeded(f"exponent {right} is too large")
            return operator.pow(left, right)
        return super().call_binop(context, operator_name, left, right)

    def guard_loops(self, template: nodes.Template) -> nodes.Template:
        """Wrap every for-loop's iterable so each iteration is counted."""
        for loop in template.find_all(nodes.For):
            loop.iter = nodes.Call(
                nodes.Name(GUARD_NAME, "load", lineno=loop.lineno),
                [loop.iter],
                [],
                None,
                None,
                lineno=loop.lineno,
            )
        return template
