"""LK103: BCELoss / binary_cross_entropy on a sigmoid it could fuse (numerically unstable)."""

from __future__ import annotations

from collections.abc import Iterable

import libcst as cst

from losskit.lint.engine import Context, Finding, Rule, dotted
from losskit.lint.rules._helpers import activation_input, rename_attr, replace_arg


class BCEOnSigmoid(Rule):
    code = "LK103"
    summary = "binary_cross_entropy applied to sigmoid(...): use the _with_logits form"

    def check(self, ctx: Context) -> Iterable[Finding]:
        for lc, scope in ctx.loss_calls():
            if lc.name != "binary_cross_entropy" or lc.input is None:
                continue
            if "sigmoid" not in ctx.kinds(lc.input, scope):
                continue
            fix = None
            logits = activation_input(ctx, lc.input)
            name = dotted(lc.input)
            if logits is None and name is not None:  # p = torch.sigmoid(z) ... bce(p, y)
                line = ctx.pos(lc.call)[0]
                value = ctx.resolve(name, scope, line)
                candidate = activation_input(ctx, value) if value is not None else None
                logits = candidate if isinstance(candidate, cst.Name) else None
                if value is not None and logits is not None:
                    # the fix reads z where p was used: only if z still holds what p was made from
                    # (not rebound, changed in place, or a loop variable since), and p was
                    # assigned once
                    since = ctx.pos(value)[0]
                    if ctx.rebound_between(logits.value, since, line) or ctx.rebound_between(name, since, line):
                        logits = None
            functional = isinstance(lc.call.func, cst.Attribute) and lc.call.func.attr.value == "binary_cross_entropy"
            if logits is not None and functional:

                def replace(call: cst.CSTNode, logits: cst.BaseExpression = logits) -> cst.CSTNode:
                    assert isinstance(call, cst.Call)
                    return replace_arg(rename_attr(call, "binary_cross_entropy_with_logits"), 0, "input", logits)

                fix = ctx.fix_for(lc.call, replace)
            yield ctx.finding(
                self.code,
                lc.call,
                "binary_cross_entropy on sigmoid output is numerically unstable (log(0) is clamped at -100); "
                "use binary_cross_entropy_with_logits (BCEWithLogitsLoss) on the pre-sigmoid logits",
                fix,
            )
