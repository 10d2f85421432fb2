"""LK102: sigmoid output passed to a *_with_logits loss, which applies the sigmoid itself."""

from __future__ import annotations

from collections.abc import Iterable

from losskit.lint.engine import Context, Finding, Rule
from losskit.lint.rules._helpers import activation_input


class SigmoidBeforeBCEWithLogits(Rule):
    code = "LK102"
    summary = "sigmoid output passed to BCEWithLogitsLoss / binary_cross_entropy_with_logits"

    def check(self, ctx: Context) -> Iterable[Finding]:
        for lc, scope in ctx.loss_calls():
            if lc.name != "binary_cross_entropy_with_logits" or lc.input is None:
                continue
            if "sigmoid" in ctx.kinds(lc.input, scope):
                inner = activation_input(ctx, lc.input)
                fix = ctx.fix_for(lc.input, lambda node, inner=inner: inner, unsafe=True) if inner is not None else None
                yield ctx.finding(
                    self.code, lc.input,
                    "sigmoid output passed to binary_cross_entropy_with_logits, which applies the sigmoid itself; "
                    "pass the raw logits",
                    fix,
                )
