"""LK113: hand-written ``log(softmax(x))`` / ``log(sigmoid(x))`` (numerically unstable).

The unsafe fix writes the fused form for an inline activation: ``torch.log(torch.softmax(x, 1))``
-> ``torch.log_softmax(x, 1)``, ``torch.log(torch.sigmoid(x))`` -> ``F.logsigmoid(x)``,
``torch.log(1 - torch.sigmoid(x))`` -> ``F.logsigmoid(-x)``. The same values mathematically
(``1 - sigmoid(x) == sigmoid(-x)``), but not the same numbers: where the original underflows to
``-inf`` the fused form is finite, and elsewhere they differ by rounding. So it is unsafe.
"""

from __future__ import annotations

from collections.abc import Iterable

import libcst as cst

from losskit.lint.engine import Context, Finding, Fix, Rule, dotted
from losskit.lint.flow import origin
from losskit.lint.names import SOFTMAX
from losskit.lint.rules._helpers import activation_input, rename_attr

_LOG = {"torch.log"}
_ATOMS = (cst.Name, cst.Attribute, cst.Call, cst.Subscript, cst.Integer, cst.Float)


def _one_minus(expr: cst.BaseExpression) -> cst.BaseExpression | None:
    """``x`` for ``1 - x`` / ``1. - x`` (parentheses allowed)."""
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Subtract):
        left = expr.left
        if isinstance(left, (cst.Integer, cst.Float)) and float(left.value) == 1.0:
            return expr.right
    return None


def _starts_alone(ctx: Context, call: cst.Call) -> bool:
    """No other call inside ``call`` starts where it does: a fix finds its node by type and start,
    so ``F.softmax(x, 1).log()`` (whose ``F.softmax(x, 1)`` starts there too) gets none."""
    start = ctx.pos(call)
    clash = False

    class _Calls(cst.CSTVisitor):
        def visit_Call(self, node: cst.Call) -> None:
            nonlocal clash
            clash = clash or (node is not call and ctx.pos(node) == start)

    call.visit(_Calls())
    return not clash


def _functional(ctx: Context) -> cst.BaseExpression | None:
    """How this file can name ``torch.nn.functional``: its alias (``F``), else through ``torch``."""
    for local, full in ctx.imports.items():
        if full == "torch.nn.functional":
            return cst.Name(local)
    if ctx.imports.get("torch") == "torch":
        return cst.parse_expression("torch.nn.functional")
    return None


def _negated(x: cst.BaseExpression) -> cst.BaseExpression:
    """``-x``, with parentheses around ``x`` when it needs them (``-(a + b)``)."""
    if not isinstance(x, _ATOMS) and not x.lpar:
        x = x.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
    return cst.UnaryOperation(operator=cst.Minus(), expression=x)


def _logsigmoid_fix(ctx: Context, call: cst.Call, sigmoid: cst.BaseExpression, negate: bool) -> Fix | None:
    """``F.logsigmoid(x)`` (or of ``-x``) in place of the whole log call, for an inline sigmoid."""
    x = activation_input(ctx, sigmoid)
    functional = _functional(ctx)
    if x is None or functional is None:
        return None
    arg = _negated(x) if negate else x
    new = cst.Call(func=cst.Attribute(value=functional, attr=cst.Name("logsigmoid")), args=[cst.Arg(arg)])
    return ctx.fix_for(call, lambda node: new, unsafe=True)


def _log_softmax_fix(ctx: Context, call: cst.Call, softmax: cst.BaseExpression) -> Fix | None:
    """``torch.log_softmax(x, 1)`` / ``F.log_softmax`` / ``x.log_softmax(1)`` in place of the log
    call, for an inline ``torch.softmax`` / ``F.softmax`` / ``x.softmax`` (not a module)."""
    if not (isinstance(softmax, cst.Call) and isinstance(softmax.func, cst.Attribute)):
        return None
    func = softmax.func
    if func.attr.value != "softmax":
        return None
    function = bool(ctx.names(func) & SOFTMAX)
    method = not ctx.names(func) and ctx.resolve_anywhere(f"{dotted(func)}", ctx.pos(softmax)[0]) is None
    if not (function or method):
        return None
    new = rename_attr(softmax, "log_softmax")
    return ctx.fix_for(call, lambda node: new, unsafe=True)


class LogOfSoftmax(Rule):
    code = "LK113"
    summary = "log(softmax(x)) / log(sigmoid(x)) / log(1 - sigmoid(x)) written by hand"

    def check(self, ctx: Context) -> Iterable[Finding]:
        for call, scope in ctx.calls:
            inner = None
            if ctx.names(call.func) & _LOG and call.args:
                inner = call.args[0].value
            elif isinstance(call.func, cst.Attribute) and call.func.attr.value == "log" and not call.args:
                inner = call.func.value
            if inner is None:
                continue
            fixable = len(call.args) <= 1 and _starts_alone(ctx, call)  # not torch.log(p, out=buffer)
            sigmoid = _one_minus(inner)
            if sigmoid is not None and "sigmoid" in ctx.kinds(sigmoid, scope):
                yield ctx.finding(
                    self.code,
                    call,
                    "log(1 - sigmoid(x)) underflows to -inf for large x; use F.logsigmoid(-x) "
                    "(or binary_cross_entropy_with_logits)",
                    _logsigmoid_fix(ctx, call, sigmoid, negate=True) if fixable else None,
                )
                continue
            if sigmoid is not None:
                found = origin(ctx, sigmoid, scope)
                if found is not None and found.kind == "sigmoid" and (found.function or found.via):
                    yield ctx.finding(
                        self.code,
                        call,
                        f"log(1 - p) of sigmoid output p ({found.describe(ctx)}) underflows to -inf for large "
                        "logits; use F.logsigmoid(-logits) (or binary_cross_entropy_with_logits)",
                    )
                    continue
            kinds = ctx.kinds(inner, scope)
            if not kinds & {"softmax", "sigmoid"}:
                found = origin(ctx, inner, scope)
                if found is not None and found.kind in ("softmax", "sigmoid") and (found.function or found.via):
                    use = (
                        "log_softmax on the logits (or cross_entropy)"
                        if found.kind == "softmax"
                        else ("F.logsigmoid on the logits (or binary_cross_entropy_with_logits)")
                    )
                    yield ctx.finding(
                        self.code,
                        call,
                        f"log of {found.kind} output ({found.describe(ctx)}) underflows to -inf where the "
                        f"probabilities round to 0; use {use}",
                    )
                continue
            if "softmax" in kinds:
                yield ctx.finding(
                    self.code,
                    call,
                    "log(softmax(x)) underflows to -inf for small probabilities; use log_softmax(x) (or cross_entropy on the logits)",
                    _log_softmax_fix(ctx, call, inner) if fixable else None,
                )
            elif "sigmoid" in kinds:
                yield ctx.finding(
                    self.code,
                    call,
                    "log(sigmoid(x)) underflows to -inf for negative x; use F.logsigmoid(x) (or binary_cross_entropy_with_logits)",
                    _logsigmoid_fix(ctx, call, inner, negate=False) if fixable else None,
                )
