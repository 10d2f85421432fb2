"""The doctor's checks of a model's output against the loss: setup, final layer, loss at
initialization, and labels (the training checks are in :mod:`losskit.doctor.training`)."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from losskit import registry
from losskit.doctor.report import Check
from losskit.errors import LossInputError, LossUsageWarning
from losskit.tasks import Task, infer_task

__all__ = [
    "CHECK_NAMES",
    "check_setup",
    "check_final_layer",
    "check_init_loss",
    "check_labels",
    "loss_kind",
]

CHECK_NAMES = ("setup", "final_layer", "init_loss", "gradient_flow", "overfit_batch", "batch_independence", "labels")


#: the doctor's family of a loss, from what the registry says it takes as input
_FAMILY = {
    "logits": "softmax",
    "binary_logits": "sigmoid",
    "log_probs": "log_probs",
    "probs": "probs",
    "values": "regression",
}

#: init-loss ratio bounds: measured / expected
INIT_WARN, INIT_FAIL, INIT_LOW = 1.5, 3.0, 0.3
#: overfit one batch: final / initial loss at most this to pass (halved), above OVERFIT_FAIL fails
OVERFIT_PASS, OVERFIT_FAIL = 0.5, 0.9
#: gradient norms per parameter outside these bounds are reported as exploding / vanishing
GRAD_EXPLODE, GRAD_VANISH = 1e3, 1e-8


def loss_kind(loss_fn: Any) -> str:
    """``softmax`` | ``sigmoid`` | ``log_probs`` | ``probs`` | ``regression`` | ``other``: what the
    loss (losskit's or torch's, a module or a function) expects as input."""
    spec = registry.find(loss_fn)
    return "other" if spec is None else _FAMILY.get(spec.input, "other")


def _loss_name(loss_fn: Any) -> str:
    return type(loss_fn).__name__ if isinstance(loss_fn, nn.Module) else getattr(loss_fn, "__name__", repr(loss_fn))


def _guardrail_twin(loss_fn: Any) -> Callable[..., torch.Tensor] | None:
    """losskit's functional twin of a torch loss module, with the module's settings."""
    import losskit.functional as LF

    if not isinstance(loss_fn, nn.Module) or type(loss_fn).__module__.startswith("losskit"):
        return None
    spec = registry.by_module(type(loss_fn).__name__)
    if spec is None or spec.torch_module is None or spec.functional is None or spec.input == "hidden":
        return None
    fn = getattr(LF, spec.functional)
    kwargs: dict[str, Any] = {"reduction": getattr(loss_fn, "reduction", "mean")}
    for attr in ("weight", "ignore_index", "label_smoothing", "pos_weight", "delta", "beta"):
        if hasattr(loss_fn, attr) and getattr(loss_fn, attr) is not None:
            kwargs[attr] = getattr(loss_fn, attr)
    return lambda out, y: fn(out, y, **kwargs)


def _call(loss_fn: Any, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor | None, str | None, list[str]]:
    """The loss, or the error it raised, and the usage warnings it gave (losskit's guardrails
    also run for torch's losses)."""
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            twin = _guardrail_twin(loss_fn)
            if twin is not None:
                twin(out, y)
            loss = loss_fn(out, y)
        except (LossInputError, ValueError, RuntimeError, TypeError, IndexError) as exc:
            return None, f"{type(exc).__name__}: {exc}", notes
    for w in caught:
        if issubclass(w.category, LossUsageWarning) or issubclass(w.category, UserWarning):
            text = str(w.message)
            if text not in notes:
                notes.append(text)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        return (
            None,
            f"the loss returned {type(loss).__name__} of shape {tuple(getattr(loss, 'shape', ()))}; expected a scalar (reduction='mean' or 'sum')",
            notes,
        )
    return loss, None, notes


def check_setup(
    loss_fn: Any, out: torch.Tensor, y: torch.Tensor, task: Task | None
) -> tuple[Check, torch.Tensor | None, Task | None]:
    name = _loss_name(loss_fn)
    kind = loss_kind(loss_fn)
    guess = None
    with contextlib.suppress(LossInputError):
        guess = infer_task(y, out)
    seen = task or (guess.task if guess else None)
    measured = f"output {tuple(out.shape)} {str(out.dtype).replace('torch.', '')}, target {tuple(y.shape)} {str(y.dtype).replace('torch.', '')}"
    expected = f"a {name} input/target pair" + (f" for a {seen.value} task" if seen else "")
    loss, error, notes = _call(loss_fn, out, y)
    problems = []
    classification = seen in (
        Task.binary,
        Task.multiclass,
        Task.multilabel,
        Task.token_classification,
        Task.segmentation,
    )
    if kind == "regression" and classification and seen is not None and not y.is_floating_point():
        problems.append(
            f"{name} is a regression loss but the targets are integer class labels ({seen.value}, "
            f"{guess.num_classes if guess else '?'} classes): it treats class 3 as 'closer' to 4 than "
            "to 0. Use CrossEntropyLoss on logits (or losskit.loss_for(task, targets=...))."
        )
    if (
        kind in ("softmax", "sigmoid", "log_probs", "probs")
        and seen == Task.regression
        and y.is_floating_point()
        and guess is not None
        and not guess.ambiguous
    ):
        problems.append(
            f"{name} is a classification loss but the targets look continuous ({guess.reason}). Use MSELoss or HuberLoss."
        )
    if error is not None:
        return (
            Check(
                "setup",
                "fail",
                measured,
                expected,
                f"the loss cannot be computed on this output and target: {error}"
                + (" " + " ".join(problems) if problems else ""),
            ),
            None,
            seen,
        )
    if problems:
        return Check("setup", "fail", measured, expected, " ".join(problems)), loss, seen
    if kind == "regression" and classification and seen is not None:
        # float targets holding only class ids: computable, but most likely classes
        notes.append(
            f"{name} is a regression loss but the targets look like class ids ({seen.value}: "
            f"{guess.reason if guess else 'integer values'}); regression treats class 3 as 'closer' to 4 "
            "than to 0. If these are classes, use CrossEntropyLoss on logits with target.long() "
            "(losskit.loss_for(task, targets=...) picks it)."
        )
    if notes:
        return Check("setup", "warn", measured, expected, " ".join(notes)), loss, seen
    reason = (
        f"the targets look like {seen.value}" + (f" ({guess.reason})" if guess else "")
        if seen
        else "the task is unknown"
    )
    return Check("setup", "pass", measured, expected, f"{name} fits: {reason}."), loss, seen


def check_final_layer(kind: str, out: torch.Tensor) -> Check:
    x = out.detach().float()
    if x.numel() == 0:
        return Check("final_layer", "skip", advice="empty output")
    if kind in {"regression", "other"}:
        return Check("final_layer", "skip", advice="the loss does not expect logits or probabilities")
    class_dim = 1 if x.dim() >= 2 else 0
    in_unit = bool((x >= 0).all()) and bool((x <= 1).all())
    lo, hi = float(x.min()), float(x.max())
    measured = f"outputs in [{lo:.3g}, {hi:.3g}]"
    if kind == "softmax":
        sums = x.sum(class_dim)
        if in_unit and x.shape[class_dim] > 1 and bool(((sums - 1).abs() < 1e-3).all()):
            return Check(
                "final_layer",
                "fail",
                measured + ", rows sum to 1",
                "raw logits",
                "The output is already softmax probabilities, but the loss applies log_softmax itself "
                "(a double softmax: gradients shrink and training stalls). Remove the final Softmax; "
                "apply softmax only for inference.",
            )
        return Check("final_layer", "pass", measured, "raw logits", "the output looks like logits.")
    if kind == "sigmoid":
        if in_unit and x.numel() >= 4:
            return Check(
                "final_layer",
                "fail",
                measured,
                "raw logits",
                "Every output lies in [0, 1]: a sigmoid was applied, but the loss applies it itself. "
                "Remove the final Sigmoid (or use BCELoss on probabilities, which is less stable).",
            )
        return Check("final_layer", "pass", measured, "raw logits", "the output looks like logits.")
    if kind == "log_probs":
        lse = torch.logsumexp(x, class_dim)
        if float(lse.abs().max()) > 1e-2:
            what = "softmax probabilities" if in_unit else "raw logits"
            return Check(
                "final_layer",
                "fail",
                measured,
                "log-probabilities (log_softmax)",
                f"NLLLoss needs log_softmax output, but the rows look like {what}. Add LogSoftmax(dim=1) "
                "as the last layer, or use CrossEntropyLoss on the logits.",
            )
        return Check("final_layer", "pass", measured, "log-probabilities", "rows are log-probabilities.")
    if not in_unit:
        return Check(
            "final_layer",
            "fail",
            measured,
            "probabilities in [0, 1]",
            "BCELoss needs probabilities but got values outside [0, 1] (logits). Use "
            "BCEWithLogitsLoss on the logits: it is also numerically stable.",
        )
    return Check("final_layer", "pass", measured, "probabilities in [0, 1]", "the output is probabilities.")


def _expected_init_loss(kind: str, loss_fn: Any, out: torch.Tensor, y: torch.Tensor) -> tuple[float | None, str]:
    name = _loss_name(loss_fn)
    if kind in ("softmax", "log_probs") and name in (
        "CrossEntropyLoss",
        "NLLLoss",
        "cross_entropy",
        "nll_loss",
        "Poly1CrossEntropyLoss",
    ):
        c = out.shape[1] if out.dim() >= 2 else out.shape[0]
        base = math.log(c)
        if name == "Poly1CrossEntropyLoss":
            return base + getattr(loss_fn, "epsilon", 1.0) * (
                1 - 1 / c
            ), f"ln {c} + epsilon (1 - 1/{c}) (uniform prediction)"
        return base, f"ln {c} = {base:.4g} (uniform prediction over {c} classes)"
    if kind in ("sigmoid", "probs") and name in (
        "BCEWithLogitsLoss",
        "BCELoss",
        "binary_cross_entropy",
        "binary_cross_entropy_with_logits",
    ):
        if getattr(loss_fn, "pos_weight", None) is not None:
            return None, ""
        return math.log(2), "ln 2 = 0.6931 (predicting 1/2 everywhere)"
    if name in ("MSELoss", "mse_loss") and y.is_floating_point() and y.numel() > 1:
        var = float(y.double().var())
        if var > 0:
            return var, f"the target variance {var:.4g} (predicting the mean)"
    return None, ""


def check_init_loss(kind: str, loss_fn: Any, out: torch.Tensor, y: torch.Tensor, loss: torch.Tensor | None) -> Check:
    if loss is None:
        return Check("init_loss", "skip", advice="fix setup first: the loss could not be computed")
    measured = float(loss.detach())
    expected, how = _expected_init_loss(kind, loss_fn, out, y)
    if expected is None:
        return Check(
            "init_loss", "skip", measured, None, f"no reference value for {_loss_name(loss_fn)} at initialization"
        )
    if not math.isfinite(measured):
        return Check(
            "init_loss",
            "fail",
            measured,
            how,
            "the loss is not finite at initialization: check the inputs for NaN/Inf and the output scale.",
        )
    ratio = measured / expected
    if ratio > INIT_FAIL:
        advice = (
            f"the initial loss is {ratio:.1f}x what an uninformed model gets: the initial outputs are too large "
            "(a bad init scale, missing normalization of the inputs, or a wrong loss)."
        )
        if _loss_name(loss_fn) in ("MSELoss", "mse_loss"):
            advice += " For regression, standardize the targets or set the last layer's bias to the target mean."
        else:
            advice += (
                " Re-initialize the last layer smaller (e.g. nn.init.zeros_ or a 0.01 std), and standardize the inputs."
            )
        return Check("init_loss", "fail", measured, how, advice)
    if ratio > INIT_WARN:
        return Check(
            "init_loss",
            "warn",
            measured,
            how,
            f"the initial loss is {ratio:.1f}x the uninformed value: the outputs start somewhat large; consider a smaller init of the last layer.",
        )
    if ratio < INIT_LOW:
        return Check(
            "init_loss",
            "warn",
            measured,
            how,
            f"the initial loss is only {ratio:.2f}x the uninformed value: is the target leaking into the input, or is the batch trivial?",
        )
    return Check("init_loss", "pass", measured, how, "close to what an uninformed model should get.")


def check_labels(loss_fn: Any, out: torch.Tensor, y: torch.Tensor, task: Task | None) -> Check:
    kind = loss_kind(loss_fn)
    if kind == "regression" and y.is_floating_point():
        flat = y.detach().double()
        return Check(
            "labels",
            "pass",
            f"targets mean {float(flat.mean()):.4g}, std {float(flat.std()) if flat.numel() > 1 else 0:.4g}",
            "finite targets",
            "regression targets are finite." if bool(torch.isfinite(flat).all()) else "NaN/Inf targets!",
        )
    if kind in ("softmax", "log_probs") and not y.is_floating_point():
        c = out.shape[1] if out.dim() >= 2 else out.shape[0]
        ignore = getattr(loss_fn, "ignore_index", -100)
        ids = y.reshape(-1)
        counted = ids[ids != ignore]
        if counted.numel() == 0:
            return Check(
                "labels",
                "fail",
                "every target is ignore_index",
                "some counted targets",
                f"every target equals ignore_index={ignore}: the mean loss is NaN. Check the padding/masking of the batch.",
            )
        bad = counted[(counted < 0) | (counted >= c)]
        counts = torch.bincount(counted.clamp(0, c - 1), minlength=c)
        present = int((counts > 0).sum())
        measured = (
            f"{present} of {c} classes present; largest class {float(counts.max()) / counted.numel():.0%} of the batch"
        )
        if bad.numel():
            return Check(
                "labels",
                "fail",
                measured + f"; {bad.numel()} id(s) out of range (e.g. {int(bad[0])})",
                f"ids in [0, {c - 1}]",
                f"targets outside [0, {c - 1}]: remap the labels (or give the model more outputs).",
            )
        if present == 1:
            return Check(
                "labels",
                "warn",
                measured,
                "several classes per batch",
                "the batch holds one class only: shuffle the data (is it sorted by label?).",
            )
        return Check("labels", "pass", measured, "ids in range, several classes", "labels are in range.")
    if kind in ("sigmoid", "probs"):
        if not y.is_floating_point():
            return Check(
                "labels",
                "fail",
                f"targets of dtype {str(y.dtype).replace('torch.', '')}",
                "float 0/1 targets",
                "binary losses need float targets: use target.float().",
            )
        lo, hi = float(y.min()), float(y.max())
        positives = float(y.float().mean())
        measured = f"targets in [{lo:.3g}, {hi:.3g}], {positives:.0%} positive"
        if lo < 0 or hi > 1:
            return Check(
                "labels",
                "fail",
                measured,
                "targets in [0, 1]",
                "targets outside [0, 1]: map -1/+1 labels with (y > 0).float().",
            )
        if positives in (0.0, 1.0):
            return Check(
                "labels",
                "warn",
                measured,
                "both classes in the batch",
                "the batch holds only one class: shuffle the data.",
            )
        return Check("labels", "pass", measured, "targets in [0, 1]", "targets are valid probabilities.")
    if y.is_floating_point() and kind in ("softmax", "log_probs") and y.shape == out.shape:
        return Check("labels", "pass", "class-probability targets", "rows summing to 1", "probability targets.")
    if kind in ("softmax", "log_probs"):
        return Check(
            "labels",
            "fail",
            f"targets of dtype {str(y.dtype).replace('torch.', '')}",
            "int64 class ids",
            "class-id targets must be integers: use target.long().",
        )
    return Check("labels", "skip", advice="no label checks for this loss")
