"""Per-token outputs of a linear layer without its logits: ``linear_log_probs`` (log-probability of
the target, entropy, accuracy), for policy-gradient and preference training (the algorithm is in
:mod:`losskit.autograd.linear_log_probs`).
"""

from __future__ import annotations

from typing import Literal, NamedTuple, overload

import torch

from losskit import checks
from losskit._core import cross_entropy as core
from losskit.autograd.linear_cross_entropy import rows_per_chunk
from losskit.autograd.linear_log_probs import LinearLogProbsFunction
from losskit.checks import describe, fail, shape_str

__all__ = ["linear_log_probs", "TokenLogProbs"]


class TokenLogProbs(NamedTuple):
    """What :func:`linear_log_probs` returns when asked for more than the log-probabilities."""

    #: log p(target) per token, target's shape; 0 where the target is ``ignore_index``
    log_probs: torch.Tensor
    #: entropy of each token's distribution (``entropy=True``), else ``None``
    entropy: torch.Tensor | None
    #: whether the most likely class is the target (``accuracy=True``), else ``None``
    correct: torch.Tensor | None


@overload
def linear_log_probs(
    input: torch.Tensor,
    linear_weight: torch.Tensor,
    target: torch.Tensor,
    *,
    linear_bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    softcap: float | None = None,
    entropy: Literal[False] = False,
    accuracy: Literal[False] = False,
    chunk_size: int | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor: ...


@overload
def linear_log_probs(
    input: torch.Tensor,
    linear_weight: torch.Tensor,
    target: torch.Tensor,
    *,
    linear_bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    softcap: float | None = None,
    entropy: bool = False,
    accuracy: bool = False,
    chunk_size: int | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor | TokenLogProbs: ...


def linear_log_probs(
    input: torch.Tensor,
    linear_weight: torch.Tensor,
    target: torch.Tensor,
    *,
    linear_bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    softcap: float | None = None,
    entropy: bool = False,
    accuracy: bool = False,
    chunk_size: int | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor | TokenLogProbs:
    r"""Per-token log-probability of the target under ``softmax(input @ W.T + b)``, never holding
    the logits.

    .. math::
        \log p_t = x_t - \operatorname{lse}(x), \qquad
        H = -\textstyle\sum_c p_c \log p_c, \qquad x = \kappa \tanh\big((h W^\top + b) / \kappa\big)

    (soft-capping only with ``softcap`` :math:`\kappa`). The per-token values policy-gradient
    and preference trainers need (PPO / GRPO ratios, DPO log-likelihoods, an entropy bonus),
    with gradients for any per-token upstream gradient, computed in chunks of float32 logits
    like :func:`linear_cross_entropy` (one chunk in memory, recomputed in backward).

    torch equivalent: ``torch.log_softmax(F.linear(input, W, b), -1).gather(-1, target[..., None])``
    (which holds the ``N x V`` logits and their softmax).

    Args:
        input: hidden states ``(N, D)`` or ``(B, T, D)``.
        linear_weight: the output layer's weight ``(V, D)``.
        target: int64 class ids, ``input``'s shape without its last axis.
        linear_bias: ``(V,)``, optional.
        ignore_index: targets with this id get log-probability 0 and no gradient (padding,
            prompt tokens).
        softcap: cap :math:`\kappa > 0` for the logits (Gemma 2), or ``None``.
        entropy: also return the entropy of each token's distribution (differentiable).
        accuracy: also return whether each token's argmax is its target (a bool tensor).
        chunk_size: rows per chunk (default: from the 64 MiB budget, at least 512 rows).
        dtype: dtype of the returned log-probabilities and entropy; ``None`` (default) gives
            ``input``'s. They are accumulated in float32 either way: ``torch.float32`` with
            bfloat16 inputs keeps them unrounded.

    Returns:
        ``log_probs`` (target's shape, ``dtype``); with ``entropy`` or ``accuracy`` a
        :class:`TokenLogProbs` ``(log_probs, entropy, correct)``.

    Raises:
        LossInputError: shapes that do not fit, float or out-of-range class ids, a bad
            ``softcap`` or ``chunk_size``.

    Example:
        >>> import torch, losskit.functional as LF
        >>> h, W = torch.zeros(2, 4), torch.zeros(3, 4)
        >>> LF.linear_log_probs(h, W, torch.tensor([0, 2]))  # uniform over 3 classes: -ln 3
        tensor([-1.0986, -1.0986])
        >>> LF.linear_log_probs(h, W, torch.tensor([0, 2]), entropy=True).entropy  # ln 3
        tensor([1.0986, 1.0986])
    """
    fn = "linear_log_probs"
    checks.check_z_loss_and_softcap(fn, 0.0, softcap)
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        fail(f"{fn}: chunk_size must be a positive number of rows, got {chunk_size!r}; expected e.g. 256.")
    checks.check_float_input(fn, "input", input)
    checks.check_float_input(fn, "linear_weight", linear_weight)
    checks.check_tensor(fn, "target", target)
    if input.dim() not in (2, 3) or linear_weight.dim() != 2 or linear_weight.shape[1] != input.shape[-1]:
        fail(
            f"{fn}: input has shape {shape_str(input.shape)} and linear_weight {shape_str(linear_weight.shape)}; "
            "expected hidden states (N, D) or (B, T, D) and a (V, D) weight. Pass lm_head.weight."
        )
    if linear_weight.dtype != input.dtype or (
        linear_bias is not None and linear_bias.shape != (linear_weight.shape[0],)
    ):
        fail(
            f"{fn}: linear_weight has {describe(linear_weight)}, input {describe(input)}; expected the same dtype "
            f"(and a bias of shape ({linear_weight.shape[0]},)). Use linear_weight.to(input)."
        )
    expected = tuple(input.shape[:-1])
    if target.is_floating_point() or target.is_complex() or tuple(target.shape) != expected:
        fail(
            f"{fn}: target has {describe(target)}; expected int64 class ids of shape {shape_str(expected)}, "
            "one per hidden state. Use target.long()."
        )
    n_classes = linear_weight.shape[0]
    if checks.level(input) == "full":
        checks.check_class_ids(fn, target, n_classes, ignore_index)
    h = input.reshape(-1, input.shape[-1])
    ids = target.reshape(-1).long()
    _, use = core.counted_targets(ids, ignore_index, n_classes)
    cap = None if softcap is None else float(softcap)
    rows = chunk_size or rows_per_chunk(h.shape[0], n_classes, input.dtype, cap)
    out: tuple[torch.Tensor, torch.Tensor, torch.Tensor] = LinearLogProbsFunction.apply(  # type: ignore[no-untyped-call]
        h, linear_weight, linear_bias, core.safe_targets(ids, use), use, cap, entropy, rows
    )
    log_p, ent, argmax = out
    out_dtype = input.dtype if dtype is None else dtype
    log_probs = log_p.reshape(expected).to(out_dtype)
    if not (entropy or accuracy):
        return log_probs
    return TokenLogProbs(
        log_probs,
        ent.reshape(expected).to(out_dtype) if entropy else None,
        ((argmax == ids) & use).reshape(expected) if accuracy else None,
    )
