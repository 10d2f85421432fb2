"""Inputs torch accepts that losskit used to get wrong (issue 15), each against torch itself:
every target ignored, zero total weight, empty K-dimensional batches, autocast, complex L1,
and the pos_weight shapes torch broadcasts."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

import losskit.functional as LF

# every test here runs through losskit's kernels and through the small-input path
pytestmark = pytest.mark.usefixtures("softmax_loss_path")


def _value_and_grad(fn, x, *args, upstream=None, **kwargs):
    x = x.detach().clone().requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the all-ignored warning is expected here
        loss = fn(x, *args, **kwargs)
    grad = torch.autograd.grad(loss, x, upstream if upstream is not None else torch.ones_like(loss))[0]
    return loss.detach(), grad


def _same(ours, theirs):
    """Equal values and gradients, NaN where torch has NaN, inf where torch has inf."""
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, equal_nan=True)


SMOOTHING = [0.0, 0.1]


@pytest.mark.parametrize("label_smoothing", SMOOTHING)
@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 5)], ids=str)
def test_every_target_ignored_gives_nan_loss_and_zero_gradients(shape, label_smoothing):
    x = torch.randn(shape)
    t = torch.full((shape[0], *shape[2:]), -100)
    ours = _value_and_grad(LF.cross_entropy, x, t, label_smoothing=label_smoothing)
    theirs = _value_and_grad(F.cross_entropy, x, t, label_smoothing=label_smoothing)
    _same(ours, theirs)
    assert torch.isnan(ours[0]) and bool((ours[1] == 0).all())


def test_every_target_ignored_nll_and_weighted():
    x, t, w = torch.randn(5, 3).log_softmax(1), torch.full((5,), 7), torch.rand(3)
    _same(_value_and_grad(LF.nll_loss, x, t, w, ignore_index=7), _value_and_grad(F.nll_loss, x, t, w, ignore_index=7))
    _same(
        _value_and_grad(LF.cross_entropy, x, t, w, ignore_index=7),
        _value_and_grad(F.cross_entropy, x, t, w, ignore_index=7),
    )


@pytest.mark.parametrize("label_smoothing", SMOOTHING)
def test_zero_total_class_weight_matches_torch_nan_not_inf(label_smoothing):
    """Counted targets whose class weight is 0: torch's mean is NaN (not inf) and so are its
    gradients; with label smoothing the summed loss is not 0, so x / 0 would be inf."""
    x, t = torch.randn(4, 3), torch.zeros(4, dtype=torch.long)
    w = torch.tensor([0.0, 1.0, 2.0])
    ours = _value_and_grad(LF.cross_entropy, x, t, w, label_smoothing=label_smoothing)
    theirs = _value_and_grad(F.cross_entropy, x, t, w, label_smoothing=label_smoothing)
    _same(ours, theirs)
    assert torch.isnan(ours[0])


@pytest.mark.parametrize("label_smoothing", SMOOTHING)
@pytest.mark.parametrize("case", ["all ignored", "zero weight"])
def test_linear_cross_entropy_nothing_counted_matches_torch(case, label_smoothing):
    h, W = torch.randn(4, 3), torch.randn(5, 3)
    t = torch.zeros(4, dtype=torch.long)
    kw = {"ignore_index": 0} if case == "all ignored" else {"weight": torch.tensor([0.0, 1, 1, 1, 1])}
    ours = _value_and_grad(lambda h_: LF.linear_cross_entropy(h_, W, t, label_smoothing=label_smoothing, **kw), h)
    theirs = _value_and_grad(lambda h_: F.cross_entropy(h_ @ W.T, t, label_smoothing=label_smoothing, **kw), h)
    _same(ours, theirs)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("shape", [(0, 3, 4), (0, 3, 2, 2), (0, 3)], ids=str)
def test_empty_batches_of_every_rank(shape, reduction):
    x = torch.randn(shape)
    t = torch.zeros((0, *shape[2:]), dtype=torch.long)
    for ours_fn, torch_fn, inp in ((LF.cross_entropy, F.cross_entropy, x), (LF.nll_loss, F.nll_loss, x)):
        ours = _value_and_grad(ours_fn, inp, t, reduction=reduction)
        theirs = _value_and_grad(torch_fn, inp, t, reduction=reduction)
        assert ours[0].shape == theirs[0].shape and ours[1].shape == theirs[1].shape
        _same(ours, theirs)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("loss", ["cross_entropy", "nll_loss"])
def test_autocast_gives_torch_dtype_float32(loss, reduction):
    """Cross-entropy and NLL are float32 ops under autocast: a float32 loss (no bf16 rounding,
    no fp16 overflow of a sum) and the gradient in the input's dtype."""
    x = torch.randn(64, 7, dtype=torch.bfloat16)
    if loss == "nll_loss":
        x = x.float().log_softmax(1).bfloat16()
    t = torch.randint(0, 7, (64,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = _value_and_grad(getattr(LF, loss), x, t, reduction=reduction)
        theirs = _value_and_grad(getattr(F, loss), x, t, reduction=reduction)
    assert ours[0].dtype == theirs[0].dtype == torch.float32
    assert ours[1].dtype == theirs[1].dtype == torch.bfloat16
    _same(ours, theirs)


def test_autocast_sum_of_large_fp16_losses_does_not_overflow():
    # 70,000 rows with a loss of about 1 each: 70,000 > float16's largest value (65,504)
    x = torch.zeros(70_000, 3, dtype=torch.float16)
    t = torch.zeros(70_000, dtype=torch.long)
    with torch.autocast("cpu", dtype=torch.float16):
        loss = LF.cross_entropy(x, t, reduction="sum")
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, torch.tensor(70_000 * 1.0986123), rtol=1e-4, atol=0)  # 70,000 ln 3


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_l1_loss_on_complex_tensors_as_torch(reduction):
    x, y = torch.randn(5, 3, dtype=torch.complex64), torch.randn(5, 3, dtype=torch.complex64)
    ours = LF.l1_loss(x, y, reduction=reduction)
    torch.testing.assert_close(ours, F.l1_loss(x, y, reduction=reduction))
    assert not ours.is_complex()


@pytest.mark.parametrize(
    "pos_weight_shape",
    [(3, 1, 1), (1, 3, 1, 1), (2, 3, 4, 4), (4,), (1,), ()],
    ids=str,
)
def test_pos_weight_broadcasts_as_in_torch(pos_weight_shape):
    x, y = torch.randn(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    pw = torch.rand(pos_weight_shape) + 0.5
    _same(
        _value_and_grad(LF.binary_cross_entropy_with_logits, x, y, pos_weight=pw),
        _value_and_grad(F.binary_cross_entropy_with_logits, x, y, pos_weight=pw),
    )
