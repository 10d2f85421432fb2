"""Small libcst helpers shared by the rules: fixes, and the activation at the end of a model's
``forward``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import libcst as cst

from losskit.lint.engine import Context, Finding, dotted
from losskit.lint.names import ACTIVATION_CLASSES, LOG_SOFTMAX, SIGMOID, SOFTMAX, TRANSPARENT

_ACTIVATIONS = {"softmax", "sigmoid", "log_softmax"}


@dataclass(frozen=True)
class ForwardActivation:
    """A model class of this file whose ``forward`` returns ``kind`` output on every path."""

    cls: str  # the class that defines forward
    kind: str  # "softmax", "sigmoid" or "log_softmax"
    line: int  # the line of its last return

    def where(self, ctx: Context) -> str:
        """``Net.forward (line 14)``; in a notebook (whose lines are the joined cells') no line."""
        return f"{self.cls}.forward" + ("" if ctx.path.endswith(".ipynb") else f" (line {self.line})")


class _ForwardBody(cst.CSTVisitor):
    """The returns of a ``forward`` and the line ranges of its conditional blocks (``if`` /
    ``for`` / ``while`` / ``try`` bodies; not ``with``), outside nested functions and classes."""

    def __init__(self, ctx: Context, root: cst.BaseSuite) -> None:
        self.ctx = ctx
        self.returns: list[cst.Return] = []
        self.blocks: list[tuple[int, int]] = []
        self.skip = {id(root)}
        self.generator = False

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return False

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        return False

    def visit_Lambda(self, node: cst.Lambda) -> bool:
        return False

    def visit_With(self, node: cst.With) -> None:
        self.skip.add(id(node.body))

    def _block(self, node: cst.BaseSuite) -> None:
        if id(node) not in self.skip:
            r = self.ctx.positions[node]
            self.blocks.append((r.start.line, r.end.line))

    def visit_IndentedBlock(self, node: cst.IndentedBlock) -> None:
        self._block(node)

    def visit_SimpleStatementSuite(self, node: cst.SimpleStatementSuite) -> None:
        self._block(node)

    def visit_Return(self, node: cst.Return) -> None:
        self.returns.append(node)

    def visit_Yield(self, node: cst.Yield) -> None:
        self.generator = True


def _peel(expr: cst.BaseExpression) -> cst.BaseExpression:
    """``x`` for ``x.view(n, -1).float()``: casts and reshapes keep what a value is."""
    while isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute) and expr.func.attr.value in TRANSPARENT:
        expr = expr.func.value
    return expr


def _returned_activation(ctx: Context, forward: cst.FunctionDef, ret: cst.Return, body: _ForwardBody) -> str | None:
    """The activation ``ret`` returns, following the names of ``forward`` back only through
    unconditional assignments that nothing rebinds before the return; None when unsure."""
    expr, line = ret.value, ctx.pos(ret)[0]
    for _ in range(8):
        if expr is None:
            return None
        expr = _peel(expr)
        if not isinstance(expr, cst.Name):
            break
        name = expr.value
        earlier = [(ln, v) for ln, v in ctx.assignments.get((forward, name), []) if ln < line]
        if not earlier:
            return None  # a parameter, or bound in a way not followed (x, h = self.rnn(x))
        ln, value = earlier[-1]
        if ctx.rebound_between(name, ln, line) or any(a <= ln <= b and not a <= line <= b for a, b in body.blocks):
            return None  # rebound later, or assigned only on some paths (if not self.training: ...)
        expr, line = value, ln
    kinds = ctx.kinds(expr, forward, line) & _ACTIVATIONS
    key = dotted(expr.func) if isinstance(expr, cst.Call) else None
    if key is not None and key.startswith("self.") and len(ctx.self_values(key, line)) > 1:
        return None  # self.head = nn.Identity(); if probs: self.head = nn.Softmax(1) -- which one?
    return next(iter(kinds)) if len(kinds) == 1 else None


def forward_activation(ctx: Context, cls: cst.ClassDef) -> ForwardActivation | None:
    """The activation every ``return`` of ``cls.forward`` (or an inherited one of this file)
    applies last, or None: a forward with a return that is not activated (``if self.training:
    return logits``), a tuple, a generator, or anything not followed is never reported."""
    for c in ctx.class_and_bases(cls):
        forward = next((s for s in c.body.body if isinstance(s, cst.FunctionDef) and s.name.value == "forward"), None)
        if forward is not None:
            break
    else:
        return None
    body = _ForwardBody(ctx, forward.body)
    forward.body.visit(body)
    if not body.returns or body.generator:
        return None
    kinds = {_returned_activation(ctx, forward, ret, body) for ret in body.returns}
    kind = kinds.pop() if len(kinds) == 1 else None  # every return, the same activation
    return ForwardActivation(c.name.value, kind, ctx.pos(body.returns[-1])[0]) if kind else None


def model_output(ctx: Context, expr: cst.BaseExpression, scope: cst.CSTNode | None) -> ForwardActivation | None:
    """When ``expr`` is the output of a model whose class is defined in this file
    (``out = model(x)`` with ``model = Net().to(device)``, ``nn.DataParallel(Net())``,
    ``self.model = Net()``; ``model.forward(x)``; ``self(x)`` in the model's own methods, as in a
    Lightning ``training_step``), the activation that class's ``forward`` ends in."""
    line = ctx.pos(expr)[0]
    for _ in range(8):
        expr = _peel(expr)
        if isinstance(expr, cst.Call):
            func = expr.func
            if isinstance(func, cst.Attribute) and func.attr.value == "forward":
                func = func.value  # model.forward(x)
            if isinstance(func, cst.Name) and func.value == "self":
                cls = ctx.class_at(line)
                return forward_activation(ctx, cls) if cls is not None else None
            if isinstance(func, cst.Call):  # Net()(x)
                bound = ctx.module_behind(func)
            else:
                key = dotted(func)
                if key is None:
                    return None
                value = ctx.resolve(key, scope, line) or ctx.resolve_anywhere(key, line)
                bound = ctx.module_behind(value)
            cls = ctx.local_class(bound) if isinstance(bound, cst.Call) else None
            return forward_activation(ctx, cls) if cls is not None else None
        key = dotted(expr)
        value = ctx.resolve(key, scope, line) if key is not None else None
        if value is None or value is expr:
            return None
        expr, line = value, ctx.pos(value)[0]
    return None


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
    drops an inline activation (LK101, LK102). The output of a model whose ``forward`` ends in
    the activation is reported with ``model_message`` (``{forward}`` names it) and no fix:
    changing ``forward`` changes what the model predicts everywhere else."""
    for lc, scope in ctx.loss_calls():
        if lc.name != loss_name or lc.input is None:
            continue
        if activation not in ctx.kinds(lc.input, scope):
            model = model_output(ctx, lc.input, scope)
            if model is not None and model.kind == activation:
                yield ctx.finding(code, lc.input, model_message.format(forward=model.where(ctx)))
            continue
        inner = activation_input(ctx, lc.input)
        fix = None
        if inner is not None:

            def unwrap(node: cst.CSTNode, inner: cst.BaseExpression = inner) -> cst.CSTNode:
                return inner

            fix = ctx.fix_for(lc.input, unwrap, unsafe=True)
        yield ctx.finding(code, lc.input, message, fix)
