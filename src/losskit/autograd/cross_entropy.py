"""The cross-entropy kernel: a custom ``autograd.Function`` that holds one ``N x C`` buffer, the gradient's.

torch's ``cross_entropy`` saves the whole ``log_softmax`` output (one ``N x C`` tensor) for
backward, and its backward allocates two more (``nll_loss`` backward, then ``log_softmax``
backward). This kernel allocates one: when the logits need a gradient and already have the
accumulation dtype (float32 / float64), forward writes ``log_softmax(x)`` -- torch's fused kernel,
one pass -- into the buffer that backward turns, in place, into the gradient
(``exp``, then the row coefficients and the target term). Otherwise (float16/bfloat16 logits,
soft-capping, no gradient wanted) nothing ``N x C`` is kept: both passes walk the rows in chunks
whose float32 scratch fits :func:`scratch_budget`, and backward recomputes each chunk's log-probs.

Few, large operations per call, on purpose: on a CPU every torch operation on more than 32768
elements is one OpenMP parallel region ending in a barrier, and when another process holds a core
each barrier waits for a descheduled thread (about a millisecond each, measured in
``docs/benchmarks.md``). The kernel runs a fixed number of them per call for float32 / float64
logits (about ten, whatever ``N``), and about five per chunk otherwise; per-row work (targets,
masks, the loss of each row, gradient coefficients) runs in blocks of at most
:data:`~losskit._core.cross_entropy.ROW_BLOCK` rows, which torch runs serially (no region at all).
On an accelerator the same count is the number of kernel launches; the chunks there are sized by
the device's free memory and the rows are one block, so a call launches the same kernels for any
``N`` unless low-precision logits outgrow the budget (see :func:`scratch_budget`).

Shapes: ``x`` is ``(N, C)`` or ``(N, C, S)`` (K-dim inputs flattened to one spatial axis);
class-index targets are ``(N,)`` / ``(N, S)``; probability targets have ``x``'s shape. The
function returns the *unreduced* loss in the accumulation dtype (float32, or float64 for
float64 input); reductions happen outside in :mod:`losskit._core.reduction`.

The row math (loss, gradient, smoothing, z-loss, soft-cap) is :mod:`losskit._core.cross_entropy`;
this module only chooses the buffers and walks the chunks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from losskit._core import cross_entropy as core

__all__ = [
    "CHUNK_BYTES",
    "ACCELERATOR_FREE_SHARE",
    "ACCELERATOR_CHUNK_BYTES",
    "CrossEntropyFunction",
    "cross_entropy_unreduced",
    "scratch_budget",
]

#: Bytes of float32 scratch per chunk on a CPU, for the work that cannot happen in the gradient's
#: buffer (float16/bfloat16 logits, soft-capping, forward without gradient, probability-target
#: products). Large enough that a chunk's few operations each run long next to the cost of one
#: parallel region under load; small next to any realistic ``N x C``.
CHUNK_BYTES = 32 * 2**20

#: On an accelerator: the share of the device's free memory a chunk's scratch may take.
ACCELERATOR_FREE_SHARE = 0.25

#: On an accelerator whose free memory torch cannot tell (and on the ``meta`` device).
ACCELERATOR_CHUNK_BYTES = 2**30


def scratch_budget(device: torch.device) -> int:
    """Bytes of float32 scratch one chunk may use on ``device``: :data:`CHUNK_BYTES` on a CPU;
    on an accelerator :data:`ACCELERATOR_FREE_SHARE` of its free memory (at least
    :data:`CHUNK_BYTES`), or :data:`ACCELERATOR_CHUNK_BYTES` where torch does not report it."""
    if device.type == "cpu":
        return CHUNK_BYTES
    if device.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(device)
        return max(CHUNK_BYTES, int(free * ACCELERATOR_FREE_SHARE))
    return ACCELERATOR_CHUNK_BYTES


def _bounds(x: torch.Tensor, idx: tuple[slice, ...]) -> tuple[int, int, int, int]:
    """``(n0, n1, s0, s1)``: the items and spatial positions chunk ``idx`` of ``x`` covers."""
    n, s = x.shape[0], x.shape[2] if x.dim() == 3 else 1
    n0, n1, _ = idx[0].indices(n)
    s0, s1 = (0, s) if len(idx) == 1 else idx[2].indices(s)[:2]
    return n0, n1, s0, s1


def _pieces(x: torch.Tensor, idx: tuple[slice, ...], per_piece: int) -> Iterator[tuple[slice, ...]]:
    """Index tuples covering chunk ``idx`` of ``x`` with at most ``per_piece`` positions (rows
    times spatial positions) each; whole items where they fit, else pieces of one item."""
    n0, n1, s0, s1 = _bounds(x, idx)
    width = s1 - s0
    if width == 0 or (n1 - n0) * width <= per_piece:
        yield idx
    elif width <= per_piece and len(idx) == 1:
        step = per_piece // width
        for a in range(n0, n1, step):
            yield (slice(a, min(a + step, n1)),)
    else:  # one item is too big: split its spatial axis
        for i in range(n0, n1):
            for a in range(s0, s1, per_piece):
                yield (slice(i, i + 1), slice(None), slice(a, min(a + per_piece, s1)))


def _chunks(x: torch.Tensor, bytes_per_element: int, budget: int) -> Iterator[tuple[slice, ...]]:
    """Index tuples covering ``x`` (``(N, C)`` or ``(N, C, S)``) in pieces whose scratch
    (``bytes_per_element`` per element of ``x``) fits ``budget``; one piece without scratch."""
    if bytes_per_element == 0:
        yield (slice(None),)
        return
    yield from _pieces(x, (slice(None),), max(1, budget // max(x.shape[1] * bytes_per_element, 1)))


def _blocks(x: torch.Tensor, chunk: tuple[slice, ...]) -> Iterator[tuple[tuple[slice, ...], tuple[slice, ...]]]:
    """The row blocks of ``chunk``: pairs (index into ``x`` and the per-row tensors, index into the
    chunk's own scratch). On a CPU a block has at most :data:`~losskit._core.cross_entropy.ROW_BLOCK` rows, so its per-row
    operations run serially (no parallel region to wait in); elsewhere the chunk is one block."""
    n0, _, s0, _ = _bounds(x, chunk)
    per_piece = core.ROW_BLOCK if x.device.type == "cpu" else 2**62
    for block in _pieces(x, chunk, per_piece):
        b0, b1, c0, c1 = _bounds(x, block)
        if len(block) == 1:
            yield block, (slice(b0 - n0, b1 - n0),)
        else:
            yield block, (slice(b0 - n0, b1 - n0), slice(None), slice(c0 - s0, c1 - s0))


def _rowwise(idx: tuple[slice, ...]) -> tuple[slice, ...]:
    """The index of a per-row tensor (``(N,)`` / ``(N, S)``) matching chunk ``idx`` of ``x``."""
    return idx if len(idx) == 1 else (idx[0], idx[2])


class _Scratch:
    """Two float32 buffers reused by every chunk (one allocation, not one per chunk): the logits
    in the accumulation dtype (soft-capped if asked) and their log-probabilities."""

    def __init__(self, acc: torch.dtype, cap: float | None) -> None:
        self.acc, self.cap = acc, cap
        self.buffers: list[torch.Tensor] = []

    def _view(self, which: int, like: torch.Tensor) -> torch.Tensor:
        while len(self.buffers) <= which:
            self.buffers.append(torch.empty(0, dtype=self.acc, device=like.device))
        if self.buffers[which].numel() < like.numel():  # the first chunk is the largest
            self.buffers[which] = torch.empty(like.numel(), dtype=self.acc, device=like.device)
        return self.buffers[which][: like.numel()].view(like.shape)

    def log_probs(self, xc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, log_softmax(logits))`` of chunk ``xc`` in scratch; the logits are ``xc``
        itself when it has the accumulation dtype and no cap applies."""
        logits = xc
        if xc.dtype != self.acc or self.cap is not None:
            logits = self._view(0, xc).copy_(xc)
            if self.cap is not None:  # cap * tanh(x / cap), in place (backward divides it by cap)
                logits.div_(self.cap).tanh_().mul_(self.cap)
        return logits, torch.log_softmax(logits, 1, out=self._view(1, xc))


def _row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``sum_c a_c b_c`` per row (class axis 1): a batched product for ``(N, C)`` (no temporary)."""
    if a.dim() == 2:
        return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).view(a.shape[0])
    return (a * b).sum(1)


def _class_sum(logp: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """``sum_c w_c logp_c`` per row, without an ``N x C`` temporary (``w`` ones without weights)."""
    if weight is None:
        return logp.sum(1)
    if logp.dim() == 2:
        return logp @ weight
    return torch.matmul(weight, logp)  # (C,) @ (N, C, S): a batched product -> (N, S)


def _lse(logits: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    """The row log-sum-exp ``m + log(sum(exp(x - m)))``: at the row's maximum ``x_k = m``,
    ``log_softmax`` gives exactly ``-log(sum(...))``."""
    m, k = logits.max(1, keepdim=True)
    return (m - logp.gather(1, k)).squeeze(1)


def _scratch_per_element(keep: bool, x: torch.Tensor, prob_target: bool, softcap: float | None) -> int:
    """Bytes of float32 scratch per logit a chunk needs (0: the whole tensor in one piece)."""
    per = 0 if keep else 4 * (2 if x.dtype != core.accumulation_dtype(x.dtype) or softcap is not None else 1)
    if prob_target:
        per += 8  # the smoothed / weighted / converted targets, and a product
    return per


class CrossEntropyFunction(torch.autograd.Function):
    """Unreduced softmax cross-entropy; saves ``x`` (no copy), the targets and, when the logits
    need a gradient in their own accumulation dtype, their ``log_softmax`` -- the buffer that
    becomes the gradient."""

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
        summed: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        acc = core.accumulation_dtype(x.dtype)
        eps = float(label_smoothing)
        opts = core.RowOptions(x.shape[1], None if weight is None else weight.to(acc), eps, float(z_loss), softcap)
        compiling = torch.compiler.is_compiling()
        keep = bool(ctx.needs_input_grad[0]) and x.dtype == acc and softcap is None
        # the log-probs that become the gradient: torch's fused kernel, one pass over the logits
        kept = torch.log_softmax(x, 1) if keep else None
        scratch = _Scratch(acc, softcap)

        def rows_of(dtype: torch.dtype) -> torch.Tensor:
            return torch.empty((x.shape[0], *x.shape[2:]), dtype=dtype, device=x.device)

        ctx.uniform = kept is not None and _uniform_rows(x, target, prob_target, ignore_index, opts, compiling)
        ctx.summed = ctx.uniform and summed
        if ctx.summed:  # the caller reduces: the sum alone, without a loss per row in memory
            loss = _uniform_forward_sum(kept, target, opts)  # type: ignore[arg-type]
        elif ctx.uniform:  # every row counts alike: whole-tensor operations, no row blocks
            loss = _uniform_forward(kept, target, opts)  # type: ignore[arg-type]
        else:
            loss = rows_of(acc)
        lse = rows_of(acc) if opts.z_loss else None
        z_rows = rows_of(acc) if opts.z_loss else loss.new_zeros(()).expand(loss.shape)
        mass = rows_of(acc) if prob_target else None  # sum_c w y'
        budget = scratch_budget(x.device) if not compiling else 2**62
        for idx in () if ctx.uniform else _chunks(x, _scratch_per_element(keep, x, prob_target, softcap), budget):
            # over the chunk's logits: a few large operations
            if kept is not None:
                logits, logp = x[idx], kept[idx]
            else:
                logits, logp = scratch.log_probs(x[idx])
            top = logits.max(1, keepdim=True) if lse is not None else None
            cross = smooth = None
            if prob_target:
                wy = core.smoothed_probabilities(target[idx].to(acc), opts)
                cross = _row_dot(wy, logp)  # sum_c w y' logp_c
                mass[_rowwise(idx)] = wy.sum(1)  # type: ignore[index]
            elif eps > 0:  # W lse - sum_c w_c x_c = -sum_c w_c logp_c
                smooth = _class_sum(logp, opts.weight)
            # per row, in blocks
            for block, rel in _blocks(x, idx):
                rows, rel_rows = _rowwise(block), _rowwise(rel)
                lse_b = use_b = None
                if top is not None:  # at the row's maximum x_k = m, log_softmax is -log(sum exp(x - m))
                    lse_b = (top[0][rel] - logp[rel].gather(1, top[1][rel])).squeeze(1)
                    lse[rows] = lse_b  # type: ignore[index]
                if cross is not None:
                    loss_b = cross[rel_rows].neg()  # sum_c w y' (lse - x_c)
                else:
                    use_b = core.counted_mask(target[rows], ignore_index, opts.n_classes)
                    safe_b = core.safe_targets(target[rows], use_b)
                    nll = logp[rel].gather(1, safe_b.unsqueeze(1)).squeeze(1).neg_()  # lse - x_t
                    smooth_b = None if smooth is None else smooth[rel_rows].neg()
                    w_t = None if opts.weight is None else opts.weight[safe_b]
                    loss_b = core.index_row_loss_(nll, smooth_b, w_t, opts)
                    loss_b = core.uncounted_rows(loss_b, target[rows], use_b, ignore_index)
                if lse_b is not None:
                    z_b = core.z_term(lse_b, opts, use_b)
                    loss_b, z_rows[rows] = loss_b + z_b, z_b
                loss[rows] = loss_b
        ctx.mark_non_differentiable(z_rows)
        ctx.set_materialize_grads(False)  # no zeros for the z-loss term's (unused) gradient
        ctx.opts = opts
        ctx.prob_target = prob_target
        ctx.ignore_index = ignore_index
        ctx.in_place = kept is not None and not compiling
        if ctx.in_place:
            ctx.kept = kept  # not saved: backward consumes it (a second backward recomputes it)
            kept = None
        ctx.save_for_backward(x, target, lse, weight, mass, kept)  # backward recomputes the masks
        return loss, z_rows

    @staticmethod
    def backward(
        ctx: Any, grad_loss: torch.Tensor | None, grad_z: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        if grad_loss is None:  # grads are not materialized: nothing flowed into the loss
            return (None,) * 9
        if torch.is_grad_enabled():  # backward(create_graph=True): a gradient that has a graph
            return _differentiable_backward(ctx, grad_loss)
        x, target, lse, _, mass, kept = ctx.saved_tensors
        opts: core.RowOptions = ctx.opts
        acc = core.accumulation_dtype(x.dtype)
        if ctx.in_place:
            kept, ctx.kept = ctx.kept, None  # consumed: it becomes the gradient
            if kept is None:  # a second backward (retain_graph=True): recompute the log-probs
                kept = torch.log_softmax(x, 1)
        elif kept is not None:  # under torch.compile: out of place, the compiler plans the memory
            kept = kept.clone()
        want_x = ctx.needs_input_grad[0]
        if ctx.uniform and kept is not None and want_x and _is_uniform(grad_loss):
            return _uniform_backward(kept, target, grad_loss, opts), None, None, None, None, None, None, None, None
        grad_x = (kept if kept is not None else torch.empty_like(x)) if want_x else None
        grad_t = torch.empty_like(target) if ctx.prob_target and ctx.needs_input_grad[1] else None
        scratch = _Scratch(acc, opts.softcap)
        budget = scratch_budget(x.device) if not torch.compiler.is_compiling() else 2**62
        for idx in _chunks(x, _scratch_per_element(kept is not None, x, ctx.prob_target, opts.softcap), budget):
            # per row, in blocks: the coefficients of the chunk's gradient
            n0, n1, s0, s1 = _bounds(x, idx)
            shape = (n1 - n0, s1 - s0) if x.dim() == 3 else (n1 - n0,)
            p_coef = torch.empty(shape, dtype=acc, device=x.device)
            smoothing = opts.label_smoothing and not ctx.prob_target
            smooth_coef = torch.empty(shape, dtype=acc, device=x.device) if smoothing else None
            row_g = grad_loss[_rowwise(idx)].to(acc)  # probabilities: the upstream gradient of each row
            for block, rel in _blocks(x, idx):
                rows, rel_rows = _rowwise(block), _rowwise(rel)
                lse_b = None if lse is None else lse[rows]
                if ctx.prob_target:
                    p_coef[rel_rows] = core.probability_grad_scale(mass[rows], lse_b, opts) * row_g[rel_rows]
                    continue
                _, coef = _index_coefficients(ctx, target[rows], grad_loss[rows], lse_b, acc)
                p_coef[rel_rows] = coef.p_coef
                if smooth_coef is not None and coef.smooth_coef is not None:
                    smooth_coef[rel_rows] = coef.smooth_coef
            # over the chunk's logits: a few large operations
            logits = None
            if kept is not None:
                logp = kept[idx]
            else:
                logits, logp = scratch.log_probs(x[idx])
            if grad_t is not None:  # d loss / d y_c = (1 - eps) w_c (lse - x_c) = -(1 - eps) w_c logp_c
                grad_t[idx].copy_(core.probability_target_grad(logp, opts).mul_(row_g.neg().unsqueeze(1)))
            if grad_x is None:
                continue
            p = logp.exp_()  # the softmax, in the buffer that becomes the gradient (or in scratch)
            core.scale_softmax_grad_(p, p_coef, smooth_coef, opts.weight)
            if ctx.prob_target:
                p.addcmul_(core.smoothed_probabilities(target[idx].to(acc), opts), row_g.unsqueeze(1), value=-1.0)
            else:
                for block, rel in _blocks(x, idx):  # the coefficients again: no row-sized buffer for them
                    rows = _rowwise(block)
                    safe_b, coef = _index_coefficients(ctx, target[rows], grad_loss[rows], None, acc)
                    core.add_target_grad_(p[rel], safe_b, coef.target_coef)
            if logits is not None and opts.softcap is not None:  # logits hold cap * tanh(x / cap)
                core.softcap_grad_(p, logits.div_(opts.softcap))
            if kept is None:
                grad_x[idx].copy_(p)
        return grad_x, grad_t, None, None, None, None, None, None, None


def _uniform_rows(
    x: torch.Tensor, target: torch.Tensor, prob_target: bool, ignore_index: int, opts: core.RowOptions, compiling: bool
) -> bool:
    """Whether the rows differ only by their logits and target: class ids that all count, no
    class weights, no z-loss (CPU only: deciding reads two numbers, a sync on an accelerator).
    A segmentation batch then needs no per-row masks, and a mean's backward no per-row
    coefficients: a handful of whole-tensor operations instead of a few dozen per row block."""
    if prob_target or opts.weight is not None or opts.z_loss or compiling or x.device.type != "cpu":
        return False
    return core.all_counted(target, ignore_index, opts.n_classes)


def _uniform_forward(logp: torch.Tensor, target: torch.Tensor, opts: core.RowOptions) -> torch.Tensor:
    """The loss of rows that all count, from their log-probabilities: ``lse - x_t``, and with
    label smoothing ``(1 - eps)(lse - x_t) + eps / C (C lse - sum_c x_c)``."""
    nll = logp.gather(1, target.unsqueeze(1)).squeeze(1).neg_()
    smooth = logp.sum(1).neg_() if opts.label_smoothing > 0 else None
    return core.index_row_loss_(nll, smooth, None, opts)


def _uniform_forward_sum(logp: torch.Tensor, target: torch.Tensor, opts: core.RowOptions) -> torch.Tensor:
    """The sum of :func:`_uniform_forward`'s rows (a 0-d tensor) without a loss per row in
    memory (for a segmentation batch a twentieth of the logits' size at 21 classes): torch's
    ``nll_loss`` with ``reduction="sum"`` adds up ``-logp[t]`` in one pass and no per-row
    buffer, as torch's own ``cross_entropy`` does after its ``log_softmax``."""
    total = F.nll_loss(logp, target, reduction="sum")
    eps = opts.label_smoothing
    if eps > 0:  # (1 - eps) sum(lse - x_t) + eps / C sum(C lse - sum_c x_c)
        total = total * (1.0 - eps) - logp.sum() * (eps / opts.n_classes)
    return total


def _is_uniform(grad: torch.Tensor) -> bool:
    """Whether every row gets the same upstream gradient (a mean or sum expanded to the rows)."""
    return grad.numel() > 0 and all(stride == 0 for stride in grad.stride())


def _uniform_backward(
    logp: torch.Tensor, target: torch.Tensor, grad: torch.Tensor, opts: core.RowOptions
) -> torch.Tensor:
    """The gradient of :func:`_uniform_forward`'s rows under one upstream gradient ``g`` for
    all, in place in ``logp``: ``g ((1 - eps) + eps) p - g (1 - eps) onehot(t) - g eps / C``, the
    coefficients computed once as a ``(1,)`` tensor (the same arithmetic as per row)."""
    g = grad.reshape(-1)[:1].to(logp.dtype)
    coef = core.index_grad_coefficients(g, None, None, opts)
    p = core.scale_softmax_grad_(logp.exp_(), coef.p_coef, coef.smooth_coef, None)
    index = target.unsqueeze(1)
    ones = (1,) * index.dim()
    return p.scatter_add_(1, index, coef.target_coef.view(ones).expand(index.shape))


def _index_coefficients(
    ctx: Any, target: torch.Tensor, grad: torch.Tensor, lse: torch.Tensor | None, acc: torch.dtype
) -> tuple[torch.Tensor, core.GradCoefficients]:
    """Safe class ids and gradient coefficients of class-index rows (a block of them)."""
    opts: core.RowOptions = ctx.opts
    use = core.counted_mask(target, ctx.ignore_index, opts.n_classes)
    safe = core.safe_targets(target, use)
    # rows that do not count get exactly zero (not g * 0, which is NaN when the mean's
    # denominator was 0 and g is inf: every target ignored gives zero gradients, as in torch)
    g = torch.where(use, grad.to(acc), 0.0)
    w_t = None if opts.weight is None else opts.weight[safe]
    return safe, core.index_grad_coefficients(g, w_t, lse, opts)


def _differentiable_backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    """The gradient as torch's autograd would build it, for double backward: recompute the rows
    from the saved inputs with :func:`~losskit._core.cross_entropy.differentiable_rows` and
    differentiate them with ``create_graph=True``."""
    x, target, _, weight, _, _ = ctx.saved_tensors
    opts: core.RowOptions = ctx.opts
    wanted = [t for t, need in zip((x, target), ctx.needs_input_grad[:2]) if need]
    rows, _ = core.differentiable_rows(
        x, target, weight, ctx.ignore_index, opts.label_smoothing, ctx.prob_target, opts.z_loss, opts.softcap
    )
    if ctx.summed:  # the forward returned the rows' sum: every row gets its gradient
        grad_loss = grad_loss.expand(rows.shape)
    grads = iter(torch.autograd.grad(rows, wanted, grad_loss, create_graph=True))
    grad_x = next(grads) if ctx.needs_input_grad[0] else None
    grad_t = next(grads) if ctx.needs_input_grad[1] else None
    return grad_x, grad_t, None, None, None, None, None, None, None


def cross_entropy_unreduced(
    x: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    ignore_index: int,
    label_smoothing: float,
    prob_target: bool,
    z_loss: float = 0.0,
    softcap: float | None = None,
    summed: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row loss of ``x`` ``(N, C[, S])`` in the accumulation dtype (see module docstring),
    and the z-loss term of each row alone (detached; zeros without ``z_loss``). With ``summed``
    (the caller only sums the rows) the loss may come back already summed, a 0-d tensor: when
    every row counts alike on CPU, no loss per row is then held in memory."""
    if core.functorch_active(x, target, weight):  # torch.func: plain torch operations
        return core.differentiable_rows(x, target, weight, ignore_index, label_smoothing, prob_target, z_loss, softcap)
    out: tuple[torch.Tensor, torch.Tensor] = CrossEntropyFunction.apply(  # type: ignore[no-untyped-call]
        x, target, weight, ignore_index, label_smoothing, prob_target, z_loss, softcap, summed
    )
    return out
