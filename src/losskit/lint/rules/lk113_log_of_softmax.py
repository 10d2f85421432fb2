"""LK113: hand-written ``log(softmax(x))`` / ``log(sigmoid(x))`` (numerically unstable)."""

from __future__ import annotations

from collections.abc import Iterable

import libcst as cst

from losskit.lint.engine import Context, Finding, Rule

_LOG = {"torch.log"}


def _one_minus(expr: cst.BaseExpression) -> cst.BaseExpression | None:
    """``x`` for ``1 - x`` / ``1. - x`` (parentheses allowed)."""
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Subtract):
        left = expr.left
        if isinstance(left, (cst.Integer, cst.Float)) and float(left.value) == 1.0:
            return expr.right
    return None


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
            if _one_minus(inner) is not None and "sigmoid" in ctx.kinds(_one_minus(inner), scope):
                yield ctx.finding(
                    self.code,
                    call,
                    "log(1 - sigmoid(x)) underflows to -inf for large x; use F.logsigmoid(-x) "
                    "(or binary_cross_entropy_with_logits)",
                )
                continue
            kinds = ctx.kinds(inner, scope)
            if "softmax" in kinds:
                yield ctx.finding(
                    self.code,
                    call,
                    "log(softmax(x)) underflows to -inf for small probabilities; use log_softmax(x) (or cross_entropy on the logits)",
                )
            elif "sigmoid" in kinds:
                yield ctx.finding(
                    self.code,
                    call,
                    "log(sigmoid(x)) underflows to -inf for negative x; use F.logsigmoid(x) (or binary_cross_entropy_with_logits)",
                )
