"""Row math shared by the fused and plain cross-entropy kernels: one chunk of logits in, the
per-row loss out, and (optionally) the gradient written over the chunk in place.

Per row, with logits :math:`x` (after soft-capping, if any), class weights :math:`w`
(ones without ``weight``), :math:`W = \\sum_c w_c`, smoothing :math:`\\varepsilon`, z-loss
coefficient :math:`z`, target :math:`t`, :math:`\\operatorname{lse} = m + s` (row max plus the
log-sum of ``exp(x - m)``, kept apart for precision) and :math:`p = \\operatorname{softmax}(x)`:

.. math::
    \\ell = (1-\\varepsilon) w_t (\\operatorname{lse} - x_t)
          + \\tfrac{\\varepsilon}{C} \\sum_c w_c (\\operatorname{lse} - x_c) + z \\operatorname{lse}^2

    \\frac{\\partial \\ell}{\\partial x_c} = p_c \\big((1-\\varepsilon) w_t
          + \\varepsilon W / C + 2 z \\operatorname{lse}\\big)
          - (1-\\varepsilon) w_t [c = t] - \\varepsilon w_c / C

With soft-capping the raw logits :math:`r` become :math:`x = \\kappa \\tanh(r / \\kappa)`
and the gradient is multiplied by :math:`1 - \\tanh^2(r / \\kappa)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ChunkGrad:
    """The gradient of a chunk's loss with respect to its logits.

    Either ``matrix`` is the gradient ``G`` itself (the ``*_coef`` fields are ``None``), or it
    is the softmax ``P`` and ``G = row_coef * P + target_coef * onehot(t) + smooth_coef * w``
    (per-row coefficients; ``w`` the class weights, or ones). The folded form lets the caller
    move the per-row scaling into the matrix products' small operands instead of making
    another pass over the chunk.
    """

    matrix: torch.Tensor
    row_coef: torch.Tensor | None = None
    target_coef: torch.Tensor | None = None
    smooth_coef: torch.Tensor | None = None


@dataclass(frozen=True)
class RowOptions:
    """What the loss of one row depends on besides its logits and target."""

    n_classes: int
    weight: torch.Tensor | None  # (C,) in the accumulation dtype
    label_smoothing: float
    z_loss: float
    softcap: float | None

    @property
    def total_weight(self) -> float | torch.Tensor:
        return float(self.n_classes) if self.weight is None else self.weight.sum()


def chunk_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    use: torch.Tensor,
    opts: RowOptions,
    row_grad: torch.Tensor | None,
    fold: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, ChunkGrad | None]:
    """Loss of each row of ``logits`` ``(rows, C)``; with ``row_grad`` also its gradient.

    ``logits`` must be a scratch buffer in the accumulation dtype: it is overwritten. With
    ``row_grad`` ``(rows,)`` (the upstream gradient of each row's loss, zero for rows that do
    not count) the buffer ends up holding ``row_grad[:, None] * d loss / d logits``.
    ``target`` holds safe ids (ignored rows point at class 0) and ``use`` marks counted rows.

    Returns ``(loss, z_term, grad)``: per-row loss including the z-loss term (zero where not
    ``use``), the z-loss term alone (``None`` without z-loss) and the gradient buffer
    (``logits`` itself, or a second buffer with soft-capping; ``None`` without ``row_grad``).
    ``fold=True`` (float32/float64, no soft-capping) returns the folded form of
    :class:`ChunkGrad`, computed with one softmax pass in place.
    """
    if fold and opts.softcap is None:
        return _chunk_loss_folded(logits, target, use, opts, row_grad)
    eps, zc, w = opts.label_smoothing, opts.z_loss, opts.weight
    n_classes = opts.n_classes
    tanh_r = None
    if opts.softcap is not None:
        tanh_r = logits.div_(opts.softcap).tanh_()
        x = tanh_r * opts.softcap  # a second buffer: tanh(r / cap) is needed for the gradient
    else:
        x = logits
    m = x.amax(1, keepdim=True)
    x.sub_(m)  # x - m from here on
    shifted_t = x.gather(1, target.unsqueeze(1)).squeeze(1)
    shifted_sum = None
    if eps > 0:  # sum_c w_c (x_c - m), taken before the exponential
        shifted_sum = x.sum(1) if w is None else x @ w
    x.exp_()
    sum_exp = x.sum(1)
    log_sum = sum_exp.log()
    w_t = 1.0 if w is None else w[target]
    loss = (1.0 - eps) * w_t * (log_sum - shifted_t)
    if shifted_sum is not None:
        loss = loss + (eps / n_classes) * (opts.total_weight * log_sum - shifted_sum)
    z_term = None
    lse = None
    if zc:
        lse = m.squeeze(1) + log_sum
        z_term = torch.where(use, zc * lse * lse, torch.zeros_like(lse))
        loss = loss + z_term
    loss = torch.where(use, loss, torch.zeros_like(loss))
    if row_grad is None:
        return loss, z_term, None

    # gradient: x holds exp(x - m); p = exp(x - m) / sum_exp
    coef = (1.0 - eps) * w_t + eps * opts.total_weight / n_classes
    if lse is not None:
        coef = coef + 2.0 * zc * lse
    x.mul_((row_grad * coef / sum_exp).unsqueeze(1))
    x.scatter_add_(1, target.unsqueeze(1), (-(1.0 - eps) * row_grad * w_t).unsqueeze(1))
    if eps > 0:
        if w is None:
            x.sub_((row_grad * (eps / n_classes)).unsqueeze(1))
        else:
            x.addr_(row_grad, w, alpha=-eps / n_classes)
    if tanh_r is not None:
        x.mul_(tanh_r.square_().neg_().add_(1.0))
    return loss, z_term, ChunkGrad(x)


def _chunk_loss_folded(
    x: torch.Tensor,
    target: torch.Tensor,
    use: torch.Tensor,
    opts: RowOptions,
    row_grad: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None, ChunkGrad | None]:
    """:func:`chunk_loss` with one fused softmax over the chunk, in place.

    The log-sum-exp comes from the softmax itself: the row's largest logit ``m`` has
    probability ``exp(m - lse) >= 1 / C``, which never underflows, so
    ``lse = m - log(p[argmax])`` is exact to float rounding even for logits of 1e4.
    """
    eps, zc, w = opts.label_smoothing, opts.z_loss, opts.weight
    n_classes = opts.n_classes
    m, arg = x.max(1)
    shifted_t = x.gather(1, target.unsqueeze(1)).squeeze(1) - m
    shifted_sum = None
    if eps > 0:  # sum_c w_c (x_c - m)
        shifted_sum = (x.sum(1) if w is None else x @ w) - opts.total_weight * m
    p = torch.softmax(x, 1, out=x) if x.device.type == "cpu" else torch.softmax(x, 1)
    log_sum = -p.gather(1, arg.unsqueeze(1)).squeeze(1).log()  # lse - m
    w_t = 1.0 if w is None else w[target]
    loss = (1.0 - eps) * w_t * (log_sum - shifted_t)
    if shifted_sum is not None:
        loss = loss + (eps / n_classes) * (opts.total_weight * log_sum - shifted_sum)
    z_term = None
    coef = (1.0 - eps) * w_t + eps * opts.total_weight / n_classes
    if zc:
        lse = m + log_sum
        z_term = torch.where(use, zc * lse * lse, torch.zeros_like(lse))
        loss = loss + z_term
        coef = coef + 2.0 * zc * lse
    loss = torch.where(use, loss, torch.zeros_like(loss))
    if row_grad is None:
        return loss, z_term, None
    return loss, z_term, ChunkGrad(
        p,
        row_coef=row_grad * coef,
        target_coef=-(1.0 - eps) * row_grad * w_t,
        smooth_coef=(-eps / n_classes) * row_grad if eps > 0 else None,
    )
