"""The cross-entropy kernel: a custom ``autograd.Function`` that keeps only the row log-sum-exp.

torch's ``cross_entropy`` saves the whole ``log_softmax`` output (one ``N x C`` tensor) for
backward, and its backward allocates two more (``nll_loss`` backward, then ``log_softmax``
backward). This kernel saves only ``lse`` (one number per row) and, in backward, recomputes
``softmax = exp(x - lse)`` straight into the one buffer that becomes the gradient. Both passes
walk the rows in cache-sized chunks (:data:`CHUNK_BYTES`), which also bounds the float32
scratch space used for float16/bfloat16 inputs and makes the CPU kernels faster than
whole-tensor ones.

Shapes: ``x`` is ``(N, C)`` or ``(N, C, S)`` (K-dim inputs flattened to one spatial axis);
class-index targets are ``(N,)`` / ``(N, S)``; probability targets have ``x``'s shape. The
function returns the *unreduced* loss in the accumulation dtype (float32, or float64 for
float64 input); reductions happen outside in :mod:`losskit.functional._reduce`.

Below, ``lse = m + s`` is the row log-sum-exp, kept as its two parts.
Gradient (per row, before the upstream gradient ``g`` and the mean's denominator), with
``p = softmax(x)``, class weights ``w`` (all ones without ``weight``), ``W = sum(w)`` and
smoothing ``eps``:

* class index ``t``:  ``loss = (1-eps) w_t (lse - x_t) + eps/C (W lse - sum_c w_c x_c)``
  ``d loss / d x_c = p_c ((1-eps) w_t + eps W / C) - (1-eps) w_t [c = t] - eps w_c / C``
* probabilities ``y`` (smoothed ``y' = (1-eps) y + eps/C``):  ``loss = sum_c w_c y'_c (lse - x_c)``
  ``d loss / d x_c = p_c sum_k w_k y'_k - w_c y'_c``;  ``d loss / d y_c = (1-eps) w_c (lse - x_c)``
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

#: Bytes of float32 scratch per chunk. 4 MiB keeps a chunk in L2/L3 between the passes of
#: ``logsumexp`` and of the backward ``sub -> exp -> mul``; measured fastest on the reference CPU
#: (see benchmarks/bench_losses.py) and small next to any realistic ``N x C``.
CHUNK_BYTES = 4 * 2**20


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; everything else (float32, float16, bfloat16) accumulates in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


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


def _class_view(vector: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A ``(C,)`` vector shaped to broadcast along dim 1 of ``like``."""
    return vector.view(1, -1, *([1] * (like.dim() - 2)))


class CrossEntropyFunction(torch.autograd.Function):
    """Unreduced softmax cross-entropy; saves ``x`` (no copy), targets and two numbers per row.

    The row log-sum-exp is kept as ``lse = m + s`` with ``m`` the row maximum and
    ``s = log(sum(exp(x - m)))``, never added up: with logits near 1e4 the sum would round
    to float32's spacing there (1e-3) and cost the loss and gradient three digits. Every
    term is formed from ``x - m`` instead, as torch's ``log_softmax`` does.
    """

    @staticmethod
    def forward(  # type: ignore[override]
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
        acc = accumulation_dtype(x.dtype)
        n_classes = x.shape[1]
        eps = float(label_smoothing)
        rows_shape = (x.shape[0],) + tuple(x.shape[2:])
        row_max = torch.empty(rows_shape, dtype=acc, device=x.device)
        log_sum = torch.empty(rows_shape, dtype=acc, device=x.device)
        w = None if weight is None else weight.to(acc)
        # per-row sums taken from x - m before it is exponentiated:
        # class indices: sum_c w_c (x_c - m) for label smoothing; probabilities: sum_c w y' (x - m)
        shifted_sum = torch.empty(rows_shape, dtype=acc, device=x.device) if (eps > 0 or prob_target) else None
        target_mass = torch.empty(rows_shape, dtype=acc, device=x.device) if prob_target else None
        for idx in _chunks(x):
            rows = _rowwise(idx)
            xc = x[idx].to(acc)
            if softcap is not None:
                xc = torch.tanh(xc / softcap).mul_(softcap)
            m = xc.amax(1, keepdim=True)
            shifted = xc - m
            if prob_target:
                wy = _smoothed(target[idx].to(acc), eps, n_classes)
                if w is not None:
                    wy = wy * _class_view(w, wy)
                target_mass[rows] = wy.sum(1)
                shifted_sum[rows] = (wy * shifted).sum(1)
            elif shifted_sum is not None:
                shifted_sum[rows] = (shifted if w is None else shifted * _class_view(w, shifted)).sum(1)
            row_max[rows] = m.squeeze(1)
            log_sum[rows] = shifted.exp_().sum(1).log_()
        if prob_target:
            # loss = sum_c w y' (lse - x_c) = s * sum(w y') - sum(w y' (x - m))
            loss = log_sum * target_mass - shifted_sum
            use = None
            safe_target = target
        else:
            # per-row scratch is kept small: segmentation has a million rows (in place, no
            # zeros_like / full_like temporaries)
            valid = target != ignore_index
            in_range = (target >= 0) & (target < n_classes)
            use = valid & in_range
            safe_target = target.masked_fill(~use, 0)
            loss = x.gather(1, safe_target.unsqueeze(1)).squeeze(1).to(acc)  # x_t
            if softcap is not None:
                loss = torch.tanh(loss / softcap).mul_(softcap)
            loss = loss.neg_().add_(row_max).add_(log_sum)  # lse - x_t = s - (x_t - m)
            loss.mul_(1.0 - eps)
            if w is not None:
                loss.mul_(w[safe_target])
            if shifted_sum is not None:
                total_w = float(n_classes) if w is None else w.sum()
                loss.add_(shifted_sum.neg_().add_(total_w * log_sum), alpha=eps / n_classes)
            loss.masked_fill_(~use, 0.0)
            # an out-of-range class id that the checks did not stop (checks off, or no value
            # checks on an accelerator) gives NaN instead of a device-side assert
            loss.masked_fill_(valid & ~in_range, float("nan"))
            del valid, in_range
        z_rows = loss.new_zeros(()).expand(loss.shape)  # no memory without z_loss
        if z_loss:
            lse = row_max + log_sum
            z_rows = z_loss * lse * lse
            if use is not None:
                z_rows = torch.where(use, z_rows, torch.zeros_like(z_rows))
            loss = loss + z_rows
        ctx.mark_non_differentiable(z_rows)
        ctx.save_for_backward(x, safe_target, row_max, log_sum, weight, use)
        ctx.eps = eps
        ctx.prob_target = prob_target
        ctx.z_loss = float(z_loss)
        ctx.softcap = softcap
        return loss, z_rows

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, grad_z: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, target, row_max, log_sum, weight, use = ctx.saved_tensors
        eps: float = ctx.eps
        zc: float = ctx.z_loss
        cap: float | None = ctx.softcap
        # z-loss adds 2 z lse p_c to the gradient of each counted row
        z_coef = 2.0 * zc * (row_max + log_sum) if zc else None
        acc = row_max.dtype
        n_classes = x.shape[1]
        w = None if weight is None else weight.to(acc)
        g = grad_loss.to(acc)
        grad_x = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        grad_t = torch.empty_like(target) if ctx.prob_target and ctx.needs_input_grad[1] else None
        # softmax = exp(x - m) / exp(s): the 1/exp(s) goes into the per-row scale
        inv_sum = log_sum.neg().exp_()
        if ctx.prob_target:
            row_g = g
        else:
            row_g = g * use
            total_w = float(n_classes) if w is None else w.sum()
            # d loss / d x_c = row_scale * exp(x_c - m) - target_coef [c = t] - smoothing term;
            # target_coef = (1 - eps) w_t row_g is formed per chunk (one row-sized buffer less)
            row_scale = row_g * (eps * total_w / n_classes)
            row_scale.add_(row_g if w is None else row_g * w[target], alpha=1.0 - eps)
            if z_coef is not None:
                row_scale.add_(row_g * z_coef)
            row_scale.mul_(inv_sum)
            del inv_sum
        for idx in _chunks(x):
            rows = _rowwise(idx)
            xc = x[idx]
            tanh_c = None
            if cap is not None:  # soft-capped logits, and tanh(x / cap) for the chain rule
                tanh_c = torch.tanh(xc.to(acc) / cap)
                xc = tanh_c * cap
            m = row_max[rows].unsqueeze(1)
            gc = row_g[rows].unsqueeze(1)
            if grad_x is not None:
                buf = grad_x[idx] if x.dtype == acc else torch.empty(xc.shape, dtype=acc, device=x.device)
                torch.sub(xc, m, out=buf)
                buf.exp_()  # exp(x - m), the unnormalised softmax
                if ctx.prob_target:
                    wy = _smoothed(target[idx].to(acc), eps, n_classes)
                    if w is not None:
                        wy = wy * _class_view(w, wy)
                    mass = wy.sum(1, keepdim=True)
                    if z_coef is not None:
                        mass = mass + z_coef[rows].unsqueeze(1)
                    scale = mass * gc * inv_sum[rows].unsqueeze(1)
                    buf.mul_(scale).sub_(wy * gc)
                else:
                    buf.mul_(row_scale[rows].unsqueeze(1))
                    target_coef = row_g[rows] * (eps - 1.0)
                    if w is not None:
                        target_coef = target_coef * w[target[rows]]
                    buf.scatter_add_(1, target[rows].unsqueeze(1), target_coef.unsqueeze(1))
                    if eps > 0:
                        smooth = gc * (eps / n_classes)
                        buf.sub_(smooth if w is None else smooth * _class_view(w, buf))
                if tanh_c is not None:
                    buf.mul_(tanh_c.square_().neg_().add_(1.0))
                if x.dtype != acc:
                    grad_x[idx].copy_(buf)
            if grad_t is not None:
                # d loss / d y_c = (1 - eps) w_c (lse - x_c) = (1 - eps) w_c (s - (x_c - m))
                neg_logp = log_sum[rows].unsqueeze(1) - (xc.to(acc) - m)
                if w is not None:
                    neg_logp = neg_logp * _class_view(w, neg_logp)
                grad_t[idx].copy_(neg_logp * ((1.0 - eps) * gc))
        return grad_x, grad_t, None, None, None, None, None, None


def _smoothed(y: torch.Tensor, eps: float, n_classes: int) -> torch.Tensor:
    return y if eps == 0 else y * (1.0 - eps) + eps / n_classes


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
    return CrossEntropyFunction.apply(x, target, weight, ignore_index, label_smoothing, prob_target, z_loss, softcap)
