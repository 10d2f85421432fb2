"""LK111: a loss tensor accumulated into a running total without ``.item()`` / ``.detach()``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import libcst as cst

from losskit.lint.engine import Context, Finding, Rule, dotted


def _append_item(node: cst.CSTNode) -> cst.CSTNode:
    assert isinstance(node, cst.AugAssign)
    return node.with_changes(value=cst.Call(func=cst.Attribute(value=node.value, attr=cst.Name("item"))))


class LossAccumulated(Rule):
    code = "LK111"
    summary = "loss tensor accumulated into a running total without .item() / .detach()"

    def check(self, ctx: Context) -> Iterable[Finding]:
        backward_on: dict[object, set[str]] = {}
        for call, scope in ctx.calls:
            if isinstance(call.func, cst.Attribute) and call.func.attr.value == "backward":
                key = dotted(call.func.value)
                if key:
                    backward_on.setdefault(scope, set()).add(key)
        loop_ranges: dict[Any, Any] = {}
        for loop, scope in ctx.loops:
            r = ctx.positions[loop]
            loop_ranges.setdefault(scope, []).append((r.start.line, r.end.line))
        for node, scope in ctx.aug_assigns:
            if not isinstance(node.operator, cst.AddAssign) or not isinstance(node.target, cst.Name):
                continue
            line = ctx.pos(node)[0]
            total = node.target.value
            if total in backward_on.get(scope, set()):
                continue  # building the loss to backpropagate (loss += aux) is fine
            start = ctx.resolve(total, scope, line)
            if not isinstance(start, (cst.Integer, cst.Float)):
                continue  # only running totals that start from a number
            if not any(a <= line <= b for a, b in loop_ranges.get(scope, [])):
                continue
            value = node.value
            is_loss = ctx.loss_call(value) is not None if isinstance(value, cst.Call) else False
            if isinstance(value, cst.Name):
                bound = ctx.resolve(value.value, scope, line)
                is_loss = (
                    isinstance(bound, cst.Call) and ctx.loss_call(bound) is not None
                ) or value.value in backward_on.get(scope, set())
            if is_loss:
                yield ctx.finding(
                    self.code,
                    node,
                    f"loss tensor added to the running total {total!r} keeps every step's autograd graph alive "
                    "(memory grows each step); add loss.item() (or loss.detach())",
                    ctx.fix_for(node, _append_item),
                )
