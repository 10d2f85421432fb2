"""Fused linear + cross-entropy: the loss of ``cross_entropy(input @ W.T + b, target)`` without
ever holding the ``N x V`` logits.

The rows of ``input`` are walked in chunks whose logits fit a memory budget
(:data:`CHUNK_BYTES`, with at least :data:`CHUNK_MIN_ROWS` rows). For ``reduction="mean"`` / ``"sum"`` the gradients are computed during
the forward pass, while each chunk's logits are at hand: per chunk one matrix product makes the
logits, the softmax gradient overwrites them in place, and two more products give that chunk's
rows of ``grad_input`` and its share of ``grad_weight``. That is the three matrix products any
implementation must do, and nothing is recomputed; backward only scales the stored gradients by
the upstream (scalar) gradient. ``reduction="none"`` cannot know the per-row upstream gradient
in forward, so its backward recomputes each chunk's logits (four products instead of three).

Memory: one chunk of float32 logits (two with ``softcap``), ``grad_input`` (``N x D``) and
``grad_weight`` (``V x D`` in float32, which autograd then takes over as ``.grad``).

Everything is plain torch operations, so it runs on any device torch runs on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch

from losskit._core import cross_entropy as core
from losskit._core.cross_entropy import RowOptions, accumulation_dtype
from losskit.errors import LossInputError

__all__ = ["CHUNK_BYTES", "CHUNK_MIN_ROWS", "LinearCrossEntropyFunction", "chunk_logits", "rows_per_chunk"]

#: Memory budget for one chunk of float32 logits (and its soft-capping twin). Large enough that
#: the chunk's matrix products run at full speed on a CPU (hundreds of rows for a 32k-128k
#: vocabulary), small next to the logits it replaces (8,192 x 128k x 4 bytes = 4 GiB).
CHUNK_BYTES = 64 * 2**20

#: below this, a target's probability is too small for ``x_t - log p_t`` to give the log-sum-exp
_TINY_PROBABILITY = 1e-30


#: Fewest rows per chunk (when the batch has them), whatever the vocabulary: every chunk's
#: ``grad_weight += P.T @ h`` reads and writes the whole ``V x D`` float32 gradient, which costs
#: about ``1.3 / rows`` of the chunk's three products -- 10 % at the 130 rows a 64 MiB budget
#: leaves a 128k vocabulary, 2-3 % at 512 rows (measured, ``benchmarks/bench_fused_floor.py``).
#: The chunk then holds ``512 x V`` float32 logits (250 MiB at V = 128k): still bounded, and a
#: small fraction of the ``N x V`` logits and of the ``V x D`` gradient it replaces.
CHUNK_MIN_ROWS = 512


def rows_per_chunk(n_rows: int, n_classes: int, dtype: torch.dtype, softcap: float | None) -> int:
    """Rows per chunk: as many as :data:`CHUNK_BYTES` of scratch logits hold, and at least
    :data:`CHUNK_MIN_ROWS` (at most ``n_rows``)."""
    per_row = n_classes * 4 * (2 if softcap is not None else 1)
    if dtype not in (torch.float32, torch.float64):
        per_row += n_classes * torch.finfo(dtype).bits // 8  # the low-precision product
    elif dtype == torch.float64:
        per_row *= 2
    return max(1, min(n_rows, max(CHUNK_BYTES // max(per_row, 1), CHUNK_MIN_ROWS)))


def chunk_logits(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, buf: torch.Tensor) -> torch.Tensor:
    """``h @ w.T + b`` written into ``buf`` (the accumulation dtype) and returned."""
    if h.dtype == buf.dtype:
        if b is None:
            return torch.mm(h, w.t(), out=buf)
        return torch.addmm(b, h, w.t(), out=buf)
    product = torch.mm(h, w.t()) if b is None else torch.addmm(b, h, w.t())
    return buf.copy_(product)


@dataclass
class ChunkGrad:
    """The gradient of a chunk's loss with respect to its logits.

    Either ``matrix`` is the gradient ``G`` itself (``coef`` is ``None``), or it is the softmax
    ``P`` and ``G = p_coef * P + target_coef * onehot(t) + smooth_coef * w`` (per-row
    :class:`~losskit._core.cross_entropy.GradCoefficients`; ``w`` the class weights, or ones).
    The folded form lets the caller move the per-row scaling into the matrix products' small
    operands instead of making another pass over the chunk.
    """

    matrix: torch.Tensor
    coef: core.GradCoefficients | None = None


def chunk_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    use: torch.Tensor,
    opts: RowOptions,
    row_grad: torch.Tensor | None,
    fold: bool = False,
    logit_at: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, ChunkGrad | None]:
    """Loss of each row of ``logits`` ``(rows, C)``; with ``row_grad`` also its gradient.

    ``logits`` must be a scratch buffer in the accumulation dtype: it is overwritten. With
    ``row_grad`` ``(rows,)`` (the upstream gradient of each row's loss, zero for rows that do
    not count) the buffer ends up holding ``row_grad[:, None] * d loss / d logits``.
    ``target`` holds safe ids (ignored rows point at class 0) and ``use`` marks counted rows.

    Returns ``(loss, z_term, grad)``: per-row loss including the z-loss term (zero where not
    ``use``), the z-loss term alone (``None`` without z-loss) and the gradient (``None``
    without ``row_grad``). ``fold=True`` (float32/float64, no soft-capping) returns the folded
    form of :class:`ChunkGrad`, computed with one softmax pass in place. ``logit_at(rows,
    classes)`` recomputes single logits of the chunk exactly; given it (on the CPU), the folded
    path skips the pass for the row maxima.
    """
    w = opts.weight
    w_t = None if w is None else w[target]
    smoothing = opts.label_smoothing > 0
    if (
        fold
        and opts.softcap is None
        and logit_at is not None
        and logits.device.type == "cpu"  # the underflow check reads a flag (a sync elsewhere)
        and not torch.compiler.is_compiling()  # and is data-dependent control flow
    ):
        # No pass for the row maxima: softmax subtracts them itself, and the target's own
        # probability gives the log-sum-exp, lse = x_t - log p_t. Where p_t underflows (a target
        # logit more than ~69 below the row's largest) the argmax's probability (>= 1 / C) is
        # used instead, with that one logit recomputed exactly from its row and class.
        x_t = logits.gather(1, target.unsqueeze(1)).squeeze(1)
        weighted_sum = None
        if smoothing:  # sum_c w_c x_c
            weighted_sum = logits.sum(1) if w is None else logits @ w
        p = torch.softmax(logits, 1, out=logits)
        p_t = p.gather(1, target.unsqueeze(1)).squeeze(1)
        target_nll = p_t.log().neg_()  # lse - x_t
        tiny = (p_t < _TINY_PROBABILITY) & use
        if bool(tiny.any()):
            rows = tiny.nonzero().squeeze(1)
            p_max, arg = p.index_select(0, rows).max(1)
            lse_rows = logit_at(rows, arg).to(p.dtype) - p_max.log()
            target_nll.index_copy_(0, rows, lse_rows - x_t.index_select(0, rows))
        target_nll = target_nll.masked_fill_(~use, 0.0)  # rows that do not count stay finite
        lse = x_t + target_nll
        smooth_nll = None if weighted_sum is None else opts.total_weight * lse - weighted_sum
        loss = core.index_row_loss_(target_nll, smooth_nll, w_t, opts)
        loss, z_term = core.add_z_term(loss, lse, opts, use)
        loss = loss.masked_fill(~use, 0.0)
        if row_grad is None:
            return loss, z_term, None
        return loss, z_term, ChunkGrad(p, core.index_grad_coefficients(row_grad, w_t, lse, opts))
    if fold and opts.softcap is None:
        # The log-sum-exp comes from the softmax itself: the row's largest logit m has
        # probability exp(m - lse) >= 1 / C, which never underflows, so lse = m - log(p[argmax])
        # is exact to float rounding even for logits of 1e4.
        m, arg = logits.max(1)
        shifted_t = logits.gather(1, target.unsqueeze(1)).squeeze(1) - m
        shifted_sum = None
        if smoothing:  # sum_c w_c (x_c - m)
            shifted_sum = (logits.sum(1) if w is None else logits @ w) - opts.total_weight * m
        cpu = logits.device.type == "cpu"
        p = torch.softmax(logits, 1, out=logits) if cpu else torch.softmax(logits, 1)
        log_sum = p.gather(1, arg.unsqueeze(1)).squeeze(1).log_().neg_()  # lse - m
        tanh = None
    else:
        tanh = None
        if opts.softcap is not None:  # a second buffer: tanh(r / cap) is needed for the gradient
            logits, tanh = core.softcap_(logits, opts.softcap)
        m, log_sum, gathered, shifted_sum = core.shifted_row_stats_(logits, target, w, smoothing)
        shifted_t = cast(torch.Tensor, gathered)  # a target was given, so it was gathered
        p = logits  # exp(x - m) from here on
    target_nll = log_sum - shifted_t
    smooth_nll = None if shifted_sum is None else opts.total_weight * log_sum - shifted_sum
    loss = core.index_row_loss_(target_nll, smooth_nll, w_t, opts)
    lse = m + log_sum
    loss, z_term = core.add_z_term(loss, lse, opts, use)
    loss = loss.masked_fill(~use, 0.0)
    if row_grad is None:
        return loss, z_term, None
    coef = core.index_grad_coefficients(row_grad, w_t, lse, opts)
    if fold and opts.softcap is None:
        return loss, z_term, ChunkGrad(p, coef)
    coef.p_coef = coef.p_coef * log_sum.neg().exp_()  # exp(x - m) / exp(s) is the softmax
    core.apply_index_grad_(p, target, coef, w)
    if tanh is not None:
        core.softcap_grad_(p, tanh)
    return loss, z_term, ChunkGrad(p)


def _logit_at(
    h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``(rows, classes) -> h[rows] . w[classes] + b[classes]``: single logits, recomputed."""

    def at(rows: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        x = (h.index_select(0, rows) * w.index_select(0, classes)).sum(1)
        return x if b is None else x + b.index_select(0, classes)

    return at


class LinearCrossEntropyFunction(torch.autograd.Function):
    """``(loss, z_loss)`` of ``cross_entropy(h @ W.T + b, target)``; see the module docstring.

    ``h`` is ``(N, D)``, ``target`` ``(N,)`` int64. ``scale`` is ``1 / denominator`` for the
    mean and ``1`` for the sum (``None`` for ``"none"``); ``track`` says whether autograd is
    recording (inside ``forward`` grad mode is always off).
    """

    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, *args: Any) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(h.device.type, enabled=False):  # inputs arrive already cast
            return LinearCrossEntropyFunction._forward(ctx, h, *args)

    @staticmethod
    def _forward(
        ctx: Any,
        h: torch.Tensor,
        w: torch.Tensor,
        b: torch.Tensor | None,
        target: torch.Tensor,
        weight: torch.Tensor | None,
        ignore_index: int,
        label_smoothing: float,
        z_loss: float,
        softcap: float | None,
        scale: torch.Tensor | None,
        rows: int,
        track: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        acc = accumulation_dtype(h.dtype)
        n, n_classes = h.shape[0], w.shape[0]
        valid, use = core.counted_targets(target, ignore_index, n_classes)
        safe = core.safe_targets(target, use)
        opts = RowOptions(
            n_classes, None if weight is None else weight.to(acc), float(label_smoothing), float(z_loss), softcap
        )
        need_h = track and h.requires_grad
        need_w = track and w.requires_grad
        need_b = track and b is not None and b.requires_grad
        eager = scale is not None and (need_h or need_w or need_b)
        # full-precision products take the folded gradient (no pass over the chunk to scale it);
        # low precision materialises the gradient in float32 before rounding it for the product
        fold = h.dtype == acc

        loss_rows = torch.empty(n, dtype=acc, device=h.device)
        z_rows = torch.zeros(n, dtype=acc, device=h.device) if z_loss else None
        grads = _Grads(h, w, b, need_h, need_w, need_b, acc, opts) if eager else None
        # zero for rows that do not count (also when the mean's denominator is 0: all ignored)
        row_grad = None
        if eager and scale is not None:
            row_grad = torch.where(use, scale.to(acc), torch.zeros((), dtype=acc, device=h.device))
        buf = torch.empty(min(rows, n), n_classes, dtype=acc, device=h.device)
        for start in range(0, n, rows):
            sl = slice(start, min(start + rows, n))
            hc = h[sl]
            logits = chunk_logits(hc, w, b, buf[: hc.shape[0]])
            loss_c, z_c, g = chunk_loss(
                logits,
                safe[sl],
                use[sl],
                opts,
                None if row_grad is None else row_grad[sl],
                fold=fold,
                logit_at=_logit_at(hc, w, b),
            )
            loss_rows[sl] = loss_c
            if z_rows is not None and z_c is not None:
                z_rows[sl] = z_c
            if grads is not None and g is not None:
                grads.add_chunk(sl, hc, safe[sl], g)
        del buf
        core.mark_out_of_range_(loss_rows, valid, use)
        if scale is None:
            loss, z_out = loss_rows, (z_rows if z_rows is not None else torch.zeros_like(loss_rows))
        else:
            loss = loss_rows.sum() * scale
            z_out = z_rows.sum() * scale if z_rows is not None else torch.zeros((), dtype=acc, device=h.device)
        ctx.mark_non_differentiable(z_out)
        ctx.opts = opts
        ctx.rows = rows
        ctx.needs = (need_h, need_w, need_b)
        ctx.fold = fold
        ctx.dtypes = (h.dtype, w.dtype, None if b is None else b.dtype)
        ctx.eager = grads is not None
        if grads is not None:  # the finished gradients wait for the upstream scalar
            ctx.save_for_backward(*grads.finish())
        elif track:  # "none": backward recomputes the chunks
            ctx.save_for_backward(h, w, b, safe, use)
        return loss, z_out

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, grad_z: torch.Tensor) -> tuple[Any, ...]:
        if torch.is_grad_enabled():
            raise LossInputError(
                "linear_cross_entropy: backward was called with create_graph=True (double backward, "
                "Hessian-vector products); expected a first-order backward, which is all the fused "
                "kernel computes (its gradients are made in forward). Use losskit.functional.cross_entropy("
                "torch.nn.functional.linear(input, linear_weight, linear_bias), target): it supports "
                "double backward."
            )
        if ctx.eager:
            finished = ctx.saved_tensors
        else:
            with torch.autocast(grad_loss.device.type, enabled=False):
                h, w, b, safe, use = ctx.saved_tensors
                acc = accumulation_dtype(h.dtype)
                need_h, need_w, need_b = ctx.needs
                grads = _Grads(h, w, b, need_h, need_w, need_b, acc, ctx.opts)
                row_grad = grad_loss.to(acc) * use
                rows = ctx.rows
                buf = torch.empty(min(rows, h.shape[0]), w.shape[0], dtype=acc, device=h.device)
                for start in range(0, h.shape[0], rows):
                    sl = slice(start, min(start + rows, h.shape[0]))
                    hc = h[sl]
                    logits = chunk_logits(hc, w, b, buf[: hc.shape[0]])
                    _, _, g = chunk_loss(
                        logits, safe[sl], use[sl], ctx.opts, row_grad[sl], fold=ctx.fold, logit_at=_logit_at(hc, w, b)
                    )
                    if g is not None:  # always: a row gradient was given
                        grads.add_chunk(sl, hc, safe[sl], g)
                finished = grads.finish()
        # The stored gradients are final when the upstream gradient is 1 (loss.backward()):
        # hand them over as they are -- no copy, and autograd adopts grad_weight as .grad.
        # Otherwise scale out of place, so a retained graph can run backward again.
        # (The check reads one number; under torch.compile it is skipped.)
        unit = ctx.eager and not torch.compiler.is_compiling() and grad_loss.numel() == 1 and float(grad_loss) == 1.0
        out: list[torch.Tensor | None] = []
        for stored, dtype in zip(finished, ctx.dtypes):
            if stored is None:
                out.append(None)
                continue
            grad = stored * grad_loss if ctx.eager and not unit else stored
            out.append(grad if grad.dtype == dtype else grad.to(dtype))
        return (*out, *[None] * 10)


class _Grads:
    """The gradient buffers of one call, filled chunk by chunk.

    A folded :class:`ChunkGrad` ``G = a * P + b * onehot(t) + c * w`` (per-row ``a, b, c``)
    enters the products through their small operands::

        grad_h[rows] = a * (P @ W) + b * W[t] + c * (w @ W)
        grad_W      += P.T @ (a * h) + index_add(t, b * h) + outer(w, sum_rows(c * h))
        grad_b      += P.T @ a + index_add(t, b) + w * sum(c)

    The smoothing terms (``c``) are summed over chunks and added once in :meth:`result`.
    """

    def __init__(
        self,
        h: torch.Tensor,
        w: torch.Tensor,
        b: torch.Tensor | None,
        need_h: bool,
        need_w: bool,
        need_b: bool,
        acc: torch.dtype,
        opts: RowOptions,
    ) -> None:
        self.w = w
        self.class_weight = opts.weight
        self.dtypes = (h.dtype, w.dtype, None if b is None else b.dtype)
        self.h = torch.empty(h.shape, dtype=h.dtype, device=h.device) if need_h else None
        # written by the first chunk's product (no pass to zero it first); zeroed if none comes
        self.weight = torch.empty(w.shape, dtype=acc, device=w.device) if need_w else None
        self._weight_written = False
        self.bias = torch.zeros(w.shape[0], dtype=acc, device=w.device) if need_b else None
        self.smooth_h: torch.Tensor | None = None  # sum over rows of c * h  (D,)
        self.smooth_sum: torch.Tensor | None = None  # sum over rows of c
        self._weighted_w: torch.Tensor | None = None  # w @ W  (D,)

    def _class_sum_of_w(self) -> torch.Tensor:
        if self._weighted_w is None:
            cw = self.class_weight
            self._weighted_w = self.w.sum(0) if cw is None else cw.to(self.w.dtype) @ self.w
        return self._weighted_w

    def add_chunk(self, sl: slice, hc: torch.Tensor, target: torch.Tensor, g: ChunkGrad) -> None:
        """Add chunk ``sl``'s share, given its :class:`ChunkGrad`."""
        if g.coef is None:
            self._add_matrix(sl, hc, g.matrix)
            return
        p, a, b, c = g.matrix, g.coef.p_coef, g.coef.target_coef, g.coef.smooth_coef
        if self.h is not None:
            out = self.h[sl]
            torch.mm(p, self.w, out=out)
            out.mul_(a.unsqueeze(1)).add_(self.w[target] * b.unsqueeze(1))
            if c is not None:
                out.add_(torch.outer(c, self._class_sum_of_w()))
        if self.weight is not None:
            self._add_to_weight(p.t(), hc * a.unsqueeze(1))
            self.weight.index_add_(0, target, hc * b.unsqueeze(1))
        if self.bias is not None:
            self.bias.addmv_(p.t(), a)
            self.bias.index_add_(0, target, b)
        if c is not None:
            ch = c @ hc
            self.smooth_h = ch if self.smooth_h is None else self.smooth_h + ch
            cs = c.sum()
            self.smooth_sum = cs if self.smooth_sum is None else self.smooth_sum + cs

    def _add_matrix(self, sl: slice, hc: torch.Tensor, g: torch.Tensor) -> None:
        if self.h is not None:
            if g.dtype == self.w.dtype:
                torch.mm(g, self.w, out=self.h[sl])
            else:
                self.h[sl] = torch.mm(g.to(self.w.dtype), self.w)
        if self.weight is not None:
            self._add_to_weight(g.t(), hc if hc.dtype == g.dtype else hc.to(g.dtype))
        if self.bias is not None:
            self.bias += g.sum(0)

    def _add_to_weight(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """``grad_weight += a @ b`` (the first call writes it)."""
        assert self.weight is not None
        if self._weight_written:
            self.weight.addmm_(a, b)
        else:
            torch.mm(a, b, out=self.weight)
            self._weight_written = True

    def finish(self) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """Add the smoothing terms collected over the chunks; return the three gradients."""
        if self.weight is not None and not self._weight_written:
            self.weight.zero_()
            self._weight_written = True
        if self.smooth_h is not None:
            cw = self.class_weight
            if cw is None:
                cw = torch.ones(self.w.shape[0], dtype=self.smooth_h.dtype, device=self.w.device)
            if self.weight is not None:
                self.weight.addr_(cw, self.smooth_h)
            if self.bias is not None and self.smooth_sum is not None:
                self.bias.add_(cw * self.smooth_sum)
        return self.h, self.weight, self.bias
