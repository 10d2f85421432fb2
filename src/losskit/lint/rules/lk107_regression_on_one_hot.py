"""LK107: a regression loss fed one-hot class targets."""

from __future__ import annotations

from collections.abc import Iterable

from losskit.lint.engine import Context, Finding, Rule


class RegressionOnOneHot(Rule):
    code = "LK107"
    summary = "MSELoss / L1Loss / mse_loss / l1_loss fed one-hot class targets"

    def check(self, ctx: Context) -> Iterable[Finding]:
        for lc, scope in ctx.loss_calls():
            if lc.name not in ("mse_loss", "l1_loss") or lc.target is None:
                continue
            if "one_hot" in ctx.kinds(lc.target, scope):
                yield ctx.finding(
                    self.code,
                    lc.target,
                    f"{lc.name} on one-hot class targets treats classification as regression (slow, uncalibrated); "
                    "use cross_entropy on the logits with the class indices",
                )
