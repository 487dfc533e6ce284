"""Sandboxed rendering of reply templates.

Agents and admins write templates, so a template is untrusted code. Two layers keep it harmless:

1. A static policy on save (``validate_template``): the parsed template may only read the known
   variables (``customer.name`` …) and ``loop``, use an allow-list of filters and tests, call only
   its own macros, ``caller()`` and ``loop.cycle()``/``loop.changed()``; names starting with ``_``,
   Jinja's globals (``range``, ``lipsum``, ``cycler`` …), ``self``, ``{% include %}``-style loading
   and ``{% autoescape %}`` are refused.
2. The runtime: Jinja's ``ImmutableSandboxedEnvironment`` without a loader or globals, whose
   attribute, item, call and operator hooks only reach the template's own values, loop objects and
   macros, cap every intermediate string (``'a' * 10**9``, ``~`` doubling, ``replace``/``join``
   blow-ups) and check a deadline; each ``for`` body is instrumented with a deadline check.

Rendering never raises for a template problem: a value that cannot be produced renders as empty
and leaves a warning; hitting the output or time limit stops with the output so far and a warning.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from jinja2 import TemplateSyntaxError, meta, nodes, pass_context
from jinja2.defaults import DEFAULT_FILTERS, DEFAULT_TESTS
from jinja2.environment import Template
from jinja2.runtime import Context, LoopContext, Macro, Undefined, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import _PassArg
from jinja2.visitor import NodeTransformer

from app.errors import ValidationFailed

MAX_TEMPLATE_CHARS = 20_000  # per field: the body's and the subject's source
MAX_OUTPUT_CHARS = 100_000
RENDER_TIME_LIMIT_SECONDS = 0.25

# What a template can read: a group and its attributes, or a plain value (None).
VARIABLES: dict[str, tuple[str, ...] | None] = {
    "customer": ("name", "first_name", "email", "segment"),
    "ticket": ("number", "subject", "status", "priority", "due"),
    "agent": ("name", "first_name", "signature"),
    "mailbox": ("name", "address"),
    "company": ("name",),
    "greeting": None,
    "now": None,
}

# Filters that only transform the value they get. Left out on purpose: `attr` (attribute access by
# a runtime string), `format` (str.format / %-width blow-ups), `safe` (raw HTML of customer data in
# an HTML mail), `map`/`select*`/`reject*`/`groupby`/`sort`/`sum`/`unique`/`min`/`max`/`dictsort`
# (attribute lookups by name), `center`/`indent`/`wordwrap`/`batch`/`slice` (sizes from arguments),
# `pprint`/`tojson`/`xmlattr`/`urlize`/`forceescape` (raw or repr output), `random`.
ALLOWED_FILTERS = frozenset(
    {
        "abs",
        "capitalize",
        "count",
        "d",
        "default",
        "e",
        "escape",
        "first",
        "float",
        "int",
        "join",
        "last",
        "length",
        "list",
        "lower",
        "replace",
        "reverse",
        "round",
        "string",
        "striptags",
        "title",
        "trim",
        "truncate",
        "upper",
        "urlencode",
        "wordcount",
    }
)
ALLOWED_TESTS = frozenset(
    {
        "boolean",
        "defined",
        "divisibleby",
        "eq",
        "equalto",
        "even",
        "false",
        "float",
        "ge",
        "greaterthan",
        "gt",
        "in",
        "integer",
        "iterable",
        "le",
        "lessthan",
        "lower",
        "lt",
        "mapping",
        "ne",
        "none",
        "number",
        "odd",
        "sequence",
        "string",
        "true",
        "undefined",
        "upper",
    }
)
_LOOP_ATTRIBUTES = frozenset(
    {
        "index",
        "index0",
        "revindex",
        "revindex0",
        "first",
        "last",
        "length",
        "depth",
        "depth0",
        "previtem",
        "nextitem",
        "cycle",
        "changed",
    }
)
_LOOP_METHODS = frozenset({"cycle", "changed"})
# Jinja's default globals and the template self-reference: the classic ways out of a sandbox.
_JINJA_GLOBALS = frozenset({"range", "dict", "lipsum", "cycler", "joiner", "namespace", "self"})
# Integers beyond this many bits are refused: `9 ** 9 ** 9` would keep a CPU busy for minutes.
_MAX_INT_BITS = 256
_MAX_WARNINGS = 20
_PROBLEM_ORDER = {"too_large": 0, "syntax": 1, "unsafe": 2, "unknown_variable": 3}


class TemplateInvalid(ValidationFailed):
    code = "template_invalid"


@dataclass(frozen=True)
class RenderedTemplate:
    body: str
    subject: str | None
    is_html: bool
    warnings: list[str]


def known_variables() -> list[str]:
    names: list[str] = []
    for root, attributes in VARIABLES.items():
        if attributes is None:
            names.append(root)
        else:
            names.extend(f"{root}.{attribute}" for attribute in attributes)
    return sorted(names)


# -- render state ------------------------------------------------------------------------------


class _RenderStopped(Exception):
    """The render's deadline passed: unwinds out of the template to the render loop."""


@dataclass
class _RenderState:
    deadline: float
    prefix: str = ""
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        text = self.prefix + message
        if text not in self.warnings and len(self.warnings) < _MAX_WARNINGS:
            self.warnings.append(text)


# Per render (and per thread / task): the hooks below are called by compiled template code.
_STATE: ContextVar[_RenderState | None] = ContextVar("inboxdesk_render_state", default=None)


def _warn(message: str) -> None:
    state = _STATE.get()
    if state is not None:
        state.warn(message)


def _checkpoint() -> None:
    state = _STATE.get()
    if state is not None and time.monotonic() > state.deadline:
        raise _RenderStopped


class _Undefined(Undefined):
    """Renders as empty and leaves a warning; never raises when printed or tested."""

    __slots__ = ()

    def __str__(self) -> str:
        _warn(self._undefined_message)
        return ""


def _blank(message: str) -> _Undefined:
    """An empty value standing in for one that could not be produced; warns right away."""
    _warn(message)
    return _Undefined(hint=message)


class _Group:
    """A group of template variables (``customer`` …): read only through the environment hooks."""

    __slots__ = ("_path", "_values")

    def __init__(self, path: str, values: dict[str, Any]) -> None:
        self._path = path
        self._values = values

    def __str__(self) -> str:
        _warn(f"{self._path} is a group of variables: print one of its attributes")
        return ""


def _group_get(group: _Group, name: str) -> Any:
    if name in group._values:
        return group._values[name]
    return _Undefined(hint=f"{group._path}.{name} is not a known variable")


def _prepared(context: Mapping[str, Any]) -> dict[str, Any]:
    """The render's variables: groups wrapped, empty values turned into warning blanks.

    An empty ``customer.name`` is a missing value to the template: it prints as "" with the
    warning "customer.name is empty", and ``{{ customer.name|default("there") }}`` works.
    """

    def leaf(path: str, value: Any) -> Any:
        if value is None or value == "":
            return _Undefined(hint=f"{path} is empty")
        if isinstance(value, Mapping):
            return _Group(path, {str(k): leaf(f"{path}.{k}", v) for k, v in value.items()})
        return value

    return {str(key): leaf(str(key), value) for key, value in context.items()}


def _weight(value: Any) -> int:
    """About how many characters ``value`` prints as, counted only up to just over the limit.

    Lists count their items' text too: a list holding the same long text a thousand times is a
    short list but prints as a huge string.
    """
    total = 0
    pending = [value]
    while pending and total <= MAX_OUTPUT_CHARS:
        item = pending.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, list | tuple):
            total += 2 + 2 * len(item)
            pending.extend(item[: MAX_OUTPUT_CHARS + 1])
        elif isinstance(item, dict):
            total += 2 + 4 * len(item)
            for key, val in list(item.items())[: MAX_OUTPUT_CHARS + 1]:
                pending.extend((key, val))
        elif isinstance(item, bool) or item is None:
            total += 5
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 1
        else:
            total += 20
    return total


def _too_large(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value.bit_length() > _MAX_INT_BITS
    if isinstance(value, str):
        return len(value) > MAX_OUTPUT_CHARS
    if isinstance(value, list | tuple | dict):
        return _weight(value) > MAX_OUTPUT_CHARS
    return False


def _limited(value: Any, what: str) -> Any:
    if _too_large(value):
        return _blank(f"{what}: the result is too large")
    return value


# -- the environment ---------------------------------------------------------------------------


def _join_precheck(value: Any, d: Any = "", attribute: Any = None) -> str | None:
    if attribute is not None:
        return "join by attribute is not allowed"
    if isinstance(value, str | list | tuple):
        separator = len(str(d))
        total = 0
        for item in value:
            total += _weight(item) + separator
            if total > MAX_OUTPUT_CHARS + separator:
                return "the result is too large"
    return None


def _replace_precheck(value: Any, old: Any = "", new: Any = "", count: Any = None) -> str | None:
    text, old_text, new_text = str(value), str(old), str(new)
    hits = text.count(old_text)
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    if len(text) + hits * (len(new_text) - len(old_text)) > MAX_OUTPUT_CHARS:
        return "the result is too large"
    return None


_PRECHECKS: dict[str, Callable[..., str | None]] = {
    "join": _join_precheck,
    "replace": _replace_precheck,
}


def _guarded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that checks the deadline, never raises, and caps the size of what it returns.

    ``pass_context`` also keeps Jinja from running the filter at compile time on constants.
    """
    pass_arg = _PassArg.from_obj(func)
    precheck = _PRECHECKS.get(name)

    @pass_context
    def guarded(context: Context, value: Any, *args: Any, **kwargs: Any) -> Any:
        _checkpoint()
        lead: tuple[Any, ...] = ()
        if pass_arg is _PassArg.context:
            lead = (context,)
        elif pass_arg is _PassArg.eval_context:
            lead = (context.eval_ctx,)
        elif pass_arg is _PassArg.environment:
            lead = (context.environment,)
        try:
            if precheck is not None:
                refusal = precheck(value, *args, **kwargs)
                if refusal is not None:
                    return _blank(f"filter {name}: {refusal}")
            result = func(*lead, value, *args, **kwargs)
        except (_RenderStopped, RecursionError, MemoryError):
            raise
        except Exception as exc:
            return _blank(f"filter {name}: {exc}")
        return _limited(result, f"filter {name}")

    return guarded


def _binop_refusal(operator: str, left: Any, right: Any) -> str | None:
    if operator == "%" and isinstance(left, str):
        return "string formatting with % is not allowed"
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if (
                isinstance(seq, str | list | tuple)
                and isinstance(times, int)
                and len(seq) * times > MAX_OUTPUT_CHARS
            ):
                return "the result is too large"
    if (
        operator == "**"
        and isinstance(left, int)
        and isinstance(right, int)
        and right > 0
        and max(left.bit_length(), 1) * right > _MAX_INT_BITS * 2
    ):
        return "the result is too large"
    return None


class _Sandbox(ImmutableSandboxedEnvironment):
    # Every arithmetic operator goes through call_binop: sizes are checked before `'a' * 10**9`
    # allocates, and the sandbox then never folds such constants at compile time either.
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})
    intercepted_unops = frozenset({"+", "-"})

    def __init__(self, *, is_html: bool) -> None:
        super().__init__(
            autoescape=is_html, undefined=_Undefined, loader=None, cache_size=0, auto_reload=False
        )
        # No globals at all: range, lipsum, cycler, joiner, namespace and dict lead nowhere good.
        self.globals.clear()
        self.filters = {
            name: _guarded_filter(name, DEFAULT_FILTERS[name]) for name in ALLOWED_FILTERS
        }
        self.tests = {name: DEFAULT_TESTS[name] for name in ALLOWED_TESTS}

    # Compiled templates join every captured output with this: macro bodies, `{% set %}` blocks,
    # `{% filter %}` and `{% call %}` blocks. Their buffers hold references only (a loop appending
    # the same long text is cheap), so the sizes are added up before anything is copied.
    def concat(self, parts: Iterable[str]) -> str:  # type: ignore[override]
        pieces = parts if isinstance(parts, list) else list(parts)
        if sum(map(len, pieces)) > MAX_OUTPUT_CHARS:
            _warn("captured output is too large: left empty")
            return ""
        return "".join(pieces)

    # Called by instrumented `for` bodies (through `call`, which checks the deadline).
    def tick(self) -> None:
        return None

    # List, tuple and dict literals are built through these: `[s, s, s, …]` of a long text would
    # otherwise print as a huge string without passing any other hook.
    def checked_list(self, *items: Any) -> Any:
        return _limited(list(items), "list")

    def checked_tuple(self, *items: Any) -> Any:
        return _limited(tuple(items), "tuple")

    def checked_dict(self, *pairs: tuple[Any, Any]) -> Any:
        try:
            return _limited(dict(pairs), "dict")
        except TypeError as exc:
            return _blank(f"dict: {exc}")

    # Replaces `~`: Jinja joins those pieces with no hook, and repeated `{% set s = s ~ s %}`
    # doubles a string in memory each time. Every input is already capped, so checking after joins
    # a bounded amount.
    def checked_concat(self, *parts: Any) -> Any:
        result = markup_join(parts) if self.autoescape else str_join(parts)
        return _limited(result, "~")

    def getattr(self, obj: Any, attribute: str) -> Any:
        _checkpoint()
        if isinstance(obj, _Group):
            return _group_get(obj, attribute)
        if isinstance(obj, Undefined):
            return obj
        if isinstance(obj, LoopContext) and attribute in _LOOP_ATTRIBUTES:
            return super().getattr(obj, attribute)
        return _blank(f"attribute {attribute!r} of a {type(obj).__name__} is not available")

    def getitem(self, obj: Any, argument: Any) -> Any:
        _checkpoint()
        if isinstance(argument, str):
            return self.getattr(obj, argument)
        if isinstance(obj, Undefined):
            return obj
        if isinstance(obj, str | list | tuple) and isinstance(argument, int | slice):
            try:
                return obj[argument]
            except (IndexError, TypeError, ValueError) as exc:
                return _blank(f"subscript [{argument!r}]: {exc}")
        return _blank(f"subscript of a {type(obj).__name__} is not available")

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _checkpoint()
        owner = getattr(__obj, "__self__", None)
        allowed = (
            isinstance(__obj, Macro | LoopContext)
            or owner is __self
            or (isinstance(owner, LoopContext) and __obj.__name__ in _LOOP_METHODS)
        )
        if not allowed:
            if isinstance(__obj, Undefined):
                return __obj
            return _blank(f"a {type(__obj).__name__} cannot be called")
        try:
            result = super().call(__context, __obj, *args, **kwargs)
        except (_RenderStopped, RecursionError, MemoryError):
            raise
        except Exception as exc:
            return _blank(f"call failed: {exc}")
        return _limited(result, "call")

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _checkpoint()
        if isinstance(left, Undefined):
            return left
        if isinstance(right, Undefined):
            return right
        refusal = _binop_refusal(operator, left, right)
        if refusal is not None:
            return _blank(f"operator {operator}: {refusal}")
        try:
            result = self.binop_table[operator](left, right)
        except (ArithmeticError, TypeError, ValueError) as exc:
            return _blank(f"operator {operator}: {exc}")
        return _limited(result, f"operator {operator}")

    def call_unop(self, context: Context, operator: str, arg: Any) -> Any:
        _checkpoint()
        if isinstance(arg, Undefined):
            return arg
        try:
            return self.unop_table[operator](arg)
        except (ArithmeticError, TypeError, ValueError) as exc:
            return _blank(f"operator {operator}: {exc}")


_ENVIRONMENTS = {False: _Sandbox(is_html=False), True: _Sandbox(is_html=True)}


@pass_context
def _never_run(context: Context, value: Any, *args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the analysis environment never renders")


# Parses and analyses templates. A sandbox too: Jinja folds constant expressions while analysing
# (`'a' * 10**9` would be computed), and the sandbox's intercepted operators prevent that. It knows
# every Jinja filter and test, so the policy, not the compiler, explains why `|attr` is refused.
_ANALYSIS = _Sandbox(is_html=False)
_ANALYSIS.filters = dict.fromkeys(DEFAULT_FILTERS, _never_run)
_ANALYSIS.tests = dict(DEFAULT_TESTS)


class _Instrument(NodeTransformer):
    """Adds the runtime checks that Jinja has no hook for (see ``_Sandbox``).

    Method names are Jinja's visitor protocol (``visit_`` + node class name).
    """

    def visit_For(self, node: nodes.For) -> nodes.Node:  # noqa: N802
        self.generic_visit(node)
        line = node.lineno
        tick = nodes.EnvironmentAttribute("tick", lineno=line)
        call = nodes.Call(tick, [], [], None, None, lineno=line)
        node.body.insert(0, nodes.ExprStmt(call, lineno=line))
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:  # noqa: N802
        self.generic_visit(node)
        return _hook_call("checked_concat", list(node.nodes), node.lineno)

    def visit_List(self, node: nodes.List) -> nodes.Node:  # noqa: N802
        self.generic_visit(node)
        return _hook_call("checked_list", list(node.items), node.lineno)

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:  # noqa: N802
        self.generic_visit(node)
        if node.ctx != "load":
            return node  # an unpacking target: `{% for key, value in … %}`
        return _hook_call("checked_tuple", list(node.items), node.lineno)

    def visit_Dict(self, node: nodes.Dict) -> nodes.Node:  # noqa: N802
        self.generic_visit(node)
        pairs: list[nodes.Expr] = [
            _hook_call("checked_tuple", [pair.key, pair.value], node.lineno) for pair in node.items
        ]
        return _hook_call("checked_dict", pairs, node.lineno)

    # `{% autoescape false %}` would print customer data as raw HTML; the policy refuses it, and
    # here it is dropped so the runtime never honours it either.
    def visit_EvalContextModifier(self, node: nodes.EvalContextModifier) -> None:  # noqa: N802
        return None

    def visit_ScopedEvalContextModifier(  # noqa: N802
        self, node: nodes.ScopedEvalContextModifier
    ) -> list[nodes.Node]:
        self.generic_visit(node)
        return list(node.body)


def _hook_call(name: str, args: list[nodes.Expr], lineno: int) -> nodes.Call:
    hook = nodes.EnvironmentAttribute(name, lineno=lineno)
    return nodes.Call(hook, args, [], None, None, lineno=lineno)


def _build(tree: nodes.Template, is_html: bool) -> Template:
    environment = _ENVIRONMENTS[is_html]
    tree = _Instrument().visit(tree)
    tree.set_environment(environment)
    tree.set_lineno(1)
    return environment.from_string(tree)


# -- the static policy -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Problem:
    kind: str
    line: int | None
    message: str
    # Among problems of one kind on one line, the most telling first (rank 0: `_` names, globals).
    rank: int = 1


def _path(node: nodes.Node) -> str | None:
    """``customer.name.x`` for a chain of constant lookups on a name; None for anything else."""
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        base = _path(node.node)
        return None if base is None else f"{base}.{node.attr}"
    name = _lookup_name(node) if isinstance(node, nodes.Getitem) else None
    if name is not None:
        base = _path(node.node)
        return None if base is None else f"{base}.{name}"
    return None


def _lookup_name(node: nodes.Getattr | nodes.Getitem) -> str | None:
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return node.arg.value
    return None


def _policy(tree: nodes.Template) -> list[_Problem]:
    problems: list[_Problem] = []
    known = set(known_variables())
    groups = {root for root, attributes in VARIABLES.items() if attributes is not None}
    groups_text = ", ".join(sorted(groups))

    def add(kind: str, node: nodes.Node, message: str, rank: int = 1) -> None:
        problems.append(_Problem(kind, getattr(node, "lineno", None), message, rank))

    try:
        undeclared = meta.find_undeclared_variables(tree)
    except TemplateSyntaxError as exc:
        # Filters and tests are known to the analysis environment: this is something else.
        problems.append(_Problem("syntax", exc.lineno, exc.message or str(exc), rank=2))
        undeclared = set()
    for name in sorted(undeclared - set(VARIABLES) - _JINJA_GLOBALS):
        if name.startswith("_"):
            continue  # reported below as unsafe
        node = next(n for n in tree.find_all(nodes.Name) if n.name == name)
        add("unknown_variable", node, f"unknown variable {name!r}")

    lookup_bases: set[int] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        lookup_bases.add(id(node.node))

    for node in tree.find_all(nodes.Node):
        if isinstance(node, nodes.Extends | nodes.Include | nodes.Import | nodes.FromImport):
            add("unsafe", node, "a template cannot load other templates")
        elif isinstance(node, nodes.EvalContextModifier):
            add("unsafe", node, "{% autoescape %} is not allowed: HTML templates always escape")
        elif isinstance(node, nodes.Name):
            if node.name.startswith("_"):
                add("unsafe", node, f"names starting with '_' are not allowed ({node.name})", 0)
            elif node.name in _JINJA_GLOBALS and node.ctx == "load":
                add("unsafe", node, f"{node.name} is not available in templates", 0)
            elif node.name in groups and node.ctx == "load" and id(node) not in lookup_bases:
                attributes = ", ".join(f"{node.name}.{a}" for a in VARIABLES[node.name] or ())
                add("unknown_variable", node, f"{node.name} is a group: use {attributes}")
        elif isinstance(node, nodes.Getattr | nodes.Getitem):
            _check_lookup(node, add, known, undeclared, groups_text)
        elif isinstance(node, nodes.Filter) and node.name not in ALLOWED_FILTERS:
            allowed = ", ".join(sorted(ALLOWED_FILTERS))
            if node.name in DEFAULT_FILTERS:
                add("unsafe", node, f"filter {node.name!r} is not allowed; allowed: {allowed}")
            else:
                add("syntax", node, f"unknown filter {node.name!r}; allowed: {allowed}")
        elif isinstance(node, nodes.Test) and node.name not in ALLOWED_TESTS:
            allowed = ", ".join(sorted(ALLOWED_TESTS))
            kind = "unsafe" if node.name in DEFAULT_TESTS else "syntax"
            add(kind, node, f"test {node.name!r} is not allowed; allowed: {allowed}")
        elif isinstance(node, nodes.Call):
            callee = node.node
            if isinstance(callee, nodes.Name) and callee.name not in VARIABLES:
                continue  # a macro, caller() or a recursive loop(); unknown names reported above
            if (
                isinstance(callee, nodes.Getattr)
                and isinstance(callee.node, nodes.Name)
                and callee.node.name == "loop"
                and callee.attr in _LOOP_METHODS
            ):
                continue
            add(
                "unsafe",
                node,
                "only macros, caller(), loop.cycle() and loop.changed() are callable",
            )
    return problems


def _check_lookup(
    node: nodes.Getattr | nodes.Getitem,
    add: Callable[..., None],
    known: set[str],
    undeclared: set[str],
    groups_text: str,
) -> None:
    name = _lookup_name(node)
    if name is None:
        if isinstance(node, nodes.Getitem):
            arg = node.arg
            if isinstance(arg, nodes.Neg | nodes.Pos):
                arg = arg.node  # `text[-1]`
            constant = isinstance(arg, nodes.Const) and isinstance(arg.value, int)
            if not (constant or isinstance(node.arg, nodes.Slice)):
                add("unsafe", node, "subscripts must be constant numbers or slices")
        return
    if name.startswith("_"):
        add("unsafe", node, f"names starting with '_' are not allowed ({name})", 0)
        return
    base = node.node
    path = _path(node)
    root = path.split(".", 1)[0] if path is not None else None
    if root in VARIABLES:
        if path not in known:
            assert path is not None  # noqa: S101 (root was found in it)
            on_a_value = path.rsplit(".", 1)[0] in known
            hint = "; values have no attributes: use filters, e.g. |upper" if on_a_value else ""
            add("unknown_variable", node, f"unknown variable {path!r}{hint}")
    elif root == "loop" and isinstance(base, nodes.Name):
        if name not in _LOOP_ATTRIBUTES:
            add("unknown_variable", node, f"loop has no attribute {name!r}")
    elif root is not None and root in undeclared:
        return  # the unknown name itself is reported
    else:
        add(
            "unsafe",
            node,
            f"attribute access is only allowed on the template variables ({groups_text}) and loop",
        )


@dataclass(frozen=True)
class _Compiled:
    template: Template | None
    problem: _Problem | None

    @property
    def renderable(self) -> bool:
        return self.template is not None and (
            self.problem is None or self.problem.kind == "unknown_variable"
        )


def _compile(source: str, is_html: bool) -> _Compiled:
    # Compiling may touch the environment hooks (constant folding): no render's warnings.
    token = _STATE.set(None)
    try:
        return _compile_cached(source, is_html)
    finally:
        _STATE.reset(token)


@lru_cache(maxsize=4096)
def _compile_cached(source: str, is_html: bool) -> _Compiled:
    # Failures come back as a cached result, not an exception: lru_cache does not keep exceptions,
    # and a template that is slow to reject would be parsed again on every request.
    try:
        tree = _ANALYSIS.parse(source)
        problems = _policy(tree)
        problems.sort(key=lambda p: (_PROBLEM_ORDER[p.kind], p.line or 0, p.rank))
        first = problems[0] if problems else None
        if first is not None and first.kind != "unknown_variable":
            return _Compiled(None, first)
        return _Compiled(_build(tree, is_html), first)
    except TemplateSyntaxError as exc:
        return _Compiled(None, _Problem("syntax", exc.lineno, exc.message or str(exc)))
    except _TOO_COMPLEX as exc:
        return _Compiled(None, _too_complex_problem(exc))


# Jinja's parser and Python's compiler recurse per nesting level: `((((…` a few hundred deep,
# or twenty nested loops ("too many statically nested blocks"), fail with these, not with
# TemplateSyntaxError.
_TOO_COMPLEX = (RecursionError, SyntaxError, MemoryError, ValueError, OverflowError)


def _too_complex_problem(exc: BaseException) -> _Problem:
    return _Problem(
        "syntax", None, f"the template is nested too deeply to compile ({type(exc).__name__})"
    )


def _too_large_problem(source: str) -> _Problem:
    return _Problem(
        "too_large", None, f"{len(source)} characters; the limit is {MAX_TEMPLATE_CHARS}"
    )


def validate_template(*, body: str, subject: str | None, is_html: bool) -> None:
    """Raise TemplateInvalid for the first problem of the body, then of the subject."""
    fields: list[tuple[str, str | None, bool]] = [
        ("body", body, is_html),
        ("subject", subject, False),
    ]
    for name, source, html in fields:
        if source is None:
            continue
        if len(source) > MAX_TEMPLATE_CHARS:
            problem: _Problem | None = _too_large_problem(source)
        else:
            problem = _compile(source, html).problem
        if problem is not None:
            raise _invalid(name, problem)


def _invalid(field_name: str, problem: _Problem) -> TemplateInvalid:
    where = f"template {field_name}" + (f", line {problem.line}" if problem.line else "")
    message = f"{where}: {problem.message}"
    details: dict[str, Any] = {
        "field": field_name,
        "problem": problem.kind,
        "line": problem.line,
        "message": problem.message,
    }
    if problem.kind == "unknown_variable":
        details["known_variables"] = known_variables()
        message += "; known variables: " + ", ".join(known_variables())
    return TemplateInvalid(message, details=details)


# -- rendering ---------------------------------------------------------------------------------


def render_template(
    *, body: str, subject: str | None, is_html: bool, context: Mapping[str, Any]
) -> RenderedTemplate:
    """Render a template's body and subject; never raises for a template problem."""
    state = _RenderState(deadline=0.0)
    token = _STATE.set(state)
    try:
        values = _prepared(context)
        rendered_subject = None
        if subject is not None:
            state.prefix = "subject: "
            # One line: a subject is a mail header (RFC 5322 §2.2), a newline would end it.
            rendered_subject = " ".join(_render_field(subject, False, values, state).split())
            state.prefix = ""
        rendered_body = _render_field(body, is_html, values, state)
    finally:
        _STATE.reset(token)
    return RenderedTemplate(
        body=rendered_body, subject=rendered_subject, is_html=is_html, warnings=state.warnings
    )


def _render_field(source: str, is_html: bool, values: dict[str, Any], state: _RenderState) -> str:
    # Each field has its own time budget: a slow body must not leave the subject empty.
    state.deadline = time.monotonic() + RENDER_TIME_LIMIT_SECONDS
    if len(source) > MAX_TEMPLATE_CHARS:
        state.warn(f"not rendered: {_too_large_problem(source).message}")
        return ""
    compiled = _compile(source, is_html)
    if not compiled.renderable:
        problem = compiled.problem
        assert problem is not None  # noqa: S101 (a non-renderable template always has one)
        line = f" (line {problem.line})" if problem.line else ""
        state.warn(f"not rendered, {problem.kind}{line}: {problem.message}")
        return ""
    assert compiled.template is not None  # noqa: S101
    return _run(compiled.template, values, state)


def _render_without_policy(
    source: str, *, is_html: bool, context: Mapping[str, Any]
) -> RenderedTemplate:
    """Render with the runtime sandbox alone, skipping the static policy.

    Only for tests that prove the second layer holds by itself; user templates always go through
    ``render_template``.
    """
    state = _RenderState(deadline=time.monotonic() + RENDER_TIME_LIMIT_SECONDS)
    token = _STATE.set(state)
    try:
        try:
            template = _build(_ANALYSIS.parse(source), is_html)
        except TemplateSyntaxError as exc:
            state.warn(f"not rendered: {exc.message}")
            output = ""
        except _TOO_COMPLEX as exc:
            state.warn(f"not rendered: {_too_complex_problem(exc).message}")
            output = ""
        else:
            output = _run(template, _prepared(context), state)
    finally:
        _STATE.reset(token)
    return RenderedTemplate(body=output, subject=None, is_html=is_html, warnings=state.warnings)


def _run(template: Template, values: dict[str, Any], state: _RenderState) -> str:
    chunks: list[str] = []
    size = 0
    stream: Iterable[str] = template.generate(values)
    try:
        for chunk in stream:
            if size + len(chunk) > MAX_OUTPUT_CHARS:
                chunks.append(chunk[: MAX_OUTPUT_CHARS - size])
                state.warn(f"output truncated at {MAX_OUTPUT_CHARS} characters")
                break
            chunks.append(chunk)
            size += len(chunk)
            if time.monotonic() > state.deadline:
                raise _RenderStopped
    except _RenderStopped:
        state.warn(f"rendering stopped after {RENDER_TIME_LIMIT_SECONDS} s: output is incomplete")
    except Exception as exc:
        # A failure the hooks could not turn into an empty value (e.g. comparing a number with
        # a text): the whole field is empty rather than half a message.
        line = _template_line(exc)
        where = f" at line {line}" if line else ""
        state.warn(f"rendering failed{where}: {type(exc).__name__}: {exc}")
        return ""
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    return "".join(chunks)


def _template_line(exc: BaseException) -> int | None:
    """The template line of the failure: Jinja rewrites tracebacks to point at the template."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
