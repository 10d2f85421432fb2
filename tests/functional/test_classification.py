"""Parity of the classification losses with torch: values and gradients over a grid."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

import losskit.functional as LF
from tests._parity import assert_parity, run

# every test here runs through losskit's kernels and through the small-input path
pytestmark = pytest.mark.usefixtures("softmax_loss_path")

DTYPES = [torch.float32, torch.float64, torch.bfloat16]
REDUCTIONS = ["none", "mean", "sum"]
# (input shape, description): no batch, 2-D, K-dim segmentation, odd sizes
SHAPES = [(7,), (13, 7), (3, 5, 4, 6), (4, 47, 31), (2, 3, 1, 5, 2)]


def _index_target(shape, n_classes, ignore_fraction=0.0, ignore_index=-100):
    tshape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    target = torch.randint(0, n_classes, tshape)
    if not tshape:  # one unbatched target: never the ignored id (that is the all-ignored case)
        return target if int(target) != ignore_index else (target + 1) % n_classes
    if ignore_fraction:
        mask = torch.rand(tshape) < ignore_fraction
        if mask.all():
            mask.view(-1)[0] = False
        target = torch.where(mask, torch.full_like(target, ignore_index), target)
    return target


def _prob_target(shape, dtype):
    class_dim = 0 if len(shape) == 1 else 1
    return torch.softmax(torch.randn(shape, dtype=torch.float64) * 2, class_dim).to(dtype)


CE_OPTIONS = {
    "plain": {},
    "weight": {"weight": True},
    "ignore": {"ignore": True},
    "ignore_index=2": {"ignore": True, "ignore_index": 2},
    "smoothing": {"label_smoothing": 0.15},
    "weight+ignore+smoothing": {"weight": True, "ignore": True, "label_smoothing": 0.3},
    "smoothing=1": {"label_smoothing": 1.0, "weight": True},
}


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("option", list(CE_OPTIONS))
def test_cross_entropy_class_indices_match_torch(shape, dtype, reduction, option):
    opts = CE_OPTIONS[option]
    n_classes = shape[0] if len(shape) == 1 else shape[1]
    x = (torch.randn(shape, dtype=torch.float64) * 3).to(dtype)
    ignore_index = opts.get("ignore_index", -100)
    target = _index_target(shape, n_classes, 0.3 if opts.get("ignore") else 0.0, ignore_index)
    kwargs = dict(reduction=reduction, ignore_index=ignore_index, label_smoothing=opts.get("label_smoothing", 0.0))
    if opts.get("weight"):
        kwargs["weight"] = (torch.rand(n_classes, dtype=torch.float64) + 0.1).to(dtype)
    assert_parity(LF.cross_entropy, F.cross_entropy, [x, target], **kwargs)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing,weighted", [(0.0, False), (0.2, False), (0.0, True), (0.1, True)])
def test_cross_entropy_probabilities_match_torch_including_target_grad(shape, dtype, reduction, smoothing, weighted):
    n_classes = shape[0] if len(shape) == 1 else shape[1]
    x = torch.randn(shape, dtype=dtype) * 3
    y = _prob_target(shape, dtype)
    kwargs = dict(reduction=reduction, label_smoothing=smoothing)
    if weighted:
        kwargs["weight"] = torch.rand(n_classes, dtype=dtype) + 0.1
    # gradients with respect to both logits and soft targets (distillation trains through both)
    assert_parity(LF.cross_entropy, F.cross_entropy, [x, y], grad_of=(0, 1), **kwargs)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_probabilities_bfloat16_match_torch(reduction):
    x = (torch.randn(16, 9) * 3).bfloat16()
    y = _prob_target((16, 9), torch.bfloat16)
    assert_parity(LF.cross_entropy, F.cross_entropy, [x, y], reduction=reduction, label_smoothing=0.1)


def test_cross_entropy_on_transposed_non_contiguous_input():
    # language-model layout: logits (B, T, V) moved to (B, V, T) without a copy
    logits = torch.randn(2, 9, 11).transpose(1, 2)
    target = torch.randint(0, 11, (2, 9))
    assert not logits.is_contiguous()
    assert_parity(LF.cross_entropy, F.cross_entropy, [logits, target])


def test_cross_entropy_int32_and_uint8_targets_equal_int64():
    x = torch.randn(6, 4)
    t = torch.randint(0, 4, (6,))
    expected = F.cross_entropy(x, t)
    for dtype in (torch.int32, torch.uint8, torch.int16):
        torch.testing.assert_close(LF.cross_entropy(x, t.to(dtype)), expected)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("prob", [False, True])
def test_cross_entropy_extreme_logits_stay_finite_where_torch_does(reduction, prob):
    x = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, -1e4]])
    target = torch.tensor([1, 2, 0]) if not prob else torch.softmax(torch.randn(3, 3), 1)
    loss, (grad,) = run(LF.cross_entropy, [x, target], (0,), reduction=reduction)
    loss_ref, (grad_ref,) = run(F.cross_entropy, [x, target], (0,), reduction=reduction)
    assert torch.isfinite(loss_ref).all() and torch.isfinite(grad_ref).all()
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
    torch.testing.assert_close(loss, loss_ref)
    torch.testing.assert_close(grad, grad_ref)


def test_cross_entropy_masked_minus_inf_logits_match_torch():
    # -inf logits are a common way to mask classes; the target class is never masked
    x = torch.randn(5, 6)
    x[:, 4:] = float("-inf")
    target = torch.randint(0, 4, (5,))
    assert_parity(LF.cross_entropy, F.cross_entropy, [x, target])


def test_cross_entropy_all_ignored_sum_is_zero_like_torch():
    x = torch.randn(4, 3)
    t = torch.full((4,), -100)
    assert_parity(LF.cross_entropy, F.cross_entropy, [x, t], reduction="sum")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_low_precision_cross_entropy_is_at_least_as_accurate_as_torch(dtype, smoothing):
    """float16/bfloat16 accumulate in float32: the error against a float64 reference of the
    same (rounded) inputs is no larger than torch's, summed over many trials."""
    err_ours = err_torch = 0.0
    grad_err_ours = grad_err_torch = 0.0
    for _ in range(20):
        x = (torch.randn(64, 1000) * 4).to(dtype)
        t = torch.randint(0, 1000, (64,))
        ref, (gref,) = run(F.cross_entropy, [x.double(), t], (0,), label_smoothing=smoothing)
        ours, (g,) = run(LF.cross_entropy, [x, t], (0,), label_smoothing=smoothing)
        theirs, (gt,) = run(F.cross_entropy, [x, t], (0,), label_smoothing=smoothing)
        assert ours.dtype == dtype and g.dtype == dtype
        err_ours += abs(float(ours.double() - ref))
        err_torch += abs(float(theirs.double() - ref))
        grad_err_ours += float((g.double() - gref).abs().sum())
        grad_err_torch += float((gt.double() - gref).abs().sum())
    assert err_ours <= err_torch * 1.001 + 1e-12
    assert grad_err_ours <= grad_err_torch * 1.001 + 1e-12


def test_cross_entropy_gradcheck_float64():
    x = torch.randn(5, 4, 3, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[0, 1, -100], [3, 3, 2], [1, -100, 0], [2, 2, 2], [0, 1, 3]])
    w = torch.rand(4, dtype=torch.float64) + 0.5
    for reduction, eps in itertools.product(REDUCTIONS, [0.0, 0.25]):
        assert torch.autograd.gradcheck(
            lambda x: LF.cross_entropy(x, t, w, reduction=reduction, label_smoothing=eps), (x,)
        )


def test_cross_entropy_probability_gradcheck_float64_logits_and_targets():
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    y = torch.softmax(torch.randn(4, 5, dtype=torch.float64), 1).requires_grad_()
    w = torch.rand(5, dtype=torch.float64) + 0.5
    assert torch.autograd.gradcheck(lambda x, y: LF.cross_entropy(x, y, w, label_smoothing=0.1), (x, y))


def test_cross_entropy_hand_computed_value():
    # logits (2, 0, 0): lse = ln(e^2 + 2) = 2.2395; loss for class 0 = 0.2395
    # logits (0, 0, 0): loss = ln 3 = 1.0986; mean = 0.66906
    x = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    loss = LF.cross_entropy(x, torch.tensor([0, 2]))
    expected = ((torch.log(torch.exp(torch.tensor(2.0)) + 2) - 2) + torch.log(torch.tensor(3.0))) / 2
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted,ignore", [(False, False), (True, False), (False, True), (True, True)])
def test_nll_loss_matches_torch(shape, dtype, reduction, weighted, ignore):
    n_classes = shape[0] if len(shape) == 1 else shape[1]
    class_dim = 0 if len(shape) == 1 else 1
    logp = torch.log_softmax(torch.randn(shape, dtype=torch.float64), class_dim).to(dtype)
    target = _index_target(shape, n_classes, 0.3 if ignore else 0.0)
    kwargs = dict(reduction=reduction)
    if weighted:
        kwargs["weight"] = (torch.rand(n_classes, dtype=torch.float64) + 0.1).to(dtype)
    assert_parity(LF.nll_loss, F.nll_loss, [logp, target], **kwargs)


def test_nll_of_log_softmax_equals_cross_entropy():
    x = torch.randn(10, 6, dtype=torch.float64)
    t = torch.randint(0, 6, (10,))
    torch.testing.assert_close(LF.nll_loss(torch.log_softmax(x, 1), t), LF.cross_entropy(x, t))


def test_nll_gradcheck_float64():
    x = torch.log_softmax(torch.randn(6, 4, dtype=torch.float64), 1).requires_grad_()
    t = torch.tensor([0, 3, -100, 2, 1, 1])
    w = torch.rand(4, dtype=torch.float64) + 0.5
    assert torch.autograd.gradcheck(lambda x: LF.nll_loss(x, t, w), (x,))


BINARY_SHAPES = [(), (9,), (6, 5), (2, 3, 4, 5)]


@pytest.mark.parametrize("shape", BINARY_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_binary_cross_entropy_matches_torch(shape, dtype, reduction, weighted):
    p = torch.rand(shape, dtype=torch.float64).clamp(0.02, 0.98).to(dtype)
    y = torch.rand(shape, dtype=torch.float64).to(dtype)
    kwargs = dict(reduction=reduction)
    if weighted:
        kwargs["weight"] = torch.rand(shape[-1:] if shape else (), dtype=torch.float64).to(dtype)
    assert_parity(LF.binary_cross_entropy, F.binary_cross_entropy, [p, y], **kwargs)


@pytest.mark.parametrize("shape", BINARY_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted,pos_weighted", [(False, False), (True, False), (False, True), (True, True)])
def test_binary_cross_entropy_with_logits_matches_torch(shape, dtype, reduction, weighted, pos_weighted):
    x = (torch.randn(shape, dtype=torch.float64) * 3).to(dtype)
    y = (torch.rand(shape, dtype=torch.float64) > 0.5).to(dtype)
    kwargs = dict(reduction=reduction)
    if weighted:
        kwargs["weight"] = (
            torch.rand(shape[:1] + (1,) * (len(shape) - 1), dtype=torch.float64).to(dtype)
            if shape
            else torch.tensor(0.7, dtype=dtype)
        )
    if pos_weighted:
        kwargs["pos_weight"] = (torch.rand(shape[-1:], dtype=torch.float64) * 3).to(dtype)
    assert_parity(LF.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits, [x, y], **kwargs)


def test_binary_losses_gradcheck_float64():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = torch.rand(4, 3, dtype=torch.float64)
    pw = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: LF.binary_cross_entropy_with_logits(x, y, pos_weight=pw), (x,))
    p = torch.rand(4, 3, dtype=torch.float64).clamp(0.1, 0.9).requires_grad_()
    assert torch.autograd.gradcheck(lambda p: LF.binary_cross_entropy(p, y), (p,))


def test_binary_cross_entropy_with_logits_extreme_logits_finite():
    x = torch.tensor([1e4, -1e4, 50.0, -50.0], requires_grad=True)
    y = torch.tensor([0.0, 1.0, 1.0, 0.0])
    loss = LF.binary_cross_entropy_with_logits(x, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(x.detach(), y))


@pytest.mark.parametrize("chunk_bytes", [1, 64, 1000, 10**6])
@pytest.mark.parametrize("shape", [(37, 11), (3, 5, 4, 6), (2, 7, 33)], ids=str)
@pytest.mark.parametrize("prob", [False, True])
def test_cross_entropy_chunking_does_not_change_results(monkeypatch, chunk_bytes, shape, prob):
    """Tiny chunk budgets force every chunking path: several rows, one row, and a split of the
    spatial axis of one sample."""
    from losskit.autograd import cross_entropy as kernel

    monkeypatch.setattr(kernel, "CHUNK_BYTES", chunk_bytes)
    x = torch.randn(shape, dtype=torch.float64)
    target = _prob_target(shape, torch.float64) if prob else _index_target(shape, shape[1], 0.2)
    w = torch.rand(shape[1], dtype=torch.float64) + 0.1
    assert_parity(
        LF.cross_entropy,
        F.cross_entropy,
        [x, target],
        grad_of=(0, 1) if prob else (0,),
        reduction="none",
        weight=w,
        label_smoothing=0.1,
    )
    bf = x.bfloat16()
    assert_parity(LF.cross_entropy, F.cross_entropy, [bf, target.bfloat16() if prob else target], reduction="sum")
