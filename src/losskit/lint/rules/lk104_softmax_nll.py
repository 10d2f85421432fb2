"""LK104: softmax output passed to NLLLoss / nll_loss, which needs log-probabilities."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import libcst as cst

from losskit.lint.engine import Context, Finding, Rule, dotted
from losskit.lint.flow import origin
from losskit.lint.rules._helpers import rename_attr


class SoftmaxBeforeNLL(Rule):
    """Also the output of a model of this file whose ``forward`` ends in softmax (no fix)."""

    code = "LK104"
    summary = "softmax output passed to NLLLoss / nll_loss (needs log_softmax)"

    def check(self, ctx: Context) -> Iterable[Finding]:
        for lc, scope in ctx.loss_calls():
            if lc.name != "nll_loss" or lc.input is None:
                continue
            if "softmax" not in ctx.kinds(lc.input, scope):
                found = origin(ctx, lc.input, scope)
                if found is not None and found.kind == "softmax" and (found.function or found.via):
                    yield ctx.finding(
                        self.code,
                        lc.input,
                        f"{found.describe(ctx)}, so the model's output passed to nll_loss here is "
                        "probabilities, but nll_loss expects log-probabilities; end forward in log_softmax, or "
                        "return the logits and use cross_entropy",
                    )
            else:
                fix = None
                expr = lc.input
                if (
                    isinstance(expr, cst.Call)
                    and isinstance(expr.func, cst.Attribute)
                    and expr.func.attr.value == "softmax"
                    and ctx.resolve_anywhere(f"{dotted(expr.func)}", ctx.pos(expr)[0]) is None
                ):
                    fix = ctx.fix_for(expr, lambda node: rename_attr(cast(cst.Call, node), "log_softmax"), unsafe=True)
                yield ctx.finding(
                    self.code,
                    lc.input,
                    "softmax output passed to nll_loss, which expects log-probabilities; use log_softmax "
                    "(or cross_entropy on the logits)",
                    fix,
                )
