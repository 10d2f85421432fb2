"""Small libcst helpers shared by the rules: fixes, and activation output fed to a loss."""

from __future__ import annotations

from collections.abc import Iterable

import libcst as cst

from losskit.lint.engine import Context, Finding, dotted
from losskit.lint.flow import origin
from losskit.lint.names import ACTIVATION_CLASSES, LOG_SOFTMAX, SIGMOID, SOFTMAX

_ACTIVATIONS = {"softmax", "sigmoid", "log_softmax"}


def activation_input(ctx: Context, expr: cst.BaseExpression) -> cst.BaseExpression | None:
    """For an inline ``torch.softmax(x, 1)`` / ``F.sigmoid(x)`` / ``x.softmax(1)`` /
    ``self.softmax(x)`` call, the ``x`` it is applied to; else None."""
    if not isinstance(expr, cst.Call) or not ctx.kinds(expr) & _ACTIVATIONS:
        return None
    func = expr.func
    positional = [a.value for a in expr.args if a.keyword is None and a.star == ""]
    keywords = {a.keyword.value: a.value for a in expr.args if a.keyword is not None}
    first = positional[0] if positional else keywords.get("input")
    if ctx.names(func) & (SOFTMAX | SIGMOID | LOG_SOFTMAX):
        return first  # torch.softmax(x, 1)
    key = dotted(func)
    bound = ctx.resolve_anywhere(key, ctx.pos(expr)[0]) if key else None
    if isinstance(bound, cst.Call) and ctx.names(bound.func) & set(ACTIVATION_CLASSES):
        return first  # self.softmax(x) with self.softmax = nn.Softmax(dim=1)
    if isinstance(func, cst.Attribute) and func.attr.value in _ACTIVATIONS:
        return func.value  # x.softmax(1)
    return None


def replace_arg(call: cst.Call, index: int, keyword: str, value: cst.BaseExpression) -> cst.Call:
    """``call`` with its positional argument ``index`` (or keyword ``keyword``) replaced by ``value``."""
    args = list(call.args)
    position = 0
    for i, a in enumerate(args):
        if a.keyword is None and a.star == "":
            if position == index:
                args[i] = a.with_changes(value=value)
                return call.with_changes(args=args)
            position += 1
        elif a.keyword is not None and a.keyword.value == keyword:
            args[i] = a.with_changes(value=value)
            return call.with_changes(args=args)
    return call


def rename_attr(call: cst.Call, new: str) -> cst.Call:
    assert isinstance(call.func, cst.Attribute)
    return call.with_changes(func=call.func.with_changes(attr=cst.Name(new)))


def activation_fed_to_loss(
    ctx: Context, code: str, loss_name: str, activation: str, message: str, model_message: str
) -> Iterable[Finding]:
    """Findings for ``loss_name`` calls whose input is ``activation`` output; the unsafe fix
    drops an inline activation (LK101, LK102). Output made elsewhere in the file -- a model whose
    ``forward`` ends in the activation, an element of the tuple it returns, a method's or a
    helper's result, a parameter every caller passes such output to -- is reported with
    ``model_message`` (``{source}`` says where) and no fix: changing ``forward`` changes what the
    model predicts everywhere else."""
    for lc, scope in ctx.loss_calls():
        if lc.name != loss_name or lc.input is None:
            continue
        if activation not in ctx.kinds(lc.input, scope):
            found = origin(ctx, lc.input, scope)
            if found is not None and found.kind == activation and (found.function or found.via):
                yield ctx.finding(code, lc.input, model_message.format(source=found.describe(ctx)))
            continue
        inner = activation_input(ctx, lc.input)
        fix = None
        if inner is not None:

            def unwrap(node: cst.CSTNode, inner: cst.BaseExpression = inner) -> cst.CSTNode:
                return inner

            fix = ctx.fix_for(lc.input, unwrap, unsafe=True)
        yield ctx.finding(code, lc.input, message, fix)
