"""Cross-entropy over a class dimension sharded across processes (vocabulary parallelism).

Rank ``r`` of the group holds the logits (or the output-layer rows) of a contiguous block of
classes, in rank order; block sizes may differ. Per row, the softmax needs three numbers from
every shard -- the max, the sum of exponentials below it, and the target's logit (plus the
weighted logit sum for label smoothing) -- so only all-reduces of size ``N`` cross the wire:
one ``MAX`` and one ``SUM`` of a ``(k, N)`` stack. The logits never do. Before that, one tiny
all-gather of each rank's shapes and a checksum of its targets lets every rank raise the same
error for mismatched inputs instead of hanging in a collective.

Per row, with global :math:`\\operatorname{lse}`, weights :math:`w` (ones without ``weight``),
:math:`W = \\sum_c w_c`, smoothing :math:`\\varepsilon` and :math:`V` classes:

.. math::
    \\ell = (1-\\varepsilon) w_t (\\operatorname{lse} - x_t)
          + \\tfrac{\\varepsilon}{V} \\big(W \\operatorname{lse} - \\textstyle\\sum_c w_c x_c\\big)

    \\partial \\ell / \\partial x_c = p_c \\big((1-\\varepsilon) w_t + \\varepsilon W / V\\big)
          - (1-\\varepsilon) w_t [c = t] - \\varepsilon w_c / V

so backward needs no communication for the logits; the fused form all-reduces the gradient of
its (replicated) input once.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from losskit import checks
from losskit.checks import describe, fail, shape_str
from losskit.functional._cross_entropy import accumulation_dtype
from losskit.fused.linear_cross_entropy import _chunk_logits, rows_per_chunk

__all__ = ["vocab_parallel_cross_entropy", "vocab_parallel_linear_cross_entropy"]

_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}


def _world(group: Any) -> tuple[int, int]:
    if not dist.is_available() or not dist.is_initialized():
        fail(
            "vocab_parallel: torch.distributed is not initialized; expected a process group. Call "
            "torch.distributed.init_process_group(...) first (torchrun sets up the environment)."
        )
    return dist.get_rank(group), dist.get_world_size(group)


def _exchange(fn: str, group: Any, device: torch.device, n_rows: int, v_local: int, problem: str | None,
              target: torch.Tensor, ignore_index: int, reduction: str, smoothing: float,
              weight: torch.Tensor | None = None) -> tuple[list[int], int]:
    """All-gather every rank's shapes, options and target checksum; raise the same error on every
    rank when they disagree. Returns the class offsets of the shards and the total class count."""
    ok = int(problem is None)
    if not isinstance(target, torch.Tensor) or target.is_floating_point() or target.is_complex():
        target = torch.zeros(0, dtype=torch.long)  # the local problem is already recorded
    weight_len = -1 if weight is None else (weight.shape[0] if weight.dim() == 1 else -2)
    ids = target.reshape(-1).long()
    counted = ids[ids != ignore_index]
    lo = int(counted.min()) if counted.numel() else 0
    hi = int(counted.max()) if counted.numel() else -1
    checksum = int((ids * torch.arange(1, ids.numel() + 1, device=ids.device) % 1_000_003).sum()) if ids.numel() else 0
    meta = torch.tensor(
        [n_rows, v_local, ok, ids.numel(), checksum, lo, hi, _REDUCTIONS.get(reduction, -1),
         round(float(smoothing) * 1e6) if isinstance(smoothing, (int, float)) else -1, ignore_index, weight_len],
        dtype=torch.int64, device=device,
    )
    rank, world = _world(group)
    gathered = [torch.empty_like(meta) for _ in range(world)]
    dist.all_gather(gathered, meta, group=group)
    rows = [g.tolist() for g in gathered]
    bad = [r for r, m in enumerate(rows) if m[2] != 1]
    if bad:
        if problem is not None:
            fail(f"{fn} (rank {rank}): {problem}")
        fail(
            f"{fn}: rank(s) {bad} passed inputs that failed the local checks (see the error on that rank); "
            "every rank stops here instead of hanging in a collective. Fix the inputs on those ranks."
        )
    for name, col in (("the number of rows of local_logits/input", 0), ("target.numel()", 3), ("reduction", 7),
                      ("label_smoothing", 8), ("ignore_index", 9), ("the length of weight (-1: none)", 10)):
        values = [m[col] for m in rows]
        if len(set(values)) > 1:
            fail(
                f"{fn}: {name} differs between ranks, got {values} (by rank); expected the same on every "
                "rank of the group (each rank holds a shard of the classes of the same rows). Pass the "
                "same batch and options on every rank."
            )
    if len({m[4] for m in rows}) > 1:
        fail(
            f"{fn}: target differs between ranks (checksums {[m[4] for m in rows]}); expected the same "
            "global class ids on every rank of the group. Broadcast the targets from one rank."
        )
    sizes = [m[1] for m in rows]
    offsets = [sum(sizes[:r]) for r in range(world)]
    total = sum(sizes)
    if rows[0][10] not in (-1, total):
        fail(
            f"{fn}: weight has length {rows[0][10]} on every rank; expected the full class-weight vector "
            f"({total},) -- all shards' classes ({sizes} by rank). Pass the same full weight on every rank."
        )
    lo_all, hi_all = min(m[5] for m in rows), max(m[6] for m in rows)
    if checks.get_checks() != "off" and rows[0][3] and (lo_all < 0 or hi_all >= total) and hi_all >= lo_all:
        example = hi_all if hi_all >= total else lo_all
        fail(
            f"{fn}: target has class id {example} out of range; expected global ids in [0, {total - 1}] "
            f"(the shards hold {sizes} classes by rank) or ignore_index={ignore_index}. Remap the labels, or "
            "check the shard sizes."
        )
    return offsets, total


def _local_problem(fn: str, weight: torch.Tensor | None, reduction: str, label_smoothing: float, target: Any,
                   normalizer: Any) -> str | None:
    """The message of the first local check that fails, or None. Raised only after the exchange,
    so that every rank of the group stops together instead of the others hanging."""
    from losskit.errors import LossInputError

    try:
        _check_common(fn, weight, reduction, label_smoothing, target)
        checks.check_normalizer(fn, normalizer, reduction)
    except LossInputError as exc:
        return str(exc).removeprefix(f"{fn}: ")
    return None


def _check_common(fn: str, weight: torch.Tensor | None, reduction: str, label_smoothing: float, target: torch.Tensor) -> None:
    checks.check_reduction(fn, reduction)
    checks.check_label_smoothing(fn, label_smoothing)
    checks.check_tensor(fn, "target", target)
    if target.is_floating_point() or target.dtype == torch.bool or target.is_complex():
        fail(f"{fn}: target has {describe(target)}; expected int64 global class ids. Use target.long().", dtype=True)
    if weight is not None:
        checks.check_float_input(fn, "weight", weight)


def _stats(x: torch.Tensor, ids: torch.Tensor, offset: int, w_local: torch.Tensor | None, smoothing: float,
           group: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Global per-row (lse, target logit, sum_c w_c x_c) of a chunk of local logits ``x``."""
    n, v = x.shape
    m = x.amax(1)
    dist.all_reduce(m, op=dist.ReduceOp.MAX, group=group)
    local = (ids >= offset) & (ids < offset + v)
    pos = torch.where(local, ids - offset, torch.zeros_like(ids))
    parts = [torch.exp(x - m[:, None]).sum(1), torch.where(local, x.gather(1, pos[:, None])[:, 0], torch.zeros_like(m))]
    if smoothing:
        parts.append(x.sum(1) if w_local is None else x @ w_local)
    stacked = torch.stack(parts)
    dist.all_reduce(stacked, op=dist.ReduceOp.SUM, group=group)
    lse = m + torch.log(stacked[0])
    wx = stacked[2] if smoothing else torch.zeros_like(lse)
    return lse, stacked[1], wx


def _row_loss(lse: torch.Tensor, xt: torch.Tensor, wx: torch.Tensor, wt: torch.Tensor, total_w: float | torch.Tensor,
              n_classes: int, smoothing: float) -> torch.Tensor:
    loss = (1.0 - smoothing) * wt * (lse - xt)
    if smoothing:
        loss = loss + smoothing / n_classes * (total_w * lse - wx)
    return loss


def _grad_chunk(x: torch.Tensor, lse: torch.Tensor, ids: torch.Tensor, offset: int, wt: torch.Tensor,
                w_local: torch.Tensor | None, total_w: float | torch.Tensor, n_classes: int, smoothing: float,
                row_grad: torch.Tensor) -> torch.Tensor:
    """d(sum_n row_grad_n * loss_n) / d x for a chunk of local logits; overwrites nothing."""
    v = x.shape[1]
    coef = ((1.0 - smoothing) * wt + smoothing * total_w / n_classes) * row_grad
    g = torch.exp(x - lse[:, None]) * coef[:, None]
    local = (ids >= offset) & (ids < offset + v)
    pos = torch.where(local, ids - offset, torch.zeros_like(ids))
    g.scatter_add_(1, pos[:, None], torch.where(local, -(1.0 - smoothing) * wt * row_grad, torch.zeros_like(wt))[:, None])
    if smoothing:
        per_class = torch.ones(v, dtype=x.dtype, device=x.device) if w_local is None else w_local
        g -= (smoothing / n_classes) * row_grad[:, None] * per_class[None, :]
    return g


class _VocabParallelCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, ids: torch.Tensor, use: torch.Tensor, wt: torch.Tensor,
                w_local: torch.Tensor | None, total_w: Any, n_classes: int, offset: int, smoothing: float,
                group: Any) -> torch.Tensor:
        acc = accumulation_dtype(x.dtype)
        xf = x.detach().to(acc)
        lse, xt, wx = _stats(xf, ids, offset, w_local, smoothing, group)
        rows = torch.where(use, _row_loss(lse, xt, wx, wt, total_w, n_classes, smoothing), torch.zeros_like(lse))
        ctx.save_for_backward(x, lse, ids, use, wt, w_local if w_local is not None else torch.empty(0))
        ctx.meta = (total_w, n_classes, offset, smoothing, w_local is not None)
        return rows

    @staticmethod
    def backward(ctx: Any, grad_rows: torch.Tensor) -> tuple[Any, ...]:
        x, lse, ids, use, wt, w_local = ctx.saved_tensors
        total_w, n_classes, offset, smoothing, weighted = ctx.meta
        acc = lse.dtype
        row_grad = torch.where(use, grad_rows.to(acc), torch.zeros_like(lse))
        g = _grad_chunk(x.to(acc), lse, ids, offset, wt, w_local if weighted else None, total_w, n_classes, smoothing, row_grad)
        return (g.to(x.dtype),) + (None,) * 9


def _weights(fn: str, weight: torch.Tensor | None, ids: torch.Tensor, use: torch.Tensor, n_classes: int,
             offset: int, v_local: int, acc: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None, Any]:
    """Per-row target weight, this shard's slice of the class weights, and their total."""
    if weight is None:
        return use.to(acc), None, float(n_classes)
    if weight.dim() != 1 or weight.shape[0] != n_classes:
        fail(
            f"{fn}: weight has shape {shape_str(weight.shape)}; expected the full class-weight vector "
            f"({n_classes},) on every rank (all shards' classes). Pass the same weight on every rank."
        )
    w = weight.to(acc)
    safe = torch.where(use, ids, torch.zeros_like(ids))
    return w[safe] * use, w[offset : offset + v_local], w.sum()


def vocab_parallel_cross_entropy(
    local_logits: torch.Tensor,
    target: torch.Tensor,
    *,
    group: Any = None,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    normalizer: float | torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Cross-entropy of logits whose class dimension is sharded across the ranks of ``group``.

    Returns, on every rank, the value of ``cross_entropy(full_logits, target, ...)`` where
    ``full_logits`` is the concatenation of the ranks' ``local_logits`` along dim 1 in rank
    order; ``local_logits.grad`` is the matching slice of the full gradient. Only per-row
    statistics are communicated (see the module docstring for the formula).

    torch equivalent: ``cross_entropy(torch.cat(all_gathered_logits, 1), target)`` (which moves
    every logit); Megatron-LM's ``vocab_parallel_cross_entropy`` on GPUs.

    Args:
        local_logits: ``(N, V_r)`` this rank's classes ``[offset_r, offset_r + V_r)``.
        target: ``(N,)`` int64 global class ids, the same on every rank.
        group: the process group holding the shards (default: the world).
        weight: ``(V,)`` full class-weight vector, the same on every rank.
        ignore_index: class id that counts neither in the loss nor in the mean.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        label_smoothing: in ``[0, 1]``.
        normalizer: with ``"mean"``, the count to divide by (global normalization).

    Returns:
        A scalar, or ``(N,)`` for ``"none"`` -- the same on every rank.

    Raises:
        LossInputError: on every rank, when any rank's shapes, options or targets disagree,
            class ids are out of range, or the inputs are malformed.

    Example:
        >>> # on each of 2 ranks (torchrun --nproc_per_node 2):
        >>> # local = full_logits[:, rank * V // 2 : (rank + 1) * V // 2]
        >>> # loss = losskit.distributed.vocab_parallel_cross_entropy(local, target)
    """
    fn = "vocab_parallel_cross_entropy"
    problem = _local_problem(fn, weight, reduction, label_smoothing, target, normalizer)
    if problem is not None:
        pass
    elif not isinstance(local_logits, torch.Tensor) or not local_logits.is_floating_point() or local_logits.dim() != 2:
        problem = (
            f"local_logits has {describe(local_logits) if isinstance(local_logits, torch.Tensor) else type(local_logits).__name__}; "
            "expected float logits of shape (N, V_local), this rank's block of classes."
        )
    elif target.dim() != 1 or target.shape[0] != local_logits.shape[0]:
        problem = (
            f"target has shape {shape_str(target.shape)}, local_logits {shape_str(local_logits.shape)}; expected "
            f"target ({local_logits.shape[0]},), one global class id per row. Flatten (B, T) inputs first."
        )
    device = local_logits.device if isinstance(local_logits, torch.Tensor) else torch.device("cpu")
    n_rows = local_logits.shape[0] if problem is None else -1
    v_local = local_logits.shape[1] if problem is None else -1
    rank, _ = _world(group)
    offsets, n_classes = _exchange(fn, group, device, n_rows, v_local, problem, target, ignore_index, reduction,
                                   label_smoothing, weight)
    offset = offsets[rank]
    acc = accumulation_dtype(local_logits.dtype)
    ids = target.long()
    use = (ids != ignore_index) & (ids >= 0) & (ids < n_classes)
    wt, w_local, total_w = _weights(fn, weight, ids, use, n_classes, offset, v_local, acc)
    rows = _VocabParallelCE.apply(local_logits, ids, use, wt, w_local, total_w, n_classes, offset, float(label_smoothing), group)
    if reduction == "none":
        return rows.to(local_logits.dtype)
    total = rows.sum()
    if reduction == "sum":
        return total.to(local_logits.dtype)
    denominator = torch.as_tensor(normalizer, dtype=acc) if normalizer is not None else wt.sum()
    return (total / denominator).to(local_logits.dtype)


class _VocabParallelLinearCE(torch.autograd.Function):
    """Chunked ``cross_entropy(h @ W_local.T + b_local)`` over sharded classes; for mean/sum
    the gradients are made in forward, and the input's gradient is all-reduced in backward."""

    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, ids: torch.Tensor,
                use: torch.Tensor, wt: torch.Tensor, w_local: torch.Tensor | None, total_w: Any, n_classes: int,
                offset: int, smoothing: float, scale: torch.Tensor | None, rows: int, group: Any,
                track: bool) -> torch.Tensor:
        acc = accumulation_dtype(h.dtype)
        n, v = h.shape[0], w.shape[0]
        need = track and (h.requires_grad or w.requires_grad or (b is not None and b.requires_grad))
        eager = scale is not None and need
        loss_rows = torch.empty(n, dtype=acc, device=h.device)
        lse_rows = torch.empty(n, dtype=acc, device=h.device)
        gh = torch.zeros(n, h.shape[1], dtype=acc, device=h.device) if eager else None
        gw = torch.zeros(v, w.shape[1], dtype=acc, device=h.device) if eager else None
        gb = torch.zeros(v, dtype=acc, device=h.device) if eager and b is not None else None
        buf = torch.empty(min(rows, max(n, 1)), v, dtype=acc, device=h.device)
        for start in range(0, n, rows):
            sl = slice(start, min(start + rows, n))
            hc = h[sl]
            x = _chunk_logits(hc, w, b, buf[: hc.shape[0]])
            lse, xt, wx = _stats(x, ids[sl], offset, w_local, smoothing, group)
            lse_rows[sl] = lse
            loss_rows[sl] = torch.where(use[sl], _row_loss(lse, xt, wx, wt[sl], total_w, n_classes, smoothing), torch.zeros_like(lse))
            if eager:
                row_grad = torch.where(use[sl], scale.to(acc), torch.zeros_like(lse))
                g = _grad_chunk(x, lse, ids[sl], offset, wt[sl], w_local, total_w, n_classes, smoothing, row_grad)
                gh[sl] = g @ w.to(acc)
                gw.addmm_(g.t(), hc.to(acc))
                if gb is not None:
                    gb += g.sum(0)
        ctx.group, ctx.meta = group, (total_w, n_classes, offset, smoothing, rows, w_local is not None, b is not None)
        ctx.dtypes = (h.dtype, w.dtype)
        ctx.eager = eager
        if eager:
            ctx.save_for_backward(gh, gw, gb if gb is not None else torch.empty(0))
            return loss_rows.sum() * scale
        ctx.save_for_backward(h, w, b if b is not None else torch.empty(0), ids, use, wt, lse_rows,
                              w_local if w_local is not None else torch.empty(0))
        return loss_rows if scale is None else loss_rows.sum() * scale

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
        total_w, n_classes, offset, smoothing, rows, weighted, has_b = ctx.meta
        h_dtype, w_dtype = ctx.dtypes
        if ctx.eager:
            gh, gw, gb = ctx.saved_tensors
            gh, gw = gh * grad_out, gw * grad_out
            gb = gb * grad_out if has_b else None
        else:
            h, w, b, ids, use, wt, lse_rows, w_local = ctx.saved_tensors
            acc = lse_rows.dtype
            n = h.shape[0]
            per_row = grad_out.to(acc).expand(n) if grad_out.dim() == 0 else grad_out.to(acc)
            gh = torch.zeros(n, h.shape[1], dtype=acc, device=h.device)
            gw = torch.zeros(w.shape[0], w.shape[1], dtype=acc, device=h.device)
            gb = torch.zeros(w.shape[0], dtype=acc, device=h.device) if has_b else None
            buf = torch.empty(min(rows, max(n, 1)), w.shape[0], dtype=acc, device=h.device)
            for start in range(0, n, rows):
                sl = slice(start, min(start + rows, n))
                hc = h[sl]
                x = _chunk_logits(hc, w, b if has_b else None, buf[: hc.shape[0]])
                row_grad = torch.where(use[sl], per_row[sl], torch.zeros_like(per_row[sl]))
                g = _grad_chunk(x, lse_rows[sl], ids[sl], offset, wt[sl], w_local if weighted else None,
                                total_w, n_classes, smoothing, row_grad)
                gh[sl] = g @ w.to(acc)
                gw.addmm_(g.t(), hc.to(acc))
                if gb is not None:
                    gb += g.sum(0)
        # every rank holds the same input: its gradient is the sum of the shards' contributions
        dist.all_reduce(gh, op=dist.ReduceOp.SUM, group=ctx.group)
        return (gh.to(h_dtype), gw.to(w_dtype), None if gb is None else gb.to(w_dtype)) + (None,) * 12


def vocab_parallel_linear_cross_entropy(
    input: torch.Tensor,
    local_weight: torch.Tensor,
    target: torch.Tensor,
    *,
    local_bias: torch.Tensor | None = None,
    group: Any = None,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    chunk_size: int | None = None,
    normalizer: float | torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Fused output layer + cross-entropy with the output layer's rows sharded across ranks.

    Every rank holds the same hidden states ``input`` and the rows ``[offset_r, offset_r + V_r)``
    of the output weight. Equal, on every rank, to ``cross_entropy(input @ W.T + b, target)``
    with ``W`` the concatenation of the shards; ``local_weight.grad`` (and ``local_bias.grad``)
    is this rank's slice of the full gradient, and ``input.grad`` the full gradient (all-reduced
    inside backward). Rows are processed in chunks as in
    :func:`losskit.functional.linear_cross_entropy`, so no rank ever holds ``N x V_r`` logits.

    torch equivalent: none (``linear_cross_entropy`` on the gathered weight).

    Args:
        input: ``(N, D)`` or ``(B, T, D)`` hidden states, the same on every rank.
        local_weight: ``(V_r, D)`` this rank's rows of the output layer.
        target: int64 global class ids ``(N,)`` or ``(B, T)``, the same on every rank.
        local_bias: ``(V_r,)`` this rank's slice of the bias, optional.
        group, weight, ignore_index, reduction, label_smoothing, normalizer: as
            :func:`vocab_parallel_cross_entropy`.
        chunk_size: rows per chunk (default: from the 64 MiB budget).

    Returns:
        A scalar, or the per-token loss for ``"none"``.

    Raises:
        LossInputError: on every rank, as :func:`vocab_parallel_cross_entropy`.
    """
    fn = "vocab_parallel_linear_cross_entropy"
    problem = _local_problem(fn, weight, reduction, label_smoothing, target, normalizer)
    if problem is not None:
        pass
    elif not (isinstance(input, torch.Tensor) and input.is_floating_point() and input.dim() in (2, 3)):
        problem = "input must be float hidden states of shape (N, D) or (B, T, D)."
    elif not (isinstance(local_weight, torch.Tensor) and local_weight.dim() == 2 and local_weight.shape[1] == input.shape[-1]
              and local_weight.dtype == input.dtype):
        problem = (
            f"local_weight has {describe(local_weight) if isinstance(local_weight, torch.Tensor) else type(local_weight).__name__}; "
            f"expected (V_local, {input.shape[-1]}) in input's dtype, this rank's rows of the output layer."
        )
    elif tuple(target.shape) != tuple(input.shape[:-1]):
        problem = (
            f"target has shape {shape_str(target.shape)}; expected {shape_str(input.shape[:-1])}, one global class id "
            f"per hidden state of input {shape_str(input.shape)}."
        )
    elif local_bias is not None and tuple(local_bias.shape) != (local_weight.shape[0],):
        problem = f"local_bias has shape {shape_str(local_bias.shape)}; expected ({local_weight.shape[0]},)."
    elif chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        problem = f"chunk_size must be a positive number of rows, got {chunk_size!r}."
    n_rows = int(torch.Size(input.shape[:-1]).numel()) if problem is None else -1
    v_local = local_weight.shape[0] if problem is None else -1
    rank, _ = _world(group)
    device = input.device if isinstance(input, torch.Tensor) else torch.device("cpu")
    offsets, n_classes = _exchange(fn, group, device, n_rows, v_local, problem, target, ignore_index, reduction,
                                   label_smoothing, weight)
    offset = offsets[rank]
    d = input.shape[-1]
    h = input.reshape(-1, d)
    ids = target.reshape(-1).long()
    acc = accumulation_dtype(input.dtype)
    use = (ids != ignore_index) & (ids >= 0) & (ids < n_classes)
    wt, w_local, total_w = _weights(fn, weight, ids, use, n_classes, offset, v_local, acc)
    if reduction == "mean":
        scale = 1.0 / (torch.as_tensor(normalizer, dtype=acc) if normalizer is not None else wt.sum())
    elif reduction == "sum":
        scale = torch.ones((), dtype=acc)
    else:
        scale = None
    rows = chunk_size or rows_per_chunk(h.shape[0], v_local, input.dtype, None)
    out = _VocabParallelLinearCE.apply(h, local_weight, local_bias, ids, use, wt, w_local, total_w, n_classes, offset,
                                       float(label_smoothing), scale, rows, group, torch.is_grad_enabled())
    if reduction == "none":
        return out.reshape(tuple(input.shape[:-1])).to(input.dtype)
    return out.to(input.dtype)
