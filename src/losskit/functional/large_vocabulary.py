"""Large-vocabulary cross-entropy: ``linear_cross_entropy``, fused so the ``N x V`` logits are
never held (the algorithm lives in :mod:`losskit.autograd.linear_cross_entropy`).
"""

from __future__ import annotations

import sys
from typing import Literal, overload

import torch

from losskit import checks
from losskit._core import cross_entropy as core
from losskit._core.cross_entropy import accumulation_dtype
from losskit._core.reduction import nan_where_empty
from losskit.autograd.linear_cross_entropy import (
    LinearCrossEntropyFunction,
    rows_per_chunk,
)
from losskit.checks import describe, fail, shape_str
from losskit.functional.cross_entropy import cross_entropy
from losskit.types import Reduction

__all__ = ["linear_cross_entropy"]


@overload
def linear_cross_entropy(
    input: torch.Tensor,
    linear_weight: torch.Tensor,
    target: torch.Tensor,
    *,
    linear_bias: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    reduction: Reduction = "mean",
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    options: object | None = None,
    z_loss: float = 0.0,
    softcap: float | None = None,
    chunk_size: int | None = None,
    return_z_loss: Literal[False] = False,
    normalizer: float | torch.Tensor | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor: ...


@overload
def linear_cross_entropy(
    input: torch.Tensor,
    linear_weight: torch.Tensor,
    target: torch.Tensor,
    *,
    linear_bias: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    reduction: Reduction = "mean",
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    options: object | None = None,
    z_loss: float = 0.0,
    softcap: float | None = None,
    chunk_size: int | None = None,
    return_z_loss: Literal[True],
    normalizer: float | torch.Tensor | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]: ...


@overload
def linear_cross_entropy(
    input: torch.Tensor,
    linear_weight: torch.Tensor,
    target: torch.Tensor,
    *,
    linear_bias: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    reduction: Reduction = "mean",
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    options: object | None = None,
    z_loss: float = 0.0,
    softcap: float | None = None,
    chunk_size: int | None = None,
    return_z_loss: bool = False,
    normalizer: float | torch.Tensor | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...


def linear_cross_entropy(
    input: torch.Tensor,
    linear_weight: torch.Tensor,
    target: torch.Tensor,
    *,
    linear_bias: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    reduction: Reduction = "mean",
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    options: object | None = None,
    z_loss: float = 0.0,
    softcap: float | None = None,
    chunk_size: int | None = None,
    return_z_loss: bool = False,
    normalizer: float | torch.Tensor | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""Cross-entropy of a linear layer's output, computed without holding the logits.

    Equal, in value and in the gradients of ``input``, ``linear_weight`` and ``linear_bias``, to

    .. math::
        \operatorname{cross\_entropy}(x W^\top + b,\ y) \;+\; z \cdot \operatorname{lse}(x W^\top + b)^2

    with logits soft-capped first when ``softcap`` :math:`\kappa` is given
    (:math:`\kappa \tanh(\text{logits} / \kappa)`, Gemma 2). The z-loss term (PaLM) counts for
    the same targets as the cross-entropy, is not multiplied by class weights, and is reduced
    like it (the mean divides by the same denominator).

    torch equivalent: :func:`torch.nn.functional.linear_cross_entropy` (torch 2.13; same
    argument order) / ``cross_entropy(linear(input, W, b), target)``. torch has no ``z_loss``
    or ``softcap``.

    The rows are processed in chunks whose float32 logits fit a 64 MiB budget, at least 512 rows
    each (``chunk_size`` overrides the rows per chunk). For ``"mean"`` and ``"sum"`` the gradients are computed
    during forward (three matrix products, nothing recomputed); ``"none"`` recomputes each
    chunk's logits in backward so any per-token upstream gradient is exact.

    Args:
        input: hidden states ``(N, D)``, ``(B, T, D)``, or one unbatched ``(D,)``.
        linear_weight: the output layer's weight ``(V, D)`` (``nn.Linear(D, V).weight``).
        target: int64 class indices ``(N,)`` / ``(B, T)`` / ``()``; or class probabilities
            with a last axis of ``V`` (computed from the full logits, as torch does).
        linear_bias: ``(V,)`` bias, optional.
        weight: ``(V,)`` rescaling weight per class.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        ignore_index: class id whose targets count neither in the loss nor in the mean; ``None``
            (torch's default) means -100 for class indices. Not accepted with probabilities.
        label_smoothing: in ``[0, 1]``.
        options: accepted for drop-in compatibility with torch 2.13; losskit always chunks.
            A ``LinearCrossEntropyOptions(batch_chunk_size=k)`` sets the rows per chunk
            (as ``chunk_size`` does); its other fields do not apply.
        z_loss: coefficient of :math:`\operatorname{lse}^2` (0 turns it off; 1e-4 in PaLM).
        softcap: cap :math:`\kappa > 0` for the logits, or ``None``.
        chunk_size: rows per chunk (default: from the memory budget).
        return_z_loss: also return the z-loss term alone (detached), for logging.
        normalizer: with ``reduction="mean"``, divide by this count instead of the batch's own
            (see :func:`losskit.distributed.global_normalizer`).
        dtype: dtype of the returned loss; ``None`` (default) gives ``input``'s dtype, as torch.
            The loss is accumulated in float32 (or float64) either way: ``torch.float32`` with
            bfloat16 inputs keeps what ``F.cross_entropy(logits.float(), ...)`` would return
            (what Hugging Face's causal-LM loss does) instead of rounding it to bfloat16.

    Returns:
        The loss (a scalar, or ``(N,)`` / ``(B, T)`` for ``"none"``) in ``input``'s dtype; with
        ``return_z_loss=True`` a pair ``(loss, z_term)``.

    Raises:
        LossInputError: shapes that do not fit, float or out-of-range class ids, bad
            ``weight`` / ``reduction`` / ``label_smoothing`` / ``z_loss`` / ``softcap``.

    Note:
        float16/bfloat16 inputs: the matrix products run in the input dtype; softmax, loss and
        ``grad_weight`` accumulate in float32 (gradients come back in the inputs' dtypes).

        DTensor arguments (FSDP2's sharded parameter, tensor parallelism) on a 1-D mesh: a
        ``Shard(0)`` weight uses the vocabulary-parallel kernel when every rank holds the same
        batch, and is gathered (its gradient averaged back into the shard, as FSDP2 does) when
        each rank holds its own; a ``Replicate()`` one gets the ranks' mean gradient. See
        :mod:`losskit.distributed.dtensor_weights`. Do not call ``.full_tensor()`` on the weight
        yourself: its gradient would miss the other ranks' batches.

    Example:
        >>> import torch, losskit.functional as LF
        >>> h, W = torch.zeros(2, 4), torch.zeros(3, 4)
        >>> LF.linear_cross_entropy(h, W, torch.tensor([0, 2]))  # uniform over 3 classes: ln 3
        tensor(1.0986)
    """
    fn = "linear_cross_entropy"
    checks.check_reduction(fn, reduction)
    checks.check_label_smoothing(fn, label_smoothing)
    checks.check_z_loss_and_softcap(fn, z_loss, softcap)
    checks.check_normalizer(fn, normalizer, reduction)
    if chunk_size is None and options is not None:
        chunk_size = getattr(options, "batch_chunk_size", None)
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        fail(
            f"{fn}: chunk_size must be a positive number of rows, got {chunk_size!r}; expected "
            "e.g. 256. Pass None to choose it from the memory budget."
        )
    if _has_dtensor(input, linear_weight, linear_bias, target, weight):
        # FSDP2 / tensor-parallel weights: the local tensors, with gradients placed back
        from losskit.distributed.dtensor_weights import dtensor_linear_cross_entropy

        result = dtensor_linear_cross_entropy(
            linear_cross_entropy,
            input,
            linear_weight,
            target,
            linear_bias=linear_bias,
            weight=weight,
            reduction=reduction,
            ignore_index=ignore_index,
            label_smoothing=label_smoothing,
            options=options,
            z_loss=z_loss,
            softcap=softcap,
            chunk_size=chunk_size,
            return_z_loss=return_z_loss,
            normalizer=normalizer,
        )
        if dtype is None:
            return result
        if isinstance(result, tuple):
            return result[0].to(dtype), result[1].to(dtype)
        return result.to(dtype)
    checks.check_float_input(fn, "input", input)
    checks.check_float_input(fn, "linear_weight", linear_weight)
    checks.check_tensor(fn, "target", target)
    out_dtype = input.dtype if dtype is None else dtype
    if torch.is_autocast_enabled(input.device.type):
        # what F.linear does under autocast: the product runs in the autocast dtype
        low = torch.get_autocast_dtype(input.device.type)
        input, linear_weight = input.to(low), linear_weight.to(low)
        linear_bias = None if linear_bias is None else linear_bias.to(low)
    if input.dim() not in (1, 2, 3):
        fail(
            f"{fn}: input has shape {shape_str(input.shape)}; expected hidden states (D,), (N, D) or "
            "(B, T, D). Flatten extra axes first, e.g. input.flatten(0, -2)."
        )
    d = input.shape[-1]
    if linear_weight.dim() > 2 and linear_weight.shape[-1] == d and input.dim() <= 2:
        # (C, *out_features, D), as torch: K-dimensional classes per row, from the full logits
        flat_bias = None if linear_bias is None else linear_bias.reshape(-1)
        logits = torch.nn.functional.linear(input, linear_weight.reshape(-1, d), flat_bias)
        logits = logits.reshape(*input.shape[:-1], *linear_weight.shape[:-1])
        loss_k, z_k = cross_entropy(
            logits,
            target,
            weight,
            ignore_index=-100 if ignore_index is None else ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
            z_loss=z_loss,
            softcap=softcap,
            normalizer=normalizer,
            return_z_loss=True,
        )
        return (loss_k.to(out_dtype), z_k.to(out_dtype)) if return_z_loss else loss_k.to(out_dtype)
    if linear_weight.dim() != 2 or linear_weight.shape[1] != d:
        fail(
            f"{fn}: linear_weight has shape {shape_str(linear_weight.shape)}; expected (V, {d}) "
            f"to match input's last axis ({d}). Pass the output layer's weight, e.g. "
            "lm_head.weight of nn.Linear(D, V)."
        )
    n_classes = linear_weight.shape[0]
    if linear_weight.dtype != input.dtype or linear_weight.device != input.device:
        fail(
            f"{fn}: linear_weight has {describe(linear_weight)} on {linear_weight.device}, input has "
            f"{describe(input)} on {input.device}; expected the same dtype and device. Use "
            "linear_weight.to(input) (or run under torch.autocast)."
        )
    if linear_bias is not None:
        checks.check_float_input(fn, "linear_bias", linear_bias)
        if linear_bias.shape != (n_classes,) or linear_bias.dtype != input.dtype:
            fail(
                f"{fn}: linear_bias has {describe(linear_bias)}; expected shape ({n_classes},) "
                f"and dtype {str(input.dtype).replace('torch.', '')}. Pass the layer's bias, or None."
            )
    expected = tuple(input.shape[:-1])
    if target.is_floating_point() and tuple(target.shape) == expected + (n_classes,):
        # class probabilities: torch computes them from the full logits; so does losskit
        if ignore_index is not None:
            fail(
                f"{fn}: ignore_index={ignore_index} was given with class-probability targets; expected "
                "ignore_index=None (torch rejects it too). Drop ignore_index, or zero the rows to leave out."
            )
        logits = torch.nn.functional.linear(input, linear_weight, linear_bias)
        if logits.dim() == 3:  # (B, T, V) -> classes on dim 1, as cross_entropy wants them
            logits, target = logits.transpose(1, 2), target.transpose(1, 2)
        loss_p, z_p = cross_entropy(
            logits,
            target,
            weight,
            reduction=reduction,
            label_smoothing=label_smoothing,
            z_loss=z_loss,
            softcap=softcap,
            normalizer=normalizer,
            return_z_loss=True,
        )
        return (loss_p.to(out_dtype), z_p.to(out_dtype)) if return_z_loss else loss_p.to(out_dtype)
    if ignore_index is None:
        ignore_index = -100
    if target.is_floating_point() or target.dtype == torch.bool or target.is_complex():
        fail(
            f"{fn}: target has {describe(target)}; expected int64 class indices of shape "
            f"{shape_str(expected)}, or class probabilities of shape {shape_str(expected + (n_classes,))}. "
            "Use target.long() for class ids.",
            dtype=True,
        )
    if tuple(target.shape) != expected:
        fix = (
            "Use target.squeeze(-1)."
            if tuple(target.shape) == expected + (1,)
            else ("Give one class id per row of input.")
        )
        fail(
            f"{fn}: target has shape {shape_str(target.shape)}; expected {shape_str(expected)} "
            f"(one class id per hidden state of input {shape_str(input.shape)}). {fix}"
        )
    mode = checks.level(input)
    if mode != "off":
        checks.check_class_weight(fn, weight, n_classes)
    if mode == "full":
        checks.check_class_ids(fn, target, n_classes, ignore_index)
    if weight is not None and weight.requires_grad and torch.is_grad_enabled():
        fail(
            f"{fn}: weight requires grad; expected constant class weights (their gradient is "
            "not computed). Pass weight.detach()."
        )

    h = input.reshape(-1, d)
    ids = target.reshape(-1).long()
    denominator = None
    scale = None
    if reduction == "mean" and normalizer is not None:
        scale = 1.0 / torch.as_tensor(normalizer, dtype=accumulation_dtype(input.dtype), device=input.device)
    elif reduction == "mean":
        denominator = core.index_denominator(ids, weight, ignore_index, n_classes)
        scale = 1.0 / denominator.to(accumulation_dtype(input.dtype))
    elif reduction == "sum":
        scale = torch.ones((), dtype=accumulation_dtype(input.dtype), device=input.device)
    rows = chunk_size or rows_per_chunk(h.shape[0], n_classes, input.dtype, softcap)
    cap = None if softcap is None else float(softcap)
    if core.functorch_active(h, linear_weight, linear_bias):
        # torch.func (grad, vmap, jvp): the logits through plain torch operations
        logits = torch.nn.functional.linear(h, linear_weight, linear_bias)
        rows_, z_rows = core.differentiable_rows(logits, ids, weight, ignore_index, label_smoothing, False, z_loss, cap)
        result = (rows_, z_rows) if scale is None else (rows_.sum() * scale, z_rows.sum() * scale)
    else:
        result = _fused_counted_rows(
            h, linear_weight, linear_bias, ids, weight, ignore_index, label_smoothing, z_loss, cap, scale, rows
        )
    loss, z_term = result
    if denominator is not None:  # NaN, not inf, when nothing counts (as torch); gradients stay zero
        loss, z_term = nan_where_empty(loss, denominator), nan_where_empty(z_term, denominator)
    if reduction == "none":
        loss = loss.reshape(expected)
        z_term = z_term.reshape(expected)
    loss = loss.to(out_dtype)
    if mode != "off" and normalizer is None:
        checks.warn_if_empty_or_all_ignored(fn, reduction, ids.numel(), denominator, mode)
    if mode == "full":
        checks.warn_nonfinite_result(fn, loss, input)
    if return_z_loss:
        return loss, z_term.to(out_dtype)
    return loss


def _has_dtensor(*tensors: object) -> bool:
    """Whether an argument is a ``torch.distributed.tensor.DTensor`` -- cheap: a DTensor exists
    only once its module is loaded, so nothing is imported here."""
    module = sys.modules.get("torch.distributed.tensor")
    dtensor = getattr(module, "DTensor", None)
    return dtensor is not None and any(isinstance(t, dtensor) for t in tensors)


def _fused_counted_rows(
    h: torch.Tensor,
    linear_weight: torch.Tensor,
    linear_bias: torch.Tensor | None,
    ids: torch.Tensor,
    weight: torch.Tensor | None,
    ignore_index: int,
    label_smoothing: float,
    z_loss: float,
    softcap: float | None,
    scale: torch.Tensor | None,
    rows: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel on the rows whose target is not ``ignore_index`` only: prompt and padding
    tokens are dropped before any matrix product (they add nothing to the loss or the
    gradients). With ``"none"`` the dropped rows come back as zeros. Under ``torch.compile``
    every row is kept (a data-dependent row count would break the graph)."""
    keep = None
    if not torch.compiler.is_compiling() and h.shape[0]:
        counted = ids != ignore_index
        n_kept = int(counted.sum())
        if n_kept < h.shape[0]:
            keep = counted.nonzero().squeeze(1)
    if keep is None:
        return _fused(
            h, linear_weight, linear_bias, ids, weight, ignore_index, label_smoothing, z_loss, softcap, scale, rows
        )
    loss, z_term = _fused(
        h.index_select(0, keep),
        linear_weight,
        linear_bias,
        ids.index_select(0, keep),
        weight,
        ignore_index,
        label_smoothing,
        z_loss,
        softcap,
        scale,
        min(rows, max(int(keep.numel()), 1)),
    )
    if scale is not None:  # reduced: the dropped rows contribute nothing
        return loss, z_term
    full = loss.new_zeros(h.shape[0]).index_copy(0, keep, loss)
    return full, z_term.new_zeros(h.shape[0]).index_copy(0, keep, z_term)


def _fused(*args: object) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunked kernel (autograd records it when grad mode is on)."""
    out: tuple[torch.Tensor, torch.Tensor] = LinearCrossEntropyFunction.apply(  # type: ignore[no-untyped-call]
        *args, torch.is_grad_enabled()
    )
    return out
