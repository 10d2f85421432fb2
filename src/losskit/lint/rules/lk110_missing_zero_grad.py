"""LK110: ``loss.backward()`` in a loop that steps a torch optimizer but never zeroes the gradients.

Precise on purpose: the rule fires only in a file that imports torch (and no other framework:
MXNet's ``trainer.step``, JAX, TensorFlow, Paddle are never reported), only when the stepped
object is a torch optimizer in evidence (``opt = torch.optim.Adam(...)`` in the file, or a name
like ``optimizer`` in a file that builds one), and it counts as zeroing: ``zero_grad()`` on
anything, ``p.grad.zero_()``, ``p.grad = None``, and a call to a function or method of the same
file that does one of these. An optimizer created inside the loop, distributed autograd
(``dist_autograd.backward`` / ``DistributedOptimizer``, whose gradients live per context) and a
``backward`` in a nested function (an LBFGS closure) are not findings.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import libcst as cst

from losskit.lint.engine import Context, Finding, Rule, dotted

_OTHER_FRAMEWORKS = {"mxnet", "jax", "flax", "tensorflow", "keras", "paddle", "mindspore", "oneflow", "chainer"}
_DIST_AUTOGRAD = "torch.distributed.autograd.backward"
_DIST_OPTIMIZER = "torch.distributed.optim"


def _zeroes(node: cst.CSTNode) -> bool:
    """``x.zero_grad(...)``, ``p.grad.zero_()`` / ``p.grad.data.zero_()``, ``p.grad = None``."""
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
        attr = node.func.attr.value
        if attr == "zero_grad":
            return True
        if attr in ("zero_", "detach_", "fill_"):
            receiver = node.func.value
            while isinstance(receiver, cst.Attribute):
                if receiver.attr.value == "grad":
                    return True
                receiver = receiver.value
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value == "zero_grad":
        return True
    if isinstance(node, cst.Assign):
        return any(isinstance(t.target, cst.Attribute) and t.target.attr.value == "grad" for t in node.targets)
    return False


def _last(func: cst.BaseExpression) -> str:
    return func.attr.value if isinstance(func, cst.Attribute) else func.value if isinstance(func, cst.Name) else ""


def _callee(call: cst.Call) -> str | None:
    """``helper`` for ``helper(...)`` and ``self.helper(...)``: a function of this file, maybe."""
    if isinstance(call.func, cst.Name):
        return call.func.value
    if isinstance(call.func, cst.Attribute) and isinstance(call.func.value, cst.Name):
        return call.func.attr.value if call.func.value.value in ("self", "cls") else None
    return None


class _Body(cst.CSTVisitor):
    """What a block does (not inside nested functions or classes): backward, step, zeroing,
    calls to local helpers, assignments, nested loops."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.backward: list[cst.Call] = []
        self.steps: list[cst.Call] = []
        self.zero = False
        self.callees: set[str] = set()
        self.loops: list[cst.CSTNode] = []

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return False

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        return False

    def visit_For(self, node: cst.For) -> None:
        self.loops.append(node)

    def visit_While(self, node: cst.While) -> None:
        self.loops.append(node)

    def visit_Assign(self, node: cst.Assign) -> None:
        self.zero = self.zero or _zeroes(node)

    def visit_Call(self, node: cst.Call) -> None:
        if _zeroes(node):
            self.zero = True
            return
        func = node.func
        name = (
            func.attr.value if isinstance(func, cst.Attribute) else (func.value if isinstance(func, cst.Name) else "")
        )
        if name == "backward":
            if _DIST_AUTOGRAD not in self.ctx.names(func):
                self.backward.append(node)
        elif name == "step" and isinstance(func, cst.Attribute):
            self.steps.append(node)
        callee = _callee(node)
        if callee:
            self.callees.add(callee)


class MissingZeroGrad(Rule):
    code = "LK110"
    summary = "backward() and a torch optimizer's step() in a loop that never zeroes the gradients"

    def check(self, ctx: Context) -> Iterable[Finding]:
        imported = {q.split(".")[0] for q in ctx.imports.values()}
        if "torch" not in imported or imported & _OTHER_FRAMEWORKS:
            return
        backward_lines = [
            ctx.pos(c)[0]
            for c, _ in ctx.calls
            if isinstance(c.func, cst.Attribute | cst.Name) and _last(c.func) == "backward"
        ]
        if not backward_lines:
            return
        builds_optimizer = any(
            any(q.startswith("torch.optim.") and "lr_scheduler" not in q for q in ctx.names(c.func))
            for c, _ in ctx.calls
        )
        zeroing: set[str] | None = None  # computed when first needed
        scans: dict[int, _Body] = {}
        for loop, _ in ctx.loops:
            r = ctx.positions[loop]
            if not any(r.start.line <= ln <= r.end.line for ln in backward_lines):
                continue
            body = _Body(ctx)
            cast(Any, loop).body.visit(body)  # a For or While node
            if body.backward and not body.zero and body.callees:
                zeroing = _zeroing_functions(ctx) if zeroing is None else zeroing
                body.zero = bool(body.callees & zeroing)
            scans[id(loop)] = body

        def fires(body: _Body) -> bool:
            return bool(body.backward) and not body.zero and _steps_torch_optimizer(ctx, body, builds_optimizer)

        for loop, _ in ctx.loops:
            scanned = scans.get(id(loop))
            if (
                scanned is None
                or not fires(scanned)
                or any(id(inner) in scans and fires(scans[id(inner)]) for inner in scanned.loops)
            ):
                continue  # report the innermost loop only
            yield ctx.finding(
                self.code,
                scanned.backward[0],
                "backward() and optimizer.step() run in this loop but zero_grad() is never called in it: gradients "
                "accumulate across steps; call optimizer.zero_grad() each iteration (accumulation on purpose puts "
                "zero_grad under a condition in the loop)",
            )


def _steps_torch_optimizer(ctx: Context, body: _Body, builds_optimizer: bool) -> bool:
    for step in body.steps:
        func = cast(cst.Attribute, step.func)
        receivers = [func.value]
        if "scaler" in (dotted(func.value) or "").lower():  # scaler.step(optimizer)
            receivers = [a.value for a in step.args[:1]]
        for receiver in receivers:
            key = dotted(receiver)
            if key is None or "sched" in key.lower():
                continue
            if _created_in_loop(ctx, key, ctx.pos(step)[0]):
                return False  # an optimizer created in the loop starts from fresh state each time
            bound = ctx.resolve_anywhere(key, ctx.pos(step)[0])
            names = ctx.names(bound.func) if isinstance(bound, cst.Call) else set()
            if any(q.startswith(_DIST_OPTIMIZER) for q in names):
                return False  # distributed autograd: gradients live in the autograd context
            if any(q.startswith("torch.optim.") and "lr_scheduler" not in q for q in names):
                return True
            if bound is None and builds_optimizer and "opt" in key.lower():
                return True
    return False


def _created_in_loop(ctx: Context, key: str, line: int) -> bool:
    """``key`` is assigned inside a loop that also contains ``line``."""
    ranges = [ctx.positions[loop] for loop, _ in ctx.loops]
    loops = [(r.start.line, r.end.line) for r in ranges if r.start.line <= line <= r.end.line]
    lines = [ln for (_, k), values in ctx.assignments.items() if k == key for ln, _ in values]
    return any(a <= ln <= b for ln in lines for a, b in loops)


def _zeroing_functions(ctx: Context) -> set[str]:
    """Names of the functions and methods of this file that zero gradients (directly or through
    another such function)."""
    bodies: list[tuple[str, _Body]] = []

    class _Defs(cst.CSTVisitor):
        def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
            body = _Body(ctx)
            node.body.visit(body)
            bodies.append((node.name.value, body))

    ctx.module.visit(_Defs())
    zeroing = {name for name, body in bodies if body.zero}
    for _ in range(3):  # helpers of helpers
        zeroing |= {name for name, body in bodies if body.callees & zeroing}
    return zeroing
