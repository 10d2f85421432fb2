"""Classification losses: ``cross_entropy``, ``nll_loss``, ``binary_cross_entropy`` and
``binary_cross_entropy_with_logits`` (torch parity), and the extras torch lacks:
``sigmoid_focal_loss``, ``focal_loss`` and ``poly1_cross_entropy``.

``cross_entropy`` and ``nll_loss`` are losskit's own code (the kernel lives in
:mod:`losskit.functional._cross_entropy`); the binary losses call torch's kernels after
losskit's checks, since those are already optimal element-wise kernels.
"""

from __future__ import annotations

from typing import NoReturn

import torch
import torch.nn.functional as F

from losskit import checks
from losskit.checks import describe, fail, shape_str, warn
from losskit.functional._cross_entropy import accumulation_dtype, cross_entropy_unreduced
from losskit.functional._reduce import reduce as apply_reduction
from losskit.functional._reduce import reduce_with_denominator

__all__ = [
    "cross_entropy",
    "nll_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "sigmoid_focal_loss",
    "focal_loss",
    "poly1_cross_entropy",
]


# --------------------------------------------------------------------------- shared checks


def _check_class_weight(fn: str, weight: torch.Tensor | None, n_classes: int) -> None:
    if weight is None:
        return
    checks.check_float_input(fn, "weight", weight)
    if weight.dim() != 1 or weight.shape[0] != n_classes:
        fail(
            f"{fn}: weight has shape {shape_str(weight.shape)}; expected one weight per class, "
            f"shape ({n_classes},). Pass a 1-D tensor of length {n_classes} (e.g. from "
            "losskit.class_weights(targets))."
        )


def _index_target_shape(input: torch.Tensor) -> tuple[int, ...]:
    return () if input.dim() == 1 else (input.shape[0],) + tuple(input.shape[2:])


def _classify_target(fn: str, input: torch.Tensor, target: torch.Tensor, allow_probs: bool) -> bool:
    """Check the target's dtype and shape; return True for class probabilities, False for ids."""
    checks.check_tensor(fn, "target", target)
    n_classes = input.shape[0] if input.dim() == 1 else input.shape[1]
    expected = _index_target_shape(input)
    shape = tuple(target.shape)
    probs_hint = f" or class probabilities of shape {shape_str(input.shape)}" if allow_probs else ""
    wanted = f"int64 class indices of shape {shape_str(expected)}{probs_hint}"
    if target.dtype == torch.bool or target.is_complex():
        fail(f"{fn}: target has {describe(target)}; expected {wanted}. Use target.long().", dtype=True)
    if target.is_floating_point():
        if shape == tuple(input.shape) and allow_probs:
            return True
        if shape == expected:
            fail(
                f"{fn}: target has {describe(target)} (float class indices); expected {wanted}. "
                "Use target.long().",
                dtype=True,
            )
    else:
        if shape == expected:
            return False
        if shape == tuple(input.shape) and n_classes > 1:
            axis = "0" if input.dim() == 1 else "1"
            fail(
                f"{fn}: target has {describe(target)}, which looks like integer one-hot labels; "
                f"expected {wanted}. Use target.argmax(dim={axis}) to get class indices"
                + (" (or target.float() for probabilities)." if allow_probs else ".")
            )
    if input.dim() >= 2 and shape == expected[:1] + (1,) + expected[1:]:
        fail(
            f"{fn}: target has shape {shape_str(shape)} with an extra class axis of size 1; "
            f"expected {wanted}. Use target.squeeze(1)."
        )
    fail(
        f"{fn}: target has {describe(target)}, which does not fit input of shape "
        f"{shape_str(input.shape)} (classes on dim {0 if input.dim() == 1 else 1}, {n_classes} "
        f"classes); expected {wanted}. Check that input is (N, C) or (N, C, d1, ...) and target "
        "(N,) or (N, d1, ...)."
    )


def _check_class_ids(fn: str, target: torch.Tensor, n_classes: int, ignore_index: int) -> None:
    """Full-level check: every id that is not ``ignore_index`` lies in ``[0, n_classes)``."""
    if target.numel() == 0:
        return
    # fast path: one pass over the targets when every id is in range, a second one when
    # ignore_index is the smallest or largest value (padding -100, void label 255)
    lo, hi = (int(v) for v in torch.aminmax(target))
    if lo >= 0 and hi < n_classes:
        return
    if ignore_index in (lo, hi):
        lo, hi = (int(v) for v in torch.aminmax(torch.where(target == ignore_index, 0, target)))
        if lo >= 0 and hi < n_classes:
            return
    bad = (target != ignore_index) & ((target < 0) | (target >= n_classes))
    if not bool(bad.any()):
        return
    offending = target[bad]
    count = offending.numel()
    lo, hi = int(offending.min()), int(offending.max())
    example = hi if hi >= n_classes else lo
    if example < 0:
        fix = (
            f"Negative ids other than ignore_index={ignore_index} are not allowed: if {example} "
            f"marks padding, pass ignore_index={example}."
        )
    else:
        fix = (
            f"Remap the labels to 0..{n_classes - 1} (torch.unique(target, return_inverse=True) "
            f"does it) or give the model {hi + 1} outputs."
        )
    fail(
        f"{fn}: target has {count} class id(s) out of range (e.g. {example}; smallest {lo}, "
        f"largest {hi}); expected ids in [0, {n_classes - 1}] or ignore_index={ignore_index}. "
        + fix
    )


def _probability_tolerance(dtype: torch.dtype) -> float:
    return 2e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-3


def _check_probability_target(fn: str, target: torch.Tensor, class_dim: int) -> None:
    """Full-level check of class-probability targets: non-negative rows that sum to 1."""
    if target.numel() == 0:
        return
    t = target.detach()
    minimum = float(t.amin())
    sums = t.sum(class_dim, dtype=torch.float32)
    worst = float((sums - 1).abs().amax())
    tol = _probability_tolerance(target.dtype)
    if minimum >= 0 and worst <= tol * max(1.0, t.shape[class_dim] ** 0.5 / 8):
        rows = checks.sample_rows(t, class_dim)
        if bool(((rows == 0) | (rows == 1)).all()):
            warn(
                f"{fn}: target of {describe(target)} holds one-hot float rows; expected class "
                f"indices for hard labels. Use target.argmax(dim={class_dim}): it is faster, uses "
                "less memory and supports ignore_index."
            )
        return
    if minimum < 0:
        fail(
            f"{fn}: target holds negative class probabilities (min {minimum:.4g}); expected "
            "probabilities >= 0 with each row summing to 1. If these are logits, use "
            f"target.softmax(dim={class_dim})."
        )
    multi_hot = bool(((t == 0) | (t == 1)).all())
    if multi_hot:
        fail(
            f"{fn}: target rows contain several 1s (multi-hot labels, a row sums to "
            f"{float(sums.amax()):.4g}); expected one class per sample, rows summing to 1. For "
            "multi-label classification use losskit.functional.binary_cross_entropy_with_logits"
            "(input, target)."
        )
    fail(
        f"{fn}: target probability rows do not sum to 1 (worst row sums to "
        f"{float(sums.flatten()[(sums - 1).abs().flatten().argmax()]):.4g}); expected each row "
        f"to sum to 1. Normalise with target / target.sum(dim={class_dim}, keepdim=True)."
    )


def _warn_if_softmax_input(fn: str, input: torch.Tensor, class_dim: int) -> None:
    """Full-level heuristic: sampled rows all in [0, 1] and summing to 1 look like softmax output."""
    if input.shape[class_dim] < 2 or input.numel() == 0:
        return
    rows = checks.sample_rows(input.detach(), class_dim).float()
    if bool((rows < 0).any()) or bool((rows > 1).any()):
        return
    if float((rows.sum(-1) - 1).abs().amax()) <= _probability_tolerance(input.dtype):
        warn(
            f"{fn}: input rows lie in [0, 1] and sum to 1, so they look like softmax output; "
            f"expected raw logits ({fn} applies log_softmax itself). Remove the softmax "
            "before the loss (keep it for inference only)."
        )


def _warn_if_empty_or_all_ignored(
    fn: str, reduction: str, n_targets: int, denominator: torch.Tensor | None, mode: str
) -> None:
    if reduction != "mean":
        return
    if n_targets == 0:
        warn(
            f"{fn}: the batch is empty (0 targets) and reduction='mean'; expected at least one "
            "target. The loss is NaN, as in torch: skip empty batches or use reduction='sum'."
        )
    elif mode == "full" and denominator is not None and float(denominator) == 0:
        warn(
            f"{fn}: every target is ignore_index (or has zero class weight) and "
            "reduction='mean'; expected at least one counted target. The loss is NaN, as in "
            "torch: skip such batches, or use reduction='sum' and divide by the global count."
        )


def _flatten_classes(x: torch.Tensor) -> torch.Tensor:
    """``(C,)`` -> ``(1, C)``; ``(N, C)`` stays; ``(N, C, d1, ...)`` -> ``(N, C, d1*...)``."""
    if x.dim() == 1:
        return x.unsqueeze(0)
    if x.dim() == 2:
        return x
    return x.reshape(x.shape[0], x.shape[1], -1)


def _flatten_ids(t: torch.Tensor, input_dim: int) -> torch.Tensor:
    if input_dim == 1:
        return t.reshape(1)
    if input_dim == 2:
        return t
    return t.reshape(t.shape[0], -1)


def _index_denominator(
    ids: torch.Tensor, weight: torch.Tensor | None, ignore_index: int, n_classes: int
) -> torch.Tensor:
    """Sum of the class weights of counted targets (the count without ``weight``), as torch."""
    counted = (ids != ignore_index) & (ids >= 0) & (ids < n_classes)
    if weight is None:
        return counted.sum()
    safe = torch.where(counted, ids, torch.zeros_like(ids))
    return (weight[safe] * counted).sum(dtype=accumulation_dtype(weight.dtype))


def _check_logits_and_target(
    fn: str,
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    ignore_index: int,
    allow_probs: bool = True,
) -> tuple[str, bool]:
    """The guardrails shared by the softmax losses (cross-entropy, focal, poly-1).

    Returns the check level and whether ``target`` holds class probabilities.
    """
    checks.check_float_input(fn, "input", input)
    if input.dim() == 0:
        fail(
            f"{fn}: input is a 0-d tensor; expected logits of shape (C,), (N, C) or "
            "(N, C, d1, ...). Add the class axis, e.g. input.view(1, -1)."
        )
    mode = checks.level(input)
    class_dim = 0 if input.dim() == 1 else 1
    n_classes = input.shape[class_dim]
    if mode == "off":
        checks.check_tensor(fn, "target", target)
        prob_target = allow_probs and target.is_floating_point()
    else:
        prob_target = _classify_target(fn, input, target, allow_probs=allow_probs)
        _check_class_weight(fn, weight, n_classes)
        if prob_target and ignore_index != -100:
            fail(
                f"{fn}: ignore_index={ignore_index} was given with class-probability targets; "
                "expected ignore_index only with class indices. Drop ignore_index, or zero the "
                "rows you want to ignore and use reduction='sum'."
            )
    if mode == "full":
        if prob_target:
            _check_probability_target(fn, target, class_dim)
        else:
            _check_class_ids(fn, target, n_classes, ignore_index)
        _warn_if_softmax_input(fn, input, class_dim)
    if weight is not None and weight.requires_grad and torch.is_grad_enabled():
        fail(
            f"{fn}: weight requires grad; expected constant class weights (their gradient is "
            "not computed). Pass weight.detach()."
        )
    return mode, prob_target


# --------------------------------------------------------------------------- cross-entropy


def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: None = None,
    ignore_index: int = -100,
    reduce: None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_z_loss: bool = False,
    normalizer: float | torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""Softmax cross-entropy between logits and class indices or class probabilities.

    For class indices :math:`y_n` with weights :math:`w` and smoothing :math:`\varepsilon`:

    .. math::
        \ell_n = (1-\varepsilon)\, w_{y_n} \big(\operatorname{lse}(x_n) - x_{n,y_n}\big)
        + \frac{\varepsilon}{C} \sum_c w_c \big(\operatorname{lse}(x_n) - x_{n,c}\big),
        \qquad \text{mean} = \frac{\sum_n \ell_n}{\sum_{n:\,y_n \ne \text{ignore}} w_{y_n}}

    For class probabilities :math:`p_{n,c}`: :math:`\ell_n = -\sum_c w_c\, p'_{n,c} \log
    \operatorname{softmax}(x_n)_c` with :math:`p' = (1-\varepsilon) p + \varepsilon / C`, and the
    mean divides by the number of samples.

    losskit-only options (no torch equivalent): ``z_loss`` adds :math:`z \operatorname{lse}(x_n)^2`
    to each counted row (PaLM; reduced like the loss, not multiplied by class weights) and
    ``softcap`` :math:`\kappa` replaces the logits by :math:`\kappa \tanh(x / \kappa)` first
    (Gemma 2).

    torch equivalent: :func:`torch.nn.functional.cross_entropy` (same values and gradients).
    losskit's kernel keeps only one log-sum-exp per row for backward (torch keeps the full
    ``log_softmax``), so its peak memory is lower; float16/bfloat16 accumulate in float32.

    Args:
        input: logits ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)`` (segmentation).
        target: int64 class indices ``()``, ``(N,)`` or ``(N, d1, ..., dK)``; or class
            probabilities with ``input``'s shape.
        weight: ``(C,)`` rescaling weight per class.
        size_average, reduce: deprecated; anything but ``None`` raises with the equivalent.
        ignore_index: class id whose targets count neither in the loss nor in the mean
            (class indices only).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        label_smoothing: in ``[0, 1]``; mixes the target with the uniform distribution.
        z_loss: coefficient of the z-loss (0 turns it off; 1e-4 in PaLM).
        softcap: logit cap :math:`\kappa > 0`, or ``None``.
        return_z_loss: also return the z-loss term alone (detached, reduced the same way).
        normalizer: with ``reduction="mean"``, divide the summed loss by this count instead of
            the batch's own (global normalization over micro-batches and ranks; see
            :func:`losskit.distributed.global_normalizer`).

    Returns:
        A scalar, or the per-sample loss of shape ``(N, d1, ..., dK)`` for ``"none"``; with
        ``return_z_loss=True`` a pair ``(loss, z_term)``.

    Raises:
        LossInputError: class id out of range, float class indices, integer one-hot targets,
            ``(N, 1)`` targets, probability rows that are negative or do not sum to 1, bad
            ``weight`` / ``reduction`` / ``label_smoothing``.

    Warns:
        LossUsageWarning: softmax output as input, one-hot float targets, NaN/Inf input,
            every target ignored or an empty batch with ``reduction="mean"``.

    Example:
        >>> import torch, losskit.functional as LF
        >>> logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
        >>> LF.cross_entropy(logits, torch.tensor([0, 2]))
        tensor(0.6691)
    """
    fn = "cross_entropy"
    checks.check_legacy(fn, size_average, reduce)
    checks.check_reduction(fn, reduction)
    checks.check_label_smoothing(fn, label_smoothing)
    checks.check_z_loss_and_softcap(fn, z_loss, softcap)
    checks.check_normalizer(fn, normalizer, reduction)
    cap = None if softcap is None else float(softcap)
    mode, prob_target = _check_logits_and_target(fn, input, target, weight, ignore_index)
    class_dim = 0 if input.dim() == 1 else 1
    n_classes = input.shape[class_dim]

    x = _flatten_classes(input)
    if prob_target:
        out_dtype = torch.promote_types(input.dtype, target.dtype)
        rows, z_rows = cross_entropy_unreduced(
            x, _flatten_classes(target), weight, ignore_index, label_smoothing, True, z_loss, cap
        )
        n_rows = rows.numel()
        mean_denominator: torch.Tensor | float = float(n_rows) if n_rows else float("nan")
        if normalizer is not None:
            mean_denominator = normalizer
        loss = reduce_with_denominator(rows, reduction, mean_denominator)
        denominator = None
        row_shape = tuple(input.shape[:class_dim]) + tuple(input.shape[class_dim + 1 :])
    else:
        out_dtype = input.dtype
        ids = _flatten_ids(target.long(), input.dim())
        rows, z_rows = cross_entropy_unreduced(x, ids, weight, ignore_index, label_smoothing, False, z_loss, cap)
        denominator = None
        if reduction == "mean" and normalizer is None:
            denominator = _index_denominator(ids, weight, ignore_index, n_classes)
        mean_denominator = denominator if denominator is not None else 1.0
        if normalizer is not None:
            mean_denominator = normalizer
        loss = reduce_with_denominator(rows, reduction, mean_denominator)
        row_shape = tuple(target.shape)
    z_term = reduce_with_denominator(z_rows, reduction, mean_denominator) if return_z_loss else None
    if reduction == "none":
        loss = loss.reshape(row_shape)
        z_term = None if z_term is None else z_term.reshape(row_shape)
    loss = loss.to(out_dtype)
    if mode != "off" and normalizer is None:
        _warn_if_empty_or_all_ignored(fn, reduction, rows.numel(), denominator, mode)
    if mode == "full":
        checks.warn_nonfinite_result(fn, loss, input)
    if z_term is not None:
        return loss, z_term.to(out_dtype)
    return loss


def nll_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: None = None,
    ignore_index: int = -100,
    reduce: None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Negative log-likelihood of class indices under log-probabilities.

    .. math::
        \ell_n = -w_{y_n} x_{n, y_n}, \qquad
        \text{mean} = \frac{\sum_n \ell_n}{\sum_{n:\,y_n \ne \text{ignore}} w_{y_n}}

    torch equivalent: :func:`torch.nn.functional.nll_loss`. ``input`` should be
    ``log_softmax`` output; ``cross_entropy(x, y) == nll_loss(log_softmax(x, 1), y)``.

    Args:
        input: log-probabilities ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``.
        target: int64 class indices ``()``, ``(N,)`` or ``(N, d1, ..., dK)``.
        weight: ``(C,)`` weight per class.
        size_average, reduce: deprecated; anything but ``None`` raises.
        ignore_index: class id that counts neither in the loss nor in the mean.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        A scalar, or the per-sample loss ``(N, d1, ..., dK)`` for ``"none"``.

    Raises:
        LossInputError: as :func:`cross_entropy` for class-index targets.

    Warns:
        LossUsageWarning: input that is not log-probabilities (raw logits or softmax output).

    Example:
        >>> import torch, losskit.functional as LF
        >>> logp = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
        >>> LF.nll_loss(logp, torch.tensor([1]))
        tensor(1.3863)
    """
    fn = "nll_loss"
    checks.check_legacy(fn, size_average, reduce)
    checks.check_reduction(fn, reduction)
    checks.check_float_input(fn, "input", input)
    if input.dim() == 0:
        fail(
            f"{fn}: input is a 0-d tensor; expected log-probabilities of shape (C,), (N, C) or "
            "(N, C, d1, ...). Add the class axis, e.g. input.view(1, -1)."
        )
    mode = checks.level(input)
    class_dim = 0 if input.dim() == 1 else 1
    n_classes = input.shape[class_dim]
    if mode != "off":
        _classify_target(fn, input, target, allow_probs=False)
        _check_class_weight(fn, weight, n_classes)
    if mode == "full":
        _check_class_ids(fn, target, n_classes, ignore_index)
        _warn_if_not_log_probs(fn, input, class_dim)

    x = _flatten_classes(input)
    ids = _flatten_ids(target.long(), input.dim())
    valid = ids != ignore_index
    in_range = (ids >= 0) & (ids < n_classes)
    use = valid & in_range
    safe = torch.where(use, ids, torch.zeros_like(ids))
    picked = -x.gather(1, safe.unsqueeze(1)).squeeze(1)
    if weight is not None:
        picked = picked * weight.to(picked.dtype)[safe]
    rows = torch.where(use, picked, torch.zeros_like(picked))
    rows = torch.where(valid & ~in_range, torch.full_like(rows, float("nan")), rows)
    denominator = None
    if reduction == "mean":
        denominator = _index_denominator(ids, weight, ignore_index, n_classes).to(rows.dtype)
    loss = reduce_with_denominator(rows, reduction, denominator if denominator is not None else 1.0)
    if reduction == "none":
        loss = loss.reshape(target.shape)
    if mode != "off":
        _warn_if_empty_or_all_ignored(fn, reduction, rows.numel(), denominator, mode)
    if mode == "full":
        checks.warn_nonfinite_result(fn, loss, input)
    return loss


def _warn_if_not_log_probs(fn: str, input: torch.Tensor, class_dim: int) -> None:
    """Full-level heuristic: rows of log-probabilities have logsumexp 0."""
    if input.numel() == 0 or input.shape[class_dim] < 2:
        return
    rows = checks.sample_rows(input.detach(), class_dim).float()
    lse = torch.logsumexp(rows, -1)
    finite = torch.isfinite(lse)
    if not bool(finite.any()):
        return
    worst = float((lse[finite]).abs().amax())
    if worst <= 10 * _probability_tolerance(input.dtype):
        return
    if bool((rows >= 0).all()) and bool((rows <= 1).all()):
        what = "lie in [0, 1], so they look like softmax probabilities"
        fix = "Use log_softmax instead of softmax before nll_loss, or pass the logits to cross_entropy."
    else:
        what = f"have logsumexp up to {worst:.3g} instead of 0, so they look like raw logits"
        fix = "Apply log_softmax(dim=1) first, or pass the logits to losskit.functional.cross_entropy."
    warn(f"{fn}: input rows {what}; expected log-probabilities (log_softmax output). {fix}")


# --------------------------------------------------------------------------- binary


def _check_binary(
    fn: str, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None
) -> str:
    checks.check_float_input(fn, "input", input)
    checks.check_tensor(fn, "target", target)
    mode = checks.level(input)
    if mode == "off":
        return mode
    if not target.is_floating_point():
        fail(
            f"{fn}: target has {describe(target)}; expected float targets in [0, 1] of shape "
            f"{shape_str(input.shape)}. Use target.float()"
            + (" (or target.to(input.dtype))." if input.dtype != torch.float32 else "."),
            dtype=True,
        )
    if target.shape != input.shape:
        if input.dim() == target.dim() + 1 and input.shape[-1] == 1 and input.shape[:-1] == target.shape:
            fix = "Use input.squeeze(-1)."
        elif target.dim() == input.dim() + 1 and target.shape[-1] == 1 and target.shape[:-1] == input.shape:
            fix = "Use target.squeeze(-1)."
        elif input.dim() == target.dim() + 1 and input.shape[:-1] == target.shape and input.shape[-1] > 1:
            fix = (
                f"For {input.shape[-1]} mutually exclusive classes use "
                "losskit.functional.cross_entropy(input, target.long())."
            )
        else:
            fix = "Give target the shape of input (one target per logit)."
        fail(
            f"{fn}: input and target shapes differ, got input {shape_str(input.shape)} and "
            f"target {shape_str(target.shape)}; expected equal shapes. {fix}"
        )
    if weight is not None:
        checks.check_tensor(fn, "weight", weight)
        try:
            torch.broadcast_shapes(weight.shape, input.shape)
        except RuntimeError:
            fail(
                f"{fn}: weight has shape {shape_str(weight.shape)}, which does not broadcast to "
                f"input {shape_str(input.shape)}; expected a shape broadcastable to it. Reshape "
                "weight (e.g. weight.view(-1, 1) for one weight per sample)."
            )
    if mode == "full" and target.numel() > 0:
        lo, hi = checks.value_range(target)
        if lo < 0 or hi > 1:
            _fail_target_range(fn, target)
    return mode


def _fail_target_range(fn: str, target: torch.Tensor) -> NoReturn:
    lo, hi = torch.aminmax(target.detach())
    fail(
        f"{fn}: target has values outside [0, 1] (min {float(lo):.4g}, max "
        f"{float(hi):.4g}); expected probabilities in [0, 1]. Map labels to 0/1 first "
        "(e.g. (target > 0).float() for -1/+1 labels)."
    )


def _fail_input_range(fn: str, input: torch.Tensor) -> NoReturn:
    lo, hi = torch.aminmax(input.detach())
    fail(
        f"{fn}: input has values outside [0, 1] (min {float(lo):.4g}, max "
        f"{float(hi):.4g}), so it looks like logits; expected probabilities. Use "
        "losskit.functional.binary_cross_entropy_with_logits(input, target), which is "
        "also numerically stable."
    )


def _warn_if_sigmoid_input(fn: str, input: torch.Tensor) -> None:
    """Full-level heuristic: every sampled value in [0, 1] looks like sigmoid output."""
    if input.numel() < 32:
        return
    sample = checks.sample_values(input.detach())
    if bool((sample >= 0).all()) and bool((sample <= 1).all()):
        warn(
            f"{fn}: every sampled input value lies in [0, 1], so input looks like sigmoid "
            f"output; expected raw logits ({fn} applies the sigmoid itself). Remove the "
            "sigmoid before the loss, or use binary_cross_entropy for probabilities."
        )


def binary_cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: None = None,
    reduce: None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Binary cross-entropy between probabilities and targets in ``[0, 1]``.

    .. math::
        \ell_i = -w_i \big(y_i \log x_i + (1 - y_i) \log(1 - x_i)\big)

    (log terms clamped at -100, as torch). torch equivalent:
    :func:`torch.nn.functional.binary_cross_entropy` (torch's kernel, after losskit's checks).
    Prefer :func:`binary_cross_entropy_with_logits`: it is numerically stable.

    Args:
        input: probabilities in ``[0, 1]``, any shape ``(*)``.
        target: float targets in ``[0, 1]``, the same shape.
        weight: weights broadcastable to ``input``.
        size_average, reduce: deprecated; anything but ``None`` raises.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        A scalar, or a tensor of ``input``'s shape for ``"none"``.

    Raises:
        LossInputError: input outside ``[0, 1]`` (logits: use the ``_with_logits`` form),
            target outside ``[0, 1]`` or not float, shape mismatch, bad ``weight``.

    Example:
        >>> import torch, losskit.functional as LF
        >>> LF.binary_cross_entropy(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0]))
        tensor(0.6931)
    """
    fn = "binary_cross_entropy"
    checks.check_legacy(fn, size_average, reduce)
    checks.check_reduction(fn, reduction)
    mode = _check_binary(fn, input, target, weight)
    if mode == "full" and input.numel() > 0:
        lo, hi = checks.value_range(input)
        if lo < 0 or hi > 1:
            _fail_input_range(fn, input)
    try:
        loss = F.binary_cross_entropy(input, target, weight=weight, reduction=reduction)
    except RuntimeError as err:
        # torch's CPU kernel checks every element; name the problem the losskit way.
        if mode != "off" and "input should be between 0 and 1" in str(err):
            _fail_input_range(fn, input)
        if mode != "off" and "target should be between 0 and 1" in str(err):
            _fail_target_range(fn, target)
        raise
    if mode == "full":
        checks.warn_nonfinite_result(fn, loss, input)
    return loss


def binary_cross_entropy_with_logits(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: None = None,
    reduce: None = None,
    reduction: str = "mean",
    pos_weight: torch.Tensor | None = None,
    *,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    r"""Sigmoid + binary cross-entropy in one numerically stable step.

    .. math::
        \ell_{i,c} = -w_{i,c}\big(p_c\, y_{i,c} \log \sigma(x_{i,c})
        + (1 - y_{i,c}) \log(1 - \sigma(x_{i,c}))\big)

    ``pos_weight`` :math:`p_c` weighs positives per class (broadcast over the last dimension).
    ``label_smoothing`` :math:`\varepsilon` (losskit-only) first pulls every target towards 1/2:
    :math:`y' = (1 - \varepsilon)\, y + \varepsilon / 2` (Szegedy et al. 2016 for two classes).
    torch equivalent: :func:`torch.nn.functional.binary_cross_entropy_with_logits` (torch's
    kernel, after losskit's checks).

    Args:
        input: logits, any shape ``(*)``.
        target: float targets in ``[0, 1]``, the same shape.
        weight: weights broadcastable to ``input``.
        size_average, reduce: deprecated; anything but ``None`` raises.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        pos_weight: ``(C,)`` (``C = input.shape[-1]``) or ``(1,)`` weight of positive examples.
        label_smoothing: in ``[0, 1]``; 0 (the default) is torch's loss.

    Returns:
        A scalar, or a tensor of ``input``'s shape for ``"none"``.

    Raises:
        LossInputError: integer targets, targets outside ``[0, 1]``, shape mismatch, bad
            ``weight`` / ``pos_weight`` / ``label_smoothing``.

    Warns:
        LossUsageWarning: input that looks like sigmoid output (every value in ``[0, 1]``).

    Example:
        >>> import torch, losskit.functional as LF
        >>> LF.binary_cross_entropy_with_logits(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0]))
        tensor(0.6931)
        >>> LF.binary_cross_entropy_with_logits(torch.tensor([4.0]), torch.tensor([1.0]), label_smoothing=0.1)
        tensor(0.2181)
    """
    fn = "binary_cross_entropy_with_logits"
    checks.check_legacy(fn, size_average, reduce)
    checks.check_reduction(fn, reduction)
    checks.check_label_smoothing(fn, label_smoothing)
    mode = _check_binary(fn, input, target, weight)
    if mode != "off" and pos_weight is not None:
        checks.check_tensor(fn, "pos_weight", pos_weight)
        last = input.shape[-1] if input.dim() else 1
        if pos_weight.dim() > 1 or pos_weight.numel() not in (1, last):
            fail(
                f"{fn}: pos_weight has shape {shape_str(pos_weight.shape)}; expected one weight "
                f"per class along the last dimension, shape ({last},), or a single value (1,). "
                "Compute it per class, e.g. losskit.pos_weight(targets) or "
                "(negatives / positives)."
            )
    if mode == "full":
        _warn_if_sigmoid_input(fn, input)
    if label_smoothing:
        target = target * (1.0 - label_smoothing) + 0.5 * label_smoothing
    loss = F.binary_cross_entropy_with_logits(
        input, target, weight=weight, reduction=reduction, pos_weight=pos_weight
    )
    if mode == "full":
        checks.warn_nonfinite_result(fn, loss, input)
    return loss


# --------------------------------------------------------------------------- focal and poly-1


def _check_focal_options(fn: str, gamma: float, alpha: float | None = None) -> None:
    if not isinstance(gamma, (int, float)) or isinstance(gamma, bool) or not gamma >= 0 or gamma == float("inf"):
        fail(
            f"{fn}: gamma is {gamma!r}; expected a finite number >= 0 (2 in Lin et al. 2017; "
            "0 gives the plain cross-entropy). Pass e.g. gamma=2.0."
        )
    if alpha is not None and (
        not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not alpha <= 1 or alpha != alpha
    ):
        fail(
            f"{fn}: alpha is {alpha!r}; expected a number in [0, 1] weighting the positives "
            "(0.25 in Lin et al. 2017), or a negative number to turn the weighting off. "
            "Pass e.g. alpha=0.25 or alpha=-1."
        )


def sigmoid_focal_loss(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
) -> torch.Tensor:
    r"""Focal loss on logits with binary (or soft) targets: cross-entropy down-weighted on easy examples.

    With :math:`p = \sigma(x)` and :math:`p_t = p\,y + (1 - p)(1 - y)`:

    .. math::
        \ell_i = \alpha_t\, (1 - p_{t})^{\gamma}\,
        \operatorname{BCE}(x_i, y_i), \qquad \alpha_t = \alpha\, y + (1 - \alpha)(1 - y)

    and :math:`\alpha_t = 1` when ``alpha < 0``. ``gamma=0, alpha=-1`` is exactly
    :func:`binary_cross_entropy_with_logits`.

    No torch equivalent; the semantics, argument names and defaults (including
    ``reduction="none"``) are ``torchvision.ops.sigmoid_focal_loss``'s, so it is a drop-in
    replacement. :math:`1 - p_t` is computed as :math:`y\,\sigma(-x) + (1 - y)\,\sigma(x)`,
    which does not cancel when :math:`p_t \to 1`; float16/bfloat16 compute in float32.

    Args:
        inputs: logits, any shape ``(*)``.
        targets: float targets in ``[0, 1]`` (usually 0/1), the same shape.
        alpha: weight of the positives in ``[0, 1]``; negative turns the weighting off.
        gamma: focusing exponent ``>= 0``.
        reduction: ``"none"`` (torchvision's default) | ``"mean"`` | ``"sum"``.

    Returns:
        A tensor of ``inputs``'s shape for ``"none"``, else a scalar.

    Raises:
        LossInputError: integer targets, targets outside ``[0, 1]``, shape mismatch, bad
            ``alpha`` / ``gamma`` / ``reduction``.

    Warns:
        LossUsageWarning: inputs that look like sigmoid output.

    References:
        Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.

    Example:
        >>> import torch, losskit.functional as LF
        >>> LF.sigmoid_focal_loss(torch.tensor([0.0]), torch.tensor([1.0]))  # 0.25 * 0.5**2 * ln 2
        tensor([0.0433])
    """
    fn = "sigmoid_focal_loss"
    checks.check_reduction(fn, reduction)
    _check_focal_options(fn, gamma, alpha)
    mode = _check_binary(fn, inputs, targets, None)
    if mode == "full":
        _warn_if_sigmoid_input(fn, inputs)
    x = inputs.float() if inputs.dtype in (torch.float16, torch.bfloat16) else inputs
    y = targets.to(x.dtype)
    loss = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    if gamma:
        one_minus_pt = y * torch.sigmoid(-x) + (1 - y) * torch.sigmoid(x)
        loss = loss * one_minus_pt.pow(gamma)
    if alpha >= 0:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    loss = apply_reduction(loss, reduction).to(inputs.dtype)
    if mode == "full":
        checks.warn_nonfinite_result(fn, loss, inputs)
    return loss


def _log_softmax_at_targets(
    input: torch.Tensor, target: torch.Tensor, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flatten to ``(N, C, S)`` rows and return ``(log_probs, ids, counted, log p_target)``.

    ``log p_target`` is 0 where the target is ignored or out of range (those rows count 0).
    """
    x = _flatten_classes(input)
    if x.dim() == 2:
        x = x.unsqueeze(-1)
    ids = _flatten_ids(target.long(), input.dim()).reshape(x.shape[0], x.shape[2])
    x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    logp = torch.log_softmax(x, dim=1)
    n_classes = x.shape[1]
    counted = (ids != ignore_index) & (ids >= 0) & (ids < n_classes)
    safe = torch.where(counted, ids, torch.zeros_like(ids))
    logp_t = logp.gather(1, safe.unsqueeze(1)).squeeze(1)
    logp_t = torch.where(counted, logp_t, torch.zeros_like(logp_t))
    return logp, safe, counted, logp_t


def _reduce_class_rows(
    rows: torch.Tensor,
    counted: torch.Tensor,
    reduction: str,
    denominator: torch.Tensor | None,
    target_shape: tuple[int, ...],
    out_dtype: torch.dtype,
) -> torch.Tensor:
    """Zero the rows that do not count and reduce as :func:`cross_entropy` does (``denominator``
    from :func:`_index_denominator` for ``"mean"``)."""
    rows = torch.where(counted, rows, torch.zeros_like(rows))
    loss = reduce_with_denominator(rows, reduction, denominator if denominator is not None else 1.0)
    if reduction == "none":
        loss = loss.reshape(target_shape)
    return loss.to(out_dtype)


def focal_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    *,
    gamma: float = 2.0,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Multiclass (softmax) focal loss: cross-entropy down-weighted on well-classified samples.

    With :math:`p_{n} = \operatorname{softmax}(x_n)_{y_n}` and class weights :math:`w` (the
    per-class :math:`\alpha` of the paper):

    .. math::
        \ell_n = -w_{y_n}\, (1 - p_n)^{\gamma} \log p_n, \qquad
        \text{mean} = \frac{\sum_n \ell_n}{\sum_{n:\,y_n \ne \text{ignore}} w_{y_n}}

    The mean divides by the summed weights of the counted targets, exactly as
    :func:`cross_entropy`, so ``gamma=0`` is :func:`cross_entropy` with the same ``weight`` and
    ``ignore_index``. No torch equivalent. :math:`1 - p_n` is computed as
    ``-expm1(log p_n)`` (no cancellation when :math:`p_n \to 1`); float16/bfloat16 compute in
    float32.

    Args:
        input: logits ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)`` (segmentation).
        target: int64 class indices ``()``, ``(N,)`` or ``(N, d1, ..., dK)``.
        weight: ``(C,)`` weight per class (e.g. :func:`losskit.class_weights`).
        gamma: focusing exponent ``>= 0`` (2 in the paper).
        ignore_index: class id whose targets count neither in the loss nor in the mean.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        A scalar, or the per-sample loss ``(N, d1, ..., dK)`` for ``"none"``.

    Raises:
        LossInputError: as :func:`cross_entropy` for class-index targets; bad ``gamma``.

    Warns:
        LossUsageWarning: softmax output as input, every target ignored with ``"mean"``.

    References:
        Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.

    Example:
        >>> import torch, losskit.functional as LF
        >>> LF.focal_loss(torch.zeros(1, 2), torch.tensor([0]))  # (1 - 1/2)**2 * ln 2
        tensor(0.1733)
    """
    fn = "focal_loss"
    checks.check_reduction(fn, reduction)
    _check_focal_options(fn, gamma)
    mode, _ = _check_logits_and_target(fn, input, target, weight, ignore_index, allow_probs=False)
    logp, ids, counted, logp_t = _log_softmax_at_targets(input, target, ignore_index)
    rows = -logp_t
    if gamma:
        rows = rows * (-torch.expm1(logp_t)).pow(gamma)
    if weight is not None:
        rows = rows * weight.to(rows.dtype)[ids]
    n_classes = input.shape[0] if input.dim() == 1 else input.shape[1]
    denominator = None
    if reduction == "mean":
        denominator = _index_denominator(_flatten_ids(target.long(), input.dim()), weight, ignore_index, n_classes)
    loss = _reduce_class_rows(rows, counted, reduction, denominator, tuple(target.shape), input.dtype)
    if mode != "off":
        _warn_if_empty_or_all_ignored(fn, reduction, rows.numel(), denominator, mode)
    if mode == "full":
        checks.warn_nonfinite_result(fn, loss, input)
    return loss


def poly1_cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    *,
    epsilon: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    r"""Poly-1 loss: cross-entropy plus :math:`\varepsilon (1 - p_t)`, the first term of its Taylor series.

    .. math::
        \ell_n = \operatorname{CE}_n + \varepsilon\,(1 - p_{t,n}), \qquad
        p_{t,n} = \sum_c y'_{n,c}\, \operatorname{softmax}(x_n)_c

    where :math:`y'` is the (label-smoothed) one-hot or probability target, as in the paper's
    reference code. With class indices the whole row is multiplied by :math:`w_{y_n}` and the
    mean divides by :math:`\sum w_{y_n}` over counted targets, as :func:`cross_entropy`; so
    ``epsilon=0`` is exactly :func:`cross_entropy`. No torch equivalent.

    Note:
        With class-probability targets ``weight`` enters the cross-entropy term only (as in
        :func:`cross_entropy`); the poly term is unweighted and the mean divides by the number
        of samples.

    Args:
        input: logits ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``.
        target: int64 class indices (``(N,)``, ``(N, d1, ...)``) or class probabilities of
            ``input``'s shape.
        weight: ``(C,)`` weight per class.
        epsilon: coefficient of the poly term (the paper tunes it in ``[-1, 10]``; 1 is its
            default; must be ``> -1`` so the loss stays a decreasing function of :math:`p_t`).
        ignore_index: class id whose targets count neither in the loss nor in the mean.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        label_smoothing: in ``[0, 1]``, as :func:`cross_entropy`.

    Returns:
        A scalar, or the per-sample loss for ``"none"``.

    Raises:
        LossInputError: as :func:`cross_entropy`; ``epsilon <= -1`` or not finite.

    References:
        Leng et al., "PolyLoss: A Polynomial Expansion Perspective of Classification Loss
        Functions", ICLR 2022.

    Example:
        >>> import torch, losskit.functional as LF
        >>> LF.poly1_cross_entropy(torch.zeros(1, 2), torch.tensor([0]))  # ln 2 + (1 - 1/2)
        tensor(1.1931)
    """
    fn = "poly1_cross_entropy"
    checks.check_reduction(fn, reduction)
    checks.check_label_smoothing(fn, label_smoothing)
    if (
        not isinstance(epsilon, (int, float))
        or isinstance(epsilon, bool)
        or not -1 < epsilon < float("inf")
    ):
        fail(
            f"{fn}: epsilon is {epsilon!r}; expected a finite number > -1 (1 in Leng et al. "
            "2022; 0 gives the plain cross-entropy). Pass e.g. epsilon=1.0."
        )
    mode, prob_target = _check_logits_and_target(fn, input, target, weight, ignore_index)
    class_dim = 0 if input.dim() == 1 else 1
    n_classes = input.shape[class_dim]
    x = _flatten_classes(input)
    if prob_target:
        rows, _ = cross_entropy_unreduced(x, _flatten_classes(target), weight, ignore_index, label_smoothing, True)
        probs = torch.softmax(x.to(rows.dtype), dim=1)
        y = _flatten_classes(target).to(rows.dtype)
        if label_smoothing:
            y = y * (1.0 - label_smoothing) + label_smoothing / n_classes
        rows = rows + epsilon * (1.0 - (probs * y).sum(1))
        n_rows = rows.numel()
        loss = reduce_with_denominator(rows, reduction, float(n_rows) if n_rows else float("nan"))
        if reduction == "none":
            loss = loss.reshape(tuple(input.shape[:class_dim]) + tuple(input.shape[class_dim + 1 :]))
        loss = loss.to(torch.promote_types(input.dtype, target.dtype))
        denominator = None
    else:
        # CE rows weighted as torch weighs them (smoothing terms by w_c), poly term by w_y
        ids = _flatten_ids(target.long(), input.dim())
        ce_rows, _ = cross_entropy_unreduced(x, ids, weight, ignore_index, label_smoothing, False)
        _, safe, counted, logp_t = _log_softmax_at_targets(input, target, ignore_index)
        p_t = logp_t.exp().reshape(ce_rows.shape).to(ce_rows.dtype)
        if label_smoothing:
            p_t = (1.0 - label_smoothing) * p_t + label_smoothing / n_classes
        poly = epsilon * (1.0 - p_t)
        if weight is not None:
            poly = poly * weight.to(poly.dtype)[safe.reshape(poly.shape)]
        denominator = None
        if reduction == "mean":
            denominator = _index_denominator(ids, weight, ignore_index, n_classes)
        loss = _reduce_class_rows(
            ce_rows + poly, counted.reshape(ce_rows.shape), reduction, denominator, tuple(target.shape), input.dtype
        )
    if mode != "off":
        _warn_if_empty_or_all_ignored(fn, reduction, input.numel() // max(n_classes, 1), denominator, mode)
    if mode == "full":
        checks.warn_nonfinite_result(fn, loss, input)
    return loss
