"""Compare a losskit loss with its torch reference: values and gradients, per-dtype tolerances.

Imported by the tests and by benchmarks/ (the reference is never copied).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

TOL = {
    torch.float64: dict(rtol=1e-10, atol=1e-12),
    torch.float32: dict(rtol=2e-5, atol=2e-6),
    # bfloat16 has an 8-bit mantissa: one rounding is a relative error of 2**-8
    torch.bfloat16: dict(rtol=2e-2, atol=2e-2),
    torch.float16: dict(rtol=2e-3, atol=2e-3),
}


def run(
    fn: Callable[..., torch.Tensor],
    tensors: Sequence[torch.Tensor],
    grad_of: Sequence[int],
    upstream: torch.Tensor | None = None,
    **kwargs,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Call ``fn(*tensors, **kwargs)`` on fresh leaf copies; return the loss and the grads."""
    leaves = [t.detach().clone().requires_grad_(i in grad_of) for i, t in enumerate(tensors)]
    loss = fn(*leaves, **kwargs)
    if not grad_of:
        return loss.detach(), []
    grad_out = torch.ones_like(loss) if upstream is None else upstream.to(loss.dtype)
    grads = torch.autograd.grad(loss, [leaves[i] for i in grad_of], grad_out)
    return loss.detach(), [g.detach() for g in grads]


def assert_parity(
    ours: Callable[..., torch.Tensor],
    reference: Callable[..., torch.Tensor],
    tensors: Sequence[torch.Tensor],
    grad_of: Sequence[int] = (0,),
    **kwargs,
) -> None:
    """Values and gradients of ``ours`` equal ``reference`` within the input dtype's tolerance."""
    dtype = tensors[0].dtype
    upstream = None
    loss_ref, grads_ref = run(reference, tensors, grad_of, **kwargs)
    if loss_ref.dim() > 0:  # reduction="none": use a random upstream gradient
        upstream = torch.randn(loss_ref.shape, dtype=torch.float64)
        loss_ref, grads_ref = run(reference, tensors, grad_of, upstream, **kwargs)
    loss, grads = run(ours, tensors, grad_of, upstream, **kwargs)
    assert loss.dtype == loss_ref.dtype and loss.shape == loss_ref.shape
    torch.testing.assert_close(loss, loss_ref, equal_nan=True, **TOL[dtype])
    for g, g_ref in zip(grads, grads_ref):
        assert g.dtype == g_ref.dtype and g.shape == g_ref.shape
        torch.testing.assert_close(g, g_ref, equal_nan=True, **TOL[g_ref.dtype])


def torch_reference(name: str) -> Callable[..., torch.Tensor]:
    """The torch function a losskit function is tested (and benchmarked) against."""
    import torch.nn.functional as F

    return getattr(F, name)


def linear_cross_entropy_reference(
    input: torch.Tensor,
    linear_weight: torch.Tensor,
    target: torch.Tensor,
    *,
    linear_bias: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
) -> torch.Tensor:
    """Plain torch: full logits, optional Gemma-2 soft-cap, ``F.cross_entropy``, plus PaLM's
    z-loss ``z * logsumexp(logits)**2`` on counted rows, reduced with the cross-entropy's
    denominator (the sum of the counted targets' class weights for ``"mean"``)."""
    import torch.nn.functional as F

    logits = F.linear(input, linear_weight, linear_bias)
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    flat = logits.reshape(-1, logits.shape[-1])
    ids = target.reshape(-1)
    kwargs = dict(weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing)
    if not z_loss:
        loss = F.cross_entropy(flat, ids, reduction=reduction, **kwargs)
        return loss.reshape(target.shape) if reduction == "none" else loss
    rows = F.cross_entropy(flat, ids, reduction="none", **kwargs)
    counted = ids != ignore_index
    lse = torch.logsumexp(flat, dim=-1)
    rows = rows + torch.where(counted, z_loss * lse**2, torch.zeros_like(lse))
    if reduction == "none":
        return rows.reshape(target.shape)
    if reduction == "sum":
        return rows.sum()
    w_t = counted.to(rows.dtype) if weight is None else weight[ids.clamp(min=0)] * counted
    return rows.sum() / w_t.sum()
