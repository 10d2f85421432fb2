"""LK101: softmax output passed to cross-entropy, which applies log_softmax itself."""

from __future__ import annotations

from collections.abc import Iterable

from losskit.lint.engine import Context, Finding, Rule
from losskit.lint.rules._helpers import activation_input


class SoftmaxBeforeCrossEntropy(Rule):
    code = "LK101"
    summary = "softmax output passed to CrossEntropyLoss / cross_entropy"

    def check(self, ctx: Context) -> Iterable[Finding]:
        for lc, scope in ctx.loss_calls():
            if lc.name != "cross_entropy" or lc.input is None:
                continue
            if "softmax" in ctx.kinds(lc.input, scope):
                inner = activation_input(ctx, lc.input)
                fix = ctx.fix_for(lc.input, lambda node, inner=inner: inner, unsafe=True) if inner is not None else None
                yield ctx.finding(
                    self.code, lc.input,
                    "softmax output passed to cross-entropy, which applies log_softmax itself (a double softmax: "
                    "small gradients, slow training); pass the raw logits and keep softmax for predictions",
                    fix,
                )
