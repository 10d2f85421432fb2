"""``losskit.doctor``: the sanity checks experienced practitioners run before a long training run.

One call checks a model + loss + batch: that output and target fit the loss (and the task the
targets describe), that the last layer gives logits when the loss wants logits, that the loss at
initialization is what an uninformed model should get, that every parameter gets a gradient,
that the model can overfit the one batch, that samples do not mix across the batch, and that the
labels are sane. Every failure comes with advice in plain words. The caller's model, optimizer
and random state are left as they were.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from losskit.errors import LossInputError, LossUsageWarning
from losskit.tasks import Task, infer_task

__all__ = ["doctor", "DoctorReport", "Check", "CHECK_NAMES"]

CHECK_NAMES = ("setup", "final_layer", "init_loss", "gradient_flow", "overfit_batch", "batch_independence", "labels")

#: loss families by what they expect as input
_SOFTMAX = {"CrossEntropyLoss", "FocalLoss", "Poly1CrossEntropyLoss", "CrossEntropyDiceLoss", "cross_entropy", "focal_loss", "poly1_cross_entropy"}
_SIGMOID = {"BCEWithLogitsLoss", "SigmoidFocalLoss", "binary_cross_entropy_with_logits", "sigmoid_focal_loss"}
_LOG_PROBS = {"NLLLoss", "nll_loss"}
_PROBS = {"BCELoss", "binary_cross_entropy"}
_REGRESSION = {"MSELoss", "L1Loss", "HuberLoss", "SmoothL1Loss", "mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss"}
#: torch module -> losskit functional, to run losskit's guardrails on torch's losses too
_FUNCTIONAL = {
    "CrossEntropyLoss": "cross_entropy", "NLLLoss": "nll_loss", "BCELoss": "binary_cross_entropy",
    "BCEWithLogitsLoss": "binary_cross_entropy_with_logits", "MSELoss": "mse_loss", "L1Loss": "l1_loss",
    "HuberLoss": "huber_loss", "SmoothL1Loss": "smooth_l1_loss",
}
#: init-loss ratio bounds: measured / expected
INIT_WARN, INIT_FAIL, INIT_LOW = 1.5, 3.0, 0.3
#: overfit one batch: final / initial loss at most this to pass (halved), above OVERFIT_FAIL fails
OVERFIT_PASS, OVERFIT_FAIL = 0.5, 0.9
#: gradient norms per parameter outside these bounds are reported as exploding / vanishing
GRAD_EXPLODE, GRAD_VANISH = 1e3, 1e-8


@dataclass
class Check:
    """One check's outcome."""

    name: str
    status: str  # "pass" | "warn" | "fail" | "skip"
    measured: Any = None
    expected: Any = None
    advice: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "measured": self.measured, "expected": self.expected, "advice": self.advice}


@dataclass
class DoctorReport:
    """The checks of :func:`doctor`; ``ok`` when none failed. Prints as a table."""

    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    def __getitem__(self, name: str) -> Check:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"checks": [c.to_dict() for c in self.checks]}

    def table(self, title: str = "losskit doctor") -> Any:
        from rich.markup import escape
        from rich.table import Table

        colour = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}
        table = Table(title=f"{title}: {'ok' if self.ok else 'problems found'}", title_justify="left", show_lines=True)
        for column in ("check", "status", "measured", "expected", "advice"):
            table.add_column(column, overflow="fold")
        for c in self.checks:
            table.add_row(c.name, f"[{colour[c.status]}]{c.status}[/]", escape(_show(c.measured)), escape(_show(c.expected)), escape(c.advice))
        return table

    def __rich__(self) -> Any:
        return self.table()

    def __str__(self) -> str:
        from rich.console import Console

        console = Console(width=120, record=True, file=_Null())
        console.print(self.table())
        return console.export_text()


class _Null:
    def write(self, _: str) -> int:
        return 0

    def flush(self) -> None:
        pass


def _show(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _kind(loss_fn: Any) -> str:
    name = type(loss_fn).__name__ if isinstance(loss_fn, nn.Module) else getattr(loss_fn, "__name__", type(loss_fn).__name__)
    for family, names in (("softmax", _SOFTMAX), ("sigmoid", _SIGMOID), ("log_probs", _LOG_PROBS), ("probs", _PROBS), ("regression", _REGRESSION)):
        if name in names:
            return family
    return "other"


def _loss_name(loss_fn: Any) -> str:
    return type(loss_fn).__name__ if isinstance(loss_fn, nn.Module) else getattr(loss_fn, "__name__", repr(loss_fn))


def _guardrail_twin(loss_fn: Any) -> Callable[..., torch.Tensor] | None:
    """losskit's functional twin of a torch loss module, with the module's settings."""
    import losskit.functional as LF

    if not isinstance(loss_fn, nn.Module) or type(loss_fn).__module__.startswith("losskit"):
        return None
    name = _FUNCTIONAL.get(type(loss_fn).__name__)
    if name is None:
        return None
    fn = getattr(LF, name)
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
        return None, f"the loss returned {type(loss).__name__} of shape {tuple(getattr(loss, 'shape', ()))}; expected a scalar (reduction='mean' or 'sum')", notes
    return loss, None, notes


# --------------------------------------------------------------------------- the checks


def _check_setup(loss_fn: Any, out: torch.Tensor, y: torch.Tensor, task: Task | None) -> tuple[Check, torch.Tensor | None, Task | None]:
    name = _loss_name(loss_fn)
    kind = _kind(loss_fn)
    guess = None
    try:
        guess = infer_task(y, out)
    except LossInputError:
        pass
    seen = task or (guess.task if guess else None)
    measured = f"output {tuple(out.shape)} {str(out.dtype).replace('torch.', '')}, target {tuple(y.shape)} {str(y.dtype).replace('torch.', '')}"
    expected = f"a {name} input/target pair" + (f" for a {seen.value} task" if seen else "")
    loss, error, notes = _call(loss_fn, out, y)
    problems = []
    classification = seen in (Task.binary, Task.multiclass, Task.multilabel, Task.token_classification, Task.segmentation)
    if kind == "regression" and classification and not y.is_floating_point():
        problems.append(
            f"{name} is a regression loss but the targets are integer class labels ({seen.value}, "
            f"{guess.num_classes if guess else '?'} classes): it treats class 3 as 'closer' to 4 than "
            "to 0. Use CrossEntropyLoss on logits (or losskit.loss_for(task, targets=...))."
        )
    if kind in ("softmax", "sigmoid", "log_probs", "probs") and seen == Task.regression and y.is_floating_point() and guess is not None and not guess.ambiguous:
        problems.append(f"{name} is a classification loss but the targets look continuous ({guess.reason}). Use MSELoss or HuberLoss.")
    if error is not None:
        return Check("setup", "fail", measured, expected, f"the loss cannot be computed on this output and target: {error}" + (" " + " ".join(problems) if problems else "")), None, seen
    if problems:
        return Check("setup", "fail", measured, expected, " ".join(problems)), loss, seen
    if notes:
        return Check("setup", "warn", measured, expected, " ".join(notes)), loss, seen
    reason = f"the targets look like {seen.value}" + (f" ({guess.reason})" if guess else "") if seen else "the task is unknown"
    return Check("setup", "pass", measured, expected, f"{name} fits: {reason}."), loss, seen


def _check_final_layer(kind: str, out: torch.Tensor) -> Check:
    x = out.detach().float()
    if x.numel() == 0:
        return Check("final_layer", "skip", advice="empty output")
    if kind == "regression" or kind == "other":
        return Check("final_layer", "skip", advice="the loss does not expect logits or probabilities")
    class_dim = 1 if x.dim() >= 2 else 0
    in_unit = bool((x >= 0).all()) and bool((x <= 1).all())
    lo, hi = float(x.min()), float(x.max())
    measured = f"outputs in [{lo:.3g}, {hi:.3g}]"
    if kind == "softmax":
        sums = x.sum(class_dim)
        if in_unit and x.shape[class_dim] > 1 and bool(((sums - 1).abs() < 1e-3).all()):
            return Check("final_layer", "fail", measured + ", rows sum to 1", "raw logits",
                         "The output is already softmax probabilities, but the loss applies log_softmax itself "
                         "(a double softmax: gradients shrink and training stalls). Remove the final Softmax; "
                         "apply softmax only for inference.")
        return Check("final_layer", "pass", measured, "raw logits", "the output looks like logits.")
    if kind == "sigmoid":
        if in_unit and x.numel() >= 4:
            return Check("final_layer", "fail", measured, "raw logits",
                         "Every output lies in [0, 1]: a sigmoid was applied, but the loss applies it itself. "
                         "Remove the final Sigmoid (or use BCELoss on probabilities, which is less stable).")
        return Check("final_layer", "pass", measured, "raw logits", "the output looks like logits.")
    if kind == "log_probs":
        lse = torch.logsumexp(x, class_dim)
        if float(lse.abs().max()) > 1e-2:
            what = "softmax probabilities" if in_unit else "raw logits"
            return Check("final_layer", "fail", measured, "log-probabilities (log_softmax)",
                         f"NLLLoss needs log_softmax output, but the rows look like {what}. Add LogSoftmax(dim=1) "
                         "as the last layer, or use CrossEntropyLoss on the logits.")
        return Check("final_layer", "pass", measured, "log-probabilities", "rows are log-probabilities.")
    if not in_unit:
        return Check("final_layer", "fail", measured, "probabilities in [0, 1]",
                     "BCELoss needs probabilities but got values outside [0, 1] (logits). Use "
                     "BCEWithLogitsLoss on the logits: it is also numerically stable.")
    return Check("final_layer", "pass", measured, "probabilities in [0, 1]", "the output is probabilities.")


def _expected_init_loss(kind: str, loss_fn: Any, out: torch.Tensor, y: torch.Tensor) -> tuple[float | None, str]:
    name = _loss_name(loss_fn)
    if kind in ("softmax", "log_probs") and name in ("CrossEntropyLoss", "NLLLoss", "cross_entropy", "nll_loss", "Poly1CrossEntropyLoss"):
        c = out.shape[1] if out.dim() >= 2 else out.shape[0]
        base = math.log(c)
        if name == "Poly1CrossEntropyLoss":
            return base + getattr(loss_fn, "epsilon", 1.0) * (1 - 1 / c), f"ln {c} + epsilon (1 - 1/{c}) (uniform prediction)"
        return base, f"ln {c} = {base:.4g} (uniform prediction over {c} classes)"
    if kind in ("sigmoid", "probs") and name in ("BCEWithLogitsLoss", "BCELoss", "binary_cross_entropy", "binary_cross_entropy_with_logits"):
        if getattr(loss_fn, "pos_weight", None) is not None:
            return None, ""
        return math.log(2), "ln 2 = 0.6931 (predicting 1/2 everywhere)"
    if name in ("MSELoss", "mse_loss") and y.is_floating_point() and y.numel() > 1:
        var = float(y.double().var())
        if var > 0:
            return var, f"the target variance {var:.4g} (predicting the mean)"
    return None, ""


def _check_init_loss(kind: str, loss_fn: Any, out: torch.Tensor, y: torch.Tensor, loss: torch.Tensor | None) -> Check:
    if loss is None:
        return Check("init_loss", "skip", advice="fix setup first: the loss could not be computed")
    measured = float(loss.detach())
    expected, how = _expected_init_loss(kind, loss_fn, out, y)
    if expected is None:
        return Check("init_loss", "skip", measured, None, f"no reference value for {_loss_name(loss_fn)} at initialization")
    if not math.isfinite(measured):
        return Check("init_loss", "fail", measured, how, "the loss is not finite at initialization: check the inputs for NaN/Inf and the output scale.")
    ratio = measured / expected
    if ratio > INIT_FAIL:
        advice = (
            f"the initial loss is {ratio:.1f}x what an uninformed model gets: the initial outputs are too large "
            "(a bad init scale, missing normalization of the inputs, or a wrong loss)."
        )
        if _loss_name(loss_fn) in ("MSELoss", "mse_loss"):
            advice += " For regression, standardize the targets or set the last layer's bias to the target mean."
        else:
            advice += " Re-initialize the last layer smaller (e.g. nn.init.zeros_ or a 0.01 std), and standardize the inputs."
        return Check("init_loss", "fail", measured, how, advice)
    if ratio > INIT_WARN:
        return Check("init_loss", "warn", measured, how, f"the initial loss is {ratio:.1f}x the uninformed value: the outputs start somewhat large; consider a smaller init of the last layer.")
    if ratio < INIT_LOW:
        return Check("init_loss", "warn", measured, how, f"the initial loss is only {ratio:.2f}x the uninformed value: is the target leaking into the input, or is the batch trivial?")
    return Check("init_loss", "pass", measured, how, "close to what an uninformed model should get.")


def _check_gradient_flow(model: nn.Module, loss: torch.Tensor | None) -> Check:
    if loss is None:
        return Check("gradient_flow", "skip", advice="fix setup first: the loss could not be computed")
    if not loss.requires_grad:
        return Check("gradient_flow", "fail", "the loss has no gradient", "a loss that depends on the parameters",
                     "The loss does not require grad: the output was computed under torch.no_grad(), detached, or "
                     "every parameter is frozen.")
    model.zero_grad(set_to_none=True)
    loss.backward()
    missing, zero, nonfinite, frozen, exploding, vanishing = [], [], [], [], [], []
    norms = {}
    modules_frozen_mixed = []
    for module_name, module in model.named_modules():
        own = list(module.named_parameters(recurse=False))
        flags = {p.requires_grad for _, p in own}
        if len(flags) == 2:
            modules_frozen_mixed.append(module_name or type(module).__name__)
    for name, p in model.named_parameters():
        if not p.requires_grad:
            frozen.append(name)
            continue
        if p.grad is None:
            missing.append(name)
            continue
        g = p.grad.detach()
        if not bool(torch.isfinite(g).all()):
            nonfinite.append(name)
            continue
        norm = float(g.norm())
        norms[name] = norm
        if norm == 0:
            zero.append(name)
        elif norm > GRAD_EXPLODE:
            exploding.append(f"{name} ({norm:.3g})")
        elif norm < GRAD_VANISH:
            vanishing.append(f"{name} ({norm:.3g})")
    trainable = len(norms) + len(missing) + len(nonfinite)
    measured = f"{len(norms) - len(zero)} of {trainable} trainable tensors get a gradient"
    if norms:
        measured += f"; norms {min(norms.values()):.3g} .. {max(norms.values()):.3g}"
    expected = "a finite, non-zero gradient for every trainable parameter"
    problems, status = [], "pass"
    if missing:
        problems.append(f"no gradient reaches {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}: the layer is unused in forward, or its output is detached (.detach(), .item(), .numpy(), torch.no_grad()).")
    if nonfinite:
        problems.append(f"NaN/Inf gradients in {', '.join(nonfinite[:6])}: check the inputs and the loss for overflow.")
    if zero:
        problems.append(f"all-zero gradients in {', '.join(zero[:6])}: dead ReLUs, a multiplication by zero, or a constant branch.")
    if modules_frozen_mixed:
        problems.append(f"partly frozen modules {', '.join(modules_frozen_mixed[:6])} (some parameters requires_grad=False, others not): almost always a mistake; frozen: {', '.join(frozen[:6])}.")
    if problems:
        status = "fail"
    if exploding:
        problems.append(f"exploding gradient norms: {', '.join(exploding[:6])}; lower the learning rate, clip gradients or fix the init scale.")
        status = "fail" if status == "fail" else "warn"
    if vanishing:
        problems.append(f"vanishing gradient norms: {', '.join(vanishing[:6])}.")
        status = "fail" if status == "fail" else "warn"
    if frozen and not modules_frozen_mixed:
        problems.append(f"{len(frozen)} frozen parameter tensor(s) ({', '.join(frozen[:4])}{' ...' if len(frozen) > 4 else ''}): intended (fine-tuning)?")
        status = "fail" if status == "fail" else "warn"
    if trainable == 0:
        return Check("gradient_flow", "fail", "no trainable parameters", expected, "every parameter has requires_grad=False: nothing can learn.")
    return Check("gradient_flow", status, measured, expected, " ".join(problems) or "every trainable parameter gets a finite, non-zero gradient.")


def _make_optimizer(optimizer: torch.optim.Optimizer | None, params: Any) -> torch.optim.Optimizer:
    if optimizer is None:
        return torch.optim.Adam(params, lr=1e-3)
    settings = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
    try:
        return type(optimizer)(params, **settings)
    except TypeError:
        return type(optimizer)(params, lr=settings.get("lr", 1e-3))


def _check_overfit(model: nn.Module, loss_fn: Any, x: Any, y: torch.Tensor, optimizer: torch.optim.Optimizer | None,
                   steps: int, setup_ok: bool, task: Task | None) -> Check:
    if not setup_ok:
        return Check("overfit_batch", "skip", advice="fix setup first: the loss could not be computed")
    opt = _make_optimizer(optimizer, [p for p in model.parameters() if p.requires_grad])
    label = f"{type(opt).__name__} lr={opt.param_groups[0].get('lr')}"
    model.train()
    first = last = None
    for _ in range(steps):
        loss = loss_fn(model(x), y)
        if first is None:
            first = float(loss.detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = model(x)
        last = float(loss_fn(out, y))
    assert first is not None
    measured = f"loss {first:.4g} -> {last:.4g} in {steps} steps ({label})"
    accuracy = ""
    if task == Task.multiclass and out.dim() == 2 and out.shape[0] == y.shape[0] and not y.is_floating_point():
        accuracy = f"; batch accuracy {float((out.argmax(1) == y).float().mean()):.0%}"
        measured += accuracy
    expected = f"a fall below {OVERFIT_PASS:g}x the initial loss"
    if not math.isfinite(last):
        return Check("overfit_batch", "fail", measured, expected, "the loss diverged to NaN/Inf on one batch: lower the learning rate or check the loss inputs.")
    ratio = last / first if first else 0.0
    if ratio <= OVERFIT_PASS:
        return Check("overfit_batch", "pass", measured, expected, "the model can fit one batch: model, loss and labels agree.")
    advice = (
        f"the loss only fell to {ratio:.2f}x its start on a single batch it should memorize: the model, the loss "
        "and the labels disagree (a softmax before a logits loss, labels that do not match the outputs, a "
        "detached or frozen layer), or the learning rate is far off."
    )
    return Check("overfit_batch", "fail" if ratio > OVERFIT_FAIL else "warn", measured, expected, advice)


def _check_batch_independence(model: nn.Module, x: Any) -> Check:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        return Check("batch_independence", "skip", advice="the input is not a float tensor (token ids?): the gradient with respect to it is undefined")
    if x.shape[0] < 2:
        return Check("batch_independence", "skip", advice="the batch has a single sample")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    if norms:
        return Check("batch_independence", "skip", advice=f"{len(norms)} batch-norm layer(s) in training mode mix samples by design; the check needs eval mode or no batch norm")
    inp = x.detach().clone().requires_grad_(True)
    out = model(inp)
    if not isinstance(out, torch.Tensor) or out.dim() == 0 or out.shape[0] != x.shape[0]:
        return Check("batch_independence", "fail", f"output shape {tuple(getattr(out, 'shape', ()))}", f"batch size {x.shape[0]} first",
                     "the output's first dimension is not the batch: a reshape/view moved the batch axis.")
    i = 0
    grad, = torch.autograd.grad(out[i].float().sum(), inp, allow_unused=True)
    if grad is None:
        return Check("batch_independence", "skip", advice="the output does not depend on the input")
    others = grad.detach().clone()
    others[i] = 0
    leak = float(others.abs().amax())
    mixed = [j for j in range(1, x.shape[0]) if float(others[j].abs().amax()) > 0]
    measured = f"max |d out[0] / d input[j != 0]| = {leak:.3g}"
    if leak > 0:
        return Check("batch_independence", "fail", measured, "0 (samples independent)",
                     f"sample 0's output depends on the input of {len(mixed)} other sample(s) (e.g. {mixed[:5]}): a "
                     "view/reshape/transpose mixes the batch axis (e.g. x.view(-1, batch) instead of x.view(batch, -1)), "
                     "or a reduction runs over dim 0.")
    return Check("batch_independence", "pass", measured, "0 (samples independent)", "no sample depends on another.")


def _check_labels(loss_fn: Any, out: torch.Tensor, y: torch.Tensor, task: Task | None) -> Check:
    kind = _kind(loss_fn)
    if kind == "regression" and y.is_floating_point():
        flat = y.detach().double()
        return Check("labels", "pass", f"targets mean {float(flat.mean()):.4g}, std {float(flat.std()) if flat.numel() > 1 else 0:.4g}", "finite targets",
                     "regression targets are finite." if bool(torch.isfinite(flat).all()) else "NaN/Inf targets!")
    if kind in ("softmax", "log_probs") and not y.is_floating_point():
        c = out.shape[1] if out.dim() >= 2 else out.shape[0]
        ignore = getattr(loss_fn, "ignore_index", -100)
        ids = y.reshape(-1)
        counted = ids[ids != ignore]
        if counted.numel() == 0:
            return Check("labels", "fail", "every target is ignore_index", "some counted targets",
                         f"every target equals ignore_index={ignore}: the mean loss is NaN. Check the padding/masking of the batch.")
        bad = counted[(counted < 0) | (counted >= c)]
        counts = torch.bincount(counted.clamp(0, c - 1), minlength=c)
        present = int((counts > 0).sum())
        measured = f"{present} of {c} classes present; largest class {float(counts.max()) / counted.numel():.0%} of the batch"
        if bad.numel():
            return Check("labels", "fail", measured + f"; {bad.numel()} id(s) out of range (e.g. {int(bad[0])})", f"ids in [0, {c - 1}]",
                         f"targets outside [0, {c - 1}]: remap the labels (or give the model more outputs).")
        if present == 1:
            return Check("labels", "warn", measured, "several classes per batch", "the batch holds one class only: shuffle the data (is it sorted by label?).")
        return Check("labels", "pass", measured, "ids in range, several classes", "labels are in range.")
    if kind in ("sigmoid", "probs"):
        if not y.is_floating_point():
            return Check("labels", "fail", f"targets of dtype {str(y.dtype).replace('torch.', '')}", "float 0/1 targets",
                         "binary losses need float targets: use target.float().")
        lo, hi = float(y.min()), float(y.max())
        positives = float(y.float().mean())
        measured = f"targets in [{lo:.3g}, {hi:.3g}], {positives:.0%} positive"
        if lo < 0 or hi > 1:
            return Check("labels", "fail", measured, "targets in [0, 1]", "targets outside [0, 1]: map -1/+1 labels with (y > 0).float().")
        if positives in (0.0, 1.0):
            return Check("labels", "warn", measured, "both classes in the batch", "the batch holds only one class: shuffle the data.")
        return Check("labels", "pass", measured, "targets in [0, 1]", "targets are valid probabilities.")
    if y.is_floating_point() and kind in ("softmax", "log_probs") and y.shape == out.shape:
        return Check("labels", "pass", "class-probability targets", "rows summing to 1", "probability targets.")
    if kind in ("softmax", "log_probs"):
        return Check("labels", "fail", f"targets of dtype {str(y.dtype).replace('torch.', '')}", "int64 class ids",
                     "class-id targets must be integers: use target.long().")
    return Check("labels", "skip", advice="no label checks for this loss")


# --------------------------------------------------------------------------- entry point


def doctor(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch: tuple[Any, torch.Tensor],
    *,
    optimizer: torch.optim.Optimizer | None = None,
    steps: int = 50,
    task: Task | str | None = None,
) -> DoctorReport:
    """Check a model + loss + batch before training and explain every failure.

    Runs, on deep copies (the caller's model, loss and optimizer are untouched, and the random
    state is restored): ``setup`` (output and target fit the loss and the task ``infer_task``
    sees), ``final_layer`` (probabilities fed to a loss that wants logits, and the like),
    ``init_loss`` (ln C for cross-entropy, ln 2 for BCE, the target variance for MSE),
    ``gradient_flow`` (every trainable parameter gets a finite non-zero gradient),
    ``overfit_batch`` (the loss at least halves on the batch within ``steps`` steps of Adam
    lr 1e-3, or of the given optimizer's class and settings), ``batch_independence`` (sample 0's
    output does not depend on other samples' inputs) and ``labels`` (ids in range, balance).

    No torch equivalent.

    Args:
        model: the model; its forward takes ``batch[0]``.
        loss_fn: the loss module or function, called as ``loss_fn(model(inputs), targets)``.
        batch: ``(inputs, targets)``, a typical training batch.
        optimizer: the optimizer you will train with (only its class and settings are used).
        steps: optimizer steps for ``overfit_batch``.
        task: the task, if ``infer_task`` should not guess it.

    Returns:
        A :class:`DoctorReport`: ``ok``, ``checks``, ``to_dict()``, printable as a table.

    Example:
        >>> import torch, losskit
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
        >>> x = torch.randn(32, 8)
        >>> batch = (x, x[:, :3].argmax(1))          # labels the model can learn
        >>> report = losskit.doctor(model, losskit.nn.CrossEntropyLoss(), batch, steps=200)
        >>> report.ok, [c.status for c in report.checks]
        (True, ['pass', 'pass', 'pass', 'pass', 'pass', 'pass', 'pass'])
    """
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise LossInputError(
            f"doctor: batch is {type(batch).__name__}; expected a pair (inputs, targets). Pass e.g. "
            "next(iter(loader)) for a loader that yields (x, y)."
        )
    if not isinstance(steps, int) or steps < 1:
        raise LossInputError(f"doctor: steps is {steps!r}; expected a positive integer. Pass e.g. steps=50.")
    x, y = batch
    if not isinstance(y, torch.Tensor):
        y = torch.as_tensor(y)
    the_task = Task.parse(task) if task is not None else None
    kind = _kind(loss_fn)
    checks: list[Check] = []
    cuda = torch.cuda.is_available()
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if cuda else []), warnings.catch_warnings():
        # the guardrails' warnings are collected by the setup check, not repeated at every step
        warnings.simplefilter("ignore", LossUsageWarning)
        work = copy.deepcopy(model)
        loss_copy = copy.deepcopy(loss_fn) if isinstance(loss_fn, nn.Module) else loss_fn
        try:
            out = work(x)
        except Exception as exc:  # noqa: BLE001 -- any failure of the user's forward is reported
            checks.append(Check("setup", "fail", f"forward raised {type(exc).__name__}", "model(inputs) to run",
                                f"model(batch[0]) failed: {exc}"))
            for name in CHECK_NAMES[1:]:
                checks.append(Check(name, "skip", advice="fix setup first: the model's forward failed"))
            return DoctorReport(checks)
        if not isinstance(out, torch.Tensor):
            checks.append(Check("setup", "fail", f"forward returned {type(out).__name__}", "a tensor",
                                "doctor needs model(inputs) to return the tensor the loss takes."))
            for name in CHECK_NAMES[1:]:
                checks.append(Check(name, "skip", advice="fix setup first"))
            return DoctorReport(checks)
        setup, loss, seen = _check_setup(loss_copy, out, y, the_task)
        checks.append(setup)
        checks.append(_check_final_layer(kind, out))
        checks.append(_check_init_loss(kind, loss_copy, out, y, loss))
        checks.append(_check_gradient_flow(work, loss))
        fresh = copy.deepcopy(model)
        checks.append(_check_overfit(fresh, copy.deepcopy(loss_copy) if isinstance(loss_copy, nn.Module) else loss_copy,
                                     x, y, optimizer, steps, loss is not None, seen))
        checks.append(_check_batch_independence(copy.deepcopy(model), x))
        checks.append(_check_labels(loss_copy, out, y, seen))
    return DoctorReport(checks)


# --------------------------------------------------------------------------- the demo


def demo_models(seed: int = 0) -> dict[str, tuple[nn.Module, Any, tuple[torch.Tensor, torch.Tensor]]]:
    """The ``losskit doctor --demo`` setups on a batch of scikit-learn's digits: a broken one
    (softmax head + CrossEntropyLoss + float labels) and the fixed one."""
    from sklearn.datasets import load_digits

    import losskit

    data = load_digits()
    x = torch.tensor(data.data[:64], dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
    y = torch.tensor(data.target[:64])
    torch.manual_seed(seed)
    broken = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10), nn.Softmax(dim=1))
    torch.manual_seed(seed)
    fixed = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    loss = losskit.nn.CrossEntropyLoss()
    return {
        "broken: Softmax head, float labels": (broken, loss, (x, y.float())),
        "fixed: logits, int64 labels": (fixed, loss, (x, y.long())),
    }


def run_demo(console: Any = None) -> dict[str, DoctorReport]:
    """Run :func:`doctor` on the broken and the fixed setup; print them side by side."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    if console is None:
        import sys

        console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    reports = {name: doctor(model, loss, batch) for name, (model, loss, batch) in demo_models().items()}
    console.print(
        "[bold]losskit doctor --demo[/]: the same MLP on a batch of 64 digits, trained with "
        "losskit.nn.CrossEntropyLoss; the broken version ends in nn.Softmax and passes float labels."
    )
    colour = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}
    side = Table(title="side by side", title_justify="left")
    side.add_column("check")
    for name in reports:
        side.add_column(name)
    for i, check in enumerate(CHECK_NAMES):
        cells = []
        for report in reports.values():
            c = report.checks[i]
            cells.append(f"[{colour[c.status]}]{c.status}[/] {escape(_show(c.measured))}")
        side.add_row(check, *cells)
    console.print(side)
    for name, report in reports.items():
        console.print(report.table(title=name))
    return reports
