"""The only reduction code in losskit: ``none`` / ``mean`` / ``sum`` and torch's weighted means.

torch is not consistent about what a *weighted* mean divides by, and losskit matches it exactly:

* ``mse_loss`` / ``l1_loss`` with ``weight``  -> ``sum(w * l) / sum(w)``
* ``huber_loss`` with ``weight``              -> ``sum(w * l) / numel``  (plain mean of ``w * l``)
* ``cross_entropy`` / ``nll_loss`` with class indices -> ``sum(w[t] * l) / sum(w[t])`` over the
  targets that are not ``ignore_index``
* ``cross_entropy`` with class probabilities  -> ``sum(l) / (numel / C)`` (one term per sample)
"""

from __future__ import annotations

import torch


def reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    """Apply ``reduction`` to an unreduced loss: ``none`` returns it, ``sum`` sums, ``mean`` averages."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.mean()


def reduce_with_denominator(
    loss: torch.Tensor, reduction: str, denominator: torch.Tensor | float
) -> torch.Tensor:
    """``none`` -> ``loss``; ``sum`` -> ``loss.sum()``; ``mean`` -> ``loss.sum() / denominator``.

    A zero denominator gives NaN for ``mean``, as in torch (every target ignored, empty batch).
    """
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    return total / denominator
