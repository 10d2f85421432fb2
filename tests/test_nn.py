"""The modules: torch's constructor arguments, buffers, one call into the functional form."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import losskit

CASES = [
    ("MSELoss", {"reduction": "sum"}, lambda: (torch.randn(4, 3), torch.randn(4, 3))),
    ("L1Loss", {"reduction": "none"}, lambda: (torch.randn(4, 3), torch.randn(4, 3))),
    ("HuberLoss", {"reduction": "mean", "delta": 0.5}, lambda: (torch.randn(4, 3), torch.randn(4, 3))),
    ("SmoothL1Loss", {"beta": 0.3}, lambda: (torch.randn(4, 3), torch.randn(4, 3))),
    ("BCELoss", {"weight": torch.rand(3)}, lambda: (torch.rand(4, 3).clamp(0.05, 0.95), torch.rand(4, 3))),
    (
        "BCEWithLogitsLoss",
        {"weight": torch.rand(3), "pos_weight": torch.tensor([1.0, 2.0, 3.0])},
        lambda: (torch.randn(4, 3), torch.rand(4, 3)),
    ),
    (
        "CrossEntropyLoss",
        {"weight": torch.rand(5) + 0.1, "ignore_index": 1, "label_smoothing": 0.1},
        lambda: (torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 1])),
    ),
    (
        "NLLLoss",
        {"weight": torch.rand(5) + 0.1, "ignore_index": 0, "reduction": "sum"},
        lambda: (torch.log_softmax(torch.randn(6, 5), 1), torch.tensor([0, 1, 2, 3, 4, 1])),
    ),
]


@pytest.mark.parametrize("name,kwargs,make", CASES, ids=[c[0] for c in CASES])
def test_module_matches_torch_module(name, kwargs, make):
    ours = getattr(losskit.nn, name)(**kwargs)
    theirs = getattr(nn, name)(**kwargs)
    x, y = make()
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = ours(x1, y), theirs(x2, y)
    torch.testing.assert_close(a, b)
    a.sum().backward()
    b.sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    # weights are buffers: they move with .to() and are saved in state_dict like torch's
    assert set(dict(ours.named_buffers())) == set(dict(theirs.named_buffers()))
    assert set(ours.state_dict()) == set(theirs.state_dict())


def test_modules_follow_dtype_conversion():
    loss_fn = losskit.nn.CrossEntropyLoss(weight=torch.rand(3)).double()
    assert loss_fn.weight.dtype == torch.float64
    x = torch.randn(4, 3, dtype=torch.float64)
    assert loss_fn(x, torch.tensor([0, 1, 2, 0])).dtype == torch.float64


def test_no_deprecated_constructor_arguments():
    with pytest.raises(TypeError):
        losskit.nn.MSELoss(size_average=False)
    with pytest.raises(TypeError):  # torch's positional slot of size_average
        losskit.nn.CrossEntropyLoss(None, None, -1)


def test_invalid_reduction_fails_at_construction():
    with pytest.raises(losskit.LossInputError, match=r"CrossEntropyLoss: reduction is invalid, got 'avg'"):
        losskit.nn.CrossEntropyLoss(reduction="avg")


def test_repr_is_readable():
    text = losskit.nn.CrossEntropyLoss(weight=torch.ones(4), label_smoothing=0.1).describe()
    assert text == "CrossEntropyLoss(reduction='mean', label_smoothing=0.1, weight=[1, 1, 1, 1])"
    long = losskit.nn.CrossEntropyLoss(weight=torch.arange(1.0, 13.0)).describe()
    assert long == "CrossEntropyLoss(reduction='mean', weight=<12 values in [1, 12]>)"
    bce = losskit.nn.BCEWithLogitsLoss(pos_weight=torch.tensor([2.5])).describe()
    assert bce == "BCEWithLogitsLoss(reduction='mean', pos_weight=[2.5])"


def test_positional_order_matches_torch_functional():
    import inspect

    import torch.nn.functional as F

    def split(fn):
        params = inspect.signature(fn).parameters.values()
        positional = [p.name for p in params if p.kind != p.KEYWORD_ONLY]
        return positional, {p.name for p in params if p.kind == p.KEYWORD_ONLY}

    # the registry says which functions have a torch twin; the rest are losskit's own
    from losskit import registry

    twins = {s.functional for s in registry.LOSSES if s.torch_function}
    extras = set(losskit.functional.__all__) - twins
    assert {"sigmoid_focal_loss", "focal_loss", "poly1_cross_entropy", "dice_loss", "linear_log_probs"} <= extras
    for name in losskit.functional.__all__:
        if name in extras:  # no torch.nn.functional counterpart
            assert not hasattr(F, name), f"torch now has {name}: check its signature"
            continue
        ours, our_keywords = split(getattr(losskit.functional, name))
        theirs, their_keywords = split(getattr(F, name))
        assert ours == theirs, name
        assert their_keywords <= our_keywords, name  # losskit may add keyword-only options


def test_linear_cross_entropy_module_matches_torch_module():
    torch.manual_seed(0)
    ours = losskit.nn.LinearCrossEntropyLoss(12, 40, bias=True, label_smoothing=0.1)
    theirs = torch.nn.LinearCrossEntropyLoss(12, 40, bias=True, label_smoothing=0.1, ignore_index=-100)
    assert list(ours.state_dict()) == list(theirs.state_dict())  # checkpoints load either way
    theirs.load_state_dict(ours.state_dict())
    x, t = torch.randn(3, 7, 12), torch.randint(0, 40, (3, 7))
    t[0, :2] = -100
    a, b = ours(x, t), theirs(x.reshape(-1, 12), t.reshape(-1))
    a.backward(), b.backward()
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(ours.linear.weight.grad, theirs.linear.weight.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ours.linear.bias.grad, theirs.linear.bias.grad, rtol=1e-4, atol=1e-6)


def test_linear_cross_entropy_module_shares_an_existing_head_or_tied_weight():
    head = torch.nn.Linear(8, 30)
    loss_fn = losskit.nn.LinearCrossEntropyLoss.from_linear(head, z_loss=1e-2)
    assert loss_fn.linear is head
    x, t = torch.randn(5, 8), torch.randint(0, 30, (5,))
    loss_fn(x, t).backward()
    logits = head(x)
    lse = torch.logsumexp(logits, 1)
    expected_z = 1e-2 * (lse**2).mean()
    torch.testing.assert_close(loss_fn.last_z_loss, expected_z.detach())
    assert head.weight.grad is not None and head.bias.grad is not None

    embedding = torch.nn.Embedding(30, 8)  # tied input/output embeddings
    tied = losskit.nn.LinearCrossEntropyLoss.from_linear(embedding.weight)
    assert tied.linear.weight is embedding.weight
    tied(x, t).backward()
    ref_w = embedding.weight.detach().clone().requires_grad_()
    torch.nn.functional.cross_entropy(x @ ref_w.T, t).backward()
    torch.testing.assert_close(embedding.weight.grad, ref_w.grad)
    with pytest.raises(losskit.LossInputError, match=r"layer is str; expected an nn.Linear"):
        losskit.nn.LinearCrossEntropyLoss.from_linear("lm_head")


def test_cross_entropy_module_z_loss_for_logging():
    loss_fn = losskit.nn.CrossEntropyLoss(z_loss=0.5, softcap=10.0)
    assert loss_fn.describe() == "CrossEntropyLoss(reduction='mean', z_loss=0.5, softcap=10.0)"
    # zero logits: lse = ln 4, z-term = 0.5 ln(4)^2, loss = ln 4 + that
    loss = loss_fn(torch.zeros(2, 4), torch.tensor([0, 3]))
    torch.testing.assert_close(loss_fn.last_z_loss, torch.tensor(0.5 * math.log(4) ** 2))
    torch.testing.assert_close(loss, torch.tensor(math.log(4) + 0.5 * math.log(4) ** 2))


TWIN_CASES = [
    ("MSELoss", {}, "regression"),
    ("L1Loss", {}, "regression"),
    ("HuberLoss", {"delta": 0.5, "reduction": "sum"}, "regression"),
    ("SmoothL1Loss", {"beta": 2.0}, "regression"),
    ("BCELoss", {"weight": torch.rand(3) + 0.5}, "probs"),
    ("BCEWithLogitsLoss", {"pos_weight": torch.rand(3) + 0.5, "reduction": "none"}, "binary"),
    ("CrossEntropyLoss", {"weight": torch.rand(3) + 0.1, "ignore_index": 1, "label_smoothing": 0.1}, "ids"),
    ("NLLLoss", {"weight": torch.rand(3) + 0.1}, "ids"),
]


@pytest.mark.parametrize(("name", "kwargs", "kind"), TWIN_CASES, ids=[c[0] for c in TWIN_CASES])
def test_torchscript_scripts_every_module_with_a_torch_twin(name, kwargs, kind):
    """torch.jit.script(losskit module) works as it does for torch's module, with torch's values."""
    ours = getattr(losskit.nn, name)(**kwargs)
    scripted = torch.jit.script(ours)
    x = torch.rand(6, 3) if kind != "ids" else torch.randn(6, 3)
    if name == "NLLLoss":
        x = torch.log_softmax(x, 1)
    y = torch.randint(0, 3, (6,)) if kind == "ids" else torch.rand(6, 3)
    torch.testing.assert_close(scripted(x, y), getattr(torch.nn, name)(**kwargs)(x, y))


def test_torchscript_of_losskit_only_settings_is_a_clear_error():
    with pytest.raises(losskit.LossInputError, match=r"z_loss=0\.0001 is losskit-only.*torch\.compile"):
        torch.jit.script(losskit.nn.CrossEntropyLoss(z_loss=1e-4))
    with pytest.raises(losskit.LossInputError, match=r"label_smoothing=0\.1 is losskit-only"):
        torch.jit.script(losskit.nn.BCEWithLogitsLoss(label_smoothing=0.1))
    with pytest.raises(
        losskit.LossInputError, match=r"FocalLoss: torch\.jit\.script was asked for a loss that torch does not have"
    ):
        torch.jit.script(losskit.nn.FocalLoss())
    with pytest.raises(losskit.LossInputError, match=r"cannot script the fused loss"):
        torch.jit.script(losskit.nn.LinearCrossEntropyLoss(3, 5))


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("MSELoss", {}),
        ("HuberLoss", {"delta": 2.0, "reduction": "sum"}),
        ("CrossEntropyLoss", {"weight": torch.ones(3), "label_smoothing": 0.1, "ignore_index": 1}),
        ("BCEWithLogitsLoss", {"pos_weight": torch.ones(2)}),
        ("NLLLoss", {"reduction": "none"}),
    ],
)
def test_repr_is_torchs_for_the_same_arguments(name, kwargs):
    assert repr(getattr(losskit.nn, name)(**kwargs)) == repr(getattr(torch.nn, name)(**kwargs))


@pytest.mark.parametrize(
    "kwargs", [{}, {"bias": True, "label_smoothing": 0.1, "ignore_index": 2, "reduction": "sum", "out_features": (2,)}]
)
def test_linear_cross_entropy_repr_is_torchs(kwargs):
    assert repr(losskit.nn.LinearCrossEntropyLoss(4, 3, **kwargs)) == repr(
        torch.nn.LinearCrossEntropyLoss(4, 3, **kwargs)
    )
