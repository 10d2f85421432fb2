"""Guardrails: argument checks, value heuristics and their messages, and the level switch.

* :mod:`~losskit.checks.level` -- ``off`` / ``cheap`` / ``full`` / ``auto`` (:func:`set_checks`).
* :mod:`~losskit.checks.messages` -- how problems are described, raised and warned about.
* :mod:`~losskit.checks.arguments` -- options (reduction, smoothing, z-loss, ...), shared by
  the functions and the modules' constructors.
* :mod:`~losskit.checks.sampling` -- value checks on a fixed budget.
* :mod:`~losskit.checks.classification`, :mod:`~losskit.checks.binary`,
  :mod:`~losskit.checks.regression` -- the guardrails of each family of losses.

Nothing here computes a loss; :mod:`losskit.functional` calls these, then :mod:`losskit._core`.
"""

from losskit.checks.arguments import (
    DICE_MODES,
    check_dice_options,
    check_dice_weight,
    check_float_input,
    check_focal_options,
    check_huber_delta,
    check_label_smoothing,
    check_legacy,
    check_normalizer,
    check_poly_epsilon,
    check_reduction,
    check_smooth_l1_beta,
    check_tensor,
    check_tversky_weights,
    check_z_loss_and_softcap,
)
from losskit.checks.binary import check_binary, fail_input_range, fail_target_range, warn_if_sigmoid_input
from losskit.checks.classification import (
    check_class_ids,
    check_class_weight,
    check_logits_and_target,
    check_probability_target,
    classify_target,
    index_target_shape,
    probability_tolerance,
    warn_if_empty_or_all_ignored,
    warn_if_not_log_probs,
    warn_if_softmax_input,
)
from losskit.checks.level import CheckMode, get_checks, level, set_checks
from losskit.checks.messages import describe, fail, shape_str, warn
from losskit.checks.regression import check_pair, shape_mismatch
from losskit.checks.sampling import (
    FULL_SCAN_ELEMENTS,
    SAMPLE_ELEMENTS,
    SAMPLE_ROWS,
    all_finite,
    sample_rows,
    sample_values,
    value_range,
    warn_nonfinite_result,
)

__all__ = [
    "CheckMode",
    "set_checks",
    "get_checks",
    "level",
    "describe",
    "shape_str",
    "fail",
    "warn",
    "check_reduction",
    "check_label_smoothing",
    "check_z_loss_and_softcap",
    "check_normalizer",
    "check_legacy",
    "check_float_input",
    "check_tensor",
    "check_focal_options",
    "check_dice_options",
    "DICE_MODES",
    "check_huber_delta",
    "check_smooth_l1_beta",
    "check_poly_epsilon",
    "check_tversky_weights",
    "check_dice_weight",
    "SAMPLE_ROWS",
    "SAMPLE_ELEMENTS",
    "FULL_SCAN_ELEMENTS",
    "sample_rows",
    "sample_values",
    "value_range",
    "warn_nonfinite_result",
    "all_finite",
    "check_class_weight",
    "index_target_shape",
    "classify_target",
    "check_class_ids",
    "probability_tolerance",
    "check_probability_target",
    "warn_if_softmax_input",
    "warn_if_empty_or_all_ignored",
    "check_logits_and_target",
    "warn_if_not_log_probs",
    "check_binary",
    "fail_target_range",
    "fail_input_range",
    "warn_if_sigmoid_input",
    "check_pair",
    "shape_mismatch",
]
