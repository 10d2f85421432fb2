"""LK110: ``loss.backward()`` in a loop that steps the optimizer but never zeroes the gradients."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import libcst as cst

from losskit.lint.engine import Context, Finding, Rule, dotted


class _Body(cst.CSTVisitor):
    """Calls in a loop body (not inside nested functions or classes), and nested loops."""

    def __init__(self) -> None:
        self.backward: list[cst.Call] = []
        self.step = False
        self.zero = False
        self.loops: list[cst.CSTNode] = []

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return False

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        return False

    def visit_For(self, node: cst.For) -> None:
        self.loops.append(node)

    def visit_While(self, node: cst.While) -> None:
        self.loops.append(node)

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        name = (
            func.attr.value if isinstance(func, cst.Attribute) else (func.value if isinstance(func, cst.Name) else "")
        )
        if name == "backward":
            self.backward.append(node)
        elif name == "step" and isinstance(func, cst.Attribute):
            receiver = (dotted(func.value) or "").lower()
            if "sched" not in receiver:
                self.step = True
        elif name == "zero_grad" or (
            name == "zero_"
            and isinstance(func, cst.Attribute)
            and isinstance(func.value, cst.Attribute)
            and func.value.attr.value == "grad"
        ):
            self.zero = True

    def visit_Assign(self, node: cst.Assign) -> None:
        for t in node.targets:  # p.grad = None
            if isinstance(t.target, cst.Attribute) and t.target.attr.value == "grad":
                self.zero = True


def _scan(loop: cst.CSTNode) -> _Body:
    body = _Body()
    cast(Any, loop).body.visit(body)  # a For or While node
    return body


class MissingZeroGrad(Rule):
    code = "LK110"
    summary = "backward() and optimizer.step() in a loop that never calls zero_grad()"

    def check(self, ctx: Context) -> Iterable[Finding]:
        scans = {id(loop): _scan(loop) for loop, _ in ctx.loops}
        for loop, _ in ctx.loops:
            scan = scans[id(loop)]
            if not (scan.backward and scan.step) or scan.zero:
                continue
            # report the innermost loop only
            if any(
                id(inner) in scans and scans[id(inner)].backward and scans[id(inner)].step and not scans[id(inner)].zero
                for inner in scan.loops
            ):
                continue
            yield ctx.finding(
                self.code,
                scan.backward[0],
                "backward() and optimizer.step() run in this loop but zero_grad() is never called in it: gradients "
                "accumulate across steps; call optimizer.zero_grad() each iteration (accumulation on purpose puts "
                "zero_grad under a condition in the loop)",
            )
