r"""Cross-entropy over a class dimension sharded across processes (vocabulary parallelism).

Rank ``r`` of the group holds the logits (or the output-layer rows) of a contiguous block of
classes, in rank order; block sizes may differ. Per row, the softmax needs three numbers from
every shard -- the max, the sum of exponentials below it, and the target's logit (plus the
weighted logit sum for label smoothing) -- so only all-reduces of size ``N`` cross the wire:
one ``MAX`` and one ``SUM`` of a ``(k, N)`` stack. The logits never do. Before that, one tiny
all-gather of each rank's shapes and a checksum of its targets lets every rank raise the same
error for mismatched inputs instead of hanging in a collective
(:mod:`losskit.distributed.agreement`).

Once the global per-row statistics are known, the loss of a row and its gradient are those of
the single-process loss (label smoothing, class weights, z-loss, soft-capping), computed by
:mod:`losskit._core.cross_entropy`: backward needs no communication for the logits, and the
fused form all-reduces the gradient of its (replicated) input once.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from losskit._core import cross_entropy as core
from losskit._core.cross_entropy import RowOptions, accumulation_dtype
from losskit._core.reduction import nan_where_empty
from losskit.autograd.linear_cross_entropy import chunk_logits, rows_per_chunk
from losskit.distributed.agreement import (
    dtensor_shard,
    exchange,
    hidden_problem,
    is_dtensor,
    local_problem,
    logits_problem,
    shard_weight,
    world,
)
from losskit.types import Reduction

__all__ = ["vocab_parallel_cross_entropy", "vocab_parallel_linear_cross_entropy"]


def _local_targets(ids: torch.Tensor, offset: int, v: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Which rows have their target in this shard's classes, and its local position (0 elsewhere)."""
    local = (ids >= offset) & (ids < offset + v)
    return local, torch.where(local, ids - offset, torch.zeros_like(ids))


def _capped(x: torch.Tensor, cap: float | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Soft-capped scratch logits and ``tanh(x / cap)``; ``x`` itself without a cap."""
    if cap is None:
        return x, None
    return core.softcap_(x.clone(), cap)


def _shard_stats(
    x: torch.Tensor, ids: torch.Tensor, offset: int, w_local: torch.Tensor | None, smoothing: bool, group: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Global per-row ``(lse, x_t, sum_c w_c x_c)`` of a chunk of local (capped) logits ``x``:
    the max is all-reduced first, then the sums below it in one stack."""
    empty = x.shape[1] == 0  # a shard without classes (more ranks than torch.chunk fills)
    m = x.new_full(x.shape[:1], float("-inf")) if empty else x.amax(1)
    dist.all_reduce(m, op=dist.ReduceOp.MAX, group=group)
    local, pos = _local_targets(ids, offset, x.shape[1])
    x_t = x.new_zeros(x.shape[:1]) if empty else x.gather(1, pos[:, None])[:, 0].masked_fill(~local, 0.0)
    parts = [torch.exp(x - m[:, None]).sum(1), x_t]
    if smoothing:
        parts.append(x.sum(1) if w_local is None else x @ w_local)
    stacked = torch.stack(parts)
    dist.all_reduce(stacked, op=dist.ReduceOp.SUM, group=group)
    return m + torch.log(stacked[0]), stacked[1], stacked[2] if smoothing else None


def _row_loss(
    lse: torch.Tensor,
    xt: torch.Tensor,
    wx: torch.Tensor | None,
    w_t: torch.Tensor | None,
    use: torch.Tensor,
    opts: RowOptions,
) -> torch.Tensor:
    """The single-process row loss from the global statistics (zero where ``use`` is False)."""
    smooth_nll = None if wx is None else opts.total_weight * lse - wx
    loss = core.index_row_loss_(lse - xt, smooth_nll, w_t, opts)
    loss, _ = core.add_z_term(loss, lse, opts, use)
    return loss.masked_fill(~use, 0.0)


def _shard_grad(
    x: torch.Tensor,
    tanh: torch.Tensor | None,
    lse: torch.Tensor,
    ids: torch.Tensor,
    offset: int,
    w_t: torch.Tensor | None,
    w_local: torch.Tensor | None,
    opts: RowOptions,
    row_grad: torch.Tensor,
) -> torch.Tensor:
    """``d(sum_n row_grad_n * loss_n) / d`` (raw local logits) for a chunk; overwrites ``tanh``."""
    p = torch.exp(x - lse[:, None])
    if x.shape[1] == 0:  # no classes here: nothing to differentiate
        return p
    local, pos = _local_targets(ids, offset, x.shape[1])
    core.apply_index_grad_(p, pos, core.index_grad_coefficients(row_grad, w_t, lse, opts), w_local, local)
    return p if tanh is None else core.softcap_grad_(p, tanh)


class _VocabParallelCE(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        ids: torch.Tensor,
        use: torch.Tensor,
        w_t: torch.Tensor | None,
        w_local: torch.Tensor | None,
        opts: RowOptions,
        offset: int,
        group: Any,
    ) -> torch.Tensor:
        xf, _ = _capped(x.detach().to(accumulation_dtype(x.dtype)), opts.softcap)
        smoothing = opts.label_smoothing > 0
        lse, xt, wx = _shard_stats(xf, ids, offset, w_local, smoothing, group)
        ctx.save_for_backward(x, lse, ids, use, w_t, w_local)
        ctx.opts, ctx.offset = opts, offset
        return _row_loss(lse, xt, wx, w_t, use, opts)

    @staticmethod
    def backward(ctx: Any, grad_rows: torch.Tensor) -> tuple[Any, ...]:
        x, lse, ids, use, w_t, w_local = ctx.saved_tensors
        opts: RowOptions = ctx.opts
        xc, tanh = _capped(x.to(lse.dtype), opts.softcap)
        row_grad = grad_rows.to(lse.dtype).masked_fill(~use, 0.0)
        g = _shard_grad(xc, tanh, lse, ids, ctx.offset, w_t, w_local, opts, row_grad)
        return (g.to(x.dtype),) + (None,) * 7


def _prepare(
    fn: str,
    weight: torch.Tensor | None,
    ids: torch.Tensor,
    ignore_index: int,
    n_classes: int,
    offset: int,
    v_local: int,
    acc: torch.dtype,
    label_smoothing: float,
    z_loss: float,
    softcap: float | None,
) -> tuple[RowOptions, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Row options, the counted-target mask, each row's target weight and this shard's weights."""
    w, w_local = shard_weight(fn, weight, n_classes, offset, v_local, acc)
    _, use = core.counted_targets(ids, ignore_index, n_classes)
    w_t = None if w is None else w[core.safe_targets(ids, use)]
    cap = None if softcap is None else float(softcap)
    opts = RowOptions(n_classes, w, float(label_smoothing), float(z_loss), cap)
    return opts, use, w_t, w_local


def _denominator(
    ids: torch.Tensor,
    weight: torch.Tensor | None,
    ignore_index: int,
    n_classes: int,
    normalizer: float | torch.Tensor | None,
) -> float | torch.Tensor:
    return core.mean_denominator(
        prob_target=False,
        rows=ids.numel(),
        ids=ids,
        weight=weight,
        ignore_index=ignore_index,
        n_classes=n_classes,
        normalizer=normalizer,
    )


def vocab_parallel_cross_entropy(
    local_logits: torch.Tensor,
    target: torch.Tensor,
    *,
    group: Any = None,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    normalizer: float | torch.Tensor | None = None,
    z_loss: float = 0.0,
    softcap: float | None = None,
) -> torch.Tensor:
    r"""Cross-entropy of logits whose class dimension is sharded across the ranks of ``group``.

    Returns, on every rank, the value of ``cross_entropy(full_logits, target, ...)`` where
    ``full_logits`` is the concatenation of the ranks' ``local_logits`` along dim 1 in rank
    order; ``local_logits.grad`` is the matching slice of the full gradient. Only per-row
    statistics are communicated. Per row, with global :math:`\operatorname{lse}`, weights
    :math:`w` (ones without ``weight``), :math:`W = \sum_c w_c`, smoothing :math:`\varepsilon`,
    z-loss :math:`z` and :math:`V` classes:

    .. math::
        \ell = (1-\varepsilon) w_t (\operatorname{lse} - x_t)
              + \tfrac{\varepsilon}{V} \big(W \operatorname{lse} - \textstyle\sum_c w_c x_c\big)
              + z \operatorname{lse}^2

    with the logits soft-capped first (:math:`\kappa \tanh(x / \kappa)`) when ``softcap`` is given.

    torch equivalent: ``cross_entropy(torch.cat(all_gathered_logits, 1), target)`` (which moves
    every logit); ``torch.distributed.tensor.parallel.loss_parallel`` on DTensor logits (no label
    smoothing, z-loss or soft-cap); Megatron-LM's ``vocab_parallel_cross_entropy`` on GPUs.

    Args:
        local_logits: ``(N, V_r)`` or ``(B, T, V_r)``: this rank's classes ``[offset_r, offset_r +
            V_r)``; or a DTensor of the full logits sharded on its last (class) axis over a
            1-D device mesh (then ``group`` is the mesh's).
        target: ``(N,)`` / ``(B, T)`` int64 global class ids, the same on every rank (a
            replicated DTensor is accepted).
        group: the process group holding the shards (default: the world).
        weight: ``(V,)`` full class-weight vector, the same on every rank.
        ignore_index: class id that counts neither in the loss nor in the mean.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        label_smoothing: in ``[0, 1]``.
        normalizer: with ``"mean"``, the count to divide by (global normalization).
        z_loss: coefficient of :math:`\operatorname{lse}^2` (PaLM; 0 turns it off).
        softcap: logit cap :math:`\kappa > 0` (Gemma 2), or ``None``.

    Returns:
        A scalar, or ``(N,)`` for ``"none"`` -- the same on every rank.

    Raises:
        LossInputError: on every rank, when any rank's shapes, options or targets disagree,
            class ids are out of range, or the inputs are malformed.

    Example:
        A one-process group is the degenerate case: the loss is ``cross_entropy``'s.

        >>> import os, tempfile, torch, torch.distributed as dist
        >>> import torch.nn.functional as F
        >>> from losskit.distributed import vocab_parallel_cross_entropy
        >>> store = os.path.join(tempfile.mkdtemp(), "store")
        >>> dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
        >>> logits, target = torch.tensor([[2.0, 0.0, 1.0]]), torch.tensor([0])
        >>> vocab_parallel_cross_entropy(logits, target, z_loss=1e-4)
        tensor(0.4082)
        >>> F.cross_entropy(logits, target) + 1e-4 * torch.logsumexp(logits, 1).square().mean()
        tensor(0.4082)
        >>> dist.destroy_process_group()
    """
    fn = "vocab_parallel_cross_entropy"
    if is_dtensor(local_logits) or (
        isinstance(local_logits, torch.Tensor) and local_logits.dim() == 3 and isinstance(target, torch.Tensor)
    ):
        # DTensor logits sharded on the class axis: their local shard over the mesh's group;
        # (B, T, V_r) logits with (B, T) targets: the rows flattened, the per-token loss reshaped
        if is_dtensor(local_logits):
            local_logits, target, group = dtensor_shard(fn, local_logits, target)
        shape = tuple(target.shape)
        per_token = vocab_parallel_cross_entropy(
            local_logits.flatten(0, -2) if local_logits.dim() > 2 else local_logits,
            target.flatten() if target.dim() > 1 else target,
            group=group,
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
            normalizer=normalizer,
            z_loss=z_loss,
            softcap=softcap,
        )
        return per_token.reshape(shape) if reduction == "none" else per_token
    problem = local_problem(fn, weight, reduction, label_smoothing, target, normalizer, z_loss, softcap)
    if problem is None:
        problem = logits_problem(local_logits, target)
    device = local_logits.device if isinstance(local_logits, torch.Tensor) else torch.device("cpu")
    n_rows = local_logits.shape[0] if problem is None else -1
    v_local = local_logits.shape[1] if problem is None else -1
    rank, _ = world(group)
    options = {"reduction": reduction, "label_smoothing": label_smoothing, "z_loss": z_loss, "softcap": softcap}
    offsets, n_classes = exchange(fn, group, device, n_rows, v_local, problem, target, ignore_index, options, weight)
    acc = accumulation_dtype(local_logits.dtype)
    ids = target.long()
    opts, use, w_t, w_local = _prepare(
        fn, weight, ids, ignore_index, n_classes, offsets[rank], v_local, acc, label_smoothing, z_loss, softcap
    )
    rows: torch.Tensor = _VocabParallelCE.apply(  # type: ignore[no-untyped-call]
        local_logits, ids, use, w_t, w_local, opts, offsets[rank], group
    )
    if reduction == "none":
        return rows.to(local_logits.dtype)
    total = rows.sum()
    if reduction == "sum":
        return total.to(local_logits.dtype)
    denominator = _denominator(ids, opts.weight, ignore_index, n_classes, normalizer)
    denominator = torch.as_tensor(denominator, dtype=acc)
    return nan_where_empty(total / denominator, denominator).to(local_logits.dtype)


class _VocabParallelLinearCE(torch.autograd.Function):
    """Chunked ``cross_entropy(h @ W_local.T + b_local)`` over sharded classes; for mean/sum
    the gradients are made in forward, and the input's gradient is all-reduced in backward."""

    @staticmethod
    def forward(
        ctx: Any,
        h: torch.Tensor,
        w: torch.Tensor,
        b: torch.Tensor | None,
        ids: torch.Tensor,
        use: torch.Tensor,
        w_t: torch.Tensor | None,
        w_local: torch.Tensor | None,
        opts: RowOptions,
        offset: int,
        scale: torch.Tensor | None,
        rows: int,
        group: Any,
        track: bool,
    ) -> torch.Tensor:
        acc = accumulation_dtype(h.dtype)
        n, v = h.shape[0], w.shape[0]
        need = track and (h.requires_grad or w.requires_grad or (b is not None and b.requires_grad))
        eager = scale is not None and need
        loss_rows = torch.empty(n, dtype=acc, device=h.device)
        lse_rows = torch.empty(n, dtype=acc, device=h.device)
        grads = _ShardGrads(h, w, b, acc) if eager else None
        buf = torch.empty(min(rows, max(n, 1)), v, dtype=acc, device=h.device)
        smoothing = opts.label_smoothing > 0
        for start in range(0, n, rows):
            sl = slice(start, min(start + rows, n))
            x, tanh = _capped(chunk_logits(h[sl], w, b, buf[: sl.stop - start]), opts.softcap)
            lse, xt, wx = _shard_stats(x, ids[sl], offset, w_local, smoothing, group)
            lse_rows[sl] = lse
            chunk_w_t = None if w_t is None else w_t[sl]
            loss_rows[sl] = _row_loss(lse, xt, wx, chunk_w_t, use[sl], opts)
            if grads is not None and scale is not None:
                row_grad = scale.to(acc).expand(lse.shape).masked_fill(~use[sl], 0.0)
                grads.add(sl, h[sl], _shard_grad(x, tanh, lse, ids[sl], offset, chunk_w_t, w_local, opts, row_grad))
        ctx.group, ctx.opts, ctx.offset, ctx.rows = group, opts, offset, rows
        ctx.dtypes = (h.dtype, w.dtype)
        ctx.has_bias = b is not None
        ctx.eager = grads is not None
        if grads is not None and scale is not None:
            ctx.save_for_backward(grads.h, grads.w, grads.b)
            return loss_rows.sum() * scale
        ctx.save_for_backward(h, w, b, ids, use, w_t, lse_rows, w_local)
        return loss_rows if scale is None else loss_rows.sum() * scale

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
        h_dtype, w_dtype = ctx.dtypes
        if ctx.eager:
            gh, gw, gb = ctx.saved_tensors
            gh, gw = gh * grad_out, gw * grad_out
            gb = gb * grad_out if gb is not None else None
        else:
            h, w, b, ids, use, w_t, lse_rows, w_local = ctx.saved_tensors
            opts: RowOptions = ctx.opts
            acc, n, rows = lse_rows.dtype, h.shape[0], ctx.rows
            per_row = grad_out.to(acc).expand(n) if grad_out.dim() == 0 else grad_out.to(acc)
            grads = _ShardGrads(h, w, b, acc)
            buf = torch.empty(min(rows, max(n, 1)), w.shape[0], dtype=acc, device=h.device)
            for start in range(0, n, rows):
                sl = slice(start, min(start + rows, n))
                x, tanh = _capped(chunk_logits(h[sl], w, b, buf[: sl.stop - start]), opts.softcap)
                row_grad = per_row[sl].masked_fill(~use[sl], 0.0)
                chunk_w_t = None if w_t is None else w_t[sl]
                g = _shard_grad(x, tanh, lse_rows[sl], ids[sl], ctx.offset, chunk_w_t, w_local, opts, row_grad)
                grads.add(sl, h[sl], g)
            gh, gw, gb = grads.h, grads.w, grads.b
        # every rank holds the same input: its gradient is the sum of the shards' contributions
        dist.all_reduce(gh, op=dist.ReduceOp.SUM, group=ctx.group)
        return (gh.to(h_dtype), gw.to(w_dtype), None if gb is None else gb.to(w_dtype)) + (None,) * 10


class _ShardGrads:
    """The gradients of the hidden states, this shard's weight rows and bias, chunk by chunk."""

    def __init__(self, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, acc: torch.dtype) -> None:
        self.weight = w.to(acc)
        self.h = torch.zeros(h.shape[0], h.shape[1], dtype=acc, device=h.device)
        self.w = torch.zeros(w.shape[0], w.shape[1], dtype=acc, device=h.device)
        self.b = torch.zeros(w.shape[0], dtype=acc, device=h.device) if b is not None else None

    def add(self, sl: slice, hc: torch.Tensor, g: torch.Tensor) -> None:
        self.h[sl] = g @ self.weight
        self.w.addmm_(g.t(), hc.to(g.dtype))
        if self.b is not None:
            self.b += g.sum(0)


def vocab_parallel_linear_cross_entropy(
    input: torch.Tensor,
    local_weight: torch.Tensor,
    target: torch.Tensor,
    *,
    local_bias: torch.Tensor | None = None,
    group: Any = None,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    chunk_size: int | None = None,
    normalizer: float | torch.Tensor | None = None,
    z_loss: float = 0.0,
    softcap: float | None = None,
) -> torch.Tensor:
    r"""Fused output layer + cross-entropy with the output layer's rows sharded across ranks.

    Every rank holds the same hidden states ``input`` and the rows ``[offset_r, offset_r + V_r)``
    of the output weight. Equal, on every rank, to ``cross_entropy(input @ W.T + b, target)``
    (plus the z-loss, with soft-capped logits when asked) with ``W`` the concatenation of the
    shards; ``local_weight.grad`` (and ``local_bias.grad``) is this rank's slice of the full
    gradient, and ``input.grad`` the full gradient (all-reduced inside backward). Rows are
    processed in chunks as in :func:`losskit.functional.linear_cross_entropy`, so no rank ever
    holds ``N x V_r`` logits. The row loss is :func:`vocab_parallel_cross_entropy`'s.

    torch equivalent: none (``linear_cross_entropy`` on the gathered weight).

    Args:
        input: ``(N, D)`` or ``(B, T, D)`` hidden states, the same on every rank.
        local_weight: ``(V_r, D)`` this rank's rows of the output layer.
        target: int64 global class ids ``(N,)`` or ``(B, T)``, the same on every rank.
        local_bias: ``(V_r,)`` this rank's slice of the bias, optional.
        group, weight, ignore_index, reduction, label_smoothing, normalizer, z_loss, softcap: as
            :func:`vocab_parallel_cross_entropy`.
        chunk_size: rows per chunk (default: from the 64 MiB budget).

    Returns:
        A scalar, or the per-token loss for ``"none"``.

    Raises:
        LossInputError: on every rank, as :func:`vocab_parallel_cross_entropy`.

    Example:
        On a one-process group it is ``linear_cross_entropy``:

        >>> import os, tempfile, torch, torch.distributed as dist
        >>> from losskit.distributed import vocab_parallel_linear_cross_entropy
        >>> store = os.path.join(tempfile.mkdtemp(), "store")
        >>> dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
        >>> h, W = torch.zeros(2, 4), torch.zeros(3, 4)
        >>> vocab_parallel_linear_cross_entropy(h, W, torch.tensor([0, 2]))  # uniform: ln 3
        tensor(1.0986)
        >>> dist.destroy_process_group()
    """
    fn = "vocab_parallel_linear_cross_entropy"
    problem = local_problem(fn, weight, reduction, label_smoothing, target, normalizer, z_loss, softcap)
    if problem is None:
        problem = hidden_problem(input, local_weight, target, local_bias, chunk_size)
    n_rows = int(torch.Size(input.shape[:-1]).numel()) if problem is None else -1
    v_local = local_weight.shape[0] if problem is None else -1
    rank, _ = world(group)
    device = input.device if isinstance(input, torch.Tensor) else torch.device("cpu")
    options = {
        "reduction": reduction,
        "label_smoothing": label_smoothing,
        "z_loss": z_loss,
        "softcap": softcap,
        "chunk_size": chunk_size,
    }
    offsets, n_classes = exchange(fn, group, device, n_rows, v_local, problem, target, ignore_index, options, weight)
    h = input.reshape(-1, input.shape[-1])
    ids = target.reshape(-1).long()
    acc = accumulation_dtype(input.dtype)
    opts, use, w_t, w_local = _prepare(
        fn, weight, ids, ignore_index, n_classes, offsets[rank], v_local, acc, label_smoothing, z_loss, softcap
    )
    denominator = _denominator(ids, opts.weight, ignore_index, n_classes, normalizer) if reduction == "mean" else 1.0
    scale = core.reduction_scale(reduction, denominator, acc, h.device)
    # every chunk all-reduces its row statistics: all ranks must walk the same chunks, so the
    # rows per chunk come from the largest shard (not this rank's, which may be smaller or empty)
    largest = max(b - a for a, b in zip(offsets, [*offsets[1:], n_classes]))
    rows = chunk_size or rows_per_chunk(h.shape[0], largest, input.dtype, opts.softcap)
    out: torch.Tensor = _VocabParallelLinearCE.apply(  # type: ignore[no-untyped-call]
        h,
        local_weight,
        local_bias,
        ids,
        use,
        w_t,
        w_local,
        opts,
        offsets[rank],
        scale,
        rows,
        group,
        torch.is_grad_enabled(),
    )
    if reduction == "none":
        return out.reshape(tuple(input.shape[:-1])).to(input.dtype)
    if reduction == "mean":
        out = nan_where_empty(out, torch.as_tensor(denominator))
    return out.to(input.dtype)
