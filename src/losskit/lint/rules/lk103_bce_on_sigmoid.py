"""LK103: BCELoss / binary_cross_entropy on a sigmoid it could fuse (numerically unstable): inline,
or at the end of a model's ``forward`` or another function of the file (report only)."""

from __future__ import annotations

from collections.abc import Iterable

import libcst as cst

from losskit.lint.engine import Context, Finding, Rule, dotted
from losskit.lint.flow import origin
from losskit.lint.rules._helpers import activation_input, rename_attr, replace_arg

#: sigmoid output made elsewhere in the file (a model's forward, a method, a helper): no fix,
#: since changing forward changes what the model predicts everywhere else
_MODEL = (
    "{source}, so binary_cross_entropy here gets probabilities: it is numerically unstable (log(0) is clamped "
    "at -100, and the gradient vanishes where the sigmoid saturates); return the logits from forward, use "
    "binary_cross_entropy_with_logits (BCEWithLogitsLoss) on them, and apply sigmoid only for predictions"
)


class BCEOnSigmoid(Rule):
    """Also the output of a model of this file whose ``forward`` ends in sigmoid, an element of
    the tuple it returns (a VAE's reconstruction from ``decode``), or a parameter its callers
    pass such output to (no fix)."""

    code = "LK103"
    summary = "binary_cross_entropy applied to sigmoid(...): use the _with_logits form"

    def check(self, ctx: Context) -> Iterable[Finding]:
        for lc, scope in ctx.loss_calls():
            if lc.name != "binary_cross_entropy" or lc.input is None:
                continue
            if "sigmoid" not in ctx.kinds(lc.input, scope):
                found = origin(ctx, lc.input, scope)
                if found is not None and found.kind == "sigmoid" and (found.function or found.via):
                    yield ctx.finding(self.code, lc.call, _MODEL.format(source=found.describe(ctx)))
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
