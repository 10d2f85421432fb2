"""LK102: sigmoid output passed to a *_with_logits loss, which applies the sigmoid itself."""

from __future__ import annotations

from collections.abc import Iterable

from losskit.lint.engine import Context, Finding, Rule
from losskit.lint.rules._helpers import activation_fed_to_loss


class SigmoidBeforeBCEWithLogits(Rule):
    """Also the output of a model of this file whose ``forward`` ends in sigmoid (no fix)."""

    code = "LK102"
    summary = "sigmoid output passed to BCEWithLogitsLoss / binary_cross_entropy_with_logits"

    def check(self, ctx: Context) -> Iterable[Finding]:
        return activation_fed_to_loss(
            ctx,
            self.code,
            "binary_cross_entropy_with_logits",
            "sigmoid",
            "sigmoid output passed to binary_cross_entropy_with_logits, which applies the sigmoid itself; "
            "pass the raw logits",
            "{source}, so the model's output passed to binary_cross_entropy_with_logits here is "
            "probabilities, and the loss applies the sigmoid to them again; return the logits from forward and "
            "apply sigmoid only for predictions",
        )
