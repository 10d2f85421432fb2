"""The lint engine: parse with libcst, resolve qualified names, follow simple data flow, run the
rules, apply fixes.

What the rules can ask (:class:`Context`):

* :meth:`Context.loss_call` -- is this call a loss (``F.cross_entropy(...)``, a criterion
  created from ``nn.CrossEntropyLoss()`` and stored in a name or ``self.<attr>``,
  ``nn.BCELoss()(p, y)``), which one, and what are its input and target expressions;
* :meth:`Context.kinds` -- what produced a value: ``softmax``, ``sigmoid``, ``log_softmax``,
  ``one_hot`` (also built by hand: ``torch.eye(C)[y]``, ``zeros.scatter_(1, idx, 1)``),
  ``zeros``, ``float_cast`` -- looking through casts and reshapes, through simple local
  assignments (``p = torch.softmax(z, 1)`` ... ``loss_fn(p, y)``), through ``nn.Softmax``
  modules and ``nn.Sequential`` models whose last layer is one.

``self.<attr>`` is resolved per class: in the class whose method reads it, then in its bases
defined in the same file (:meth:`Context.class_at`, :meth:`Context.local_class`).

Aliases and ``from`` imports are understood through libcst's qualified names
(``import torch.nn.functional as F``, ``from torch.nn import CrossEntropyLoss as CE``).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from losskit.lint.names import (
    ACTIVATION_CLASSES,
    CLASSES,
    EYE,
    FLOAT_CASTS,
    FLOAT_DTYPES,
    FUNCTIONAL,
    LOG_SOFTMAX,
    MODULE_MOVES,
    ONE_HOT,
    SEQUENTIAL,
    SIGMOID,
    SOFTMAX,
    TO_TENSOR,
    TRANSPARENT,
    WRAPPERS,
    ZEROS,
    Collector,
    appended_last,
    dotted,
    last_layer,
    scatters_one,
)
from losskit.lint.parsing import compiles, deepest_line, short, with_deep_stack
from losskit.lint.prefilter import relevant_source, text_could_match

__all__ = ["Finding", "Fix", "Context", "Rule", "lint_source", "PARSE_ERROR", "dotted"]

PARSE_ERROR = "LK000"


@dataclass(frozen=True)
class Fix:
    """Replace the node of ``node_type`` starting at ``(line, col)`` by ``replace(node)``."""

    node_type: type
    line: int
    col: int
    replace: Callable[[cst.CSTNode], cst.CSTNode]
    unsafe: bool = False


@dataclass(frozen=True)
class Finding:
    code: str
    path: str
    line: int  # 1-based
    col: int  # 1-based
    message: str
    fix: Fix | None = field(default=None, compare=False, repr=False)
    #: the notebook cell (1-based, counting every cell) of a finding in an ``.ipynb``; ``line`` is
    #: then the line in that cell
    cell: int | None = None
    #: "safe", "unsafe" or "" (no fix); kept when ``fix`` is dropped to send a finding between processes
    fix_kind: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.fix is not None and not self.fix_kind:
            object.__setattr__(self, "fix_kind", "unsafe" if self.fix.unsafe else "safe")

    @property
    def fixable(self) -> bool:
        """A safe fix exists (``--fix`` applies it)."""
        return self.fix_kind == "safe"

    @property
    def location(self) -> str:
        """``path:line:col``, or ``notebook.ipynb:cell N:line M:col C``."""
        if self.cell is not None:
            return f"{self.path}:cell {self.cell}:line {self.line}:col {self.col}"
        return f"{self.path}:{self.line}:{self.col}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "path": self.path,
            "cell": self.cell,
            "line": self.line,
            "col": self.col,
            "message": self.message,
            "fixable": self.fixable,
        }


@dataclass
class LossCall:
    name: str  # "cross_entropy", "nll_loss", ...
    call: cst.Call
    input: cst.BaseExpression | None
    target: cst.BaseExpression | None


class Rule:
    """One lint rule: ``code``, ``summary``, and ``check(ctx)`` yielding findings."""

    code: str = ""
    summary: str = ""

    def check(self, ctx: Context) -> Iterable[Finding]:  # pragma: no cover - interface
        raise NotImplementedError


class Context:
    """What the rules see of one module."""

    def __init__(self, path: str, source: str, wrapper: MetadataWrapper) -> None:
        self.path = path
        self.source = source
        self.lines = source.splitlines()
        self.module = wrapper.module
        self.positions = wrapper.resolve(PositionProvider)
        #: local name -> what it was imported as (``F`` -> ``torch.nn.functional``)
        self.imports: dict[str, str] = {}
        self.assignments: dict[tuple[cst.CSTNode | None, str], list[tuple[int, cst.BaseExpression]]] = {}
        self.calls: list[tuple[cst.Call, cst.CSTNode | None]] = []
        self.aug_assigns: list[tuple[cst.AugAssign, cst.CSTNode | None]] = []
        self.loops: list[tuple[cst.CSTNode, cst.CSTNode | None]] = []
        #: name -> lines where it is (re)bound or changed in place, in any scope
        self.rebinds: dict[str, list[int]] = {}
        #: class name -> the classes of that name defined in this file; (first, last line, class)
        self.classes: dict[str, list[cst.ClassDef]] = {}
        self.class_ranges: list[tuple[int, int, cst.ClassDef]] = []
        #: every function: (def, the class or function around it or None, its scope)
        self.functions: list[tuple[cst.FunctionDef, cst.CSTNode | None, cst.CSTNode | None]] = []
        #: names bound other than by ``name = value``: (line, target, value or None, scope) for
        #: ``a, b = f(x)`` and ``with ... as x`` (None); loop targets are in ``loops``
        self.unpacks: list[tuple[int, cst.BaseExpression, cst.BaseExpression | None, cst.CSTNode | None]] = []
        #: what helpers compute once per file (the value flow); cleared after the rules ran
        self.cache: dict[str, Any] = {}
        wrapper.visit(Collector(self))

    # ----------------------------------------------------------------- basics

    def pos(self, node: cst.CSTNode) -> tuple[int, int]:
        """1-based line and 0-based column of ``node``'s start."""
        start = self.positions[node].start
        return start.line, start.column

    def names(self, node: cst.CSTNode) -> set[str]:
        """The qualified name of a name or attribute chain through the file's imports
        (``F.softmax`` -> ``{"torch.nn.functional.softmax"}``), or an empty set. (libcst's
        QualifiedNameProvider gives the same for these and costs most of the run.)"""
        parts: list[str] = []
        while isinstance(node, cst.Attribute):
            parts.append(node.attr.value)
            node = node.value
        if not isinstance(node, cst.Name):
            return set()
        head = self.imports.get(node.value)
        if head is None:
            return set()
        return {".".join([head, *reversed(parts)])}

    def finding(self, code: str, node: cst.CSTNode, message: str, fix: Fix | None = None) -> Finding:
        line, col = self.pos(node)
        return Finding(code, self.path, line, col + 1, message, fix)

    def fix_for(self, node: cst.CSTNode, replace: Callable[[cst.CSTNode], cst.CSTNode], unsafe: bool = False) -> Fix:
        line, col = self.pos(node)
        return Fix(type(node), line, col, replace, unsafe)

    # ----------------------------------------------------------------- data flow

    def class_at(self, line: int) -> cst.ClassDef | None:
        """The innermost class of this file whose body holds ``line``."""
        inside = [(start, cls) for start, end, cls in self.class_ranges if start <= line <= end]
        return max(inside, key=lambda sc: sc[0])[1] if inside else None

    def local_class(self, node: cst.BaseExpression | None) -> cst.ClassDef | None:
        """The class of this file that ``Net`` names (or ``Net(...)`` calls), if it is defined once
        and not imported."""
        if isinstance(node, cst.Call):
            node = node.func
        if not isinstance(node, cst.Name) or node.value in self.imports:
            return None
        found = self.classes.get(node.value, [])
        return found[0] if len(found) == 1 else None

    def class_and_bases(self, cls: cst.ClassDef) -> list[cst.ClassDef]:
        """``cls``, then its bases defined in this file, depth first (a small MRO)."""
        order: list[cst.ClassDef] = []
        todo = [cls]
        while todo and len(order) < 16:
            c = todo.pop(0)
            if c in order:
                continue
            order.append(c)
            todo[:0] = [b for b in (self.local_class(a.value) for a in c.bases if a.keyword is None) if b]
        return order

    def self_values(self, key: str, line: int | None) -> list[tuple[int, cst.BaseExpression]]:
        """Assignments to ``self.<attr>`` as seen from ``line``: in the class around it, then its
        bases of this file; without a line, in any class."""
        if line is None:
            return self.assignments.get((None, "*" + key), [])
        cls = self.class_at(line)
        if cls is None:
            return self.assignments.get((None, key), [])
        for c in self.class_and_bases(cls):
            values = self.assignments.get((c, key))
            if values:
                return values
        return []

    def resolve(self, key: str, scope: cst.CSTNode | None, line: int) -> cst.BaseExpression | None:
        """The value last assigned to ``key`` before ``line`` (in ``scope``, then the module); for
        ``self.<attr>``, the last one in the class (any method)."""
        if key.startswith("self."):
            values = self.self_values(key, line)
            return values[-1][1] if values else None
        for s in ((scope, key), (None, key)):
            candidates = [v for ln, v in self.assignments.get(s, []) if ln < line]
            if candidates:
                return candidates[-1]
        return None

    def rebound_between(self, key: str, after: int, before: int) -> bool:
        """``key`` is assigned or changed in place on a line in ``(after, before]``, or by a loop
        around ``before`` (a loop target, or in a loop body)."""
        lines = self.rebinds.get(key, [])
        if any(after < ln <= before for ln in lines):
            return True
        for loop, _ in self.loops:
            r = self.positions[loop]
            around = r.start.line <= before <= r.end.line and not r.start.line <= after <= r.end.line
            if around and any(r.start.line <= ln <= r.end.line for ln in lines):
                return True
        return False

    def resolve_anywhere(self, key: str, line: int | None = None) -> cst.BaseExpression | None:
        """The last value assigned to ``key`` in any scope (criteria are made once, used later);
        ``self.<attr>`` in the class around ``line``."""
        if key.startswith("self."):
            values = self.self_values(key, line)
        else:
            values = self.assignments.get((None, key), []) or self.assignments.get((None, "*" + key), [])
        return values[-1][1] if values else None

    def _resolve_before(self, key: str, line: int) -> cst.BaseExpression | None:
        """Like :meth:`resolve_anywhere`, but the last assignment before ``line`` when there is
        one (``model = nn.DataParallel(model)`` wraps the earlier ``model``)."""
        if key.startswith("self."):
            return self.resolve_anywhere(key, line)
        earlier = [v for ln, v in self.assignments.get((None, "*" + key), []) if ln < line]
        return earlier[-1] if earlier else self.resolve_anywhere(key, line)

    def _bound_module(self, func: cst.BaseExpression, line: int) -> cst.BaseExpression | None:
        """The module constructor a called name or ``self.<attr>`` holds, if any."""
        key = dotted(func)
        return self.module_behind(self.resolve_anywhere(key, line)) if key is not None else None

    def activation_module(self, bound: cst.BaseExpression | None) -> set[str] | None:
        """{kind} for ``nn.Softmax(...)`` / ``nn.Sequential(..., nn.Softmax(...))``; set() for
        another module; None when ``bound`` is no module constructor."""
        if not isinstance(bound, cst.Call):
            return None
        cls = self.names(bound.func)
        for q in cls:
            if q in ACTIVATION_CLASSES:
                return {ACTIVATION_CLASSES[q]}
        if cls & SEQUENTIAL and bound.args:
            arg = bound.args[-1]  # nn.Sequential(*layers): the layer appended last
            last = appended_last(self, arg.value, self.pos(bound)[0]) if arg.star == "*" else last_layer(arg.value)
            if isinstance(last, cst.Call):
                for q in self.names(last.func):
                    if q in ACTIVATION_CLASSES:
                        return {ACTIVATION_CLASSES[q]}
        return set()

    def kinds(
        self, expr: cst.BaseExpression | None, scope: cst.CSTNode | None = None, line: int | None = None, depth: int = 0
    ) -> set[str]:
        """What produced ``expr``: {"softmax", "sigmoid", "log_softmax", "one_hot", "zeros",
        "float_cast"}."""
        if expr is None or depth > 6:
            return set()
        if line is None:
            line = self.pos(expr)[0]
        if isinstance(expr, cst.Call):
            func = expr.func
            names = self.names(func)
            if names & SOFTMAX:
                return {"softmax"}
            if names & LOG_SOFTMAX:
                return {"log_softmax"}
            if names & SIGMOID:
                return {"sigmoid"}
            if names & ONE_HOT:
                return {"one_hot"}
            if names & ZEROS:
                return {"zeros"}
            if names & TO_TENSOR and expr.args:  # torch.from_numpy(np.eye(C)[y])
                return self.kinds(expr.args[0].value, scope, line, depth + 1)
            if isinstance(func, cst.Attribute):
                attr = func.attr.value
                if attr in ("softmax", "sigmoid", "log_softmax"):
                    module = self.activation_module(self._bound_module(func, line))
                    return {attr} if module is None else module  # x.softmax(1), or self.softmax = nn.Softmax()
                if attr in ("new_zeros", "zero_"):
                    return {"zeros"}
                if attr in ("scatter", "scatter_") and scatters_one(expr):  # zeros.scatter_(1, idx, 1)
                    return {"one_hot"} if "zeros" in self.kinds(func.value, scope, line, depth + 1) else set()
                if attr in TRANSPARENT:
                    inner = self.kinds(func.value, scope, line, depth + 1)
                    if attr in FLOAT_CASTS or (attr in ("to", "type") and self._float_dtype_arg(expr)):
                        inner = inner | {"float_cast"}
                    return inner
            return self.activation_module(self._bound_module(func, line)) or set()
        if isinstance(expr, cst.Subscript) and _eye_rows(self, expr):
            return {"one_hot"}  # torch.eye(C)[y] / np.eye(C)[y]
        key = dotted(expr)
        if key is not None:
            value = self.resolve(key, scope, line)
            if value is not None and value is not expr:
                return self.kinds(value, scope, self.pos(value)[0] if value in self.positions else line, depth + 1)
        return set()

    def _float_dtype_arg(self, call: cst.Call) -> bool:
        for arg in call.args:
            if arg.keyword is None or arg.keyword.value == "dtype":
                if self.names(arg.value) & FLOAT_DTYPES:
                    return True
                if isinstance(arg.value, cst.Attribute) and arg.value.attr.value in ("FloatTensor", "DoubleTensor"):
                    return True
        return False

    def module_behind(self, value: cst.BaseExpression | None) -> cst.BaseExpression | None:
        """The module constructor behind ``nn.X(...).to(device)`` / ``.cuda()`` / ``.eval()`` and
        ``nn.DataParallel(nn.X(...))`` / ``DistributedDataParallel(...)`` (also through a name)."""
        for _ in range(6):
            if not isinstance(value, cst.Call):
                return value
            func = value.func
            if isinstance(func, cst.Attribute) and func.attr.value in MODULE_MOVES:
                value = func.value
            elif self.names(func) & WRAPPERS and value.args:
                value = value.args[0].value
            else:
                return value
            key = dotted(value)
            if key is not None:
                value = self._resolve_before(key, self.pos(value)[0])
        return value

    def loss_call(self, call: cst.Call) -> LossCall | None:
        """The loss this call computes, with its input and target expressions, or None."""
        names = self.names(call.func)
        name = next((FUNCTIONAL[q] for q in names if q in FUNCTIONAL), None)
        if name is None and isinstance(call.func, cst.Call):  # nn.BCELoss()(p, y)
            name = next((CLASSES[q] for q in self.names(call.func.func) if q in CLASSES), None)
        if name is None:
            key = dotted(call.func)
            if key is not None:
                bound = self._bound_module(call.func, self.pos(call)[0])
                if isinstance(bound, cst.Call):
                    name = next((CLASSES[q] for q in self.names(bound.func) if q in CLASSES), None)
        if name is None:
            return None
        positional = [a.value for a in call.args if a.keyword is None and a.star == ""]
        keywords = {a.keyword.value: a.value for a in call.args if a.keyword is not None}
        inp = keywords.get("input", positional[0] if positional else None)
        tgt = keywords.get("target", positional[1] if len(positional) > 1 else None)
        return LossCall(name, call, inp, tgt)

    def loss_calls(self) -> Iterable[tuple[LossCall, cst.CSTNode | None]]:
        for call, scope in self.calls:
            lc = self.loss_call(call)
            if lc is not None:
                yield lc, scope


def _eye_rows(ctx: Context, expr: cst.Subscript) -> bool:
    """``torch.eye(C)[y]`` / ``np.eye(C)[y]``: rows of the identity picked by one index (not a slice)."""
    value = expr.value
    if not (isinstance(value, cst.Call) and ctx.names(value.func) & EYE) or len(expr.slice) != 1:
        return False
    return isinstance(expr.slice[0].slice, cst.Index)


# --------------------------------------------------------------------------- running

_SUPPRESS = re.compile(r"#\s*losskit:\s*ignore(?:\[([A-Za-z0-9_,\s]+)\])?")


def not_checked(path: str, why: str, line: int = 1, col: int = 1) -> Finding:
    """The ``LK000`` finding of a file that was not checked (and is never rewritten)."""
    return Finding(PARSE_ERROR, path, line, col, f"{why}; it was not checked and will not be rewritten")


def _suppressed(ctx: Context, finding: Finding) -> bool:
    if not 1 <= finding.line <= len(ctx.lines):
        return False
    match = _SUPPRESS.search(ctx.lines[finding.line - 1])
    if not match:
        return False
    if match.group(1) is None:
        return True
    codes = {c.strip().upper() for c in match.group(1).split(",")}
    return finding.code in codes


def _selected(code: str, select: Iterable[str] | None, ignore: Iterable[str] | None) -> bool:
    if select and not any(code.startswith(s) for s in select):
        return False
    return not (ignore and any(code.startswith(s) for s in ignore))


def lint_source(
    source: str, path: str = "<string>", *, select: Iterable[str] | None = None, ignore: Iterable[str] | None = None
) -> list[Finding]:
    """All findings in ``source`` (a file that Python cannot parse is one ``LK000`` finding),
    sorted by position."""
    from losskit.lint.rules import RULES

    codes = [rule.code for rule in RULES if _selected(rule.code, select, ignore)]
    if not text_could_match(source, codes) and compiles(source, path):
        return []  # no selected rule can fire, and the file parses: nothing more to read
    try:
        tree = ast.parse(source)  # CPython's own parser: fast, and its line numbers are the real ones
    except SyntaxError as exc:
        return [not_checked(path, f"could not parse the file ({exc.msg})", exc.lineno or 1, exc.offset or 1)]
    except (RecursionError, MemoryError, ValueError) as exc:
        if not (isinstance(exc, RecursionError) and compiles(source, path)):
            return [not_checked(path, f"could not parse the file ({short(exc)})")]
        tree = with_deep_stack(lambda: ast.parse(source))  # Python compiles it: so must we
    reduced = relevant_source(source, tree, codes)
    if reduced is None:
        return []  # no selected rule can fire here: skip libcst (the slow part)

    def run() -> list[Finding]:
        module = cst.parse_module(reduced)  # same lines as the source; unneeded code left out
        ctx = Context(path, reduced, MetadataWrapper(module, unsafe_skip_copy=True))
        try:
            return [f for rule in RULES if rule.code in codes for f in rule.check(ctx) if not _suppressed(ctx, f)]
        finally:
            ctx.cache.clear()  # the flow refers back to ctx: no cycle left for the garbage collector

    try:
        try:
            findings = run()
        except RecursionError:  # valid Python nested deeper than libcst's recursion allows
            findings = with_deep_stack(run)
    except cst.ParserSyntaxError as exc:
        return [not_checked(path, f"libcst could not parse the file ({exc.message})", exc.raw_line, exc.raw_column + 1)]
    except RecursionError:  # even with a 512 MiB stack: not expected for a file Python compiles
        line = deepest_line(tree)
        return [not_checked(path, "an expression is nested too deeply for libcst (recursion limit)", line)]
    unique = {(f.line, f.col, f.code): f for f in findings}
    return sorted(unique.values(), key=lambda f: (f.line, f.col, f.code))
