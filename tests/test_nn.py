"""The modules: torch's constructor arguments, buffers, one call into the functional form."""

from __future__ import annotations

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
    text = repr(losskit.nn.CrossEntropyLoss(weight=torch.ones(4), label_smoothing=0.1))
    assert text == "CrossEntropyLoss(reduction='mean', label_smoothing=0.1, weight=<4 classes>)"


def test_positional_order_matches_torch_functional():
    import inspect

    import torch.nn.functional as F

    def split(fn):
        params = inspect.signature(fn).parameters.values()
        positional = [p.name for p in params if p.kind != p.KEYWORD_ONLY]
        return positional, {p.name for p in params if p.kind == p.KEYWORD_ONLY}

    for name in losskit.functional.__all__:
        ours, our_keywords = split(getattr(losskit.functional, name))
        theirs, their_keywords = split(getattr(F, name))
        assert ours == theirs, name
        assert their_keywords <= our_keywords, name  # losskit may add keyword-only options
