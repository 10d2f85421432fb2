"""LK113: hand-written ``log(softmax(x))`` / ``log(sigmoid(x))`` (numerically unstable)."""

from __future__ import annotations

from collections.abc import Iterable

import libcst as cst

from losskit.lint.engine import Context, Finding, Rule

_LOG = {"torch.log"}


class LogOfSoftmax(Rule):
    code = "LK113"
    summary = "log(softmax(x)) / log(sigmoid(x)) written by hand"

    def check(self, ctx: Context) -> Iterable[Finding]:
        for call, scope in ctx.calls:
            inner = None
            if ctx.names(call.func) & _LOG and call.args:
                inner = call.args[0].value
            elif isinstance(call.func, cst.Attribute) and call.func.attr.value == "log" and not call.args:
                inner = call.func.value
            if inner is None:
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
