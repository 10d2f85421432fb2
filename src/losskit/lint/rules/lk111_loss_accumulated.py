"""LK111: a loss tensor accumulated for logging after backward, without ``.detach()`` / ``.item()``.

The rule fires only when all of these hold, so that a term which is *meant* to carry gradients
(``style_loss += mse_loss(...)`` in a neural-style loss) is never touched:

* ``total += v`` (or ``total += v * n``) inside a loop, ``total`` a plain name started from a
  number (``total = 0.0``, also ``total, acc = 0, 0``);
* ``v``'s graph was already used in that loop: ``v.backward()``, ``(v / k).backward()``,
  ``scaler.scale(v).backward()``, ``accelerator.backward(v)``;
* ``total`` never flows (directly or through assignments) into a ``backward``, a
  ``scaler.scale(...)`` or a loss call; and the addition is not under ``torch.no_grad()`` /
  ``torch.inference_mode()``. A ``return`` of the total (``return total_loss / len(loader)``) is
  no exemption once ``backward()`` ran on the term in the loop: its graph is freed, so the total
  can only be for logging -- unless that ``backward(retain_graph=True)`` kept it for the caller.

The fix appends ``.detach()``: the totals keep their values and types (tensors stay tensors, so a
later ``total.item()`` still works); only the graph they held on to is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable

import libcst as cst

from losskit.lint.engine import Context, Finding, Rule, dotted

_NO_GRAD = ("no_grad", "inference_mode")


def _names(node: cst.CSTNode | None) -> set[str]:
    """The plain names read in ``node``."""
    found: set[str] = set()

    class _V(cst.CSTVisitor):
        def visit_Name(self, n: cst.Name) -> None:
            found.add(n.value)

    if node is not None:
        node.visit(_V())
    return found


class _Flow(cst.CSTVisitor):
    """Within one function (or the module): where names flow (not into nested functions)."""

    def __init__(self, ctx: Context, root: cst.CSTNode) -> None:
        self.ctx = ctx
        self.root = root
        #: (line, names in receiver and arguments, retain_graph=True)
        self.backward: list[tuple[int, set[str], bool]] = []
        self.sinks: set[str] = set()  # names that feed backward / scale / a loss
        self.returned: set[str] = set()  # names in a return
        self.assigns: list[tuple[set[str], set[str]]] = []  # (targets, names in value)
        self.no_grad: list[tuple[int, int]] = []

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        if node is self.root:
            for d in node.decorators:  # @torch.no_grad()
                if any(w in (dotted(d.decorator) or _call_name(d.decorator)) for w in _NO_GRAD):
                    r = self.ctx.positions[node]
                    self.no_grad.append((r.start.line, r.end.line))
            return True
        return False

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        return node is self.root

    def visit_With(self, node: cst.With) -> None:
        if any(any(w in _call_name(item.item) for w in _NO_GRAD) for item in node.items):
            r = self.ctx.positions[node]
            self.no_grad.append((r.start.line, r.end.line))

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        name = _call_name(node)
        last = name.rsplit(".", 1)[-1]
        args = set().union(*(_names(a.value) for a in node.args)) if node.args else set()
        if last == "backward":
            used = args | (_names(func.value) if isinstance(func, cst.Attribute) else set())
            retain = any(
                a.keyword is not None and a.keyword.value == "retain_graph" and not _is_false(a.value)
                for a in node.args
            )
            self.backward.append((self.ctx.pos(node)[0], used, retain))
            self.sinks |= used
        elif last == "scale" or self.ctx.loss_call(node) is not None:
            self.sinks |= args

    def visit_Return(self, node: cst.Return) -> None:
        self.returned |= _names(node.value)

    def visit_Assign(self, node: cst.Assign) -> None:
        targets = set().union(*(_names(t.target) for t in node.targets))
        self.assigns.append((targets, _names(node.value)))

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self.assigns.append((_names(node.target), _names(node.value)))


def _call_name(expr: cst.BaseExpression) -> str:
    func = expr.func if isinstance(expr, cst.Call) else expr
    parts: list[str] = []
    while isinstance(func, cst.Attribute):
        parts.append(func.attr.value)
        func = func.value
    if isinstance(func, cst.Name):
        parts.append(func.value)
    return ".".join(reversed(parts))


def _is_false(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Name) and node.value in ("False", "None")


def _sinks(flow: _Flow, start: set[str]) -> set[str]:
    """Names that reach one of ``start``, following assignments backwards to a fixed point."""
    sinks = set(start)
    changed = True
    while changed:
        changed = False
        for targets, values in flow.assigns:
            if targets & sinks and not values <= sinks:
                sinks |= values
                changed = True
    return sinks


def _detach(name: str) -> cst.Call:
    return cst.Call(func=cst.Attribute(value=cst.Name(name), attr=cst.Name("detach")))


def _accumulated(value: cst.BaseExpression) -> str | None:
    """``v`` for ``total += v`` / ``v * n`` / ``n * v`` / ``v / n``."""
    if isinstance(value, cst.Name):
        return value.value
    if isinstance(value, cst.BinaryOperation):
        if isinstance(value.left, cst.Name):
            return value.left.value
        if isinstance(value.right, cst.Name) and isinstance(value.operator, cst.Multiply):
            return value.right.value
    return None


def _add_detach(node: cst.CSTNode) -> cst.CSTNode:
    assert isinstance(node, cst.AugAssign)
    value = node.value
    if isinstance(value, cst.Name):
        return node.with_changes(value=_detach(value.value))
    assert isinstance(value, cst.BinaryOperation)
    if isinstance(value.left, cst.Name):
        return node.with_changes(value=value.with_changes(left=_detach(value.left.value)))
    assert isinstance(value.right, cst.Name)
    return node.with_changes(value=value.with_changes(right=_detach(value.right.value)))


class LossAccumulated(Rule):
    code = "LK111"
    summary = "loss tensor accumulated for logging after backward, without .detach() / .item()"

    def check(self, ctx: Context) -> Iterable[Finding]:
        flows: dict[int, tuple[_Flow, set[str], set[str]]] = {}
        for node, scope in ctx.aug_assigns:
            if not isinstance(node.operator, cst.AddAssign) or not isinstance(node.target, cst.Name):
                continue
            v = _accumulated(node.value)
            total = node.target.value
            if v is None or v == total:
                continue
            line = ctx.pos(node)[0]
            loops = [ctx.positions[lp] for lp, s in ctx.loops if s is scope]
            loops = [r for r in loops if r.start.line <= line <= r.end.line]
            if not loops or not isinstance(ctx.resolve(total, scope, line), (cst.Integer, cst.Float)):
                continue  # only running totals, started from a number, inside a loop
            if id(scope) not in flows:
                root = scope if scope is not None else ctx.module
                flow = _Flow(ctx, root)
                root.visit(flow)
                flows[id(scope)] = (flow, _sinks(flow, flow.sinks), _sinks(flow, flow.returned))
            flow, sinks, returned = flows[id(scope)]
            if total in sinks or any(a <= line <= b for a, b in flow.no_grad):
                continue  # the total is a loss term (it feeds backward, a loss, ...) or has no graph
            backward = [
                retain
                for bl, names, retain in flow.backward
                if v in names and any(r.start.line <= bl <= r.end.line for r in loops)
            ]
            if not backward:
                continue  # v's graph was not used for backward in this loop: maybe a term of a loss
            if total in returned and any(backward):
                continue  # backward(retain_graph=True) kept the graph: the caller may backpropagate the total
            yield ctx.finding(
                self.code,
                node,
                f"loss tensor {v!r} added to the running total {total!r} after backward keeps every step's "
                f"autograd graph alive (memory grows each step); add {v}.detach() (or {v}.item())",
                ctx.fix_for(node, _add_detach),
            )
