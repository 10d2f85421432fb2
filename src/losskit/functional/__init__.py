"""Loss functions with the names, positional order, defaults and values of
``torch.nn.functional`` -- replace ``F.`` with ``losskit.functional.`` and get the guardrails --
plus the losses torch lacks (focal, poly-1, Dice, Tversky, fused linear cross-entropy).
"""

from losskit.functional.binary import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
)
from losskit.functional.cross_entropy import cross_entropy, nll_loss
from losskit.functional.focal import focal_loss, sigmoid_focal_loss
from losskit.functional.large_vocabulary import linear_cross_entropy
from losskit.functional.log_probs import TokenLogProbs, linear_log_probs
from losskit.functional.poly import poly1_cross_entropy
from losskit.functional.regression import huber_loss, l1_loss, mse_loss, smooth_l1_loss
from losskit.functional.segmentation import dice_loss, tversky_loss

__all__ = [
    "mse_loss",
    "l1_loss",
    "huber_loss",
    "smooth_l1_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "nll_loss",
    "linear_cross_entropy",
    "linear_log_probs",
    "TokenLogProbs",
    "sigmoid_focal_loss",
    "focal_loss",
    "poly1_cross_entropy",
    "dice_loss",
    "tversky_loss",
]
