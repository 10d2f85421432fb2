"""The default checks must not break torch.compile(fullgraph=True)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import losskit.functional as LF


@pytest.mark.parametrize("prob", [False, True])
def test_cross_entropy_compiles_fullgraph_with_default_checks(prob):
    def step(x, t):
        return LF.cross_entropy(x, t, label_smoothing=0.1)

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    x = torch.randn(8, 5, requires_grad=True)
    t = torch.softmax(torch.randn(8, 5), 1) if prob else torch.randint(0, 5, (8,))
    loss = compiled(x, t)
    loss.backward()
    x_ref = x.detach().clone().requires_grad_()
    ref = F.cross_entropy(x_ref, t, label_smoothing=0.1)
    ref.backward()
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(x.grad, x_ref.grad)


def test_other_losses_compile_fullgraph_with_default_checks():
    """The compiled losskit step equals the same step written with torch's functions."""

    def step(x, y, logits, labels):
        return (
            LF.mse_loss(x, y)
            + LF.huber_loss(x, y)
            + LF.binary_cross_entropy_with_logits(x, y.sigmoid(), pos_weight=torch.ones(3))
            + LF.nll_loss(torch.log_softmax(logits, 1), labels)
        )

    def torch_step(x, y, logits, labels):
        return (
            F.mse_loss(x, y)
            + F.huber_loss(x, y)
            + F.binary_cross_entropy_with_logits(x, y.sigmoid(), pos_weight=torch.ones(3))
            + F.nll_loss(torch.log_softmax(logits, 1), labels)
        )

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    args = (torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 6), torch.randint(0, 6, (4,)))
    ours = [a.clone().requires_grad_(a.is_floating_point()) for a in args]
    ref = [a.clone().requires_grad_(a.is_floating_point()) for a in args]
    loss, expected = compiled(*ours), torch_step(*ref)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    expected.backward()
    for a, b in zip(ours, ref):
        if a.is_floating_point():
            torch.testing.assert_close(a.grad, b.grad)


def test_cross_entropy_compiles_with_inductor():
    compiled = torch.compile(lambda x, t: LF.cross_entropy(x, t), fullgraph=True)
    x = torch.randn(16, 10, requires_grad=True)
    t = torch.randint(0, 10, (16,))
    loss = compiled(x, t)
    loss.backward()
    x_ref = x.detach().clone().requires_grad_()
    F.cross_entropy(x_ref, t).backward()
    torch.testing.assert_close(loss, F.cross_entropy(x_ref.detach(), t))
    torch.testing.assert_close(x.grad, x_ref.grad)
