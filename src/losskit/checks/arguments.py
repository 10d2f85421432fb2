"""Checks of a loss's arguments (options, not tensor values), shared by the functions in
:mod:`losskit.functional` and the constructors in :mod:`losskit.nn`, so a module rejects a bad
option when it is built with the same message the function gives when it is called."""

from __future__ import annotations

import torch

from losskit.checks.level import level
from losskit.checks.messages import describe, fail, shape_str

__all__ = [
    "check_reduction",
    "check_label_smoothing",
    "check_z_loss_and_softcap",
    "check_normalizer",
    "check_legacy",
    "check_float_input",
    "check_tensor",
    "check_focal_options",
    "check_dice_options",
    "DICE_MODES",
    "check_huber_delta",
    "check_smooth_l1_beta",
    "check_poly_epsilon",
    "check_tversky_weights",
    "check_dice_weight",
]


def check_reduction(fn: str, reduction: str) -> None:
    if reduction not in ("none", "mean", "sum"):
        fail(
            f"{fn}: reduction is invalid, got {reduction!r}; expected 'none', 'mean' or 'sum'. "
            "Pass one of these strings (size_average/reduce are not accepted)."
        )


def check_label_smoothing(fn: str, label_smoothing: float) -> None:
    """``label_smoothing`` must lie in ``[0, 1]``."""
    if not 0.0 <= label_smoothing <= 1.0:
        fail(
            f"{fn}: label_smoothing must lie in [0, 1], got {label_smoothing!r}; expected e.g. "
            "0.1. Pass a value between 0.0 (no smoothing) and 1.0."
        )


def check_z_loss_and_softcap(fn: str, z_loss: float, softcap: float | None) -> None:
    """``z_loss`` must be a non-negative number and ``softcap`` ``None`` or positive."""
    if isinstance(z_loss, bool) or not isinstance(z_loss, (int, float)) or not z_loss >= 0:
        fail(
            f"{fn}: z_loss must be a non-negative number, got {z_loss!r}; expected e.g. 1e-4 "
            "(PaLM's coefficient). Pass 0.0 to turn the z-loss off."
        )
    if softcap is not None and (isinstance(softcap, bool) or not isinstance(softcap, (int, float)) or not softcap > 0):
        fail(
            f"{fn}: softcap must be None or a positive number, got {softcap!r}; expected e.g. "
            "30.0 (Gemma 2's final-logit cap). Pass None to turn soft-capping off."
        )


def check_normalizer(fn: str, normalizer: object, reduction: str) -> None:
    """``normalizer`` (global normalization) is a positive number or 0-d tensor, with ``"mean"``."""
    if normalizer is None:
        return
    if reduction != "mean":
        fail(
            f"{fn}: normalizer was given with reduction={reduction!r}; expected reduction='mean' "
            "(the normalizer replaces the mean's denominator). Drop normalizer or use reduction='mean'."
        )
    if isinstance(normalizer, torch.Tensor):
        if normalizer.numel() != 1 or normalizer.is_complex():
            fail(
                f"{fn}: normalizer has shape {shape_str(normalizer.shape)}; expected a single positive "
                "count (a number or a 0-d tensor), e.g. from losskit.distributed.global_normalizer(...)."
            )
        if level(normalizer) == "full" and not float(normalizer) > 0:
            fail(
                f"{fn}: normalizer is {float(normalizer)!r}; expected a positive count of targets. Check how it was computed."
            )
        return
    if isinstance(normalizer, bool) or not isinstance(normalizer, (int, float)) or not 0 < normalizer < float("inf"):
        fail(
            f"{fn}: normalizer is {normalizer!r}; expected a positive finite count (a number or a 0-d "
            "tensor), e.g. from losskit.distributed.global_normalizer(...)."
        )


def check_legacy(fn: str, size_average: object, reduce: object) -> None:
    """Reject torch's deprecated ``size_average`` / ``reduce`` with the equivalent ``reduction``."""
    if size_average is None and reduce is None:
        return
    if reduce is False:
        equivalent = "none"
    elif size_average is False:
        equivalent = "sum"
    else:
        equivalent = "mean"
    fail(
        f"{fn}: size_average/reduce are deprecated and not accepted, got size_average="
        f"{size_average!r}, reduce={reduce!r}; expected reduction=. Pass reduction={equivalent!r} "
        "instead."
    )


def check_float_input(fn: str, name: str, tensor: object) -> None:
    if not isinstance(tensor, torch.Tensor):
        fail(
            f"{fn}: {name} is not a tensor, got {type(tensor).__name__}; expected a torch.Tensor. "
            f"Wrap it with torch.as_tensor({name}, dtype=torch.float32)."
        )
    if not tensor.is_floating_point():
        fail(
            f"{fn}: {name} has {describe(tensor)}; expected a floating-point tensor. Use {name}.float().",
            dtype=True,
        )


def check_tensor(fn: str, name: str, tensor: object) -> None:
    if not isinstance(tensor, torch.Tensor):
        fail(
            f"{fn}: {name} is not a tensor, got {type(tensor).__name__}; expected a torch.Tensor. "
            f"Wrap it with torch.as_tensor({name})."
        )


def check_focal_options(fn: str, gamma: float, alpha: float | None = None) -> None:
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


DICE_MODES = ("binary", "multiclass", "multilabel")


def check_dice_options(fn: str, mode: str, smooth: float, eps: float, reduction: str) -> None:
    check_reduction(fn, reduction)
    if mode not in DICE_MODES:
        fail(
            f"{fn}: mode is {mode!r}; expected one of 'binary' (one foreground channel), "
            "'multiclass' (one class id per pixel) or 'multilabel' (independent 0/1 masks per "
            "channel). Pass mode='multiclass' for (N, C, H, W) logits with (N, H, W) ids."
        )
    if not isinstance(smooth, (int, float)) or isinstance(smooth, bool) or not 0 <= smooth < float("inf"):
        fail(f"{fn}: smooth is {smooth!r}; expected a finite number >= 0. Pass e.g. smooth=0.0 or 1.0.")
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 < eps < 1:
        fail(f"{fn}: eps is {eps!r}; expected a small positive number below 1. Pass e.g. eps=1e-7.")


def check_huber_delta(fn: str, delta: float) -> None:
    """Huber's ``delta`` must be positive."""
    if not delta > 0:
        fail(
            f"{fn}: delta must be positive, got {delta!r}; expected a float > 0 (the error "
            "size where the loss turns from quadratic to linear). Use e.g. delta=1.0."
        )


def check_smooth_l1_beta(fn: str, beta: float) -> None:
    """Smooth-L1's ``beta`` must be non-negative."""
    if not beta >= 0:
        fail(
            f"{fn}: beta must be non-negative, got {beta!r}; expected a float >= 0. "
            "Use e.g. beta=1.0 (beta=0 gives the L1 loss)."
        )


def check_poly_epsilon(fn: str, epsilon: float) -> None:
    """Poly-1's ``epsilon`` must be a finite number above -1."""
    if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool) or not -1 < epsilon < float("inf"):
        fail(
            f"{fn}: epsilon is {epsilon!r}; expected a finite number > -1 (1 in Leng et al. "
            "2022; 0 gives the plain cross-entropy). Pass e.g. epsilon=1.0."
        )


def check_tversky_weights(fn: str, alpha: float, beta: float) -> None:
    """Tversky's ``alpha`` and ``beta`` must be finite and non-negative."""
    for name, value in (("alpha", alpha), ("beta", beta)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < float("inf"):
            fail(
                f"{fn}: {name} is {value!r}; expected a finite number >= 0 (alpha weighs false "
                "positives, beta false negatives; 0.5 and 0.5 give Dice). Pass e.g. "
                "alpha=0.3, beta=0.7."
            )


def check_dice_weight(fn: str, dice_weight: float) -> None:
    """The Dice term's weight in CE + Dice must be a number >= 0."""
    if isinstance(dice_weight, bool) or not isinstance(dice_weight, (int, float)) or not dice_weight >= 0:
        fail(f"{fn}: dice_weight is {dice_weight!r}; expected a number >= 0. Pass e.g. dice_weight=1.0.")
