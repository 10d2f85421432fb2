"""Guardrails of the regression losses: equal shapes (no silent broadcasting), float dtypes,
weights, and the one-hot / class-id target heuristics."""

from __future__ import annotations

import torch

from losskit.checks.arguments import check_float_input, check_tensor
from losskit.checks.level import level
from losskit.checks.messages import describe, fail, shape_str, warn
from losskit.checks.sampling import sample_rows

__all__ = ["check_pair", "shape_mismatch"]


def check_pair(
    fn: str, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, *, allow_complex: bool = False
) -> str:
    """Checks shared by the regression losses; returns the effective check level.

    ``allow_complex``: complex ``input`` and ``target`` are accepted (torch's ``l1_loss`` takes
    them and returns a real loss); the value heuristics then do not apply.
    """
    complex_pair = allow_complex and isinstance(input, torch.Tensor) and input.is_complex()
    if complex_pair:
        check_tensor(fn, "input", input)
    else:
        check_float_input(fn, "input", input)
    check_tensor(fn, "target", target)
    mode = level(input)
    if mode == "off":
        return mode
    if complex_pair and not (target.is_complex() or target.is_floating_point()):
        fail(
            f"{fn}: input is complex but target has {describe(target)}; expected a complex (or real) "
            "target. Use target.to(input.dtype).",
            dtype=True,
        )
    if target.dtype == torch.bool or (target.is_complex() and not complex_pair):
        fail(
            f"{fn}: target has {describe(target)}; expected a real-valued tensor. Use target.float().",
            dtype=True,
        )
    if input.shape != target.shape:
        shape_mismatch(fn, input, target)
    if weight is not None:
        check_tensor(fn, "weight", weight)
        if weight.shape != input.shape:
            fail(
                f"{fn}: weight has shape {shape_str(weight.shape)}; expected the shape of input "
                f"{shape_str(input.shape)} (one weight per element). Expand it, e.g. "
                "weight.expand_as(input), or multiply the unreduced loss yourself."
            )
    if mode == "full" and not complex_pair and input.dim() >= 2 and input.shape[-1] > 1 and input.numel() > 0:
        rows = sample_rows(target.detach(), target.dim() - 1)
        one_hot = bool(((rows == 0) | (rows == 1)).all()) and bool((rows == 1).sum(-1).eq(1).all())
        if one_hot and not _legitimate_one_hot_regression(input, target):
            warn(
                f"{fn}: target of {describe(target)} looks like one-hot class labels; expected "
                "continuous regression targets. For classification use "
                "losskit.functional.cross_entropy(input, target.argmax(-1)), which trains faster "
                "and gives calibrated probabilities."
            )
    return mode


def _legitimate_one_hot_regression(input: torch.Tensor, target: torch.Tensor) -> bool:
    """One-hot rows that are not class labels given to a regression loss by mistake: an identity
    target (``mse_loss(W @ W.T, torch.eye(n))``, an orthogonality regulariser) or probability
    inputs (the Brier score, ``mse_loss(softmax(x), one_hot(y))``)."""
    if target.dim() == 2 and target.shape[0] == target.shape[1]:
        eye = torch.eye(target.shape[0], dtype=target.dtype, device=target.device)
        if bool(torch.equal(target.detach(), eye)):
            return True
    rows = sample_rows(input.detach(), input.dim() - 1).float()
    in_unit = bool((rows >= 0).all()) and bool((rows <= 1).all())
    tol = 2e-2 if input.dtype in (torch.float16, torch.bfloat16) else 1e-3
    return in_unit and float((rows.sum(-1) - 1).abs().amax()) <= tol


def shape_mismatch(fn: str, input: torch.Tensor, target: torch.Tensor) -> None:
    got = f"got input {shape_str(input.shape)} and target {shape_str(target.shape)}"
    if (
        not target.is_floating_point()
        and input.dim() == target.dim() + 1
        and input.shape[:-1] == target.shape
        and input.shape[-1] > 1
    ):
        fail(
            f"{fn}: target holds integer class labels of shape {shape_str(target.shape)} while "
            f"input has {input.shape[-1]} columns, {got}; expected equal shapes. This is a "
            "classification problem: use losskit.functional.cross_entropy(input, target)."
        )
    if input.dim() == target.dim() + 1 and input.shape[-1] == 1 and input.shape[:-1] == target.shape:
        fix = "Use input.squeeze(-1) (or target.unsqueeze(-1))."
    elif target.dim() == input.dim() + 1 and target.shape[-1] == 1 and target.shape[:-1] == input.shape:
        fix = "Use target.squeeze(-1) (or input.unsqueeze(-1))."
    else:
        fix = "Reshape one of them so both have the same shape."
    try:
        broadcast = f" torch would broadcast them to {shape_str(torch.broadcast_shapes(input.shape, target.shape))} and return a wrong loss."  # type: ignore[no-untyped-call]
    except RuntimeError:
        broadcast = ""
    fail(f"{fn}: input and target shapes differ, {got}; expected equal shapes.{broadcast} {fix}")
