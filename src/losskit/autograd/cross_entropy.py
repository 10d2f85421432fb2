"""The cross-entropy kernel: a custom ``autograd.Function`` that keeps only the row log-sum-exp.

torch's ``cross_entropy`` saves the whole ``log_softmax`` output (one ``N x C`` tensor) for
backward, and its backward allocates two more (``nll_loss`` backward, then ``log_softmax``
backward). This kernel saves only ``lse`` (one number per row, kept as ``m + s``) and, in
backward, recomputes ``softmax = exp(x - lse)`` straight into the one buffer that becomes the
gradient. Both passes walk the rows in cache-sized chunks (:data:`CHUNK_BYTES`), which also
bounds the float32 scratch space used for float16/bfloat16 inputs and makes the CPU kernels
faster than whole-tensor ones.

Shapes: ``x`` is ``(N, C)`` or ``(N, C, S)`` (K-dim inputs flattened to one spatial axis);
class-index targets are ``(N,)`` / ``(N, S)``; probability targets have ``x``'s shape. The
function returns the *unreduced* loss in the accumulation dtype (float32, or float64 for
float64 input); reductions happen outside in :mod:`losskit._core.reduction`.

The row math (loss, gradient, smoothing, z-loss, soft-cap) is :mod:`losskit._core.cross_entropy`;
this module only walks the chunks and keeps per-row scratch small (segmentation has a million
rows: row-sized buffers are updated in place).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from losskit._core import cross_entropy as core

__all__ = ["CHUNK_BYTES", "CrossEntropyFunction", "cross_entropy_unreduced"]

#: Bytes of float32 scratch per chunk. 4 MiB keeps a chunk in L2/L3 between the passes of
#: ``logsumexp`` and of the backward ``sub -> exp -> mul``; measured fastest on the reference CPU
#: (see benchmarks/bench_losses.py) and small next to any realistic ``N x C``.
CHUNK_BYTES = 4 * 2**20


def _chunks(x: torch.Tensor) -> Iterator[tuple[slice, ...]]:
    """Index tuples covering ``x`` (``(N, C)`` or ``(N, C, S)``) in pieces of about CHUNK_BYTES."""
    n, c = x.shape[0], x.shape[1]
    s = x.shape[2] if x.dim() == 3 else 1
    per_item = c * s * 4
    rows = max(1, CHUNK_BYTES // max(per_item, 1))
    if rows > 1 or x.dim() == 2 or per_item <= CHUNK_BYTES:
        for start in range(0, n, rows):
            yield (slice(start, min(start + rows, n)),)
        return
    cols = max(1, CHUNK_BYTES // (c * 4))  # one item is too big: split the spatial axis too
    for i in range(n):
        for start in range(0, s, cols):
            yield (slice(i, i + 1), slice(None), slice(start, min(start + cols, s)))


def _rowwise(idx: tuple[slice, ...]) -> tuple[slice, ...]:
    """The index of a per-row tensor (``(N,)`` / ``(N, S)``) matching chunk ``idx`` of ``x``."""
    return idx if len(idx) == 1 else (idx[0], idx[2])


def _capped(xc: torch.Tensor, acc: torch.dtype, cap: float | None) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """Chunk ``xc`` in the accumulation dtype (soft-capped when ``cap``), ``tanh(x / cap)``, and
    whether the first is a scratch buffer of ours (``False``: a view of the caller's input)."""
    x = xc.to(acc)  # xc itself when it already has the accumulation dtype
    if cap is None:
        return x, None, x is not xc
    capped, tanh = core.softcap_(x.clone() if x is xc else x, cap)
    return capped, tanh, True


class CrossEntropyFunction(torch.autograd.Function):
    """Unreduced softmax cross-entropy; saves ``x`` (no copy), targets and two numbers per row."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None,
        ignore_index: int,
        label_smoothing: float,
        prob_target: bool,
        z_loss: float = 0.0,
        softcap: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        acc = core.accumulation_dtype(x.dtype)
        eps = float(label_smoothing)
        opts = core.RowOptions(x.shape[1], None if weight is None else weight.to(acc), eps, float(z_loss), softcap)
        rows_shape = (x.shape[0], *x.shape[2:])
        row_max = torch.empty(rows_shape, dtype=acc, device=x.device)
        log_sum = torch.empty(rows_shape, dtype=acc, device=x.device)
        # class indices: sum_c w_c (x_c - m) for label smoothing; probabilities: sum_c w y' (x - m)
        want_sum = eps > 0 or prob_target
        shifted_sum = torch.empty(rows_shape, dtype=acc, device=x.device) if want_sum else None
        target_mass = torch.empty(rows_shape, dtype=acc, device=x.device) if prob_target else None
        class_w = None if opts.weight is None else core.class_view(opts.weight, x)
        for idx in _chunks(x):
            rows = _rowwise(idx)
            xc, _, scratch = _capped(x[idx], acc, softcap)
            sum_weights = class_w
            if prob_target:
                sum_weights = core.smoothed_probabilities(target[idx].to(acc), opts)
                target_mass[rows] = sum_weights.sum(1)  # type: ignore[index]
            m, s, _, sums = core.shifted_row_stats_(xc, None, sum_weights, want_sum, scratch=scratch)
            row_max[rows] = m
            log_sum[rows] = s
            if sums is not None:
                shifted_sum[rows] = sums  # type: ignore[index]
        lse = row_max + log_sum if opts.z_loss else None
        use: torch.Tensor | None = None
        safe_target = target
        if prob_target:
            loss = core.probability_row_loss(log_sum, target_mass, shifted_sum)  # type: ignore[arg-type]
        else:
            valid, use = core.counted_targets(target, ignore_index, opts.n_classes)
            safe_target = core.safe_targets(target, use)
            x_t = x.gather(1, safe_target.unsqueeze(1)).squeeze(1).to(acc)
            if softcap is not None:
                x_t, _ = core.softcap_(x_t, softcap)
            target_nll = x_t.neg_().add_(row_max).add_(log_sum)  # lse - x_t
            smooth_nll = None
            if shifted_sum is not None:  # W lse - sum_c w_c x_c = W s - sum_c w_c (x_c - m)
                smooth_nll = shifted_sum.neg_().add_(opts.total_weight * log_sum)
            w_t = None if opts.weight is None else opts.weight[safe_target]
            loss = core.index_row_loss_(target_nll, smooth_nll, w_t, opts)
            loss.masked_fill_(~use, 0.0)
            core.mark_out_of_range_(loss, valid, use)
            del valid
        z_rows = loss.new_zeros(()).expand(loss.shape)  # no memory without z_loss
        if lse is not None:
            loss, z = core.add_z_term(loss, lse, opts, use)
            z_rows = z if z is not None else z_rows
        ctx.mark_non_differentiable(z_rows)
        ctx.save_for_backward(x, safe_target, row_max, log_sum, weight, use)
        ctx.opts = opts
        ctx.prob_target = prob_target
        ctx.ignore_index = ignore_index
        return loss, z_rows

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, grad_z: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if torch.is_grad_enabled():  # backward(create_graph=True): a gradient that has a graph
            return _differentiable_backward(ctx, grad_loss)
        x, target, row_max, log_sum, _, use = ctx.saved_tensors
        opts: core.RowOptions = ctx.opts
        acc = row_max.dtype
        g = grad_loss.to(acc)
        # rows that do not count get exactly zero (not g * 0, which is NaN when the mean's
        # denominator was 0 and g is inf: every target ignored gives zero gradients, as in torch)
        row_g = g if ctx.prob_target else g.masked_fill(~use, 0.0)
        grad_x = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        grad_t = torch.empty_like(target) if ctx.prob_target and ctx.needs_input_grad[1] else None
        for idx in _chunks(x):
            rows = _rowwise(idx)
            s = log_sum[rows]
            lse = row_max[rows] + s if opts.z_loss else None
            m = row_max[rows].unsqueeze(1)
            xc, tanh_c = x[idx], None
            if opts.softcap is not None:  # soft-capped logits, and tanh(x / cap) for the chain rule
                xc, tanh_c, _ = _capped(xc, acc, opts.softcap)
            if grad_t is not None:
                # d loss / d y_c = (1 - eps) w_c (lse - x_c) = (1 - eps) w_c (s - (x_c - m))
                neg_logp = (xc.to(acc) - m).neg_().add_(s.unsqueeze(1))
                grad_t[idx].copy_(core.probability_target_grad(neg_logp, opts) * row_g[rows].unsqueeze(1))
            if grad_x is None:
                continue
            # the buffer that becomes the gradient: grad_x itself when it has the accumulation dtype
            buf = grad_x[idx] if x.dtype == acc else torch.empty(xc.shape, dtype=acc, device=x.device)
            torch.sub(xc, m, out=buf)
            buf.exp_()  # exp(x - m): the softmax times exp(s)
            inv_sum = s.neg().exp_()
            if ctx.prob_target:
                wy = core.smoothed_probabilities(target[idx].to(acc), opts)
                scale = core.probability_grad_scale(wy.sum(1), lse, opts)
                gc = row_g[rows]
                buf.mul_((scale * gc * inv_sum).unsqueeze(1)).sub_(wy * gc.unsqueeze(1))
            else:
                t = target[rows]
                w_t = None if opts.weight is None else opts.weight[t]
                coef = core.index_grad_coefficients(row_g[rows], w_t, lse, opts)
                coef.p_coef = coef.p_coef * inv_sum  # 1 / exp(s) turns exp(x - m) into softmax
                core.apply_index_grad_(buf, t, coef, opts.weight)
            if tanh_c is not None:
                core.softcap_grad_(buf, tanh_c)
            if x.dtype != acc:
                grad_x[idx].copy_(buf)
        return grad_x, grad_t, None, None, None, None, None, None


def _differentiable_backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    """The gradient as torch's autograd would build it, for double backward: recompute the rows
    from the saved inputs with :func:`~losskit._core.cross_entropy.differentiable_rows` and
    differentiate them with ``create_graph=True``."""
    x, target, _, _, weight, use = ctx.saved_tensors
    opts: core.RowOptions = ctx.opts
    ids = target if ctx.prob_target else target.masked_fill(~use, ctx.ignore_index)
    wanted = [t for t, need in zip((x, target), ctx.needs_input_grad[:2]) if need]
    rows, _ = core.differentiable_rows(
        x, ids, weight, ctx.ignore_index, opts.label_smoothing, ctx.prob_target, opts.z_loss, opts.softcap
    )
    grads = iter(torch.autograd.grad(rows, wanted, grad_loss, create_graph=True))
    grad_x = next(grads) if ctx.needs_input_grad[0] else None
    grad_t = next(grads) if ctx.needs_input_grad[1] else None
    return grad_x, grad_t, None, None, None, None, None, None


def cross_entropy_unreduced(
    x: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    ignore_index: int,
    label_smoothing: float,
    prob_target: bool,
    z_loss: float = 0.0,
    softcap: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row loss of ``x`` ``(N, C[, S])`` in the accumulation dtype (see module docstring),
    and the z-loss term of each row alone (detached; zeros without ``z_loss``)."""
    if core.functorch_active(x, target, weight):  # torch.func: plain torch operations
        return core.differentiable_rows(x, target, weight, ignore_index, label_smoothing, prob_target, z_loss, softcap)
    out: tuple[torch.Tensor, torch.Tensor] = CrossEntropyFunction.apply(  # type: ignore[no-untyped-call]
        x, target, weight, ignore_index, label_smoothing, prob_target, z_loss, softcap
    )
    return out
