"""Dice and Tversky losses: identities, hand values, an independent reference of
segmentation_models_pytorch's algorithm, gradcheck and guardrails."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import losskit
import losskit.functional as LF

# every test here runs through losskit's kernels and through the small-input path
pytestmark = pytest.mark.usefixtures("softmax_loss_path")


def smp_reference(
    logits,
    target,
    mode,
    *,
    alpha=0.5,
    beta=0.5,
    smooth=0.0,
    eps=1e-7,
    ignore_index=None,
    from_logits=True,
    log_loss=False,
    weight=None,
    reduction="mean",
):
    """smp.losses.TverskyLoss (gamma=1) written out loop by loop in float64: per class, over the
    batch and every pixel; classes absent from the targets give 0 but count in the mean.
    alpha = beta = 1/2 with smooth = 0 is smp's DiceLoss."""
    x = logits.double()
    n_classes = 1 if mode == "binary" else x.shape[1]
    if mode == "multiclass":
        probs = torch.softmax(x, 1) if from_logits else x
    else:
        probs = torch.sigmoid(x) if from_logits else x
    probs = probs.reshape(x.shape[0], n_classes, -1)
    if mode == "multiclass":
        ids = target.reshape(x.shape[0], -1)
        valid = torch.ones_like(ids, dtype=torch.bool) if ignore_index is None else ids != ignore_index
        onehot = torch.stack([(ids == c) & valid for c in range(n_classes)], 1).double()
        valid = valid[:, None, :].expand_as(probs)
    else:
        t = target.reshape(probs.shape).double()
        valid = torch.ones_like(t, dtype=torch.bool) if ignore_index is None else t != ignore_index
        onehot = torch.where(valid, t, torch.zeros_like(t))
    losses = []
    for c in range(n_classes):
        p, t = probs[:, c][valid[:, c]], onehot[:, c][valid[:, c]]
        tp, fp, fn = (p * t).sum(), (p * (1 - t)).sum(), ((1 - p) * t).sum()
        if alpha == beta == 0.5:  # smp's DiceLoss formula: (2 I + s) / (|p| + |t| + s)
            score = (2 * tp + smooth) / torch.clamp(p.sum() + t.sum() + smooth, min=eps)
        else:
            score = (tp + smooth) / torch.clamp(tp + alpha * fp + beta * fn + smooth, min=eps)
        loss = -torch.log(torch.clamp(score, min=eps)) if log_loss else 1 - score
        losses.append(loss * (t.sum() > 0))
    losses = torch.stack(losses)
    if weight is not None:
        losses = losses * weight.double()
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / (len(losses) if weight is None else weight.double().sum())


def _one_hot(ids, n_classes):
    return F.one_hot(ids, n_classes).movedim(-1, 1).float()


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_dice_of_a_perfect_prediction_is_0_and_of_a_disjoint_one_is_1(mode):
    ids = torch.randint(0, 3, (2, 5, 6))
    ids[0, 0, :3] = torch.tensor([0, 1, 2])  # every class present
    if mode == "binary":
        target = (ids == 1).float().unsqueeze(1)
        perfect, disjoint = target, 1 - target
    elif mode == "multiclass":
        target = ids
        perfect, disjoint = _one_hot(ids, 3), 1 - _one_hot(ids, 3)
    else:
        target = _one_hot(ids, 3)
        target[:, 0] = (torch.rand(2, 5, 6) < 0.5).float()  # labels overlap
        perfect, disjoint = target, 1 - target
    zero = LF.dice_loss(perfect, target, mode, from_logits=False)
    one = LF.dice_loss(disjoint, target, mode, from_logits=False)
    torch.testing.assert_close(zero, torch.tensor(0.0))
    torch.testing.assert_close(one, torch.tensor(1.0))
    torch.testing.assert_close(LF.tversky_loss(perfect, target, mode, alpha=0.3, beta=0.7, from_logits=False), zero)
    torch.testing.assert_close(LF.tversky_loss(disjoint, target, mode, alpha=0.3, beta=0.7, from_logits=False), one)


def test_dice_hand_values():
    # class 0: p = [0.2, 0.6], t = [1, 0] -> I = 0.2, |p| + |t| = 1.8 -> D = 0.4 / 1.8 = 2/9
    # class 1: p = [0.8, 0.4], t = [0, 1] -> I = 0.4, |p| + |t| = 2.2 -> D = 0.8 / 2.2 = 4/11
    # class 2: absent from the target -> 0, but it counts in the mean over 3 classes
    probs = torch.tensor([[[0.2, 0.6], [0.8, 0.4], [0.0, 0.0]]])  # (N=1, C=3, 2 pixels)
    target = torch.tensor([[0, 1]])
    per_class = LF.dice_loss(probs, target, from_logits=False, reduction="none")
    torch.testing.assert_close(per_class, torch.tensor([1 - 2 / 9, 1 - 4 / 11, 0.0]))
    torch.testing.assert_close(LF.dice_loss(probs, target, from_logits=False), per_class.sum() / 3)
    # weighted mean: (1 * (7/9) + 3 * (7/11) + 0) / (1 + 3 + 1)
    w = torch.tensor([1.0, 3.0, 1.0])
    torch.testing.assert_close(
        LF.dice_loss(probs, target, from_logits=False, weight=w), torch.tensor((7 / 9 + 3 * 7 / 11) / 5)
    )
    # smooth = 1: class 0 -> (0.4 + 1) / (1.8 + 1) = 1/2
    torch.testing.assert_close(
        LF.dice_loss(probs, target, from_logits=False, smooth=1.0, reduction="none")[0], torch.tensor(0.5)
    )
    # log_loss: -ln(2/9)
    torch.testing.assert_close(
        LF.dice_loss(probs, target, from_logits=False, log_loss=True, reduction="none")[0],
        -torch.log(torch.tensor(2 / 9)),
    )


def test_tversky_hand_value_and_dice_identity():
    # binary: p = [0.9, 0.5, 0.1], t = [1, 1, 0] -> TP = 0.9 + 0.5 = 1.4, FP = 0.1,
    # FN = 0.1 + 0.5 = 0.6; alpha = 0.3, beta = 0.7: T = 1.4 / (1.4 + 0.03 + 0.42) = 1.4 / 1.85
    probs = torch.tensor([[[0.9, 0.5, 0.1]]])
    target = torch.tensor([[[1.0, 1.0, 0.0]]])
    got = LF.tversky_loss(probs, target, "binary", alpha=0.3, beta=0.7, from_logits=False)
    torch.testing.assert_close(got, torch.tensor(1 - 1.4 / 1.85))
    logits = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    ids = torch.randint(0, 4, (3, 5, 5))
    torch.testing.assert_close(LF.tversky_loss(logits, ids), LF.dice_loss(logits, ids))


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize(
    "options",
    [{}, {"smooth": 1.0}, {"ignore_index": 255}, {"log_loss": True}, {"weighted": True}, {"alpha": 0.2, "beta": 0.8}],
    ids=lambda o: ",".join(o) or "plain",
)
def test_dice_and_tversky_match_the_smp_algorithm(mode, reduction, options):
    options = dict(options)
    n_classes = 1 if mode == "binary" else 4
    logits = torch.randn(3, n_classes, 6, 7, dtype=torch.float64, requires_grad=True)
    ids = torch.randint(0, 4, (3, 6, 7))
    ids[ids == 3] = 2 if mode == "multiclass" else 3  # class 3 absent in multiclass mode
    if mode == "multiclass":
        target = ids
    elif mode == "binary":
        target = (ids == 1).double().unsqueeze(1)
    else:
        target = (torch.rand(3, 4, 6, 7) < 0.3).double()
    if options.get("ignore_index"):
        mask = torch.rand(ids.shape) < 0.2
        if mode == "multiclass":
            target = torch.where(mask, 255, target)
        else:
            target = torch.where(mask.unsqueeze(1).expand_as(target), 255.0, target)
    weight = torch.rand(n_classes, dtype=torch.float64) + 0.5 if options.pop("weighted", False) else None
    kw = dict(options, weight=weight, reduction=reduction)
    tversky = "alpha" in options
    ours = (LF.tversky_loss if tversky else LF.dice_loss)(logits, target, mode, **kw)
    ref = smp_reference(logits, target, mode, **kw)
    torch.testing.assert_close(ours, ref)
    (g_ours,) = torch.autograd.grad(ours.sum(), logits)
    (g_ref,) = torch.autograd.grad(ref.sum(), logits)
    torch.testing.assert_close(g_ours, g_ref)


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_dice_gradcheck(mode):
    n_classes = 1 if mode == "binary" else 3
    x = torch.randn(2, n_classes, 3, 3, dtype=torch.float64, requires_grad=True)
    ids = torch.randint(0, 3, (2, 3, 3))
    target = ids if mode == "multiclass" else (ids == 1).double().unsqueeze(1).expand(2, n_classes, 3, 3)
    assert torch.autograd.gradcheck(lambda a: LF.dice_loss(a, target, mode, smooth=0.5), (x,))
    assert torch.autograd.gradcheck(lambda a: LF.tversky_loss(a, target, mode, alpha=0.3, beta=0.7), (x,))


def test_dice_bfloat16_computes_in_float32():
    logits = torch.randn(2, 3, 8, 8)
    ids = torch.randint(0, 3, (2, 8, 8))
    low = LF.dice_loss(logits.bfloat16(), ids)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), LF.dice_loss(logits, ids), rtol=1e-2, atol=1e-2)


def test_modules_match_the_smp_algorithm():
    logits = torch.randn(2, 3, 4, 4)
    ids = torch.randint(0, 3, (2, 4, 4))
    ids[0, 0] = 255
    dice = losskit.nn.DiceLoss(smooth=1.0, ignore_index=255)
    expected = smp_reference(logits, ids, "multiclass", smooth=1.0, ignore_index=255).float()
    torch.testing.assert_close(dice(logits, ids), expected)
    assert repr(dice) == "DiceLoss(mode='multiclass', reduction='mean', smooth=1.0, ignore_index=255)"
    tversky = losskit.nn.TverskyLoss(alpha=0.3, beta=0.7, ignore_index=255)
    expected = smp_reference(logits, ids, "multiclass", alpha=0.3, beta=0.7, ignore_index=255).float()
    torch.testing.assert_close(tversky(logits, ids), expected)
    ids[0, 0] = 0
    w = torch.tensor([0.5, 1.0, 2.0])
    combined = losskit.nn.CrossEntropyDiceLoss(w, dice_weight=0.5)
    torch.testing.assert_close(
        combined(logits, ids),
        F.cross_entropy(logits, ids, w) + 0.5 * smp_reference(logits, ids, "multiclass", weight=w).float(),
    )


@pytest.mark.parametrize(
    "call,pattern",
    [
        (
            lambda: LF.dice_loss(torch.randn(2, 3, 4), torch.randint(0, 3, (2, 4)), "softmax"),
            r"mode is 'softmax'; expected one of",
        ),
        (
            lambda: LF.dice_loss(torch.randn(2, 3, 4), torch.randint(0, 3, (2, 4)).float()),
            r"expected int64 class ids of shape \(2, 4\)",
        ),
        (lambda: LF.dice_loss(torch.randn(2, 3, 4), torch.randint(0, 3, (2, 1, 4))), r"Use target.squeeze\(1\)"),
        (lambda: LF.dice_loss(torch.randn(2, 3, 4), torch.randint(0, 3, (2, 3, 4))), r"Use target.argmax\(1\)"),
        (
            lambda: LF.dice_loss(torch.randn(2, 3, 4), torch.tensor([[0, 1, 2, 3], [0, 0, 0, 0]])),
            r"class ids from 0 to 3; expected ids in \[0, 2\]",
        ),
        (lambda: LF.dice_loss(torch.randn(2, 3, 4), torch.full((2, 4), 255)), r"pass ignore_index"),
        (lambda: LF.dice_loss(torch.randn(2, 3, 4), torch.rand(2, 2, 4), "multilabel"), r"mode='multilabel'"),
        (
            lambda: LF.dice_loss(torch.randn(2, 1, 4), torch.randint(0, 2, (2, 1, 4)).float() * 2, "binary"),
            r"expected 0/1 masks",
        ),
        (lambda: LF.dice_loss(torch.randn(2, 3, 4, 5), torch.rand(2, 4, 5), "binary"), r"3 channels in mode='binary'"),
        (
            lambda: LF.dice_loss(torch.randn(2, 1, 4) * 5, torch.ones(2, 1, 4), "binary", from_logits=False),
            r"from_logits=False; expected probabilities",
        ),
        (
            lambda: LF.dice_loss(torch.randn(2, 3, 4), torch.randint(0, 3, (2, 4)), weight=torch.ones(2)),
            r"weight has shape \(2,\); expected one weight per class, shape \(3,\)",
        ),
        (lambda: LF.dice_loss(torch.randn(2, 3, 4), torch.randint(0, 3, (2, 4)), smooth=-1.0), r"smooth is -1.0"),
        (lambda: LF.dice_loss(torch.randn(4), torch.ones(4), "binary"), r"expected \(N, C, d1, ...\)"),
        (lambda: LF.tversky_loss(torch.randn(2, 3, 4), torch.randint(0, 3, (2, 4)), alpha=-0.1), r"alpha is -0.1"),
        (lambda: losskit.nn.DiceLoss("binray"), r"DiceLoss: mode is 'binray'"),
    ],
)
def test_segmentation_guardrails(call, pattern):
    with losskit.set_checks("full"):
        with pytest.raises(losskit.LossInputError, match=pattern):
            call()


def test_dice_warns_on_probabilities_given_as_logits():
    with losskit.set_checks("full"), pytest.warns(losskit.LossUsageWarning, match="looks like probabilities"):
        LF.dice_loss(torch.softmax(torch.randn(2, 3, 8, 8), 1), torch.randint(0, 3, (2, 8, 8)))
