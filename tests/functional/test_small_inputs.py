"""The small-input path of the softmax losses (:mod:`losskit.functional._small`): small CPU
batches take torch's fused operations -- with losskit's guardrails and its answers where torch's
would differ (an out-of-range id with checks off is NaN, not torch's IndexError).

References: torch's ``F.cross_entropy``, the focal / poly-1 formulas of ``test_focal_poly``; the
kernel path of the same call (``SMALL_INPUT_ELEMENTS`` set below every input)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

import losskit
import losskit.functional as LF
from losskit.functional import _small
from tests.autograd.test_cross_entropy import _CountOps
from tests.functional.test_focal_poly import focal_reference


def _ops(fn, *args, **kwargs):
    x = args[0].clone().requires_grad_()
    with _CountOps() as ops:
        fn(x, *args[1:], **kwargs).backward()
    return ops.names


@pytest.mark.parametrize("name", ["cross_entropy", "focal_loss", "poly1_cross_entropy"])
def test_small_batches_take_torchs_fused_ops_and_large_ones_the_kernel(name):
    """A compare-sized batch dispatches torch's nll_loss (fused, with its backward) and no
    losskit kernel; past SMALL_INPUT_ELEMENTS the kernel (or the general formula) runs."""
    fn = getattr(LF, name)
    small = _ops(fn, torch.randn(64, 10), torch.randint(0, 10, (64,)))
    assert any("nll_loss_forward" in op for op in small) and any("nll_loss_backward" in op for op in small)
    n = _small.SMALL_INPUT_ELEMENTS // 10 + 1
    large = _ops(fn, torch.randn(n, 10), torch.randint(0, 10, (n,)))
    # the kernel's own backward (its forward may sum with nll_loss, which holds no row losses)
    assert not any("nll_loss_backward" in op for op in large)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_small_path_values_and_gradients_match_the_kernel(monkeypatch, reduction):
    """Same numbers on both paths, with weights, ignored targets and label smoothing."""
    x = torch.randn(50, 7, 3, dtype=torch.float64)
    t = torch.randint(0, 7, (50, 3))
    t[::4, 1] = -100
    w = torch.rand(7, dtype=torch.float64) + 0.2
    calls = [
        lambda v: LF.cross_entropy(v, t, w, reduction=reduction, label_smoothing=0.1),
        lambda v: LF.focal_loss(v, t, w, gamma=2.0, reduction=reduction),
        lambda v: LF.poly1_cross_entropy(v, t, w, epsilon=1.0, reduction=reduction, label_smoothing=0.1),
    ]
    for call in calls:
        results = []
        for limit in (_small.SMALL_INPUT_ELEMENTS, -1):
            monkeypatch.setattr(_small, "SMALL_INPUT_ELEMENTS", limit)
            xg = x.clone().requires_grad_()
            loss = call(xg)
            (grad,) = torch.autograd.grad(loss, xg, torch.ones_like(loss))
            results.append((loss, grad))
        torch.testing.assert_close(results[0], results[1])


def test_out_of_range_id_with_checks_off_is_answered_as_on_the_kernel(monkeypatch):
    """torch raises IndexError for such an id; losskit's contract (checks off) is its own
    answer: a NaN row for cross-entropy, the general formula's row for focal and poly-1."""
    x = torch.randn(8, 5, requires_grad=True)
    t = torch.tensor([0, 1, 2, 3, 4, 7, 1, 2])
    with losskit.set_checks("off"):
        rows = LF.cross_entropy(x, t, reduction="none")
        others = [LF.focal_loss(x, t, reduction="none"), LF.poly1_cross_entropy(x, t, reduction="none")]
        monkeypatch.setattr(_small, "SMALL_INPUT_ELEMENTS", -1)
        on_kernel = [LF.focal_loss(x, t, reduction="none"), LF.poly1_cross_entropy(x, t, reduction="none")]
    assert torch.isnan(rows[5]) and torch.isfinite(rows[torch.arange(8) != 5]).all()
    torch.testing.assert_close(others, on_kernel, equal_nan=True)
    with pytest.raises(losskit.LossInputError, match="out of range"):  # default checks name it
        LF.cross_entropy(x, t)


def test_small_path_warnings_fire_as_before():
    """Every target ignored (mean), an empty batch, NaN logits, softmax output as input."""
    x = torch.randn(6, 4)
    ignored = torch.full((6,), -100)
    for fn in (LF.cross_entropy, LF.focal_loss, LF.poly1_cross_entropy):
        with pytest.warns(losskit.LossUsageWarning, match="every target is ignore_index"):
            assert torch.isnan(fn(x, ignored))
        with pytest.warns(losskit.LossUsageWarning, match="empty"):
            fn(torch.randn(0, 4), torch.zeros(0, dtype=torch.long))
        with pytest.warns(losskit.LossUsageWarning, match="NaN"):
            fn(torch.full((6, 4), float("nan")), torch.zeros(6, dtype=torch.long))
        with pytest.warns(losskit.LossUsageWarning, match="softmax output"):
            fn(torch.softmax(x, 1), torch.zeros(6, dtype=torch.long))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fn(x, torch.zeros(6, dtype=torch.long))  # nothing to say about a plain call
            with losskit.set_checks("off"):
                fn(x, ignored)  # checks off: silent


def test_focal_with_gamma_below_one_keeps_finite_gradients_for_confident_rows():
    """gamma in (0, 1) stays on the per-target formula: a class with p = 1 that is not the target
    would give the fused variant an infinite power derivative times zero (NaN)."""
    x = torch.tensor([[0.0, 200.0, 0.0], [1.0, 0.0, -1.0]], requires_grad=True)
    t = torch.tensor([0, 0])
    for gamma in (0.5, 2.0):
        loss = LF.focal_loss(x, t, gamma=gamma)
        (grad,) = torch.autograd.grad(loss, x)
        assert torch.isfinite(grad).all()
        xr = x.detach().double().requires_grad_()
        (grad_ref,) = torch.autograd.grad(focal_reference(xr, t, gamma=gamma), xr)
        torch.testing.assert_close(grad.double(), grad_ref, rtol=1e-5, atol=1e-6)


def test_the_small_path_is_torchs_op_for_cross_entropy():
    """Bit-for-bit torch's result (it is torch's op), float32 with probabilities too."""
    x = torch.randn(32, 6)
    t = torch.randint(0, 6, (32,))
    p = torch.softmax(torch.randn(32, 6), 1)
    assert torch.equal(LF.cross_entropy(x, t), F.cross_entropy(x, t))
    assert torch.equal(LF.cross_entropy(x, p, label_smoothing=0.2), F.cross_entropy(x, p, label_smoothing=0.2))


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int16, torch.int32])
def test_narrow_integer_ids_give_the_int64_values_on_the_small_path(dtype):
    # docs/losses.md promises the same value for any integer id dtype; torch's own ops take int64
    torch.manual_seed(0)
    x = torch.randn(8, 5, requires_grad=True)
    y = torch.randint(0, 5, (8,))
    for fn, kwargs, reference in [
        (LF.cross_entropy, {}, torch.nn.functional.cross_entropy(x, y)),
        (LF.focal_loss, {"gamma": 0.0}, torch.nn.functional.cross_entropy(x, y)),
        (LF.poly1_cross_entropy, {"epsilon": 0.0}, torch.nn.functional.cross_entropy(x, y)),
    ]:
        narrow = fn(x, y.to(dtype), **kwargs)
        assert torch.equal(narrow, fn(x, y, **kwargs))
        torch.testing.assert_close(narrow, reference)
