"""A Jinja2 sandbox with budgets: loops, macro calls, output size, string growth and time are bounded."""

from __future__ import annotations

import contextvars
import functools
import inspect
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.sandbox import SandboxedEnvironment
from jinja2.visitor import NodeTransformer

from pipeline_sync.errors import PipelineSyncError
from pipeline_sync.spel import SpelSyntax
from pipeline_sync.yamlsafe import MAX_NESTING_DEPTH

MAX_LOOP_ITERATIONS = 200_000
MAX_OUTPUT_CHARS = 4_000_000
MAX_RENDER_SECONDS = 10.0
MAX_SEQUENCE_GROWTH = 1_000_000
MAX_INT_BITS = 100_000
# Jinja defaults that break the contract: `random` and `lipsum` make two renders differ.
NONDETERMINISTIC = (("filters", "random"), ("globals", "lipsum"))


class TemplateBudgetExceeded(PipelineSyncError):
    """A template ran past a sandbox budget (a loop without end, a huge string)."""


class TemplateText(str):
    """Text a template produced itself (a macro, call block or {% set %} block), not a value.

    Its data parts are already placeholders, so it is YAML structure the template wrote,
    and render inserts it as text; every other value is inserted as data.
    """


@dataclass
class RenderBudget:
    """What one render may still spend."""

    deadline: float
    placeholder_prefix: str = ""
    iterations: int = 0
    value_size: int = 0
    placeholders: list[Any] = field(default_factory=list)

    def tick(self) -> None:
        self.iterations += 1
        if self.iterations > MAX_LOOP_ITERATIONS:
            raise TemplateBudgetExceeded(
                f"template loops and macro calls ran more than {MAX_LOOP_ITERATIONS} times; "
                "is there a loop or a recursion without end?"
            )
        if self.iterations % 1024 == 0:
            self.check_time()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateBudgetExceeded(f"template took longer than {MAX_RENDER_SECONDS:.0f} s to render")

    def charge(self, size: int) -> None:
        """Count the size of a value the output will hold (a copy of it per use)."""
        self.value_size += size
        if self.value_size > MAX_OUTPUT_CHARS:
            raise TemplateBudgetExceeded(
                f"the values the template outputs add up to more than {MAX_OUTPUT_CHARS} characters"
            )


current_budget: contextvars.ContextVar[RenderBudget] = contextvars.ContextVar("render_budget")


def value_size(value: Any, limit: int = MAX_OUTPUT_CHARS) -> int:
    """Characters (strings) plus nodes (everything else) in value, counted up to just past limit.

    A value nested deeper than MAX_NESTING_DEPTH (a list that contains itself) is refused.
    """
    if not isinstance(value, dict | list | tuple):  # most values: a string or a number
        return len(value) if isinstance(value, str) else 1
    total, pending = 0, [(value, 0)]
    while pending and total <= limit:
        item, depth = pending.pop()
        if depth > MAX_NESTING_DEPTH:
            raise TemplateBudgetExceeded(
                f"a value the template outputs nests deeper than {MAX_NESTING_DEPTH} levels "
                "(or contains itself)"
            )
        total += len(item) if isinstance(item, str) else 1
        if isinstance(item, dict):
            pending.extend((child, depth + 1) for pair in item.items() for child in pair)
        elif isinstance(item, list | tuple):
            pending.extend((child, depth + 1) for child in item)
    return total


def refuse_growth(size: int, what: str) -> None:
    if size > MAX_SEQUENCE_GROWTH:
        raise TemplateBudgetExceeded(
            f"{what} would build a string or sequence of {size} items (at most {MAX_SEQUENCE_GROWTH})"
        )


def _guard_iter(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = current_budget.get()
    for item in iterable:
        budget.tick()
        yield item


def _guard_tick() -> str:
    current_budget.get().tick()
    return ""


def _guard_concat(*parts: Any) -> str:
    """The `~` operator with its result size checked before it is built."""
    texts = [str(part) for part in parts]
    refuse_growth(sum(len(text) for text in texts), "a `~` concatenation")
    return "".join(texts)


def _template_text(parts: Iterable[str]) -> TemplateText:
    return TemplateText("".join(parts))


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0 +-]*(\*|\d+)?(?:\.(\*|\d+))?")


def check_percent_format(fmt: str, args: Any) -> None:
    """Refuse a `fmt % args` whose field widths or precisions would build a huge string."""
    found = [m for spec in _PERCENT_SPEC.findall(fmt) for m in spec if m]
    sizes = [m for m in found if m != "*"]
    if "*" in found:
        values = args if isinstance(args, tuple) else (args,)
        sizes += [str(v) for v in values if isinstance(v, int)]
    _check_widths(sizes, "a `%` format")


def check_str_format(fmt: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse a `fmt.format(...)` whose field widths or precisions would build a huge string."""
    specs = [spec for _, _, spec, _ in string.Formatter().parse(fmt) if spec]
    sizes = re.findall(r"\d+", "".join(specs))
    if any("{" in spec for spec in specs):
        sizes += [str(v) for v in (*args, *kwargs.values()) if isinstance(v, int)]
    _check_widths(sizes, "a `format` call")


def _check_widths(sizes: list[str], what: str) -> None:
    for size in sizes:
        refuse_growth(abs(int(size)), what)


def _check_str_method(
    owner: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    """Refuse str methods that would build a huge string; returns args (join's iterable as a list)."""
    if name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
        refuse_growth(args[0], f"str.{name}")
    elif name == "expandtabs":
        tab = args[0] if args and isinstance(args[0], int) else 8
        refuse_growth(len(owner) + owner.count("\t") * tab, "str.expandtabs")
    elif name == "join" and args:
        items = list(args[0])
        refuse_growth(_joined_size(items, owner), "str.join")
        return (items, *args[1:])
    elif name == "replace" and len(args) >= 2:
        refuse_growth(_replaced_size(owner, str(args[0]), str(args[1])), "str.replace")
    elif name in ("format", "format_map"):
        check_str_format(owner, args, kwargs)
    return args


def _joined_size(items: list[Any], separator: str) -> int:
    return sum(len(str(item)) for item in items) + len(separator) * max(len(items) - 1, 0)


def _replaced_size(text: str, old: str, new: str) -> int:
    count = text.count(old) if old else len(text) + 1
    return len(text) + count * (len(new) - len(old))


# Filters that build output from a number or a pattern, checked before they run.
def _check_center(a: dict[str, Any]) -> None:
    if isinstance(a["width"], int):
        refuse_growth(a["width"], "the center filter")


def _check_indent(a: dict[str, Any]) -> None:
    width = a["width"] if isinstance(a["width"], int) else len(str(a["width"]))
    text = str(a["s"])
    refuse_growth(len(text) + (text.count("\n") + 1) * width, "the indent filter")


def _check_join(a: dict[str, Any]) -> None:
    a["value"] = list(a["value"])
    refuse_growth(_joined_size(a["value"], str(a["d"])), "the join filter")


def _check_replace(a: dict[str, Any]) -> None:
    refuse_growth(_replaced_size(str(a["s"]), str(a["old"]), str(a["new"])), "the replace filter")


def _check_format(a: dict[str, Any]) -> None:
    check_percent_format(str(a["value"]), a["args"] or a["kwargs"])


def _check_count(name: str) -> Callable[[dict[str, Any]], None]:
    def check(a: dict[str, Any]) -> None:
        if isinstance(a[name], int):
            refuse_growth(a[name], f"the filter's {name}")

    return check


FILTER_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "center": _check_center,
    "indent": _check_indent,
    "join": _check_join,
    "replace": _check_replace,
    "format": _check_format,
    "batch": _check_count("linecount"),
    "slice": _check_count("slices"),
}


def _checked_filter(func: Callable[..., Any], check: Callable[[dict[str, Any]], None]) -> Any:
    """func, with check run on its arguments (bound to their names) before it runs."""
    signature = inspect.signature(func)
    # Jinja's async_variant wrappers take a context argument their wrapped signature lacks.
    passes = getattr(func, "jinja_pass_arg", None) is not None
    hidden = 1 if passes and next(iter(signature.parameters), "") not in _PASS_ARG_NAMES else 0

    @functools.wraps(func)
    def checked(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args[hidden:], **kwargs)
        bound.apply_defaults()
        check(bound.arguments)
        return func(*args[:hidden], *bound.args, **bound.kwargs)

    return checked


_PASS_ARG_NAMES = ("context", "eval_ctx", "environment")


def _text_keeping_filter(func: Callable[..., Any]) -> Any:
    """func, but applied to template text (`{{ macro() | indent(4) }}`) it gives template text,
    unless another argument is a string: that one could be a catalog value."""
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(func)
    def keeping(*args: Any, **kwargs: Any) -> Any:
        result = func(*args, **kwargs)
        is_text = len(args) > skip and isinstance(args[skip], TemplateText)
        others = (*args[skip + 1 :], *kwargs.values())
        if is_text and isinstance(result, str) and not any(isinstance(o, str) for o in others):
            return TemplateText(result)
        return result

    return keeping


def _guarded_filter(name: str, func: Callable[..., Any]) -> Any:
    check = FILTER_CHECKS.get(name)
    return _text_keeping_filter(_checked_filter(func, check) if check else func)


class BudgetedSandbox(SpelSyntax, SandboxedEnvironment):
    """SandboxedEnvironment + StrictUndefined whose loops, macro calls and growth are metered.

    Templates lex with spel.SpelAwareLexer: SpEL's `${#...}` is text, not a Jinja comment.
    """

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, **options)
        self.concat = _template_text  # type: ignore[assignment]
        self.guard_iter = _guard_iter
        self.guard_tick = _guard_tick
        self.guard_concat = _guard_concat
        for table, name in NONDETERMINISTIC:
            getattr(self, table).pop(name, None)
        self.filters = {name: _guarded_filter(name, f) for name, f in self.filters.items()}

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "*":
            _check_multiplication(left, right)
        elif operator_name == "**":
            _check_power(left, right)
        elif operator_name == "+" and _is_sequence(left) and _is_sequence(right):
            refuse_growth(len(left) + len(right), "a `+`")
        elif operator_name == "%" and isinstance(left, str):
            check_percent_format(left, right)
        return super().call_binop(context, operator_name, left, right)

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        method = getattr(obj, "__wrapped__", obj)  # str.format arrives wrapped by the sandbox
        owner = getattr(method, "__self__", None)
        if isinstance(owner, str):
            args = _check_str_method(owner, getattr(method, "__name__", ""), args, kwargs)
        return super().call(context, obj, *args, **kwargs)

    def guard_loops(self, template: nodes.Template) -> nodes.Template:
        """Meter every loop iteration, macro call and `~` concatenation of a parsed template."""
        guarded = _Guards().visit(template)
        assert isinstance(guarded, nodes.Template)
        return guarded


def _check_multiplication(left: Any, right: Any) -> None:
    for seq, count in ((left, right), (right, left)):
        if _is_sequence(seq) and isinstance(count, int):
            refuse_growth(len(seq) * count, "a multiplication")
    both_ints = isinstance(left, int) and isinstance(right, int)
    if both_ints and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise TemplateBudgetExceeded(f"a multiplication would build a number of over {MAX_INT_BITS} bits")


def _is_sequence(value: Any) -> bool:
    return isinstance(value, str | list | tuple)


def _check_power(left: Any, right: Any) -> None:
    if isinstance(right, int | float) and abs(right) > 1000:
        raise TemplateBudgetExceeded(f"exponent {right} is too large")
    if isinstance(left, int) and isinstance(right, int) and left.bit_length() * right > MAX_INT_BITS:
        raise TemplateBudgetExceeded(
            f"exponent {right} is too large for a number of {left.bit_length()} bits"
        )


def _guard_call(name: str, args: list[Any], lineno: int) -> nodes.Call:
    return nodes.Call(nodes.EnvironmentAttribute(name, lineno=lineno), args, [], None, None, lineno=lineno)


class _Guards(NodeTransformer):
    """Rewrites a template tree so the sandbox sees what the budgets must count.

    The guards are environment attributes, not names, so no template variable can shadow them.
    """

    def visit_For(self, node: nodes.For) -> nodes.For:
        self.generic_visit(node)
        node.iter = _guard_call("guard_iter", [node.iter], node.lineno)
        if node.recursive:  # loop(...) calls iterate without passing through node.iter
            node.body.insert(0, _tick(node.lineno))
        return node

    def visit_Macro(self, node: nodes.Macro) -> nodes.Macro:
        self.generic_visit(node)
        node.body.insert(0, _tick(node.lineno))
        return node

    def visit_CallBlock(self, node: nodes.CallBlock) -> nodes.CallBlock:
        self.generic_visit(node)
        node.body.insert(0, _tick(node.lineno))
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Call:
        self.generic_visit(node)
        return _guard_call("guard_concat", list(node.nodes), node.lineno)


def _tick(lineno: int) -> nodes.ExprStmt:
    return nodes.ExprStmt(_guard_call("guard_tick", [], lineno), lineno=lineno)
