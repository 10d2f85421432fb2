"""Per-token log-probabilities of a linear layer's output, without the ``N x V`` logits.

What policy-gradient and preference trainers (PPO, GRPO, DPO) need from a language model: for
each token, ``log softmax(h W^T + b)[t]``, optionally the entropy of the distribution and
whether its argmax is the target -- with gradients, chunked like
:mod:`losskit.autograd.linear_cross_entropy` (one chunk of float32 logits at a time). Forward
keeps three numbers per row; backward recomputes each chunk's logits (the upstream gradient is
per token) and forms

.. math::
    \\frac{\\partial}{\\partial x_c}\\Big(g \\log p_t + g_H H\\Big)
        = g\\,([c = t] - p_c) - g_H\\, p_c (\\log p_c + H),
    \\qquad H = -\\textstyle\\sum_c p_c \\log p_c .

The log-sum-exp and target logit come from :mod:`losskit._core.cross_entropy`.
"""

from __future__ import annotations

from typing import Any

import torch

from losskit._core import cross_entropy as core
from losskit.autograd.linear_cross_entropy import chunk_logits
from losskit.errors import LossInputError

__all__ = ["LinearLogProbsFunction"]


def _chunk_stats(
    x: torch.Tensor, target: torch.Tensor, use: torch.Tensor, cap: float | None, entropy: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """``(log p_t, entropy, argmax, tanh, probabilities)`` of a chunk of scratch logits ``x``."""
    tanh = None
    if cap is not None:
        x, tanh = core.softcap_(x, cap)
    argmax = x.argmax(1)
    shifted = x.clone() if entropy else None  # x - m is overwritten by its exponential below
    m, log_sum, shifted_t, _ = core.shifted_row_stats_(x, target, None, False)
    log_p_t = (shifted_t - log_sum).masked_fill_(~use, 0.0)  # type: ignore[operator]
    p = x.div_(x.sum(1, keepdim=True))  # x held exp(x - m)
    h = None
    if shifted is not None:  # H = log_sum - sum_c p_c (x_c - m)
        h = (log_sum - (p * shifted.sub_(m.unsqueeze(1))).sum(1)).masked_fill_(~use, 0.0)
    return log_p_t, h, argmax, tanh, p


class LinearLogProbsFunction(torch.autograd.Function):
    """``(log p_t, entropy, argmax)`` per row of ``h @ W.T + b``; entropy is zeros unless asked."""

    @staticmethod
    def forward(
        ctx: Any,
        h: torch.Tensor,
        w: torch.Tensor,
        b: torch.Tensor | None,
        target: torch.Tensor,
        use: torch.Tensor,
        softcap: float | None,
        entropy: bool,
        rows: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        acc = core.accumulation_dtype(h.dtype)
        n, v = h.shape[0], w.shape[0]
        log_p = torch.zeros(n, dtype=acc, device=h.device)
        ent = torch.zeros(n, dtype=acc, device=h.device)
        argmax = torch.zeros(n, dtype=torch.long, device=h.device)
        buf = torch.empty(min(rows, max(n, 1)), v, dtype=acc, device=h.device)
        with torch.autocast(h.device.type, enabled=False):
            for start in range(0, n, rows):
                sl = slice(start, min(start + rows, n))
                x = chunk_logits(h[sl], w, b, buf[: sl.stop - start])
                lp, hh, am, _, _ = _chunk_stats(x, target[sl], use[sl], softcap, entropy)
                log_p[sl], argmax[sl] = lp, am
                if hh is not None:
                    ent[sl] = hh
        ctx.mark_non_differentiable(argmax)
        ctx.save_for_backward(h, w, b, target, use)
        ctx.softcap, ctx.entropy, ctx.rows = softcap, entropy, rows
        return log_p, ent, argmax

    @staticmethod
    def backward(ctx: Any, g_logp: torch.Tensor, g_ent: torch.Tensor, _: torch.Tensor) -> tuple[Any, ...]:
        if torch.is_grad_enabled():
            raise LossInputError(
                "linear_log_probs: backward was called with create_graph=True (double backward); expected a "
                "first-order backward, which is all the chunked kernel computes. Use "
                "torch.log_softmax(torch.nn.functional.linear(...), -1) for higher derivatives."
            )
        h, w, b, target, use = ctx.saved_tensors
        acc = core.accumulation_dtype(h.dtype)
        n, rows = h.shape[0], ctx.rows
        w_acc = w.to(acc)
        gh = torch.zeros(n, h.shape[1], dtype=acc, device=h.device) if ctx.needs_input_grad[0] else None
        gw = torch.zeros(w.shape, dtype=acc, device=h.device) if ctx.needs_input_grad[1] else None
        gb = torch.zeros(w.shape[0], dtype=acc, device=h.device) if b is not None and ctx.needs_input_grad[2] else None
        g_logp = g_logp.to(acc).masked_fill(~use, 0.0)
        g_h = g_ent.to(acc).masked_fill(~use, 0.0) if ctx.entropy else None
        buf = torch.empty(min(rows, max(n, 1)), w.shape[0], dtype=acc, device=h.device)
        for start in range(0, n, rows):
            sl = slice(start, min(start + rows, n))
            hc = h[sl]
            x = chunk_logits(hc, w, b, buf[: sl.stop - start])
            _, ent, _, tanh, p = _chunk_stats(x, target[sl], use[sl], ctx.softcap, g_h is not None)
            grad = p
            if g_h is not None and ent is not None:
                # - g_H p_c (log p_c + H), with log p formed from p (clamped: p_c = 0 adds 0)
                term = torch.log(p.clamp_min(torch.finfo(acc).tiny)).add_(ent.unsqueeze(1)).mul_(p)
                grad = term.mul_(-g_h[sl].unsqueeze(1))
                grad.sub_(p * g_logp[sl].unsqueeze(1))
            else:
                grad.mul_(-g_logp[sl].unsqueeze(1))
            grad.scatter_add_(1, target[sl].unsqueeze(1), g_logp[sl].unsqueeze(1))
            if tanh is not None:
                core.softcap_grad_(grad, tanh)
            if gh is not None:
                gh[sl] = grad @ w_acc
            if gw is not None:
                gw.addmm_(grad.t(), hc.to(acc))
            if gb is not None:
                gb += grad.sum(0)
        return (
            None if gh is None else gh.to(h.dtype),
            None if gw is None else gw.to(w.dtype),
            None if gb is None else gb.to(b.dtype),
            None,
            None,
            None,
            None,
            None,
        )
