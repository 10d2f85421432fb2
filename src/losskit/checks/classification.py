"""Guardrails of the softmax losses (cross-entropy, NLL, focal, poly-1): target kind and shape,
class ids in range, probability rows, class weights, and the softmax / log-probability
heuristics."""

from __future__ import annotations

import math

import torch

from losskit.checks.arguments import check_float_input, check_tensor
from losskit.checks.level import level
from losskit.checks.messages import describe, fail, shape_str, warn
from losskit.checks.sampling import sample_rows

__all__ = [
    "check_class_weight",
    "index_target_shape",
    "classify_target",
    "check_class_ids",
    "probability_tolerance",
    "row_sum_tolerance",
    "carried_precision",
    "check_probability_target",
    "warn_if_softmax_input",
    "warn_if_empty_or_all_ignored",
    "check_logits_and_target",
    "warn_if_not_log_probs",
]


def check_class_weight(fn: str, weight: torch.Tensor | None, n_classes: int) -> None:
    if weight is None:
        return
    check_float_input(fn, "weight", weight)
    if weight.dim() != 1 or weight.shape[0] != n_classes:
        fail(
            f"{fn}: weight has shape {shape_str(weight.shape)}; expected one weight per class, "
            f"shape ({n_classes},). Pass a 1-D tensor of length {n_classes} (e.g. from "
            "losskit.class_weights(targets))."
        )


def index_target_shape(input: torch.Tensor) -> tuple[int, ...]:
    return () if input.dim() == 1 else (input.shape[0],) + tuple(input.shape[2:])


def classify_target(fn: str, input: torch.Tensor, target: torch.Tensor, allow_probs: bool) -> bool:
    """Check the target's dtype and shape; return True for class probabilities, False for ids."""
    check_tensor(fn, "target", target)
    n_classes = input.shape[0] if input.dim() == 1 else input.shape[1]
    expected = index_target_shape(input)
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
                f"{fn}: target has {describe(target)} (float class indices); expected {wanted}. Use target.long().",
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


def check_class_ids(fn: str, target: torch.Tensor, n_classes: int, ignore_index: int) -> None:
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
        f"largest {hi}); expected ids in [0, {n_classes - 1}] or ignore_index={ignore_index}. " + fix
    )


def probability_tolerance(dtype: torch.dtype) -> float:
    return 2e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-3


def row_sum_tolerance(precision: torch.dtype, n_classes: int) -> float:
    r"""How far from 1 a row of ``n_classes`` probabilities may sum through rounding alone, for
    values that carry ``precision`` (their dtype, or a coarser one they were rounded through).

    With :math:`u` the unit roundoff (half the dtype's epsilon) a row rounded once entry by entry
    is off by at most :math:`u \sum_c y_c = u`; a few operations in that precision (a softmax, a
    normalisation, label smoothing) add a few :math:`u`, and a pairwise sum over the classes in
    that precision adds :math:`u \lceil \log_2 C \rceil`. The tolerance is
    :math:`u (4 + \log_2 C)` -- 0.022 for 3 bfloat16 classes, 0.0027 for 3 float16 ones -- and never
    below float32's ``1e-3 * max(1, sqrt(C) / 8)`` (data written out as text, summed in float32).
    """
    floor = 1e-3 * max(1.0, n_classes**0.5 / 8)
    u = torch.finfo(precision).eps / 2
    return float(max(floor, u * (4 + math.log2(max(n_classes, 1)))))


def carried_precision(values: torch.Tensor) -> torch.dtype:
    """The coarsest of bfloat16 and float16 through which every one of ``values`` (a small sample)
    goes unchanged -- the precision float32/float64 data was rounded to before it was cast up --
    or ``values``' own dtype. One-hot and dyadic rows (0.5, 0.25) pass through both: they sum
    exactly, so the looser tolerance changes nothing for them."""
    if values.dtype not in (torch.float32, torch.float64):
        return values.dtype
    for low in (torch.bfloat16, torch.float16):
        if bool((values.to(low).to(values.dtype) == values).all()):
            return low
    return values.dtype


def check_probability_target(fn: str, target: torch.Tensor, class_dim: int) -> None:
    """Full-level check of class-probability targets; torch computes any values, so this warns.

    Warns (:class:`~losskit.LossUsageWarning`) when values are clearly negative or rows are far
    from summing to 1 (multi-hot rows get the BCE advice), and for one-hot float rows. Quiet for
    rounding (:func:`row_sum_tolerance`): float16/bfloat16 rows -- also float32 ones rounded
    through them, see :func:`carried_precision` --, residue like -1e-9 from float arithmetic, and
    all-zero rows (a zeroed row is how probability targets leave a sample out).
    """
    if target.numel() == 0:
        return
    t = target.detach()
    n_classes = t.shape[class_dim]
    tol = row_sum_tolerance(target.dtype, n_classes)
    minimum = float(t.amin())
    sums = t.sum(class_dim, dtype=torch.float32)
    off = (sums - 1).abs().masked_fill(sums == 0, 0.0)  # all-zero rows are left out on purpose
    worst = float(off.amax())
    if worst > tol and target.dtype in (torch.float32, torch.float64):
        # rounded to bfloat16 / float16 and cast back? judge the rows by the precision they carry
        worst_row = t.movedim(class_dim, -1).reshape(-1, n_classes)[int(off.flatten().argmax())]
        tol = row_sum_tolerance(
            carried_precision(torch.cat([worst_row, sample_rows(t, class_dim).flatten()])), n_classes
        )
    if minimum >= -tol and worst <= tol:
        rows = sample_rows(t, class_dim)
        if bool(((rows == 0) | (rows == 1)).all()) and bool((rows.sum(-1) == 1).all()):
            warn(
                f"{fn}: target of {describe(target)} holds one-hot float rows; expected class "
                f"indices for hard labels. Use target.argmax(dim={class_dim}): it is faster, uses "
                "less memory and supports ignore_index."
            )
        return
    if minimum < -tol:
        warn(
            f"{fn}: target holds negative class probabilities (min {minimum:.4g}); expected "
            "probabilities >= 0 with each row summing to 1. The loss is computed as torch does; if "
            f"these are logits, use target.softmax(dim={class_dim})."
        )
        return
    if bool(((t == 0) | (t == 1)).all()):
        warn(
            f"{fn}: target rows contain several 1s (multi-hot labels, a row sums to "
            f"{float(sums.amax()):.4g}); expected one class per sample, rows summing to 1. For "
            "multi-label classification use losskit.functional.binary_cross_entropy_with_logits"
            "(input, target)."
        )
        return
    warn(
        f"{fn}: target probability rows do not sum to 1 (worst row sums to "
        f"{float(sums.flatten()[off.flatten().argmax()]):.4g}); expected each row to sum to 1 "
        f"(within {tol:.2g}). The loss is computed as torch does, weighting such rows by their sum; "
        f"normalise with target / target.sum(dim={class_dim}, keepdim=True)."
    )


def warn_if_softmax_input(fn: str, input: torch.Tensor, class_dim: int) -> None:
    """Full-level heuristic: sampled rows all in [0, 1] and summing to 1 look like softmax output."""
    if input.shape[class_dim] < 2 or input.numel() == 0:
        return
    rows = sample_rows(input.detach(), class_dim).float()
    lo, hi = torch.aminmax(rows)  # one pass; NaN rows compare False, as before
    if bool(lo < 0) or bool(hi > 1):
        return
    if float((rows.sum(-1) - 1).abs().amax()) <= probability_tolerance(input.dtype):
        warn(
            f"{fn}: input rows lie in [0, 1] and sum to 1, so they look like softmax output; "
            f"expected raw logits ({fn} applies log_softmax itself). Remove the softmax "
            "before the loss (keep it for inference only)."
        )


def warn_if_empty_or_all_ignored(
    fn: str, reduction: str, n_targets: int, denominator: torch.Tensor | float | None, mode: str
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


def check_logits_and_target(
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
    check_float_input(fn, "input", input)
    if input.dim() == 0:
        fail(
            f"{fn}: input is a 0-d tensor; expected logits of shape (C,), (N, C) or "
            "(N, C, d1, ...). Add the class axis, e.g. input.view(1, -1)."
        )
    mode = level(input)
    class_dim = 0 if input.dim() == 1 else 1
    n_classes = input.shape[class_dim]
    if mode == "off":
        check_tensor(fn, "target", target)
        prob_target = allow_probs and target.is_floating_point()
    else:
        prob_target = classify_target(fn, input, target, allow_probs=allow_probs)
        check_class_weight(fn, weight, n_classes)
        if prob_target and ignore_index >= 0:  # torch raises for these (negative ones are unused)
            fail(
                f"{fn}: ignore_index={ignore_index} was given with class-probability targets; "
                "expected ignore_index only with class indices (torch rejects it too). Drop "
                "ignore_index, or zero the rows you want to leave out and use reduction='sum'."
            )
    if mode == "full":
        if prob_target:
            check_probability_target(fn, target, class_dim)
        else:
            check_class_ids(fn, target, n_classes, ignore_index)
        warn_if_softmax_input(fn, input, class_dim)
    if weight is not None and weight.requires_grad and torch.is_grad_enabled():
        fail(
            f"{fn}: weight requires grad; expected constant class weights (their gradient is "
            "not computed). Pass weight.detach()."
        )
    return mode, prob_target


def warn_if_not_log_probs(fn: str, input: torch.Tensor, class_dim: int) -> None:
    """Full-level heuristic: rows of log-probabilities have logsumexp 0."""
    if input.numel() == 0 or input.shape[class_dim] < 2:
        return
    rows = sample_rows(input.detach(), class_dim).float()
    lse = torch.logsumexp(rows, -1)
    finite = torch.isfinite(lse)
    if not bool(finite.any()):
        return
    worst = float((lse[finite]).abs().amax())
    if worst <= 10 * probability_tolerance(input.dtype):
        return
    if bool((rows >= 0).all()) and bool((rows <= 1).all()):
        what = "lie in [0, 1], so they look like softmax probabilities"
        fix = "Use log_softmax instead of softmax before nll_loss, or pass the logits to cross_entropy."
    else:
        what = f"have logsumexp up to {worst:.3g} instead of 0, so they look like raw logits"
        fix = "Apply log_softmax(dim=1) first, or pass the logits to losskit.functional.cross_entropy."
    warn(f"{fn}: input rows {what}; expected log-probabilities (log_softmax output). {fix}")
