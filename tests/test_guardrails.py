"""Every guardrail: the error or warning it raises, and the correct uses it must leave alone.

LossUsageWarning is turned into an error for the whole suite (pyproject.toml), so any test
below that does not expect a warning also proves that none was raised.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

import losskit
import losskit.functional as LF
from losskit import LossDtypeError, LossInputError, LossUsageWarning, checks

# guardrails fire alike on losskit's kernels and on the small-input path (torch's fused ops)
pytestmark = pytest.mark.usefixtures("softmax_loss_path")


def test_error_classes():
    assert issubclass(LossInputError, ValueError)
    assert issubclass(LossDtypeError, LossInputError) and issubclass(LossDtypeError, TypeError)
    assert issubclass(LossUsageWarning, UserWarning)


# --------------------------------------------------------------------------- errors


def test_class_index_out_of_range_names_value_and_range():
    x = torch.randn(4, 5)
    with pytest.raises(
        LossInputError,
        match=r"cross_entropy: target has 1 class id\(s\) out of range \(e\.g\. 7.*expected ids in \[0, 4\]",
    ):
        LF.cross_entropy(x, torch.tensor([0, 7, 1, 2]))


def test_negative_class_index_that_is_not_ignore_index_suggests_ignore_index():
    with pytest.raises(LossInputError, match=r"e\.g\. -1.*pass ignore_index=-1"):
        LF.cross_entropy(torch.randn(3, 5), torch.tensor([0, -1, 1]))


def test_nll_out_of_range():
    with pytest.raises(LossInputError, match=r"nll_loss: target has 1 class id\(s\) out of range"):
        LF.nll_loss(torch.log_softmax(torch.randn(2, 3), 1), torch.tensor([3, 0]))


def test_out_of_range_with_checks_off_gives_nan_not_a_crash():
    with losskit.set_checks("off"):
        loss = LF.cross_entropy(torch.randn(3, 4), torch.tensor([0, 9, 1]))
    assert torch.isnan(loss)


def test_float_class_indices():
    with pytest.raises(LossDtypeError, match=r"float class indices.*Use target\.long\(\)"):
        LF.cross_entropy(torch.randn(4, 3), torch.tensor([0.0, 1.0, 2.0, 1.0]))


def test_integer_one_hot_targets():
    target = torch.nn.functional.one_hot(torch.tensor([0, 2, 1]), 3)
    with pytest.raises(LossInputError, match=r"integer one-hot labels.*target\.argmax\(dim=1\)"):
        LF.cross_entropy(torch.randn(3, 3), target)


@pytest.mark.parametrize("shape,target_shape", [((8, 4), (8, 1)), ((2, 4, 5, 5), (2, 1, 5, 5))])
def test_extra_class_axis_suggests_squeeze(shape, target_shape):
    with pytest.raises(LossInputError, match=r"extra class axis of size 1.*target\.squeeze\(1\)"):
        LF.cross_entropy(torch.randn(shape), torch.zeros(target_shape, dtype=torch.long))


def test_size_one_spatial_axis_is_not_mistaken_for_an_extra_class_axis():
    # (N, C, 1) with (N, 1) targets is a valid K-dim input
    x = torch.randn(4, 3, 1)
    t = torch.randint(0, 3, (4, 1))
    torch.testing.assert_close(LF.cross_entropy(x, t), torch.nn.functional.cross_entropy(x, t))


def test_negative_probabilities_warn_and_compute_torch_value():
    y, x = torch.tensor([[0.5, 0.7, -0.2]]), torch.randn(1, 3)
    with pytest.warns(LossUsageWarning, match=r"negative class probabilities \(min -0\.2\).*computed as torch does"):
        loss = LF.cross_entropy(x, y)
    torch.testing.assert_close(loss, F.cross_entropy(x, y))


def test_probability_rows_not_summing_to_one_warn_and_compute_torch_value():
    y, x = torch.tensor([[0.5, 0.2, 0.2], [0.3, 0.3, 0.4]]), torch.randn(2, 3)
    with pytest.warns(LossUsageWarning, match=r"do not sum to 1 \(worst row sums to 0\.9"):
        loss = LF.cross_entropy(x, y, label_smoothing=0.1)
    torch.testing.assert_close(loss, F.cross_entropy(x, y, label_smoothing=0.1))


def test_multi_hot_rows_suggest_bce_with_logits():
    y, x = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]), torch.randn(2, 3)
    with pytest.warns(LossUsageWarning, match=r"multi-hot.*binary_cross_entropy_with_logits"):
        loss = LF.cross_entropy(x, y)
    torch.testing.assert_close(loss, F.cross_entropy(x, y))


@pytest.mark.parametrize(
    "make",
    [
        # bfloat16 rounding: softmax rows rounded to bf16 sum to 1 +- ~1e-3
        lambda: torch.softmax(torch.randn(64, 50) * 3, 1).bfloat16(),
        lambda: torch.softmax(torch.randn(64, 50), 1).half(),
        # residue of float arithmetic: 1 - sum of the others can be -1e-9
        lambda: torch.tensor([[0.3, 0.7, -1e-9], [0.0, 0.0, 0.0], [0.25, 0.25, 0.5]]),
        # all-zero rows: how probability targets leave a sample out
        lambda: torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.6, 0.3]]),
    ],
)
def test_legitimate_probability_targets_stay_quiet(make):
    y = make()
    x = torch.randn(y.shape, dtype=y.dtype)
    loss = LF.cross_entropy(x, y)  # LossUsageWarning is an error in this suite
    torch.testing.assert_close(loss, F.cross_entropy(x, y))


def _rounded_softmax(dtype, n_classes, up_to=None, rows=4096, seed=0):
    """Softmax rows rounded to ``dtype`` (and cast back ``up_to`` a wider dtype, as a data
    pipeline that stores targets in bfloat16 hands them over)."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.softmax(torch.randn(rows, n_classes, generator=gen, dtype=torch.float64) * 2, 1).to(dtype)
    return y if up_to is None else y.to(up_to)


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("up_to", [None, torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("n_classes", [2, 3, 5, 50, 32000])
def test_probabilities_rounded_to_low_precision_stay_quiet(low, up_to, n_classes):
    """Regression: bfloat16-rounded rows over 3 classes (cast back to float32) warned "rows do not
    sum to 1 (worst row sums to 1.002; within 0.001)"; rounding alone does that. The tolerance
    scales with the precision the values carry and the class count."""
    y = _rounded_softmax(low, n_classes, up_to, rows=4096 if n_classes < 1000 else 16)
    worst = float((y.double().sum(1) - 1).abs().max())
    if low == torch.bfloat16 and n_classes <= 5:
        assert worst > 1e-3  # the case is real: beyond float32's tolerance
    x = torch.randn(y.shape, dtype=y.dtype)
    loss = LF.cross_entropy(x, y)  # LossUsageWarning is an error in this suite
    torch.testing.assert_close(loss, F.cross_entropy(x, y), **_tol(y.dtype))


def _tol(dtype):
    from tests._parity import TOL

    return TOL[dtype]


@pytest.mark.parametrize(
    "dtype,up_to,scale",
    [
        (torch.bfloat16, None, 1.05),
        (torch.bfloat16, None, 0.94),
        (torch.bfloat16, torch.float32, 1.05),
        (torch.float16, None, 1.01),  # float16 carries 3 more bits: 1% off is no rounding
        (torch.float16, torch.float32, 0.99),
    ],
    ids=str,
)
def test_really_wrong_low_precision_rows_still_warn(dtype, up_to, scale):
    """The rounding allowance does not hide rows that are wrong: one row scaled by ``scale``
    among correctly rounded ones warns and names its sum."""
    y = _rounded_softmax(torch.float64, 3, rows=64)
    y[7] *= scale
    y = y.to(dtype) if up_to is None else y.to(dtype).to(up_to)
    x = torch.randn(y.shape, dtype=y.dtype)
    with pytest.warns(LossUsageWarning, match=r"do not sum to 1 \(worst row sums to " + str(scale)[:3]):
        LF.cross_entropy(x, y)


def test_row_sum_tolerance_values():
    """By hand: u = eps / 2; u (4 + log2 C), floored at float32's 1e-3 max(1, sqrt(C) / 8)."""
    from losskit.checks.classification import row_sum_tolerance

    assert row_sum_tolerance(torch.bfloat16, 3) == pytest.approx(2**-8 * (4 + math.log2(3)))  # 0.0218
    assert row_sum_tolerance(torch.float16, 3) == pytest.approx(2**-11 * (4 + math.log2(3)))  # 0.00273
    assert row_sum_tolerance(torch.float32, 3) == 1e-3
    assert row_sum_tolerance(torch.float32, 6400) == pytest.approx(1e-2)  # sqrt(6400) / 8 = 10


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"reduction": "avg"}, r"reduction is invalid, got 'avg'"),
        ({"label_smoothing": 1.5}, r"label_smoothing must lie in \[0, 1\], got 1\.5"),
        ({"label_smoothing": -0.1}, r"label_smoothing must lie in \[0, 1\]"),
        ({"weight": torch.ones(4)}, r"weight has shape \(4,\); expected one weight per class, shape \(3,\)"),
        ({"size_average": False}, r"deprecated.*reduction='sum'"),
        ({"reduce": False}, r"deprecated.*reduction='none'"),
    ],
)
def test_cross_entropy_invalid_arguments(kwargs, pattern):
    with pytest.raises(LossInputError, match=pattern):
        LF.cross_entropy(torch.randn(2, 3), torch.tensor([0, 1]), **kwargs)


def test_ignore_index_with_probabilities_as_torch():
    x, p = torch.randn(2, 3), torch.softmax(torch.randn(2, 3), 1)
    with pytest.raises(LossInputError, match=r"ignore_index=0 was given with class-probability targets"):
        LF.cross_entropy(x, p, ignore_index=0)
    with pytest.raises(RuntimeError):  # torch rejects it too
        F.cross_entropy(x, p, ignore_index=0)
    # a negative ignore_index is unused with probabilities, in torch and here
    torch.testing.assert_close(LF.cross_entropy(x, p, ignore_index=-5), F.cross_entropy(x, p, ignore_index=-5))


def test_delta_and_beta():
    x = torch.randn(3)
    with pytest.raises(LossInputError, match=r"huber_loss: delta must be positive, got 0"):
        LF.huber_loss(x, x, delta=0)
    with pytest.raises(LossInputError, match=r"smooth_l1_loss: beta must be non-negative, got -1"):
        LF.smooth_l1_loss(x, x, beta=-1)
    with pytest.raises(LossInputError, match=r"delta must be positive"):
        losskit.nn.HuberLoss(delta=-2.0)


def test_pos_weight_of_wrong_length():
    with pytest.raises(
        LossInputError,
        match=r"pos_weight has shape \(3,\), which does not broadcast to input \(4, 5\); expected one weight per class.*\(5,\)",
    ):
        LF.binary_cross_entropy_with_logits(torch.randn(4, 5), torch.rand(4, 5), pos_weight=torch.ones(3))


def test_bce_weight_that_does_not_broadcast():
    with pytest.raises(LossInputError, match=r"weight has shape \(3,\), which does not broadcast"):
        LF.binary_cross_entropy(torch.rand(4, 5), torch.rand(4, 5), weight=torch.ones(3))


def test_logits_given_to_binary_cross_entropy():
    with pytest.raises(LossInputError, match=r"input has values outside \[0, 1\].*binary_cross_entropy_with_logits"):
        LF.binary_cross_entropy(torch.randn(10), torch.rand(10))


@pytest.mark.parametrize("fn", [LF.binary_cross_entropy, LF.binary_cross_entropy_with_logits])
def test_bce_targets_outside_unit_interval(fn):
    with pytest.raises(LossInputError, match=r"target has values outside \[0, 1\] \(min -1"):
        fn(torch.rand(4), torch.tensor([-1.0, 1.0, 1.0, -1.0]))


def test_integer_targets_to_bce_with_logits():
    with pytest.raises(LossDtypeError, match=r"target has dtype int64.*Use target\.float\(\)"):
        LF.binary_cross_entropy_with_logits(torch.randn(4), torch.tensor([0, 1, 1, 0]))


def test_bce_with_logits_multi_column_input_and_class_ids_suggest_cross_entropy():
    with pytest.raises(LossInputError, match=r"mutually exclusive classes use losskit\.functional\.cross_entropy"):
        LF.binary_cross_entropy_with_logits(torch.randn(4, 3), torch.tensor([0.0, 1.0, 2.0, 1.0]))


@pytest.mark.parametrize("fn", [LF.mse_loss, LF.l1_loss, LF.huber_loss, LF.smooth_l1_loss])
def test_regression_shape_mismatch_suggests_squeeze(fn):
    with pytest.raises(
        LossInputError,
        match=r"shapes differ, got input \(8, 1\) and target \(8,\).*broadcast them to \(8, 8\).*input\.squeeze\(-1\)",
    ):
        fn(torch.randn(8, 1), torch.randn(8))


def test_regression_on_integer_class_labels_against_multi_column_input():
    with pytest.raises(LossInputError, match=r"integer class labels.*use losskit\.functional\.cross_entropy"):
        LF.mse_loss(torch.randn(8, 4), torch.randint(0, 4, (8,)))


def test_regression_weight_of_wrong_shape():
    with pytest.raises(LossInputError, match=r"weight has shape \(3,\); expected the shape of input \(3, 2\)"):
        LF.mse_loss(torch.randn(3, 2), torch.randn(3, 2), weight=torch.ones(3))


def test_non_float_input():
    with pytest.raises(LossDtypeError, match=r"input has dtype int64.*expected a floating-point tensor"):
        LF.cross_entropy(torch.tensor([[1, 2]]), torch.tensor([0]))
    with pytest.raises(LossInputError, match=r"input is not a tensor, got list"):
        LF.mse_loss([1.0], torch.tensor([1.0]))


# --------------------------------------------------------------------------- warnings


def test_softmax_input_to_cross_entropy_warns():
    probs = torch.softmax(torch.randn(16, 5), 1)
    with pytest.warns(LossUsageWarning, match=r"look like softmax output.*Remove the softmax"):
        LF.cross_entropy(probs, torch.randint(0, 5, (16,)))


def test_softmax_segmentation_input_warns():
    probs = torch.softmax(torch.randn(2, 4, 8, 8), 1)
    with pytest.warns(LossUsageWarning, match=r"look like softmax output"):
        LF.cross_entropy(probs, torch.randint(0, 4, (2, 8, 8)))


def test_sigmoid_input_to_bce_with_logits_warns():
    probs = torch.sigmoid(torch.randn(64))
    with pytest.warns(LossUsageWarning, match=r"looks like sigmoid output"):
        LF.binary_cross_entropy_with_logits(probs, (torch.rand(64) > 0.5).float())


def test_one_hot_float_targets_to_cross_entropy_warn():
    y = torch.nn.functional.one_hot(torch.randint(0, 4, (10,)), 4).float()
    with pytest.warns(LossUsageWarning, match=r"one-hot float rows.*target\.argmax\(dim=1\)"):
        LF.cross_entropy(torch.randn(10, 4), y)


def test_raw_logits_to_nll_warn():
    with pytest.warns(LossUsageWarning, match=r"look like raw logits.*log_softmax"):
        LF.nll_loss(torch.randn(8, 5) * 3, torch.randint(0, 5, (8,)))


def test_softmax_probabilities_to_nll_warn():
    with pytest.warns(LossUsageWarning, match=r"look like softmax probabilities"):
        LF.nll_loss(torch.softmax(torch.randn(8, 5), 1), torch.randint(0, 5, (8,)))


def test_regression_loss_on_one_hot_class_labels_warns():
    labels = torch.nn.functional.one_hot(torch.randint(0, 4, (16,)), 4)
    with pytest.warns(LossUsageWarning, match=r"looks like one-hot class labels.*cross_entropy"):
        LF.mse_loss(torch.randn(16, 4), labels.float())


def test_nan_input_is_counted():
    x = torch.randn(6, 3)
    x[1, 2] = float("nan")
    x[4, 0] = float("inf")
    with pytest.warns(LossUsageWarning, match=r"input contains 1 NaN and 1 Inf value\(s\) out of 18"):
        LF.cross_entropy(x, torch.tensor([0, 1, 2, 0, 1, 2]))
    with pytest.warns(LossUsageWarning, match=r"1 NaN and 1 Inf"):
        LF.mse_loss(x, torch.zeros(6, 3))


def test_every_target_ignored_warns_and_returns_nan_like_torch():
    x = torch.randn(4, 3)
    t = torch.full((4,), -100)
    with pytest.warns(LossUsageWarning, match=r"every target is ignore_index"):
        loss = LF.cross_entropy(x, t)
    assert torch.isnan(loss) and torch.isnan(torch.nn.functional.cross_entropy(x, t))


def test_empty_batch_warns():
    with pytest.warns(LossUsageWarning, match=r"the batch is empty"):
        loss = LF.cross_entropy(torch.randn(0, 3), torch.zeros(0, dtype=torch.long))
    assert torch.isnan(loss)


def test_warning_points_at_the_callers_line():
    probs = torch.softmax(torch.randn(16, 5), 1)
    with pytest.warns(LossUsageWarning) as record:
        losskit.nn.CrossEntropyLoss()(probs, torch.randint(0, 5, (16,)))
    assert record[0].filename == __file__


# --------------------------------------------------------------------------- no false alarms


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args, **kwargs)


def test_log_softmax_output_to_cross_entropy_is_fine():
    logp = torch.log_softmax(torch.randn(16, 5), 1)
    _quiet(LF.cross_entropy, logp, torch.randint(0, 5, (16,)))


def test_soft_labels_are_fine():
    x = torch.randn(16, 5)
    a, b = torch.randint(0, 5, (16,)), torch.randint(0, 5, (16,))
    mixup = 0.7 * torch.nn.functional.one_hot(a, 5).float() + 0.3 * torch.nn.functional.one_hot(b, 5).float()
    _quiet(LF.cross_entropy, x, mixup)
    teacher = torch.softmax(torch.randn(16, 5) / 2.0, 1)
    _quiet(LF.cross_entropy, x, teacher)
    _quiet(LF.cross_entropy, x, teacher.bfloat16())


def test_logits_that_happen_to_lie_in_unit_interval_are_fine():
    logits = torch.rand(16, 5)  # in [0, 1] but rows do not sum to 1
    _quiet(LF.cross_entropy, logits, torch.randint(0, 5, (16,)))


def test_sigmoid_probabilities_to_binary_cross_entropy_are_fine():
    p = torch.sigmoid(torch.randn(64))
    _quiet(LF.binary_cross_entropy, p, (torch.rand(64) > 0.5).float())


def test_partly_ignored_tokens_are_fine():
    t = torch.randint(0, 7, (4, 9))
    t[:, 6:] = -100
    _quiet(LF.cross_entropy, torch.randn(4, 7, 9), t)


def test_masked_minus_inf_logits_are_fine():
    x = torch.randn(4, 6)
    x[:, 5] = float("-inf")
    _quiet(LF.cross_entropy, x, torch.randint(0, 5, (4,)))


def test_regression_with_integer_valued_continuous_targets_is_fine():
    _quiet(LF.mse_loss, torch.randn(32, 3), torch.randint(0, 10, (32, 3)).float())


# --------------------------------------------------------------------------- the switch


def test_set_checks_levels_and_context_manager():
    probs = torch.softmax(torch.randn(16, 5), 1)
    t = torch.randint(0, 5, (16,))
    assert losskit.get_checks() == "auto"
    with losskit.set_checks("cheap"):
        assert losskit.get_checks() == "cheap"
        _quiet(LF.cross_entropy, probs, t)  # value heuristics are off
        with pytest.raises(LossInputError, match="target.squeeze"):  # shape checks still on
            LF.cross_entropy(probs, t.unsqueeze(1))
    assert losskit.get_checks() == "auto"
    losskit.set_checks("off")
    try:
        _quiet(LF.cross_entropy, probs, t)
    finally:
        losskit.set_checks("auto")
    with pytest.raises(LossInputError, match=r"set_checks: mode is invalid, got 'all'"):
        losskit.set_checks("all")


def test_cheap_mode_never_reads_values(monkeypatch):
    """cheap must not synchronise an accelerator: no Tensor.__bool__/item on any check path."""

    def forbidden(self, *args):
        raise AssertionError("a value was read at the cheap level")

    x, t = torch.randn(16, 5, requires_grad=True), torch.randint(0, 5, (16,))
    with losskit.set_checks("cheap"):
        monkeypatch.setattr(torch.Tensor, "__bool__", forbidden)
        monkeypatch.setattr(torch.Tensor, "item", forbidden)
        monkeypatch.setattr(torch.Tensor, "__float__", forbidden)
        LF.cross_entropy(x, t, label_smoothing=0.1)
        LF.nll_loss(x, t)
        LF.binary_cross_entropy_with_logits(x, torch.rand(16, 5))
        LF.mse_loss(x, torch.randn(16, 5))
        monkeypatch.undo()


def test_environment_variable_sets_the_level(tmp_path):
    import subprocess
    import sys

    code = (
        "import losskit, torch; print(losskit.get_checks());"
        "losskit.functional.cross_entropy(torch.softmax(torch.randn(16, 5), 1), torch.zeros(16, dtype=torch.long))"
    )
    env = {**__import__("os").environ, "LOSSKIT_CHECKS": "off", "PYTHONWARNINGS": "error::UserWarning"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "off"
    env["LOSSKIT_CHECKS"] = "bogus"
    env.pop("PYTHONWARNINGS")
    bad = subprocess.run(
        [sys.executable, "-c", "import losskit; print(losskit.get_checks())"], env=env, capture_output=True, text=True
    )
    # the import goes on at the default level, with one warning naming the value
    assert bad.returncode == 0 and bad.stdout.strip() == "auto", bad.stderr
    assert (
        bad.stderr.count("LossUsageWarning: losskit: environment variable LOSSKIT_CHECKS is invalid, got 'bogus'") == 1
    )


def test_single_bad_value_in_a_large_bce_input_is_still_named():
    # Above FULL_SCAN_ELEMENTS losskit samples; torch's own kernel sees the one logit left
    # and losskit re-raises it with the usual message.
    p = torch.rand(checks.FULL_SCAN_ELEMENTS + 7)
    p[12345] = 3.0
    with pytest.raises(LossInputError, match=r"input has values outside \[0, 1\] \(min .*, max 3\)"):
        LF.binary_cross_entropy(p, torch.rand_like(p))
    t = torch.rand_like(p)
    t[-1] = -2.0
    with pytest.raises(LossInputError, match=r"target has values outside \[0, 1\] \(min -2, max"):
        LF.binary_cross_entropy(torch.rand_like(p), t)


def test_large_minus_one_plus_one_labels_to_bce_with_logits():
    n = checks.FULL_SCAN_ELEMENTS * 2
    labels = torch.randint(0, 2, (n,)).float() * 2 - 1
    with pytest.raises(LossInputError, match=r"target has values outside \[0, 1\] \(min -1, max 1\)"):
        LF.binary_cross_entropy_with_logits(torch.randn(n), labels)


def test_torch_range_error_passes_through_with_checks_off():
    with losskit.set_checks("off"), pytest.raises(RuntimeError, match="between 0 and 1"):
        LF.binary_cross_entropy(torch.tensor([1.5]), torch.tensor([1.0]))


def test_orthogonality_regulariser_and_brier_score_do_not_warn():
    """Two legitimate regressions on one-hot rows (the suite turns any LossUsageWarning into an
    error): an identity target, and probabilities against one-hot labels."""
    w = torch.randn(6, 4)
    LF.mse_loss(w.T @ w, torch.eye(4))
    probs = torch.softmax(torch.randn(8, 5), 1)
    LF.mse_loss(probs, F.one_hot(torch.arange(8) % 5, 5).float())
    # the mistake itself still warns: raw outputs against one-hot class labels
    with pytest.warns(LossUsageWarning, match="looks like one-hot class labels"):
        LF.mse_loss(torch.randn(8, 5), F.one_hot(torch.arange(8) % 5, 5).float())


def test_sigmoid_before_bce_with_logits_is_caught_from_16_values():
    y = torch.randint(0, 2, (16, 1)).float()
    with pytest.warns(LossUsageWarning, match="looks like sigmoid output"):
        LF.binary_cross_entropy_with_logits(torch.sigmoid(torch.randn(16, 1)), y)
