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
import sys
import types
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from losskit.doctor.checks import (
    CHECK_NAMES,
    check_final_layer,
    check_init_loss,
    check_labels,
    check_setup,
    loss_kind,
)
from losskit.doctor.report import Check, DoctorReport
from losskit.doctor.training import check_batch_independence, check_gradient_flow, check_overfit
from losskit.errors import LossInputError, LossUsageWarning
from losskit.tasks import Task

__all__ = ["doctor", "DoctorReport", "Check", "CHECK_NAMES"]


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
    kind = loss_kind(loss_fn)
    checks: list[Check] = []
    cuda = torch.cuda.is_available()
    with (
        torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if cuda else []),
        warnings.catch_warnings(),
    ):
        # the guardrails' warnings are collected by the setup check, not repeated at every step
        warnings.simplefilter("ignore", LossUsageWarning)
        work = copy.deepcopy(model)
        loss_copy = copy.deepcopy(loss_fn) if isinstance(loss_fn, nn.Module) else loss_fn
        try:
            out = work(x)
        except Exception as exc:
            checks.append(
                Check(
                    "setup",
                    "fail",
                    f"forward raised {type(exc).__name__}",
                    "model(inputs) to run",
                    f"model(batch[0]) failed: {exc}",
                )
            )
            for name in CHECK_NAMES[1:]:
                checks.append(Check(name, "skip", advice="fix setup first: the model's forward failed"))
            return DoctorReport(checks)
        if not isinstance(out, torch.Tensor):
            checks.append(
                Check(
                    "setup",
                    "fail",
                    f"forward returned {type(out).__name__}",
                    "a tensor",
                    "doctor needs model(inputs) to return the tensor the loss takes.",
                )
            )
            for name in CHECK_NAMES[1:]:
                checks.append(Check(name, "skip", advice="fix setup first"))
            return DoctorReport(checks)
        setup, loss, seen = check_setup(loss_copy, out, y, the_task)
        checks.append(setup)
        checks.append(check_final_layer(kind, out))
        checks.append(check_init_loss(kind, loss_copy, out, y, loss))
        checks.append(check_gradient_flow(work, loss))
        fresh = copy.deepcopy(model)
        checks.append(
            check_overfit(
                fresh,
                copy.deepcopy(loss_copy) if isinstance(loss_copy, nn.Module) else loss_copy,
                x,
                y,
                optimizer,
                steps,
                loss is not None,
                seen,
            )
        )
        checks.append(check_batch_independence(copy.deepcopy(model), x))
        checks.append(check_labels(loss_copy, out, y, seen))
    return DoctorReport(checks)


class _CallableModule(types.ModuleType):
    """``losskit.doctor`` is both this package and the function :func:`doctor`: whichever of the
    two the attribute ``losskit.doctor`` holds (importing a submodule binds the package), calling
    it runs the checks."""

    def __call__(self, *args: Any, **kwargs: Any) -> DoctorReport:
        return doctor(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
