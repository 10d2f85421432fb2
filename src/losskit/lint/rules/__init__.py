"""The rule registry: one rule per module, codes are part of the public interface."""

from __future__ import annotations

from losskit.lint.engine import Rule
from losskit.lint.rules.lk101_softmax_cross_entropy import SoftmaxBeforeCrossEntropy
from losskit.lint.rules.lk102_sigmoid_bce_with_logits import SigmoidBeforeBCEWithLogits
from losskit.lint.rules.lk103_bce_on_sigmoid import BCEOnSigmoid
from losskit.lint.rules.lk104_softmax_nll import SoftmaxBeforeNLL
from losskit.lint.rules.lk105_one_hot_cross_entropy import OneHotTargets
from losskit.lint.rules.lk106_float_class_targets import FloatClassTargets
from losskit.lint.rules.lk107_regression_on_one_hot import RegressionOnOneHot
from losskit.lint.rules.lk108_deprecated_reduction import DeprecatedReduction
from losskit.lint.rules.lk110_missing_zero_grad import MissingZeroGrad
from losskit.lint.rules.lk111_loss_accumulated import LossAccumulated
from losskit.lint.rules.lk113_log_of_softmax import LogOfSoftmax

RULES: list[Rule] = sorted(
    [
        SoftmaxBeforeCrossEntropy(),
        SigmoidBeforeBCEWithLogits(),
        BCEOnSigmoid(),
        SoftmaxBeforeNLL(),
        OneHotTargets(),
        FloatClassTargets(),
        RegressionOnOneHot(),
        DeprecatedReduction(),
        MissingZeroGrad(),
        LossAccumulated(),
        LogOfSoftmax(),
    ],
    key=lambda r: r.code,
)
BY_CODE = {r.code: r for r in RULES}

__all__ = ["RULES", "BY_CODE"]
