"""The classification extras torch lacks: sigmoid/softmax focal loss, poly-1, BCE label smoothing.

Each is checked three ways: an identity with a torch loss (gamma=0 / epsilon=0 / smoothing=0),
values derived by hand (derivation in the comment), and a plain-torch float64 reference written
from the paper's formula; plus gradcheck and the guardrails.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

import losskit
import losskit.functional as LF
from tests._parity import assert_parity

# every test here runs through losskit's kernels and through the small-input path
pytestmark = pytest.mark.usefixtures("softmax_loss_path")

REDUCTIONS = ["none", "mean", "sum"]
DTYPES = [torch.float32, torch.float64, torch.bfloat16]


def _softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


# --------------------------------------------------------------------------- sigmoid focal


def torchvision_sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    """torchvision.ops.sigmoid_focal_loss as published (torchvision cannot be imported here)."""
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


@pytest.mark.parametrize("shape", [(9,), (6, 5), (2, 3, 4, 5)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_sigmoid_focal_gamma0_without_alpha_is_bce_with_logits(shape, dtype, reduction, soft):
    x = (torch.randn(shape, dtype=torch.float64) * 3).to(dtype)
    y = (torch.rand(shape) if soft else torch.randint(0, 2, shape).float()).to(dtype)
    assert_parity(
        lambda a, b: LF.sigmoid_focal_loss(a, b, alpha=-1, gamma=0, reduction=reduction),
        lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction),
        (x, y),
    )


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (-1.0, 2.0), (0.5, 0.5), (0.9, 3.0), (0.0, 1.0)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_sigmoid_focal_matches_torchvision_formula(alpha, gamma, reduction):
    x = torch.randn(7, 11, dtype=torch.float64) * 4
    y = torch.randint(0, 2, (7, 11)).double()
    y[0, :3] = torch.tensor([0.3, 0.7, 0.5])  # soft targets are allowed too
    assert_parity(
        lambda a, b: LF.sigmoid_focal_loss(a, b, alpha, gamma, reduction),
        lambda a, b: torchvision_sigmoid_focal_loss(a, b, alpha, gamma, reduction),
        (x, y),
    )


def test_sigmoid_focal_hand_values():
    # x=0, y=1: p_t = 1/2, BCE = ln 2, alpha_t = 0.25 -> 0.25 * (1/2)^2 * ln 2
    # x=2, y=0: 1 - p_t = sigma(2), BCE = softplus(2), alpha_t = 0.75 -> 0.75 * sigma(2)^2 * softplus(2)
    # x=-3, y=1, gamma=1, alpha off: (1 - p_t) = sigma(3), BCE = softplus(3)
    got = LF.sigmoid_focal_loss(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0]), 0.25, 2.0)
    want = torch.tensor([0.25 * 0.25 * math.log(2), 0.75 * _sigmoid(2) ** 2 * _softplus(2)])
    torch.testing.assert_close(got, want)
    got = LF.sigmoid_focal_loss(torch.tensor([-3.0]), torch.tensor([1.0]), -1, 1.0, "sum")
    torch.testing.assert_close(got, torch.tensor(_sigmoid(3) * _softplus(3)))


def test_sigmoid_focal_is_stable_for_confident_logits():
    # torchvision's 1 - p_t cancels to 0 in float32 at |x| = 20; losskit's form keeps it
    x = torch.tensor([20.0, -20.0, 60.0], requires_grad=True)
    y = torch.tensor([1.0, 0.0, 0.0])
    loss = LF.sigmoid_focal_loss(x, y, alpha=-1, gamma=2.0)
    # (1 - p_t)^2 * softplus(-20) = sigma(-20)^2 * softplus(-20) ~ e^-60
    torch.testing.assert_close(loss[0].double(), torch.tensor(math.exp(-60), dtype=torch.float64), rtol=1e-4, atol=0)
    torch.testing.assert_close(loss[2], torch.tensor(60.0))  # sigma(60)^2 * softplus(60)
    loss.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (-1.0, 0.7)])
def test_sigmoid_focal_gradcheck(alpha, gamma):
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = torch.rand(4, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: LF.sigmoid_focal_loss(a, y, alpha, gamma, "mean"), (x,))


def test_sigmoid_focal_module_defaults_to_mean():
    x, y = torch.randn(5, 3), torch.randint(0, 2, (5, 3)).float()
    module = losskit.nn.SigmoidFocalLoss(alpha=0.5, gamma=1.0)
    torch.testing.assert_close(module(x, y), torchvision_sigmoid_focal_loss(x, y, 0.5, 1.0, "mean"))
    assert repr(module) == "SigmoidFocalLoss(alpha=0.5, gamma=1.0, reduction='mean')"


# --------------------------------------------------------------------------- softmax focal


def focal_reference(x, y, weight=None, gamma=2.0, ignore_index=-100, reduction="mean"):
    """Lin et al. eq. (5) per sample with per-class alpha = weight, mean over sum of weights."""
    logp = torch.log_softmax(x.double(), 1)
    if x.dim() > 2:
        logp = logp.movedim(1, -1).reshape(-1, x.shape[1])
        y = y.reshape(-1)
    keep = y != ignore_index
    safe = torch.where(keep, y, 0)
    logp_t = logp.gather(1, safe[:, None])[:, 0]
    w = torch.ones(x.shape[1], dtype=torch.float64) if weight is None else weight.double()
    rows = -w[safe] * (1 - logp_t.exp()) ** gamma * logp_t * keep
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    return rows.sum() / (w[safe] * keep).sum()


@pytest.mark.parametrize("shape", [(13, 7), (3, 5, 4, 6), (4, 9, 31)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weight"])
def test_focal_gamma0_is_cross_entropy(shape, dtype, reduction, weighted):
    n_classes = shape[1]
    x = (torch.randn(shape, dtype=torch.float64) * 3).to(dtype)
    target = torch.randint(0, n_classes, (shape[0],) + shape[2:])
    target.view(-1)[::3] = -100
    weight = torch.rand(n_classes, dtype=torch.float64).to(dtype) + 0.1 if weighted else None
    assert_parity(
        lambda a: LF.focal_loss(a, target, weight, gamma=0.0, reduction=reduction),
        lambda a: F.cross_entropy(a, target, weight, reduction=reduction),
        (x,),
    )


@pytest.mark.parametrize("gamma", [0.5, 2.0, 5.0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_focal_matches_the_paper_formula(gamma, reduction):
    x = torch.randn(10, 6, 3, dtype=torch.float64) * 2
    y = torch.randint(0, 6, (10, 3))
    y[0, 0] = 4  # any in-range id as ignore_index
    weight = torch.rand(6, dtype=torch.float64) + 0.2
    ours = LF.focal_loss(x, y, weight, gamma=gamma, ignore_index=4, reduction=reduction)
    ref = focal_reference(x, y, weight, gamma, 4, reduction)
    torch.testing.assert_close(ours.reshape(ref.shape), ref)


def test_focal_hand_values():
    # logits [0, 0]: p = 1/2 -> (1/2)^2 * ln 2
    torch.testing.assert_close(LF.focal_loss(torch.zeros(1, 2), torch.tensor([0])), torch.tensor(0.25 * math.log(2)))
    # logits [ln 3, 0, 0], target 0: p = 3/5 -> (2/5)^2 * ln(5/3), gamma=2
    x = torch.tensor([[math.log(3), 0.0, 0.0]])
    torch.testing.assert_close(LF.focal_loss(x, torch.tensor([0])), torch.tensor(0.16 * math.log(5 / 3)))


def test_focal_gradcheck():
    x = torch.randn(5, 4, 2, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 4, (5, 2))
    w = torch.rand(4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: LF.focal_loss(a, y, w, gamma=1.5), (x,))


def test_focal_module():
    x, y, w = torch.randn(6, 3), torch.randint(0, 3, (6,)), torch.tensor([1.0, 2.0, 0.5])
    module = losskit.nn.FocalLoss(w, gamma=1.0, ignore_index=2)
    torch.testing.assert_close(module(x, y), focal_reference(x, y, w, 1.0, 2).float())
    assert repr(module) == "FocalLoss(gamma=1.0, reduction='mean', ignore_index=2, weight=[1, 2, 0.5])"


# --------------------------------------------------------------------------- poly-1


def poly1_reference(x, y, weight=None, epsilon=1.0, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Leng et al.'s reference: CE + epsilon * (1 - sum(labels * softmax)), labels smoothed;
    with class indices the row is weighted by w[y] like the CE term."""
    n_classes = x.shape[1]
    ce = F.cross_entropy(x, y, weight, ignore_index=ignore_index, reduction="none", label_smoothing=label_smoothing)
    probs = torch.softmax(x, 1)
    if y.is_floating_point():
        labels = y
        poly = epsilon * (1 - ((labels * (1 - label_smoothing) + label_smoothing / n_classes) * probs).sum(1))
        rows = ce + poly
        return {"none": rows, "sum": rows.sum(), "mean": rows.mean()}[reduction]
    keep = y != ignore_index
    safe = torch.where(keep, y, 0)
    labels = F.one_hot(safe, n_classes).movedim(-1, 1).to(x.dtype) * (1 - label_smoothing) + label_smoothing / n_classes
    w = torch.ones(n_classes, dtype=x.dtype) if weight is None else weight
    poly = epsilon * (1 - (labels * probs).sum(1)) * w[safe] * keep
    rows = ce + poly
    return {"none": rows, "sum": rows.sum(), "mean": rows.sum() / (w[safe] * keep).sum()}[reduction]


@pytest.mark.parametrize("shape", [(7,), (13, 7), (3, 5, 4, 6)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("probs", [False, True], ids=["ids", "probs"])
def test_poly1_epsilon0_is_cross_entropy(shape, dtype, reduction, probs):
    n_classes = shape[0] if len(shape) == 1 else shape[1]
    x = (torch.randn(shape, dtype=torch.float64) * 3).to(dtype)
    if probs:
        target = torch.softmax(torch.randn(shape, dtype=torch.float64), 0 if len(shape) == 1 else 1).to(dtype)
    else:
        target = torch.randint(0, n_classes, () if len(shape) == 1 else (shape[0],) + shape[2:])
        if target.dim():
            target.view(-1)[1::4] = -100
    weight = torch.rand(n_classes, dtype=torch.float64).to(dtype) + 0.1
    kw = dict(reduction=reduction, label_smoothing=0.2)
    assert_parity(
        lambda a: LF.poly1_cross_entropy(a, target, weight, epsilon=0.0, **kw),
        lambda a: F.cross_entropy(a, target, weight, **kw),
        (x,),
    )


@pytest.mark.parametrize("epsilon", [-0.5, 1.0, 4.0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("probs", [False, True], ids=["ids", "probs"])
def test_poly1_matches_the_paper_formula(epsilon, reduction, smoothing, probs):
    x = torch.randn(9, 5, 2, dtype=torch.float64)
    if probs:
        y = torch.softmax(torch.randn(9, 5, 2, dtype=torch.float64), 1)
        weight = None
    else:
        y = torch.randint(0, 5, (9, 2))
        y[3, 1] = -100
        weight = torch.rand(5, dtype=torch.float64) + 0.1
    assert_parity(
        lambda a: LF.poly1_cross_entropy(a, y, weight, epsilon=epsilon, reduction=reduction, label_smoothing=smoothing),
        lambda a: poly1_reference(a, y, weight, epsilon, -100, reduction, smoothing),
        (x,),
    )


def test_poly1_hand_values():
    # logits [0, 0], target 0: CE = ln 2, p_t = 1/2 -> ln 2 + 1 * (1 - 1/2)
    torch.testing.assert_close(
        LF.poly1_cross_entropy(torch.zeros(1, 2), torch.tensor([0])), torch.tensor(math.log(2) + 0.5)
    )
    # logits [ln 3, 0], target 0, epsilon 2: p_t = 3/4, CE = ln(4/3) -> ln(4/3) + 2 * 1/4
    got = LF.poly1_cross_entropy(torch.tensor([[math.log(3), 0.0]]), torch.tensor([0]), epsilon=2.0)
    torch.testing.assert_close(got, torch.tensor(math.log(4 / 3) + 0.5))


def test_poly1_gradcheck():
    x = torch.randn(4, 3, 2, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 3, (4, 2))
    w = torch.rand(3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: LF.poly1_cross_entropy(a, y, w, epsilon=2.0, label_smoothing=0.1), (x,))


def test_poly1_module():
    x, y = torch.randn(6, 3), torch.randint(0, 3, (6,))
    module = losskit.nn.Poly1CrossEntropyLoss(epsilon=2.0, label_smoothing=0.1)
    torch.testing.assert_close(module(x, y), poly1_reference(x, y, None, 2.0, -100, "mean", 0.1))


# --------------------------------------------------------------------------- BCE label smoothing


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
def test_bce_with_logits_label_smoothing_is_bce_on_smoothed_targets(reduction, smoothing):
    x = torch.randn(6, 4, dtype=torch.float64)
    y = torch.randint(0, 2, (6, 4)).double()
    pw = torch.tensor([1.0, 2.0, 3.0, 0.5], dtype=torch.float64)
    assert_parity(
        lambda a: LF.binary_cross_entropy_with_logits(
            a, y, reduction=reduction, pos_weight=pw, label_smoothing=smoothing
        ),
        lambda a: F.binary_cross_entropy_with_logits(
            a, y * (1 - smoothing) + smoothing / 2, reduction=reduction, pos_weight=pw
        ),
        (x,),
    )


def test_bce_with_logits_label_smoothing_hand_value():
    # y = 1, eps = 0.1 -> y' = 0.95; loss = 0.95 softplus(-4) + 0.05 softplus(4)
    got = LF.binary_cross_entropy_with_logits(torch.tensor([4.0]), torch.tensor([1.0]), label_smoothing=0.1)
    torch.testing.assert_close(got, torch.tensor(0.95 * _softplus(-4) + 0.05 * _softplus(4)))
    module = losskit.nn.BCEWithLogitsLoss(label_smoothing=0.1)
    torch.testing.assert_close(module(torch.tensor([4.0]), torch.tensor([1.0])), got)


# --------------------------------------------------------------------------- guardrails


@pytest.mark.parametrize(
    "call,pattern",
    [
        (lambda: LF.sigmoid_focal_loss(torch.randn(4), torch.tensor([0, 1, 1, 0])), r"target has dtype int64"),
        (lambda: LF.sigmoid_focal_loss(torch.randn(4), torch.rand(4), gamma=-1.0), r"gamma is -1.0; expected"),
        (lambda: LF.sigmoid_focal_loss(torch.randn(4), torch.rand(4), alpha=1.5), r"alpha is 1.5; expected"),
        (lambda: LF.sigmoid_focal_loss(torch.randn(4, 1), torch.rand(4)), r"Use input.squeeze\(-1\)"),
        (lambda: LF.sigmoid_focal_loss(torch.randn(4), torch.rand(4) * 3), r"outside \[0, 1\]"),
        (lambda: LF.focal_loss(torch.randn(4, 3), torch.tensor([0, 1, 2, 3])), r"out of range"),
        (lambda: LF.focal_loss(torch.randn(4, 3), torch.tensor([0.0, 1, 2, 1])), r"float class indices"),
        (
            lambda: LF.focal_loss(torch.randn(4, 3), torch.softmax(torch.randn(4, 3), 1)),
            r"expected int64 class indices of shape \(4,\)\.",
        ),
        (lambda: LF.focal_loss(torch.randn(4, 3), torch.tensor([0, 1, 2, 1]), gamma=float("nan")), r"gamma is nan"),
        (
            lambda: LF.poly1_cross_entropy(torch.randn(4, 3), torch.tensor([0, 1, 2, 1]), epsilon=-1.0),
            r"epsilon is -1.0; expected a finite number > -1",
        ),
        (
            lambda: LF.poly1_cross_entropy(torch.randn(4, 3), torch.tensor([[0], [1], [2], [1]])),
            r"Use target.squeeze\(1\)",
        ),
        (
            lambda: LF.binary_cross_entropy_with_logits(torch.randn(4), torch.rand(4), label_smoothing=2.0),
            r"label_smoothing must lie in \[0, 1\]",
        ),
        (lambda: losskit.nn.FocalLoss(gamma=-2.0), r"FocalLoss|focal_loss: gamma"),
    ],
)
def test_extras_guardrails(call, pattern):
    with pytest.raises(losskit.LossInputError, match=pattern):
        call()


def test_extras_warn_on_probabilities_given_as_logits():
    with losskit.set_checks("full"):
        with pytest.warns(losskit.LossUsageWarning, match="look like softmax output"):
            LF.focal_loss(torch.softmax(torch.randn(8, 4), 1), torch.randint(0, 4, (8,)))
        with pytest.warns(losskit.LossUsageWarning, match="looks like sigmoid output"):
            LF.sigmoid_focal_loss(torch.rand(64), torch.randint(0, 2, (64,)).float())
        with pytest.warns(losskit.LossUsageWarning, match="every target is ignore_index"):
            LF.focal_loss(torch.randn(3, 4), torch.full((3,), -100))
        with pytest.warns(losskit.LossUsageWarning, match="every target is ignore_index"):
            LF.poly1_cross_entropy(torch.randn(3, 4), torch.full((3,), -100))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LF.focal_loss(torch.randn(8, 4), torch.randint(0, 4, (8,)))
