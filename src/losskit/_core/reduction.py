"""The only reduction code in losskit: ``none`` / ``mean`` / ``sum`` and torch's weighted means.

torch is not consistent about what a *weighted* mean divides by, and losskit matches it exactly:

* ``mse_loss`` / ``l1_loss`` with ``weight``  -> ``sum(w * l) / sum(w)``
* ``huber_loss`` with ``weight``              -> ``sum(w * l) / numel``  (plain mean of ``w * l``)
* ``cross_entropy`` / ``nll_loss`` with class indices -> ``sum(w[t] * l) / sum(w[t])`` over the
  targets that are not ``ignore_index`` (:func:`losskit._core.cross_entropy.index_denominator`)
* ``cross_entropy`` with class probabilities  -> ``sum(l) / (numel / C)`` (one term per sample)
"""

from __future__ import annotations

import torch

from losskit.types import Reduction

__all__ = ["reduce", "reduce_with_denominator", "nan_where_empty", "reduce_index_rows"]


def reduce(loss: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    """Apply ``reduction`` to an unreduced loss: ``none`` returns it, ``sum`` sums, ``mean`` averages."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.mean()


def reduce_with_denominator(
    loss: torch.Tensor, reduction: Reduction, denominator: torch.Tensor | float
) -> torch.Tensor:
    """``none`` -> ``loss``; ``sum`` -> ``loss.sum()``; ``mean`` -> ``loss.sum() / denominator``.

    A zero denominator gives NaN for ``mean``, as in torch (every target ignored, empty batch).
    """
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    if not isinstance(denominator, torch.Tensor):
        # a tensor of the loss's dtype, not a Python float: under torch.func.jvp a 0-d tensor
        # divided by a Python float has a float64 tangent (torch's own losses give float32)
        denominator = torch.full((), denominator, dtype=total.dtype, device=total.device)
        return total / denominator
    return nan_where_empty(total / denominator, denominator)


def nan_where_empty(mean: torch.Tensor, denominator: torch.Tensor | float) -> torch.Tensor:
    """NaN where the mean's denominator is 0, as torch (``x / 0`` would give inf for a non-zero
    sum, e.g. label smoothing with all class weights 0). The NaN is added as a constant, so the
    gradients are those of ``sum / denominator``: zero for rows that do not count."""
    if not isinstance(denominator, torch.Tensor):
        return mean
    nan = torch.full((), float("nan"), dtype=mean.dtype, device=mean.device)
    return mean + torch.where(denominator == 0, nan, torch.zeros_like(nan))


def reduce_index_rows(
    rows: torch.Tensor,
    counted: torch.Tensor,
    reduction: Reduction,
    denominator: torch.Tensor | None,
    target_shape: tuple[int, ...],
    out_dtype: torch.dtype,
) -> torch.Tensor:
    """Zero the rows that do not count and reduce as :func:`cross_entropy` does (``denominator``
    from :func:`~losskit._core.cross_entropy.index_denominator` for ``"mean"``)."""
    rows = torch.where(counted, rows, torch.zeros_like(rows))
    loss = reduce_with_denominator(rows, reduction, denominator if denominator is not None else 1.0)
    if reduction == "none":
        loss = loss.reshape(target_shape)
    return loss.to(out_dtype)
