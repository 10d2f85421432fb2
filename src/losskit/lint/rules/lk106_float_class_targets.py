"""LK106: class-index targets cast to float for a cross-entropy loss."""

from __future__ import annotations

from collections.abc import Iterable

import libcst as cst

from losskit.lint.engine import Context, Finding, Rule, dotted

#: a cast receiver named like this holds probabilities or soft labels, for which float is right
_SOFT_NAMES = ("prob", "soft", "dist", "smooth", "mix", "logit", "score", "weight", "teacher")


def _receiver(expr: cst.BaseExpression) -> cst.BaseExpression:
    while isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute):
        expr = expr.func.value
    return expr


def _to_long(node: cst.CSTNode) -> cst.CSTNode:
    assert isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute)
    return cst.Call(func=cst.Attribute(value=node.func.value, attr=cst.Name("long")))


class FloatClassTargets(Rule):
    code = "LK106"
    summary = "class-index targets cast with .float() / .double() / .to(torch.float*) for a cross-entropy loss"

    def check(self, ctx: Context) -> Iterable[Finding]:
        for lc, scope in ctx.loss_calls():
            if lc.name not in ("cross_entropy", "nll_loss") or lc.target is None:
                continue
            kinds = ctx.kinds(lc.target, scope)
            if "float_cast" not in kinds or "one_hot" in kinds or "softmax" in kinds:
                continue
            t = lc.target
            receiver = _receiver(t)
            if not isinstance(receiver, (cst.Name, cst.Attribute, cst.Subscript)):
                continue  # (x > 0.5).float(), a * b: built values, not stored class ids
            name = (dotted(receiver) or "").lower()
            if any(word in name for word in _SOFT_NAMES):
                continue
            inline = (
                isinstance(t, cst.Call)
                and isinstance(t.func, cst.Attribute)
                and t.func.attr.value in ("float", "double", "half", "bfloat16", "to", "type")
            )
            yield ctx.finding(
                self.code,
                lc.target,
                f"class-index targets cast to float for {lc.name}; class indices must be int64: use .long()",
                ctx.fix_for(t, _to_long) if inline else None,
            )
