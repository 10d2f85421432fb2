"""Guardrails of the binary losses (BCE, BCE with logits, sigmoid focal): float targets of the
input's shape in [0, 1], broadcastable weights, and the sigmoid-output heuristic."""

from __future__ import annotations

from typing import NoReturn

import torch

from losskit.checks.arguments import check_float_input, check_tensor
from losskit.checks.level import level
from losskit.checks.messages import describe, fail, shape_str, warn
from losskit.checks.sampling import sample_values, value_range

__all__ = ["check_binary", "fail_target_range", "fail_input_range", "warn_if_sigmoid_input"]


def check_binary(fn: str, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> str:
    check_float_input(fn, "input", input)
    check_tensor(fn, "target", target)
    mode = level(input)
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
        check_tensor(fn, "weight", weight)
        try:
            torch.broadcast_shapes(weight.shape, input.shape)  # type: ignore[no-untyped-call]
        except RuntimeError:
            fail(
                f"{fn}: weight has shape {shape_str(weight.shape)}, which does not broadcast to "
                f"input {shape_str(input.shape)}; expected a shape broadcastable to it. Reshape "
                "weight (e.g. weight.view(-1, 1) for one weight per sample)."
            )
    if mode == "full" and target.numel() > 0:
        lo, hi = value_range(target)
        if lo < 0 or hi > 1:
            fail_target_range(fn, target)
    return mode


def fail_target_range(fn: str, target: torch.Tensor) -> NoReturn:
    lo, hi = torch.aminmax(target.detach())
    fail(
        f"{fn}: target has values outside [0, 1] (min {float(lo):.4g}, max "
        f"{float(hi):.4g}); expected probabilities in [0, 1]. Map labels to 0/1 first "
        "(e.g. (target > 0).float() for -1/+1 labels)."
    )


def fail_input_range(fn: str, input: torch.Tensor) -> NoReturn:
    lo, hi = torch.aminmax(input.detach())
    fail(
        f"{fn}: input has values outside [0, 1] (min {float(lo):.4g}, max "
        f"{float(hi):.4g}), so it looks like logits; expected probabilities. Use "
        "losskit.functional.binary_cross_entropy_with_logits(input, target), which is "
        "also numerically stable."
    )


def warn_if_sigmoid_input(fn: str, input: torch.Tensor) -> None:
    """Full-level heuristic: every sampled value in [0, 1] looks like sigmoid output.

    From 16 values up: raw logits all fall in [0, 1] by chance with probability under 1e-5 at
    16 values (0.48^16 for logits of standard deviation 0.5, 0.34^16 for 1), while sigmoid
    output always does. Fewer values would warn on legitimate logits too often.
    """
    if input.numel() < 16:
        return
    lo, hi = torch.aminmax(sample_values(input.detach()))  # one pass; NaN compares False
    if bool(lo >= 0) and bool(hi <= 1):
        warn(
            f"{fn}: every sampled input value lies in [0, 1], so input looks like sigmoid "
            f"output; expected raw logits ({fn} applies the sigmoid itself). Remove the "
            "sigmoid before the loss, or use binary_cross_entropy for probabilities."
        )
