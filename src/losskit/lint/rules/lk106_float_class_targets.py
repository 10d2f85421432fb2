"""LK106: class-index targets cast to float for a cross-entropy loss."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import cast

import libcst as cst

from losskit.lint.engine import Context, Finding, Rule, dotted
from losskit.lint.names import FLOAT_DTYPES

_CASTS = ("float", "double", "half", "bfloat16")

#: a cast receiver named like this holds probabilities or soft labels, for which float is right
_SOFT_NAMES = ("prob", "soft", "dist", "smooth", "mix", "logit", "score", "weight", "teacher")


def _receiver(expr: cst.BaseExpression) -> cst.BaseExpression:
    while isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute):
        expr = expr.func.value
    return expr


def _float_cast(ctx: Context, expr: cst.BaseExpression) -> cst.Call | None:
    """The call in the chain ``y.float().to(device)`` that makes the value float, if there is one."""
    while isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute):
        attr = expr.func.attr.value
        if attr in _CASTS or (attr in ("to", "type") and _dtype_arg(ctx, expr) is not None):
            return expr
        expr = expr.func.value
    return None


def _dtype_arg(ctx: Context, call: cst.Call) -> cst.Arg | None:
    """The argument of ``.to(...)`` / ``.type(...)`` that names a float dtype or tensor type."""
    for arg in call.args:
        if arg.keyword is None or arg.keyword.value == "dtype":
            if ctx.names(arg.value) & FLOAT_DTYPES:
                return arg
            if isinstance(arg.value, cst.Attribute) and arg.value.attr.value in ("FloatTensor", "DoubleTensor"):
                return arg
    return None


def _long(dtype: cst.BaseExpression) -> cst.BaseExpression:
    """``torch.float32`` -> ``torch.long``, ``th.cuda.FloatTensor`` -> ``th.cuda.LongTensor``:
    the same module path, so the device part of a tensor type is kept."""
    assert isinstance(dtype, cst.Attribute)
    tensor_type = dtype.attr.value.endswith("Tensor")
    return dtype.with_changes(attr=cst.Name("LongTensor" if tensor_type else "long"))


def _fix(ctx: Context, cast_call: cst.Call) -> Callable[[cst.CSTNode], cst.CSTNode]:
    """Change only the dtype: ``.float()`` -> ``.long()``; ``.to(device, torch.float32)`` ->
    ``.to(device, torch.long)`` (device, ``non_blocking`` and ``copy`` kept); a lone
    ``.to(torch.float32)`` -> ``.long()``."""
    dtype = _dtype_arg(ctx, cast_call)
    lone = (
        dtype is not None
        and len(cast_call.args) == 1
        and not cast(cst.Attribute, dtype.value).attr.value.endswith("Tensor")
    )

    def replace(node: cst.CSTNode) -> cst.CSTNode:
        assert isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute)
        if dtype is None or lone:
            return cst.Call(func=node.func.with_changes(attr=cst.Name("long")))
        args = [a.with_changes(value=_long(a.value)) if a.deep_equals(dtype) else a for a in node.args]
        return node.with_changes(args=args)

    return replace


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
            cast_call = _float_cast(ctx, t)
            fix = None
            cast_call = _float_cast(ctx, t)
            if cast_call is not None:
                dtype = _dtype_arg(ctx, cast_call)
                if dtype is None or isinstance(dtype.value, cst.Attribute):  # torch.float32, not float32
                    fix = ctx.fix_for(cast_call, _fix(ctx, cast_call))
            yield ctx.finding(
                self.code,
                lc.target,
                f"class-index targets cast to float for {lc.name}; class indices must be int64: use .long()",
                fix,
            )
