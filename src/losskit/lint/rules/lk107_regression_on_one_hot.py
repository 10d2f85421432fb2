"""LK107: a regression loss fed one-hot class targets.

One-hot targets are recognised in every form a beginner writes them:

* ``F.one_hot(y, C)``, ``torch.eye(C)[y]``, ``np.eye(C)[y]`` (also through ``torch.from_numpy``,
  ``.float()``, ``.to(device)``, and names);
* ``torch.zeros(n, C).scatter_(1, y.unsqueeze(1), 1)`` (``zeros_like``, ``new_zeros``, ``scatter``);
* built in place: ``t = torch.zeros(n, C)`` (or any tensor then ``t.zero_()``) and then, before
  the loss and in the same function, ``t.scatter_(1, idx, 1)`` or ``t[range(n), y] = 1``
  (``torch.arange(n)`` too; any index when the name says ``onehot`` / ``one_hot``).

Also targets made by a helper function or method of the file (its every ``return``), yielded by
a generator of the file (``for x, y in self.batches()``), or by a function of another file whose
name says so (``to_onehot``, ``to_categorical``).

A box or keypoint mask (``mask[y0:y1, x0:x1] = 1``, ``heatmap[cy, cx] = 1``) is not a one-hot
target and is not reported. No fix: cross-entropy on class indices changes what is optimised.
"""

from __future__ import annotations

from collections.abc import Iterable

import libcst as cst

from losskit.lint.engine import Context, Finding, Rule
from losskit.lint.flow import origin
from losskit.lint.names import TO_TENSOR, TRANSPARENT, is_one, scatters_one

_RANGES = {"range", "arange"}


def _peel(ctx: Context, expr: cst.BaseExpression) -> cst.BaseExpression:
    """``t`` for ``t.float().to(device)`` / ``torch.tensor(t, dtype=...)``."""
    while isinstance(expr, cst.Call):
        if isinstance(expr.func, cst.Attribute) and expr.func.attr.value in TRANSPARENT:
            expr = expr.func.value
        elif ctx.names(expr.func) & TO_TENSOR and expr.args:
            expr = expr.args[0].value
        else:
            break
    return expr


def _one_hot_rows(name: str, index: cst.SubscriptElement | None, elements: int) -> bool:
    """``t[range(n), y]`` / ``t[torch.arange(n), y]``, or any index of a name that says one-hot."""
    if "onehot" in name.lower().replace("_", ""):
        return True
    if elements != 2 or index is None or not isinstance(index.slice, cst.Index):
        return False
    first = index.slice.value
    if not isinstance(first, cst.Call):
        return False
    func = first.func
    last = func.attr.value if isinstance(func, cst.Attribute) else func.value if isinstance(func, cst.Name) else ""
    return last in _RANGES


class _Writes(cst.CSTVisitor):
    """In one function (or the module, outside functions and classes): the lines where ``name``
    gets ones written into it (``name[rows, y] = 1``, ``name.scatter_(d, idx, 1)``) and where it
    is zeroed (``name.zero_()``, ``name.fill_(0)``)."""

    def __init__(self, ctx: Context, root: cst.CSTNode, name: str) -> None:
        self.ctx = ctx
        self.root = root
        self.name = name
        self.ones: list[int] = []
        self.zeroed: list[int] = []

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return node is self.root

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        return False

    def visit_Assign(self, node: cst.Assign) -> None:
        if not is_one(node.value):
            return
        for t in node.targets:
            target = t.target
            # name[i][y[i]] = 1: the outer subscript of the inner one
            while isinstance(target, cst.Subscript) and isinstance(target.value, cst.Subscript):
                target = target.value
            if (
                isinstance(target, cst.Subscript)
                and isinstance(target.value, cst.Name)
                and target.value.value == self.name
                and _one_hot_rows(self.name, target.slice[0], len(target.slice))
            ):
                self.ones.append(self.ctx.pos(node)[0])

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if not (isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == self.name):
            return
        attr = func.attr.value
        positional = [a.value for a in node.args if a.keyword is None and a.star == ""]
        if attr == "scatter_" and scatters_one(node):
            self.ones.append(self.ctx.pos(node)[0])
        elif attr == "zero_" or (
            attr == "fill_"
            and positional
            and isinstance(positional[0], (cst.Integer, cst.Float))
            and float(positional[0].value) == 0.0
        ):
            self.zeroed.append(self.ctx.pos(node)[0])


def built_in_place(ctx: Context, expr: cst.BaseExpression, scope: cst.CSTNode | None) -> bool:
    """``expr`` (through casts, moves and names) is a tensor of zeros into which ones were
    written in place, before ``expr``'s line and in the same scope."""
    line = ctx.pos(expr)[0]
    for _ in range(6):
        expr = _peel(ctx, expr)
        if not isinstance(expr, cst.Name):
            return False
        value = ctx.resolve(expr.value, scope, line)
        if value is None:
            return False
        made = ctx.pos(value)[0]
        writes = _Writes(ctx, scope if scope is not None else ctx.module, expr.value)
        (scope if scope is not None else ctx.module).visit(writes)
        ones = [ln for ln in writes.ones if made < ln < line]
        if ones and ("zeros" in ctx.kinds(value, scope, made) or any(made < ln <= ones[0] for ln in writes.zeroed)):
            return True
        expr, line = value, made
    return False


class RegressionOnOneHot(Rule):
    code = "LK107"
    summary = "MSELoss / L1Loss / mse_loss / l1_loss fed one-hot class targets"

    def check(self, ctx: Context) -> Iterable[Finding]:
        for lc, scope in ctx.loss_calls():
            if lc.name not in ("mse_loss", "l1_loss") or lc.target is None:
                continue
            found = None
            if not ("one_hot" in ctx.kinds(lc.target, scope) or built_in_place(ctx, lc.target, scope)):
                found = origin(ctx, lc.target, scope)
                if found is None or found.kind != "one_hot":
                    continue
            where = f" ({found.describe(ctx)})" if found is not None and (found.function or found.via) else ""
            yield ctx.finding(
                self.code,
                lc.target,
                f"{lc.name} on one-hot class targets{where} treats classification as regression (slow, uncalibrated); "
                "use cross_entropy on the logits with the class indices (binary_cross_entropy_with_logits for "
                "multi-label 0/1 targets)",
            )
