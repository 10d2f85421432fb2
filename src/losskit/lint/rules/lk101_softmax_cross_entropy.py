"""LK101: softmax output passed to cross-entropy, which applies log_softmax itself."""

from __future__ import annotations

from collections.abc import Iterable

from losskit.lint.engine import Context, Finding, Rule
from losskit.lint.rules._helpers import activation_fed_to_loss


class SoftmaxBeforeCrossEntropy(Rule):
    """Also the output of a model of this file whose ``forward`` ends in softmax (no fix)."""

    code = "LK101"
    summary = "softmax output passed to CrossEntropyLoss / cross_entropy"

    def check(self, ctx: Context) -> Iterable[Finding]:
        return activation_fed_to_loss(
            ctx,
            self.code,
            "cross_entropy",
            "softmax",
            "softmax output passed to cross-entropy, which applies log_softmax itself (a double softmax: "
            "small gradients, slow training); pass the raw logits and keep softmax for predictions",
            "{source}, so the model's output passed to cross-entropy here is probabilities, and "
            "cross-entropy applies log_softmax to them again (a double softmax: small gradients, slow training); "
            "return the logits from forward and apply softmax only for predictions",
        )
