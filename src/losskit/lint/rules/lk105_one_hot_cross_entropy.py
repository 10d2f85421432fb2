"""LK105: one_hot(...) targets passed to a cross-entropy loss."""

from __future__ import annotations

from collections.abc import Iterable

from losskit.lint.engine import Context, Finding, Rule


class OneHotTargets(Rule):
    code = "LK105"
    summary = "one_hot(...) targets passed to a cross-entropy loss"

    def check(self, ctx: Context) -> Iterable[Finding]:
        for lc, scope in ctx.loss_calls():
            if lc.name not in ("cross_entropy", "nll_loss") or lc.target is None:
                continue
            if "one_hot" in ctx.kinds(lc.target, scope):
                yield ctx.finding(
                    self.code,
                    lc.target,
                    f"one_hot(...) targets passed to {lc.name}; pass the class indices (int64) instead -- cheaper, "
                    "and ignore_index and class weights work",
                )
