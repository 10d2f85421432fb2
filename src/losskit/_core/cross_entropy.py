r"""The per-row math of softmax cross-entropy, written once for every path that computes it.

Callers: the chunked kernel behind ``cross_entropy`` (plain and K-dimensional,
:mod:`losskit.autograd.cross_entropy`), the fused linear + cross-entropy chunk
(:mod:`losskit.autograd.linear_cross_entropy`), the vocabulary-parallel shards
(:mod:`losskit.distributed.vocab_parallel`), ``nll_loss`` / focal / poly-1 (the counted-target
mask and the mean's denominator). No checks and no messages here: inputs are trusted.

Layout: the class axis is dim 1 (``(rows, C)`` or ``(N, C, S)``); per-row tensors drop it.

Per row, with logits :math:`x` (after soft-capping, if any), class weights :math:`w`
(ones without ``weight``), :math:`W = \sum_c w_c`, smoothing :math:`\varepsilon`, z-loss
coefficient :math:`z`, target :math:`t`, :math:`\operatorname{lse} = m + s` (row max plus the
log-sum of ``exp(x - m)``, kept apart for precision: with logits near 1e4 the sum would round to
float32's spacing there) and :math:`p = \operatorname{softmax}(x)`:

.. math::
    \ell = (1-\varepsilon)\, w_t (\operatorname{lse} - x_t)
         + \tfrac{\varepsilon}{C} \big(W \operatorname{lse} - \textstyle\sum_c w_c x_c\big)
         + z \operatorname{lse}^2

    \frac{\partial \ell}{\partial x_c} = p_c \big((1-\varepsilon) w_t
         + \varepsilon W / C + 2 z \operatorname{lse}\big)
         - (1-\varepsilon) w_t [c = t] - \varepsilon w_c / C

For class probabilities :math:`y` (smoothed :math:`y' = (1-\varepsilon) y + \varepsilon / C`):
:math:`\ell = \sum_c w_c y'_c (\operatorname{lse} - x_c) + z \operatorname{lse}^2`, with
:math:`\partial \ell / \partial x_c = p_c (\sum_k w_k y'_k + 2 z \operatorname{lse}) - w_c y'_c`
and :math:`\partial \ell / \partial y_c = (1-\varepsilon) w_c (\operatorname{lse} - x_c)`.

Soft-capping (Gemma 2) replaces the raw logits :math:`r` by :math:`x = \kappa \tanh(r/\kappa)`;
the gradient with respect to :math:`r` is multiplied by :math:`1 - \tanh^2(r/\kappa)`.

Denominators of ``reduction="mean"`` (as torch): class indices divide by
:math:`\sum_{n \text{ counted}} w_{t_n}` (the count without weights), probabilities by the number
of rows; an explicit ``normalizer`` (global normalization) replaces either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "RowOptions",
    "GradCoefficients",
    "accumulation_dtype",
    "class_view",
    "counted_mask",
    "all_counted",
    "ids_in_range",
    "counted_targets",
    "uncounted_rows",
    "safe_targets",
    "mark_out_of_range_",
    "softcap_",
    "softcap_grad_",
    "shifted_row_stats_",
    "index_row_loss_",
    "z_term",
    "add_z_term",
    "index_grad_coefficients",
    "apply_index_grad_",
    "scale_softmax_grad_",
    "add_target_grad_",
    "smoothed_probabilities",
    "probability_row_loss",
    "probability_grad_scale",
    "probability_target_grad",
    "ROW_BLOCK",
    "row_blocks",
    "index_denominator",
    "mean_denominator",
    "reduction_scale",
    "flatten_classes",
    "flatten_ids",
    "log_softmax_at_targets",
    "differentiable_rows",
    "functorch_active",
]


@dataclass(frozen=True)
class RowOptions:
    """What the loss of one row depends on besides its logits and target."""

    n_classes: int
    weight: Tensor | None  # (C,) in the accumulation dtype, or None
    label_smoothing: float = 0.0
    z_loss: float = 0.0
    softcap: float | None = None

    @property
    def total_weight(self) -> float | Tensor:
        """:math:`W = \\sum_c w_c` (``C`` without weights)."""
        return float(self.n_classes) if self.weight is None else self.weight.sum()


@dataclass
class GradCoefficients:
    """Per-row coefficients of a row's gradient ``G = p_coef * p + target_coef * onehot(t) +
    smooth_coef * w`` (``w`` the class weights, or ones); ``smooth_coef`` is ``None`` without
    label smoothing. Each is already multiplied by the row's upstream gradient."""

    p_coef: Tensor
    target_coef: Tensor
    smooth_coef: Tensor | None


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; everything else (float32, float16, bfloat16) accumulates in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def class_view(vector: Tensor, like: Tensor) -> Tensor:
    """A ``(C,)`` vector shaped to broadcast along dim 1 of ``like``."""
    return vector.view(1, -1, *([1] * (like.dim() - 2)))


def counted_mask(target: Tensor, ignore_index: int, n_classes: int) -> Tensor:
    """``True`` for the targets that count: class ids in ``[0, n_classes)`` other than
    ``ignore_index`` (three element-wise operations for an ``ignore_index`` outside the classes)."""
    use = (target >= 0) & (target < n_classes)
    if 0 <= ignore_index < n_classes:
        use &= target != ignore_index
    return use


def all_counted(target: Tensor, ignore_index: int, n_classes: int) -> bool:
    """Whether every target is a class id other than ``ignore_index`` (``False`` when it cannot
    tell: ``ignore_index`` among the classes, between the smallest and largest id). One pass
    (``aminmax``) that reads two numbers: for CPU tensors, where reading them costs no sync."""
    if target.numel() == 0:
        return False
    lo, hi = (int(v) for v in torch.aminmax(target))
    return lo >= 0 and hi < n_classes and not lo <= ignore_index <= hi


def ids_in_range(target: Tensor, ignore_index: int, n_classes: int) -> bool:
    """Whether every target is a class id in ``[0, n_classes)`` or ``ignore_index`` (reads
    numbers: for CPU tensors). One ``aminmax`` when the ids lie in range, as they do."""
    if target.numel() == 0:
        return True
    lo, hi = (int(v) for v in torch.aminmax(target))
    if lo >= 0 and hi < n_classes:
        return True
    return bool(((target == ignore_index) | ((target >= 0) & (target < n_classes))).all())


def counted_targets(target: Tensor, ignore_index: int, n_classes: int) -> tuple[Tensor, Tensor]:
    """``(valid, use)``: ``valid`` marks targets that are not ``ignore_index``; ``use`` those
    that also lie in ``[0, n_classes)`` -- the targets that count in the loss and the mean."""
    return target != ignore_index, counted_mask(target, ignore_index, n_classes)


def safe_targets(target: Tensor, use: Tensor) -> Tensor:
    """``target`` with the rows that do not count pointing at class 0 (safe to gather)."""
    return torch.where(use, target, 0)


def mark_out_of_range_(loss: Tensor, valid: Tensor, use: Tensor) -> Tensor:
    """NaN in the rows whose target is neither ignored nor a class id, in place: an id that no
    check stopped gives NaN instead of a device-side assert."""
    return loss.masked_fill_(valid & ~use, float("nan"))


def uncounted_rows(loss: Tensor, target: Tensor, use: Tensor, ignore_index: int) -> Tensor:
    """``loss`` where the target counts, 0 where it is ``ignore_index`` and NaN where it is
    neither (:func:`mark_out_of_range_` and the zeroing in one expression, three operations)."""
    return torch.where(use, loss, torch.where(target == ignore_index, 0.0, float("nan")))


def softcap_(logits: Tensor, cap: float) -> tuple[Tensor, Tensor]:
    """Soft-capped logits ``cap * tanh(logits / cap)`` and ``tanh(logits / cap)`` (kept for the
    gradient). ``logits`` must be scratch: it is overwritten with the tanh."""
    tanh = logits.div_(cap).tanh_()
    return tanh * cap, tanh


def softcap_grad_(grad: Tensor, tanh: Tensor) -> Tensor:
    """The chain rule through the cap: ``grad * (1 - tanh^2)`` in place (``tanh`` is consumed)."""
    return grad.mul_(tanh.square_().neg_().add_(1.0))


def shifted_row_stats_(
    x: Tensor, target: Tensor | None, sum_weights: Tensor | None, weighted_sum: bool, *, scratch: bool = True
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """Row statistics of logits ``x`` (class axis 1).

    Returns ``(m, log_sum, shifted_target, shifted_sum)`` per row: the max, ``s =
    log(sum(exp(x - m)))``, ``x_t - m`` (``None`` without ``target``) and, with
    ``weighted_sum``, ``sum_c a_c (x_c - m)`` (taken before the exponential) where ``a`` is
    ``sum_weights`` (broadcast to ``x``: class weights, or weighted probability targets) or ones.
    With ``scratch`` (the default) ``x`` is overwritten and ends up as ``exp(x - m)``; without,
    ``x`` is only read and ``x - m`` is formed in one new buffer (one pass fewer than a copy).
    """
    m = x.amax(1, keepdim=True)
    x = x.sub_(m) if scratch else x - m
    shifted_target = None if target is None else x.gather(1, target.unsqueeze(1)).squeeze(1)
    shifted_sum = None
    if weighted_sum:
        if sum_weights is None:
            shifted_sum = x.sum(1)
        elif x.dim() == 2 and sum_weights.dim() == 1:
            shifted_sum = x @ sum_weights
        else:
            shifted_sum = (x * sum_weights).sum(1)
    log_sum = (x.exp_() if scratch else x.exp()).sum(1).log_()
    return m.squeeze(1), log_sum, shifted_target, shifted_sum


def index_row_loss_(target_nll: Tensor, smooth_nll: Tensor | None, w_t: Tensor | None, opts: RowOptions) -> Tensor:
    """The loss of class-index rows, formed in place in ``target_nll``.

    ``target_nll`` is ``lse - x_t``; ``smooth_nll`` is ``W lse - sum_c w_c x_c`` (needed only
    with label smoothing); ``w_t`` the target's class weight (``None`` without weights).
    Returns ``(1 - eps) w_t target_nll + eps / C smooth_nll``, without the z-loss term.
    """
    eps = opts.label_smoothing
    if eps != 0.0:
        target_nll.mul_(1.0 - eps)
    if w_t is not None:
        target_nll.mul_(w_t)
    if eps != 0.0 and smooth_nll is not None:
        target_nll.add_(smooth_nll, alpha=eps / opts.n_classes)
    return target_nll


def z_term(lse: Tensor, opts: RowOptions, use: Tensor | None) -> Tensor:
    """The z-loss term ``z lse^2`` of each row, zero where ``use`` is False."""
    z = opts.z_loss * lse * lse
    return z if use is None else z.masked_fill_(~use, 0.0)


def add_z_term(loss: Tensor, lse: Tensor, opts: RowOptions, use: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """``(loss + z lse^2, z term)`` with z-loss on; ``(loss, None)`` without it."""
    if not opts.z_loss:
        return loss, None
    z = z_term(lse, opts, use)
    return loss + z, z


def index_grad_coefficients(
    row_grad: Tensor, w_t: Tensor | None, lse: Tensor | None, opts: RowOptions
) -> GradCoefficients:
    """The per-row coefficients of ``row_grad * d loss / d x`` for class-index rows (see
    :class:`GradCoefficients`); ``lse`` is needed only with z-loss. ``row_grad`` must be zero
    in the rows that do not count."""
    eps, n_classes = opts.label_smoothing, opts.n_classes
    g_t = row_grad if w_t is None else row_grad * w_t
    p_coef = g_t * (1.0 - eps)
    if eps != 0.0:
        p_coef = p_coef + row_grad * (eps * opts.total_weight / n_classes)
    if opts.z_loss and lse is not None:
        p_coef = p_coef + row_grad * (2.0 * opts.z_loss) * lse
    smooth = row_grad * (-eps / n_classes) if eps != 0.0 else None
    return GradCoefficients(p_coef, g_t * (eps - 1.0), smooth)


def scale_softmax_grad_(p: Tensor, p_coef: Tensor, smooth_coef: Tensor | None, weight: Tensor | None) -> Tensor:
    """The parts of a row's gradient that touch every class, in place: ``p * p_coef + smooth_coef
    * w`` (``p`` the softmax, or anything proportional to it row by row when ``p_coef`` carries the
    row's ``1 / sum``; ``w`` the class weights, or ones)."""
    p.mul_(p_coef.unsqueeze(1))
    if smooth_coef is not None:
        if weight is not None and p.dim() == 2:
            p.addr_(smooth_coef.to(p.dtype), weight.to(p.dtype))
        else:
            s = smooth_coef.unsqueeze(1)
            p.add_(s if weight is None else s * class_view(weight, p))
    return p


def add_target_grad_(p: Tensor, target: Tensor, target_coef: Tensor, target_mask: Tensor | None = None) -> Tensor:
    """Add the target term ``target_coef * onehot(t)`` of each row's gradient to ``p``, in place
    (``target`` indexes dim 1; ``target_mask`` marks the rows whose target lies in this block of
    classes -- vocabulary shards -- the others get no target term)."""
    tc = target_coef if target_mask is None else target_coef * target_mask
    return p.scatter_add_(1, target.unsqueeze(1), tc.unsqueeze(1).to(p.dtype))


def apply_index_grad_(
    p: Tensor,
    target: Tensor,
    coef: GradCoefficients,
    weight: Tensor | None,
    target_mask: Tensor | None = None,
) -> Tensor:
    """Turn ``p`` (softmax probabilities, or anything proportional to them row by row when
    ``coef.p_coef`` carries the row's ``1 / sum``) into the gradient, in place:
    :func:`scale_softmax_grad_`, then :func:`add_target_grad_`."""
    scale_softmax_grad_(p, coef.p_coef, coef.smooth_coef, weight)
    return add_target_grad_(p, target, coef.target_coef, target_mask)


def smoothed_probabilities(y: Tensor, opts: RowOptions) -> Tensor:
    """``w * ((1 - eps) y + eps / C)`` for class-probability targets (class axis 1)."""
    eps = opts.label_smoothing
    wy = y if eps == 0.0 else y * (1.0 - eps) + eps / opts.n_classes
    return wy if opts.weight is None else wy * class_view(opts.weight, wy)


def probability_row_loss(log_sum: Tensor, mass: Tensor, shifted_sum: Tensor) -> Tensor:
    """``sum_c w y' (lse - x_c) = s * sum(w y') - sum(w y' (x - m))`` from its parts."""
    return log_sum * mass - shifted_sum


def probability_target_grad(neg_log_probs: Tensor, opts: RowOptions) -> Tensor:
    """``d loss / d y_c = (1 - eps) w_c (lse - x_c)`` from ``neg_log_probs = lse - x``."""
    g = neg_log_probs if opts.weight is None else neg_log_probs * class_view(opts.weight, neg_log_probs)
    return g * (1.0 - opts.label_smoothing)


def probability_grad_scale(mass: Tensor, lse: Tensor | None, opts: RowOptions) -> Tensor:
    """The softmax coefficient ``sum_k w_k y'_k + 2 z lse`` of probability-target rows."""
    if opts.z_loss and lse is not None:
        return mass + (2.0 * opts.z_loss) * lse
    return mass


#: On a CPU, per-row work runs in blocks of at most this many rows: torch's grain size, below which
#: an operation runs serially in the calling thread. As one operation over a segmentation batch's
#: ``N x H x W`` rows, every mask would be an OpenMP parallel region of its own, and each region
#: waits for a descheduled thread when other processes load the cores.
ROW_BLOCK = 32768


def row_blocks(n_rows: int, device: torch.device) -> list[slice]:
    """Slices covering ``range(n_rows)``: blocks of :data:`ROW_BLOCK` on a CPU, one elsewhere
    (an accelerator launches one kernel per operation, whatever its size)."""
    step = ROW_BLOCK if device.type == "cpu" else max(n_rows, 1)
    return [slice(a, min(a + step, n_rows)) for a in range(0, n_rows, step)] or [slice(0, 0)]


def index_denominator(ids: Tensor, weight: Tensor | None, ignore_index: int, n_classes: int) -> Tensor:
    """Sum of the class weights of counted targets (their count without ``weight``), as torch."""
    flat = ids.reshape(-1)
    big_on_cpu = flat.device.type == "cpu" and flat.numel() > ROW_BLOCK
    if weight is None and big_on_cpu and all_counted(flat, ignore_index, n_classes):
        return torch.tensor(flat.numel(), device=flat.device)  # one pass instead of a few per block
    total: Tensor | None = None
    for block in row_blocks(flat.numel(), flat.device):
        use = counted_mask(flat[block], ignore_index, n_classes)
        if weight is None:
            part = use.sum()
        else:
            part = (weight[safe_targets(flat[block], use)] * use).sum(dtype=accumulation_dtype(weight.dtype))
        total = part if total is None else total + part
    return total  # type: ignore[return-value]


def mean_denominator(
    *,
    prob_target: bool,
    rows: int,
    ids: Tensor | None,
    weight: Tensor | None,
    ignore_index: int,
    n_classes: int,
    normalizer: float | Tensor | None,
) -> float | Tensor:
    """What ``reduction="mean"`` divides the summed loss by: ``normalizer`` when given, the
    number of rows for probability targets (NaN for none), :func:`index_denominator` otherwise."""
    if normalizer is not None:
        return normalizer
    if prob_target or ids is None:
        return float(rows) if rows else float("nan")
    return index_denominator(ids, weight, ignore_index, n_classes)


def reduction_scale(
    reduction: Literal["none", "mean", "sum"],
    denominator: float | Tensor,
    dtype: torch.dtype,
    device: torch.device,
) -> Tensor | None:
    """The factor that turns summed rows into the reduced loss: ``1 / denominator`` for the
    mean, 1 for the sum (``denominator`` unused), ``None`` for ``"none"`` (no reduction)."""
    if reduction == "none":
        return None
    if reduction == "sum":
        return torch.ones((), dtype=dtype, device=device)
    return 1.0 / torch.as_tensor(denominator, dtype=dtype, device=device)


def flatten_classes(x: Tensor) -> Tensor:
    """``(C,)`` -> ``(1, C)``; ``(N, C)`` stays; ``(N, C, d1, ...)`` -> ``(N, C, d1*...)``."""
    if x.dim() == 1:
        return x.unsqueeze(0)
    if x.dim() == 2:
        return x
    return x.reshape(x.shape[0], x.shape[1], math.prod(x.shape[2:]))  # explicit: N may be 0


def flatten_ids(t: Tensor, input_dim: int) -> Tensor:
    if input_dim == 1:
        return t.reshape(1)
    if input_dim == 2:
        return t
    return t.reshape(t.shape[0], math.prod(t.shape[1:]))


def log_softmax_at_targets(input: Tensor, target: Tensor, ignore_index: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Flatten to ``(N, C, S)`` rows and return ``(log_probs, ids, counted, log p_target)``.

    ``log p_target`` is 0 where the target is ignored or out of range (those rows count 0).
    """
    x = flatten_classes(input)
    if x.dim() == 2:
        x = x.unsqueeze(-1)
    ids = flatten_ids(target.long(), input.dim()).reshape(x.shape[0], x.shape[2])
    x = x.to(accumulation_dtype(x.dtype))
    logp = torch.log_softmax(x, dim=1)
    _, counted = counted_targets(ids, ignore_index, x.shape[1])
    safe = safe_targets(ids, counted)
    logp_t = logp.gather(1, safe.unsqueeze(1)).squeeze(1).masked_fill(~counted, 0.0)
    return logp, safe, counted, logp_t


def differentiable_rows(
    x: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    label_smoothing: float,
    prob_target: bool,
    z_loss: float = 0.0,
    softcap: float | None = None,
) -> tuple[Tensor, Tensor]:
    """The unreduced loss and z-loss term of ``x`` ``(N, C[, S])`` through ordinary autograd.

    The same row functions as the chunked kernels, composed out of place on a copy of ``x``, so
    autograd sees plain torch operations: double backward (``create_graph=True``) and
    ``torch.func`` (``grad``, ``vmap``, ``jvp``) work, at the memory cost of torch's own
    ``cross_entropy``. The chunked kernels use this path only where they cannot serve.
    """
    acc = accumulation_dtype(x.dtype)
    opts = RowOptions(x.shape[1], None if weight is None else weight.to(acc), label_smoothing, z_loss, softcap)
    xs = x.to(acc)
    if softcap is not None:
        xs, _ = softcap_(xs.clone(), softcap)
    use: Tensor | None = None
    if prob_target:
        wy = smoothed_probabilities(target.to(acc), opts)
        m, log_sum, _, shifted_sum = shifted_row_stats_(xs, None, wy, True, scratch=False)
        loss = probability_row_loss(log_sum, wy.sum(1), shifted_sum)  # type: ignore[arg-type]
    else:
        valid, use = counted_targets(target, ignore_index, opts.n_classes)
        safe = safe_targets(target, use)
        sum_weights = None if opts.weight is None else class_view(opts.weight, xs)
        m, log_sum, shifted_t, shifted_sum = shifted_row_stats_(
            xs, safe, sum_weights, label_smoothing > 0, scratch=False
        )
        smooth_nll = None if shifted_sum is None else opts.total_weight * log_sum - shifted_sum
        w_t = None if opts.weight is None else opts.weight[safe]
        loss = index_row_loss_(log_sum - shifted_t, smooth_nll, w_t, opts)  # type: ignore[operator]
        loss = mark_out_of_range_(loss.masked_fill(~use, 0.0), valid, use)
    loss, z = add_z_term(loss, m + log_sum, opts, use)
    return loss, z.detach() if z is not None else torch.zeros_like(loss).detach()


def functorch_active(*tensors: Tensor | None) -> bool:
    """Whether any of ``tensors`` is being transformed by ``torch.func`` (grad, vmap, jvp, ...):
    autograd Functions written for eager autograd and value checks that read a number must then
    step aside."""
    if torch.compiler.is_compiling():  # dynamo traces plain tensors (and cannot call the test)
        return False
    is_wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)
    if is_wrapped is None:  # pragma: no cover - torch without functorch
        return False
    return any(t is not None and isinstance(t, Tensor) and bool(is_wrapped(t)) for t in tensors)
