"""The doctor's checks that train: gradient flow, overfitting one batch, and batch independence.

Each runs on deep copies of the caller's model and optimizer, so nothing the caller holds changes.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from losskit.doctor.checks import GRAD_EXPLODE, GRAD_VANISH, OVERFIT_FAIL, OVERFIT_PASS
from losskit.doctor.report import Check
from losskit.types import Task

__all__ = ["check_gradient_flow", "check_overfit", "check_batch_independence"]


def check_gradient_flow(model: nn.Module, loss: torch.Tensor | None) -> Check:
    if loss is None:
        return Check("gradient_flow", "skip", advice="fix setup first: the loss could not be computed")
    if not loss.requires_grad:
        return Check(
            "gradient_flow",
            "fail",
            "the loss has no gradient",
            "a loss that depends on the parameters",
            "The loss does not require grad: the output was computed under torch.no_grad(), detached, or "
            "every parameter is frozen.",
        )
    model.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
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
        problems.append(
            f"no gradient reaches {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}: the layer is unused in forward, or its output is detached (.detach(), .item(), .numpy(), torch.no_grad())."
        )
    if nonfinite:
        problems.append(f"NaN/Inf gradients in {', '.join(nonfinite[:6])}: check the inputs and the loss for overflow.")
    if zero:
        problems.append(
            f"all-zero gradients in {', '.join(zero[:6])}: dead ReLUs, a multiplication by zero, or a constant branch."
        )
    if modules_frozen_mixed:
        problems.append(
            f"partly frozen modules {', '.join(modules_frozen_mixed[:6])} (some parameters requires_grad=False, others not): almost always a mistake; frozen: {', '.join(frozen[:6])}."
        )
    if problems:
        status = "fail"
    if exploding:
        problems.append(
            f"exploding gradient norms: {', '.join(exploding[:6])}; lower the learning rate, clip gradients or fix the init scale."
        )
        status = "fail" if status == "fail" else "warn"
    if vanishing:
        problems.append(f"vanishing gradient norms: {', '.join(vanishing[:6])}.")
        status = "fail" if status == "fail" else "warn"
    if frozen and not modules_frozen_mixed:
        problems.append(
            f"{len(frozen)} frozen parameter tensor(s) ({', '.join(frozen[:4])}{' ...' if len(frozen) > 4 else ''}): intended (fine-tuning)?"
        )
        status = "fail" if status == "fail" else "warn"
    if trainable == 0:
        return Check(
            "gradient_flow",
            "fail",
            "no trainable parameters",
            expected,
            "every parameter has requires_grad=False: nothing can learn.",
        )
    return Check(
        "gradient_flow",
        status,
        measured,
        expected,
        " ".join(problems) or "every trainable parameter gets a finite, non-zero gradient.",
    )


def _make_optimizer(optimizer: torch.optim.Optimizer | None, params: Any) -> torch.optim.Optimizer:
    if optimizer is None:
        return torch.optim.Adam(params, lr=1e-3)
    settings = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
    try:
        return type(optimizer)(params, **settings)
    except TypeError:
        return type(optimizer)(params, lr=settings.get("lr", 1e-3))  # type: ignore[call-arg]


def check_overfit(
    model: nn.Module,
    loss_fn: Any,
    x: Any,
    y: torch.Tensor,
    optimizer: torch.optim.Optimizer | None,
    steps: int,
    setup_ok: bool,
    task: Task | None,
) -> Check:
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
        return Check(
            "overfit_batch",
            "fail",
            measured,
            expected,
            "the loss diverged to NaN/Inf on one batch: lower the learning rate or check the loss inputs.",
        )
    ratio = last / first if first else 0.0
    if ratio <= OVERFIT_PASS:
        return Check(
            "overfit_batch", "pass", measured, expected, "the model can fit one batch: model, loss and labels agree."
        )
    advice = (
        f"the loss only fell to {ratio:.2f}x its start on a single batch it should memorize: the model, the loss "
        "and the labels disagree (a softmax before a logits loss, labels that do not match the outputs, a "
        "detached or frozen layer), or the learning rate is far off."
    )
    return Check("overfit_batch", "fail" if ratio > OVERFIT_FAIL else "warn", measured, expected, advice)


def check_batch_independence(model: nn.Module, x: Any) -> Check:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        return Check(
            "batch_independence",
            "skip",
            advice="the input is not a float tensor (token ids?): the gradient with respect to it is undefined",
        )
    if x.shape[0] < 2:
        return Check("batch_independence", "skip", advice="the batch has a single sample")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    if norms:
        return Check(
            "batch_independence",
            "skip",
            advice=f"{len(norms)} batch-norm layer(s) in training mode mix samples by design; the check needs eval mode or no batch norm",
        )
    inp = x.detach().clone().requires_grad_(True)
    out = model(inp)
    if not isinstance(out, torch.Tensor) or out.dim() == 0 or out.shape[0] != x.shape[0]:
        return Check(
            "batch_independence",
            "fail",
            f"output shape {tuple(getattr(out, 'shape', ()))}",
            f"batch size {x.shape[0]} first",
            "the output's first dimension is not the batch: a reshape/view moved the batch axis.",
        )
    i = 0
    (grad,) = torch.autograd.grad(out[i].float().sum(), inp, allow_unused=True)
    if grad is None:
        return Check("batch_independence", "skip", advice="the output does not depend on the input")
    others = grad.detach().clone()
    others[i] = 0
    leak = float(others.abs().amax())
    mixed = [j for j in range(1, x.shape[0]) if float(others[j].abs().amax()) > 0]
    measured = f"max |d out[0] / d input[j != 0]| = {leak:.3g}"
    if leak > 0:
        return Check(
            "batch_independence",
            "fail",
            measured,
            "0 (samples independent)",
            f"sample 0's output depends on the input of {len(mixed)} other sample(s) (e.g. {mixed[:5]}): a "
            "view/reshape/transpose mixes the batch axis (e.g. x.view(-1, batch) instead of x.view(batch, -1)), "
            "or a reduction runs over dim 0.",
        )
    return Check("batch_independence", "pass", measured, "0 (samples independent)", "no sample depends on another.")
