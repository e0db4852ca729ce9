"""Jinja2 in a sandbox: parse, validate against declared variables, render, cache compiled.

Templates are written by shop staff, so they run in ``ImmutableSandboxedEnvironment``: no
attribute whose name starts with ``_``, no mutation of passed objects, no access to Python
internals. Probes such as ``{{ ''.__class__ }}`` are rejected when the template is saved (static
check of the syntax tree) and would raise ``SecurityError`` at render time anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import escape

ALLOWED_ROOTS = frozenset({"contact", "order", "store", "custom"})
# Always available, filled in by the sender: links every marketing message must carry.
BUILTIN_NAMES = frozenset({"unsubscribe_url", "preferences_url"})


class TemplateProblem(Exception):
    """A template that cannot be saved or rendered; ``line`` points at the problem when known."""

    def __init__(self, message: str, *, field: str, line: int | None = None) -> None:
        where = f"{field}, line {line}" if line else field
        super().__init__(f"{where}: {message}")
        self.field = field
        self.line = line
        self.message = message


# Work a template may do per render. Staff templates loop over an order's lines, not over millions:
# these bounds keep a careless (or hostile) template from tying up a worker or a preview.
MAX_RANGE = 1000
MAX_SEQUENCE = 10_000
MAX_EXPONENT = 64
MAX_LOOP_DEPTH = 2


def _bounded_range(*args: int) -> range:
    # Templates cannot name ``range`` today (not a declared variable); this holds if that changes.
    items = range(*args)
    if len(items) > MAX_RANGE:
        raise SecurityError(f"range() is limited to {MAX_RANGE} items in templates")
    return items


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox plus limits on the operators that can blow up time or memory."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals["range"] = _bounded_range

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponents above {MAX_EXPONENT} are not allowed in templates")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int) and len(seq) * times > MAX_SEQUENCE:
                    raise SecurityError(f"results longer than {MAX_SEQUENCE} are not allowed in templates")
        return super().call_binop(context, operator, left, right)


def _env(autoescape: bool) -> ImmutableSandboxedEnvironment:
    return _BoundedSandbox(autoescape=autoescape, undefined=StrictUndefined, trim_blocks=True)


class _SampleUndefined(ChainableUndefined):
    """Save-time sample renders (SMS size): a value the sample data lacks (``custom.coupon``) is not
    an error there, and stands in as ten characters, about what a code or a name takes."""

    __slots__ = ()

    def __str__(self) -> str:
        return "x" * 10


_TEXT_ENV = _env(False)
_HTML_ENV = _env(True)
_SAMPLE_ENV = _BoundedSandbox(undefined=_SampleUndefined, trim_blocks=True)


def check_source(source: str, *, field: str, declared: frozenset[str], html: bool = False) -> None:
    """Raise ``TemplateProblem`` for syntax errors, undeclared variables or private attribute use."""
    env = _HTML_ENV if html else _TEXT_ENV
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(exc.message or "syntax error", field=field, line=exc.lineno) from None
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        name = node.attr if isinstance(node, nodes.Getattr) else getattr(getattr(node, "arg", None), "value", None)
        if isinstance(name, str) and name.startswith("_"):
            raise TemplateProblem(f"'{name}' is not allowed in templates", field=field, line=node.lineno)
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        name = _private_attribute_argument(node)
        if name is not None:
            raise TemplateProblem(f"'{name}' is not allowed in templates", field=field, line=node.lineno)
    for loop in tree.find_all(nodes.For):
        if _loop_depth(loop) > MAX_LOOP_DEPTH:
            raise TemplateProblem(f"loops may be nested at most {MAX_LOOP_DEPTH} deep", field=field, line=loop.lineno)
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    for node in tree.find_all(nodes.Name):
        if node.ctx != "load" or node.name in assigned or node.name in BUILTIN_NAMES:
            continue
        if node.name not in declared:
            allowed = ", ".join(sorted(declared | BUILTIN_NAMES)) or "none declared"
            raise TemplateProblem(
                f"unknown variable '{node.name}' (declared: {allowed})", field=field, line=node.lineno
            )


# Filters that read an attribute named by a string argument: ``attr('x')``, ``selectattr('x')``,
# ``rejectattr('x')``; and any filter's ``attribute=`` (``map``, ``sort``, ``sum``, ``groupby`` ...).
_ATTRIBUTE_BY_NAME = frozenset({"attr", "selectattr", "rejectattr"})


def _private_attribute_argument(node: nodes._FilterTestCommon) -> str | None:
    """The private attribute (``__class__``) a filter would read by name, or a note that the name is
    not a constant (``attr(x)``: it cannot be checked before rendering), else None. The sandbox
    refuses these when rendering anyway; saving refuses them too, with the line."""
    names: list[nodes.Expr] = [kw.value for kw in node.kwargs if kw.key == "attribute"]
    if isinstance(node, nodes.Filter) and node.name in _ATTRIBUTE_BY_NAME and node.args:
        names.append(node.args[0])
    for expr in names:
        if not isinstance(expr, nodes.Const) or not isinstance(expr.value, str | int):
            return f"{node.name} with an attribute name that is not a constant"
        if any(part.startswith("_") for part in str(expr.value).split(".")):
            return str(expr.value)
    return None


def _loop_depth(loop: nodes.For) -> int:
    inner = [_loop_depth(child) for child in loop.find_all(nodes.For)]
    return 1 + max(inner, default=0)


@lru_cache(maxsize=2048)
def names_used(source: str) -> frozenset[str]:
    """The variable names ``source`` reads (empty when it does not parse: rendering will say why)."""
    if not source:
        return frozenset()
    try:
        tree = _TEXT_ENV.parse(source)
    except TemplateSyntaxError:
        return frozenset()
    return frozenset(n.name for n in tree.find_all(nodes.Name) if n.ctx == "load")


@lru_cache(maxsize=2048)
def _compiled(source: str, html: bool) -> Any:
    template = (_HTML_ENV if html else _TEXT_ENV).from_string(source)
    # Jinja keeps a template's globals as a ChainMap over the environment's, and copies it into a
    # new dict on every render (a third of a short template's render time). Our environments'
    # globals never change after start-up, so a plain dict is the same values, cheaper to copy.
    template.globals = dict(template.globals)
    return template


@lru_cache(maxsize=256)
def _compiled_sample(source: str) -> Any:
    return _SAMPLE_ENV.from_string(source)


def render(source: str, context: Mapping[str, Any], *, field: str, html: bool = False) -> str:
    """Render with the compiled template cached by its source (versions are immutable)."""
    if not source:
        return ""
    try:
        substituted = _substitute(_substitution(source, html), context, html)
        if substituted is not None:
            return substituted
        return str(_compiled(source, html).render(**context))
    except Exception as exc:
        raise _problem_of(exc, field) from None


# --- substitution-only templates --------------------------------------------------------------
# Most message templates are text with ``{{ contact.first_name }}``-style values and nothing else.
# For those, rendering is joining the text with the values looked up in the context, exactly as
# the sandbox would: a fifth of the cost of a Jinja render (a new context, a generator, sandboxed
# lookups), which the dispatcher pays up to three times per message. Anything else, or a lookup
# that would not be a plain dictionary item (a missing key, a dict method's name, a non-dict
# value on the way), renders through Jinja, which also gives its errors.

_Part = str | tuple[str, ...]  # literal text, or a path: the variable and the keys below it
_DICT_ATTRIBUTES = frozenset(dir(dict))  # the sandbox reads these as attributes, not items
_NOT_FOUND = object()


@lru_cache(maxsize=2048)
def _substitution(source: str, html: bool) -> tuple[_Part, ...] | None:
    """The template as parts when it is only text and ``{{ name.key.key }}`` outputs, else None."""
    try:
        tree = (_HTML_ENV if html else _TEXT_ENV).parse(source)
    except TemplateSyntaxError:
        return None
    parts: list[_Part] = []
    for node in tree.body:
        if not isinstance(node, nodes.Output):
            return None
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                parts.append(child.data)
                continue
            keys: list[str] = []
            while isinstance(child, nodes.Getattr):
                keys.append(child.attr)
                child = child.node
            if not isinstance(child, nodes.Name) or child.ctx != "load":
                return None
            if any(key.startswith("_") or key in _DICT_ATTRIBUTES for key in keys):
                return None
            parts.append((child.name, *reversed(keys)))
    return tuple(parts)


def _substitute(parts: tuple[_Part, ...] | None, context: Mapping[str, Any], html: bool) -> str | None:
    """The rendered text, or None when Jinja must render it (see above). What a value becomes is
    Jinja's own: ``str()``, or ``markupsafe.escape()`` with autoescaping."""
    if parts is None:
        return None
    out: list[str] = []
    for part in parts:
        if type(part) is str:
            out.append(part)
            continue
        value = context.get(part[0], _NOT_FOUND)
        for key in part[1:]:
            if type(value) is not dict:
                return None
            value = value.get(key, _NOT_FOUND)
        if value is _NOT_FOUND:
            return None
        out.append(escape(value) if html else str(value))
    return "".join(out)


def render_sample(source: str, context: Mapping[str, Any], *, field: str) -> str:
    """Render plain text where a missing value is a stand-in, not an error (sizes at save time)."""
    if not source:
        return ""
    try:
        return str(_compiled_sample(source).render(**context))
    except Exception as exc:
        raise _problem_of(exc, field) from None


def _problem_of(exc: Exception, field: str) -> TemplateProblem:
    if isinstance(exc, SecurityError):
        return TemplateProblem(f"not allowed: {exc}", field=field)
    if isinstance(exc, UndefinedError):
        return TemplateProblem(f"missing value: {exc.message}", field=field)
    if isinstance(exc, TemplateSyntaxError):
        return TemplateProblem(exc.message or "syntax error", field=field, line=exc.lineno)
    # Staff-written code: 1/0, "a" + 1 ... is the template's problem, not a crash of the caller.
    return TemplateProblem(f"cannot render: {type(exc).__name__}: {exc}", field=field)


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    wa_parameters: tuple[str, ...] = ()
