"""Parity of the regression losses with torch 2.13: values, gradients, weighted-mean denominators."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import losskit.functional as LF
from tests._parity import assert_parity

DTYPES = [torch.float32, torch.float64, torch.bfloat16]
REDUCTIONS = ["none", "mean", "sum"]
SHAPES = [(), (1,), (17,), (8, 3), (2, 3, 5, 7)]
LOSSES = {
    "mse_loss": (LF.mse_loss, F.mse_loss, {}),
    "l1_loss": (LF.l1_loss, F.l1_loss, {}),
    "huber_loss": (LF.huber_loss, F.huber_loss, {"delta": 0.7}),
    "smooth_l1_loss": (LF.smooth_l1_loss, F.smooth_l1_loss, {"beta": 0.4}),
}


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_regression_losses_match_torch(name, shape, dtype, reduction):
    ours, reference, extra = LOSSES[name]
    x = torch.randn(shape, dtype=torch.float64).to(dtype)
    y = torch.randn(shape, dtype=torch.float64).to(dtype)
    # gradients with respect to input and target (both can require grad)
    assert_parity(ours, reference, [x, y], grad_of=(0, 1), reduction=reduction, **extra)


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "huber_loss"])
@pytest.mark.parametrize("shape", SHAPES[1:], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_weighted_regression_losses_match_torch_2_13(name, shape, dtype, reduction):
    ours, reference, extra = LOSSES[name]
    x = torch.randn(shape, dtype=dtype)
    y = torch.randn(shape, dtype=dtype)
    w = torch.rand(shape, dtype=dtype) * 3
    assert_parity(
        lambda x, y, w, **kw: ours(x, y, weight=w, **kw),
        lambda x, y, w, **kw: reference(x, y, weight=w, **kw),
        [x, y, w],
        grad_of=(0, 1, 2),
        reduction=reduction,
        **extra,
    )


def test_weighted_mean_denominators_by_hand():
    # errors 1 and 3 with weights 1 and 3:
    # mse:   (1*1 + 3*9) / (1 + 3) = 7
    # l1:    (1*1 + 3*3) / (1 + 3) = 2.5
    # huber (delta=1): per-element 0.5 and 2.5, weighted 0.5 and 7.5; torch divides by n=2 -> 4
    x = torch.tensor([0.0, 0.0])
    y = torch.tensor([1.0, 3.0])
    w = torch.tensor([1.0, 3.0])
    assert LF.mse_loss(x, y, weight=w).item() == pytest.approx(7.0)
    assert LF.l1_loss(x, y, weight=w).item() == pytest.approx(2.5)
    assert LF.huber_loss(x, y, weight=w).item() == pytest.approx(4.0)


def test_regression_gradcheck_float64():
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    y = torch.randn(5, 3, dtype=torch.float64)
    w = torch.rand(5, 3, dtype=torch.float64)
    for fn in (LF.mse_loss, LF.l1_loss, LF.huber_loss):
        assert torch.autograd.gradcheck(lambda x: fn(x, y, weight=w), (x,))
    assert torch.autograd.gradcheck(lambda x: LF.smooth_l1_loss(x, y, beta=0.5), (x,))


def test_integer_target_of_same_shape_is_promoted_like_torch():
    x = torch.randn(6)
    y = torch.randint(0, 5, (6,))
    torch.testing.assert_close(LF.mse_loss(x, y), F.mse_loss(x, y))


def test_extreme_values_stay_finite_where_torch_does():
    x = torch.tensor([1e4, -1e4, 0.0])
    y = torch.tensor([-1e4, 1e4, 0.0])
    for ours, reference, extra in LOSSES.values():
        torch.testing.assert_close(ours(x, y, **extra), reference(x, y, **extra))
