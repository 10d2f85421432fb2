"""The lint engine: parse with libcst, resolve qualified names, follow simple data flow, run the
rules, apply fixes.

What the rules can ask (:class:`Context`):

* :meth:`Context.loss_call` -- is this call a loss (``F.cross_entropy(...)``, a criterion
  created from ``nn.CrossEntropyLoss()`` and stored in a name or ``self.<attr>``,
  ``nn.BCELoss()(p, y)``), which one, and what are its input and target expressions;
* :meth:`Context.kinds` -- what produced a value: ``softmax``, ``sigmoid``, ``log_softmax``,
  ``one_hot``, ``float_cast`` -- looking through casts and reshapes, through simple local
  assignments (``p = torch.softmax(z, 1)`` ... ``loss_fn(p, y)``), through ``nn.Softmax``
  modules and ``nn.Sequential`` models whose last layer is one.

Aliases and ``from`` imports are understood through libcst's qualified names
(``import torch.nn.functional as F``, ``from torch.nn import CrossEntropyLoss as CE``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider, QualifiedNameProvider

__all__ = ["Finding", "Fix", "Context", "Rule", "lint_source", "fix_source", "PARSE_ERROR"]

PARSE_ERROR = "LK000"

#: loss name -> qualified names of its functional form and its module class
LOSSES = {
    "cross_entropy": ("CrossEntropyLoss",),
    "nll_loss": ("NLLLoss",),
    "binary_cross_entropy": ("BCELoss",),
    "binary_cross_entropy_with_logits": ("BCEWithLogitsLoss",),
    "mse_loss": ("MSELoss",),
    "l1_loss": ("L1Loss",),
    "smooth_l1_loss": ("SmoothL1Loss",),
    "huber_loss": ("HuberLoss",),
    "kl_div": ("KLDivLoss",),
    "poisson_nll_loss": ("PoissonNLLLoss",),
    "margin_ranking_loss": ("MarginRankingLoss",),
    "hinge_embedding_loss": ("HingeEmbeddingLoss",),
    "multilabel_margin_loss": ("MultiLabelMarginLoss",),
    "soft_margin_loss": ("SoftMarginLoss",),
    "multilabel_soft_margin_loss": ("MultiLabelSoftMarginLoss",),
    "cosine_embedding_loss": ("CosineEmbeddingLoss",),
    "multi_margin_loss": ("MultiMarginLoss",),
}
_FUNCTIONAL_PREFIXES = ("torch.nn.functional.", "losskit.functional.")
_CLASS_PREFIXES = ("torch.nn.", "torch.nn.modules.loss.", "losskit.nn.")
FUNCTIONAL = {p + name: name for p in _FUNCTIONAL_PREFIXES for name in LOSSES}
CLASSES = {p + cls: name for p in _CLASS_PREFIXES for name, classes in LOSSES.items() for cls in classes}

SOFTMAX = {"torch.softmax", "torch.nn.functional.softmax", "torch.special.softmax"}
LOG_SOFTMAX = {"torch.log_softmax", "torch.nn.functional.log_softmax", "torch.special.log_softmax"}
SIGMOID = {"torch.sigmoid", "torch.nn.functional.sigmoid", "torch.special.expit"}
_ONE_HOT = {"torch.nn.functional.one_hot"}
ACTIVATION_CLASSES = {
    "torch.nn.Softmax": "softmax",
    "torch.nn.Softmax2d": "softmax",
    "torch.nn.LogSoftmax": "log_softmax",
    "torch.nn.Sigmoid": "sigmoid",
}
_SEQUENTIAL = {"torch.nn.Sequential"}
#: methods that keep what a value is (casts and reshapes)
_TRANSPARENT = {
    "float",
    "double",
    "half",
    "bfloat16",
    "to",
    "type",
    "contiguous",
    "view",
    "reshape",
    "squeeze",
    "unsqueeze",
    "flatten",
    "permute",
    "transpose",
    "clone",
    "detach",
    "cpu",
    "cuda",
    "long",
    "int",
}
_FLOAT_CASTS = {"float", "double", "half", "bfloat16"}
_FLOAT_DTYPES = {
    "torch.float",
    "torch.float32",
    "torch.float64",
    "torch.double",
    "torch.half",
    "torch.float16",
    "torch.bfloat16",
}


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

    @property
    def fixable(self) -> bool:
        """A safe fix exists (``--fix`` applies it)."""
        return self.fix is not None and not self.fix.unsafe

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "path": self.path,
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


def dotted(node: cst.BaseExpression) -> str | None:
    """``self.criterion`` / ``criterion`` as a string key, or None for anything else."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute) and isinstance(node.value, cst.Name):
        return f"{node.value.value}.{node.attr.value}"
    return None


class _Collector(cst.CSTVisitor):
    """One pass over the module: assignments per scope, calls, loops, aug-assignments."""

    METADATA_DEPENDENCIES = (PositionProvider, QualifiedNameProvider)

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.scopes: list[cst.CSTNode | None] = [None]

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.scopes.append(node)

    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.scopes.pop()

    def _record(self, target: cst.BaseExpression, value: cst.BaseExpression, node: cst.CSTNode) -> None:
        key = dotted(target)
        if key is None:
            return
        line = self.ctx.pos(node)[0]
        scope = self.scopes[-1] if not key.startswith("self.") else None
        self.ctx.assignments.setdefault((scope, key), []).append((line, value))
        if not key.startswith("self."):
            self.ctx.assignments.setdefault((None, "*" + key), []).append((line, value))

    def visit_Assign(self, node: cst.Assign) -> None:
        for t in node.targets:
            self._record(t.target, node.value, node)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if node.value is not None:
            self._record(node.target, node.value, node)

    def visit_Call(self, node: cst.Call) -> None:
        self.ctx.calls.append((node, self.scopes[-1]))

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self.ctx.aug_assigns.append((node, self.scopes[-1]))

    def visit_For(self, node: cst.For) -> None:
        self.ctx.loops.append((node, self.scopes[-1]))

    def visit_While(self, node: cst.While) -> None:
        self.ctx.loops.append((node, self.scopes[-1]))


class Context:
    """What the rules see of one module."""

    def __init__(self, path: str, source: str, wrapper: MetadataWrapper) -> None:
        self.path = path
        self.source = source
        self.lines = source.splitlines()
        self.positions = wrapper.resolve(PositionProvider)
        self.qualified = wrapper.resolve(QualifiedNameProvider)
        self.assignments: dict[tuple[cst.CSTNode | None, str], list[tuple[int, cst.BaseExpression]]] = {}
        self.calls: list[tuple[cst.Call, cst.CSTNode | None]] = []
        self.aug_assigns: list[tuple[cst.AugAssign, cst.CSTNode | None]] = []
        self.loops: list[tuple[cst.CSTNode, cst.CSTNode | None]] = []
        wrapper.visit(_Collector(self))

    # ----------------------------------------------------------------- basics

    def pos(self, node: cst.CSTNode) -> tuple[int, int]:
        """1-based line and 0-based column of ``node``'s start."""
        start = self.positions[node].start
        return start.line, start.column

    def names(self, node: cst.CSTNode) -> set[str]:
        value: Any = self.qualified.get(node, ())
        if not isinstance(value, (set, frozenset, list, tuple)):
            value = value()  # libcst resolves some providers lazily
        return {q.name for q in value}

    def finding(self, code: str, node: cst.CSTNode, message: str, fix: Fix | None = None) -> Finding:
        line, col = self.pos(node)
        return Finding(code, self.path, line, col + 1, message, fix)

    def fix_for(self, node: cst.CSTNode, replace: Callable[[cst.CSTNode], cst.CSTNode], unsafe: bool = False) -> Fix:
        line, col = self.pos(node)
        return Fix(type(node), line, col, replace, unsafe)

    # ----------------------------------------------------------------- data flow

    def resolve(self, key: str, scope: cst.CSTNode | None, line: int) -> cst.BaseExpression | None:
        """The value last assigned to ``key`` before ``line`` (in ``scope``, then the module)."""
        for s in ((scope, key), (None, key)) if not key.startswith("self.") else ((None, key),):
            candidates = [v for ln, v in self.assignments.get(s, []) if ln < line or key.startswith("self.")]
            if candidates:
                return candidates[-1]
        return None

    def resolve_anywhere(self, key: str) -> cst.BaseExpression | None:
        """The last value assigned to ``key`` in any scope (criteria are made once, used later)."""
        values = self.assignments.get((None, key), []) or self.assignments.get((None, "*" + key), [])
        return values[-1][1] if values else None

    def kinds(
        self, expr: cst.BaseExpression | None, scope: cst.CSTNode | None = None, line: int | None = None, depth: int = 0
    ) -> set[str]:
        """What produced ``expr``: {"softmax", "sigmoid", "log_softmax", "one_hot", "float_cast"}."""
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
            if names & _ONE_HOT:
                return {"one_hot"}
            if isinstance(func, cst.Attribute):
                attr = func.attr.value
                if attr in ("softmax", "sigmoid", "log_softmax"):
                    return {attr}  # x.softmax(1), or a module stored as self.softmax
                if attr in _TRANSPARENT:
                    inner = self.kinds(func.value, scope, line, depth + 1)
                    if attr in _FLOAT_CASTS or (attr in ("to", "type") and self._float_dtype_arg(expr)):
                        inner = inner | {"float_cast"}
                    return inner
            key = dotted(func)
            if key is not None:
                bound = self.resolve_anywhere(key)
                if isinstance(bound, cst.Call):
                    cls = self.names(bound.func)
                    for q in cls:
                        if q in ACTIVATION_CLASSES:
                            return {ACTIVATION_CLASSES[q]}
                    if cls & _SEQUENTIAL and bound.args:
                        last = bound.args[-1].value
                        if isinstance(last, cst.Call):
                            for q in self.names(last.func):
                                if q in ACTIVATION_CLASSES:
                                    return {ACTIVATION_CLASSES[q]}
            return set()
        key = dotted(expr)
        if key is not None:
            value = self.resolve(key, scope, line)
            if value is not None and value is not expr:
                return self.kinds(value, scope, self.pos(value)[0] if value in self.positions else line, depth + 1)
        return set()

    def _float_dtype_arg(self, call: cst.Call) -> bool:
        for arg in call.args:
            if arg.keyword is None or arg.keyword.value == "dtype":
                if self.names(arg.value) & _FLOAT_DTYPES:
                    return True
                if isinstance(arg.value, cst.Attribute) and arg.value.attr.value in ("FloatTensor", "DoubleTensor"):
                    return True
        return False

    def loss_call(self, call: cst.Call) -> LossCall | None:
        """The loss this call computes, with its input and target expressions, or None."""
        names = self.names(call.func)
        name = next((FUNCTIONAL[q] for q in names if q in FUNCTIONAL), None)
        if name is None and isinstance(call.func, cst.Call):  # nn.BCELoss()(p, y)
            name = next((CLASSES[q] for q in self.names(call.func.func) if q in CLASSES), None)
        if name is None:
            key = dotted(call.func)
            if key is not None:
                bound = self.resolve_anywhere(key)
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


# --------------------------------------------------------------------------- running

#: a file mentioning none of these cannot hold a finding (loss names, activations, backward,
#: the deprecated arguments)
_RELEVANT = ("Loss", "_loss", "cross_entropy", "backward", "size_average", "reduce", "softmax", "sigmoid", "expit")

_SUPPRESS = re.compile(r"#\s*losskit:\s*ignore(?:\[([A-Za-z0-9_,\s]+)\])?")


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
    """All findings in ``source`` (a parse error is one ``LK000`` finding), sorted by position."""
    from losskit.lint.rules import RULES

    try:
        module = cst.parse_module(source)
        if not any(token in source for token in _RELEVANT):
            return []  # no rule can fire: skip the (slow) name resolution
    except cst.ParserSyntaxError as exc:
        return [
            Finding(
                PARSE_ERROR,
                path,
                exc.raw_line,
                exc.raw_column + 1,
                f"could not parse the file ({exc.message}); it was not checked and will not be rewritten",
            )
        ]
    ctx = Context(path, source, MetadataWrapper(module, unsafe_skip_copy=True))
    findings: list[Finding] = []
    for rule in RULES:
        if not _selected(rule.code, select, ignore):
            continue
        for f in rule.check(ctx):
            if not _suppressed(ctx, f):
                findings.append(f)
    unique = {(f.line, f.col, f.code): f for f in findings}
    return sorted(unique.values(), key=lambda f: (f.line, f.col, f.code))


class _Apply(cst.CSTTransformer):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, fixes: list[Fix]) -> None:
        super().__init__()
        self.todo = {(f.node_type, f.line, f.col): f for f in fixes}
        self.done = 0

    def on_leave(self, original_node: cst.CSTNode, updated_node: cst.CSTNode) -> cst.CSTNode:  # type: ignore[override]
        try:
            start = self.get_metadata(PositionProvider, original_node).start
        except KeyError:
            return updated_node
        fix = self.todo.pop((type(original_node), start.line, start.column), None)
        if fix is None:
            return updated_node
        self.done += 1
        return fix.replace(updated_node)


def fix_source(
    source: str,
    path: str = "<string>",
    *,
    unsafe: bool = False,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    max_passes: int = 5,
) -> tuple[str, int]:
    """Apply the (safe, or also unsafe) fixes until none is left; returns the new source and the
    number of fixes applied. A source that does not parse is returned unchanged."""
    applied = 0
    for _ in range(max_passes):
        findings = lint_source(source, path, select=select, ignore=ignore)
        fixes = [f.fix for f in findings if f.fix is not None and (unsafe or not f.fix.unsafe)]
        if not fixes:
            break
        wrapper = MetadataWrapper(cst.parse_module(source), unsafe_skip_copy=True)
        transformer = _Apply(fixes)
        new = wrapper.visit(transformer).code
        if transformer.done == 0 or new == source:
            break
        cst.parse_module(new)  # a fix must never produce code that does not parse
        applied += transformer.done
        source = new
    return source, applied
