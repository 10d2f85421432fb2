"""Train one model per candidate loss and fold: same rows, same initial weights, same batch order.

A small MLP sized from the data (or the user's model), Adam (or the user's optimizer), early
stopping on the fold's validation split with the best weights restored, and a flag when the
validation loss rose while the training loss fell.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from losskit.app.compare.data import FoldData
from losskit.app.workers import hidden_size  # beside the work estimate, which must not import torch
from losskit.tasks import Task

__all__ = ["TrainResult", "make_model", "train_candidate", "outputs_for_loss", "predict"]

#: epochs without a lower validation loss before training stops
PATIENCE = 10
#: a validation-loss rise of more than this fraction after the best epoch, while the training
#: loss fell, is flagged as overfitting
OVERFIT_RISE = 0.05


@dataclass
class TrainResult:
    """The training run of one candidate loss."""

    name: str
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0  # 1-based
    overfitting: str | None = None
    stopped_early: bool = False
    #: training ran all its epochs without early stopping
    hit_max_epochs: bool = False
    state: dict[str, torch.Tensor] = field(default_factory=dict)


def make_model(d_in: int, d_out: int, seed: int) -> nn.Module:
    """``Linear-ReLU-Linear-ReLU-Linear`` with seeded initial weights."""
    h = hidden_size(d_in, d_out)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(d_in, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, d_out))


def outputs_for_loss(task: Task, outputs: torch.Tensor) -> torch.Tensor:
    """Binary models have one logit per row; the binary losses take ``(N,)``."""
    return outputs.squeeze(-1) if task == Task.binary else outputs


#: rows per forward pass when scoring (fewer for large samples: see :func:`eval_rows`): a
#: 256-wide MLP's activations then stay in cache (100,000 rows of 65-256-256-1 on one thread:
#: 0.24 s at 1024 rows a pass, 0.34 s at 8192)
EVAL_ROWS = 1024


#: rows per forward pass when scoring a Dataset read lazily (it is read that many at a time)
LAZY_EVAL_ROWS = 64


def eval_rows(sample_shape: Any, members: int = 1, lazy: bool = False) -> int:
    """Rows per forward pass when scoring: 1024 table rows, fewer for large samples (images),
    so one pass holds about 4 M input values over all ``members`` of a stack; at most
    :data:`LAZY_EVAL_ROWS` from a lazily read Dataset."""
    if lazy:
        return min(LAZY_EVAL_ROWS, eval_rows(sample_shape, members))
    values = 1
    for s in sample_shape:
        values *= int(s)
    return max(1, min(EVAL_ROWS, (1 << 22) // max(1, values * members)))


def predict(task: Task, model: nn.Module, x: torch.Tensor, fold: FoldData, batch: int | None = None) -> torch.Tensor:
    """Probabilities (classification), predicted class ids per pixel (segmentation: the
    argmax of the logits, ``(N, H, W)`` int64) or predictions in the target's original units,
    on CPU."""
    model.eval()
    device = next(iter(model.parameters()), torch.empty(0)).device
    batch = batch or (eval_rows(x[0].shape, lazy=not isinstance(x, torch.Tensor)) if len(x) else 1)
    with torch.no_grad():
        out = torch.cat([model(x[i : i + batch].to(device)).float().cpu() for i in range(0, len(x), batch)])
    out = outputs_for_loss(task, out)
    if task == Task.segmentation:
        return out.argmax(1)
    if task == Task.multiclass:
        return torch.softmax(out.double(), 1)
    if task in (Task.binary, Task.multilabel):
        return torch.sigmoid(out.double())
    if fold.target_mean is not None and fold.target_std is not None:
        return out.double() * fold.target_std.double() + fold.target_mean.double()
    return out.double()


def _epoch_loss_batched(
    model: nn.Module, loss_fn: nn.Module, task: Task, x: torch.Tensor, y: torch.Tensor, batch: int | None = None
) -> float:
    model.eval()
    batch = batch or (eval_rows(x[0].shape, lazy=not isinstance(x, torch.Tensor)) if len(x) else 1)
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb, yb = x[i : i + batch], y[i : i + batch]
            total += float(loss_fn(outputs_for_loss(task, model(xb)), yb)) * len(xb)
    return total / max(len(x), 1)


def default_adam(params: Iterable[torch.Tensor], lr: float) -> Any:
    """The default optimizer: Adam at ``lr`` with torch's fused kernel where the device has one
    (one kernel per parameter a step: a third of the ``foreach`` path's time for compare's small
    models), stepped by :class:`~losskit.app.compare.adam.FusedAdam` (the values of
    ``torch.optim.Adam(fused=True)`` without importing ``torch._dynamo``); else torch's
    ``foreach`` path. The same choice for stacked and one-by-one fits."""
    from losskit.app.compare.adam import FusedAdam, fused_supported

    params = list(params)
    if fused_supported(params):
        return FusedAdam(params, lr)
    return torch.optim.Adam(params, lr=lr, foreach=True)


def train_candidate(
    name: str,
    task: Task,
    fold: FoldData,
    initial: nn.Module,
    loss_fn: nn.Module,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: torch.device,
    optimizer: Callable[..., torch.optim.Optimizer] | None = None,
    on_epoch: Callable[[], None] | None = None,
) -> TrainResult:
    """Train a copy of ``initial`` with ``loss_fn`` on ``fold``; the result holds the best
    weights (on CPU). ``optimizer`` is a factory called with the model's parameters (default
    Adam at ``lr``); ``on_epoch`` is called after every epoch (a progress bar)."""
    model = copy.deepcopy(initial).to(device)
    loss_fn = loss_fn.to(device)
    opt = optimizer(model.parameters()) if optimizer is not None else default_adam(model.parameters(), lr)
    x_train, y_train = fold.x_fit.to(device), fold.y_fit.to(device)
    x_val, y_val = fold.x_val.to(device), fold.y_val.to(device)
    generator = torch.Generator().manual_seed(seed)  # the same batch order for every candidate
    result = TrainResult(name)
    best = math.inf
    n = len(x_train)
    for epoch in range(1, epochs + 1):
        model.train()
        total = 0.0
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            loss = loss_fn(outputs_for_loss(task, model(x_train[idx])), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        result.train_loss.append(total / n)
        val = _epoch_loss_batched(model, loss_fn, task, x_val, y_val)
        result.val_loss.append(val)
        improved = val < best - 1e-7 * abs(best) if math.isfinite(best) else val < best
        if improved:
            best = val
            result.best_epoch = epoch
            result.state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
        if on_epoch is not None:
            on_epoch()
        if not math.isfinite(val) and not math.isfinite(result.train_loss[-1]):
            break
        if epoch - result.best_epoch >= PATIENCE:
            result.stopped_early = True
            break
    result.hit_max_epochs = not result.stopped_early and len(result.val_loss) == epochs
    if not result.state:  # never a finite validation loss: keep the last weights
        result.state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
        result.best_epoch = len(result.val_loss)
    result.overfitting = _overfitting(result)
    return result


def _overfitting(result: TrainResult) -> str | None:
    b = result.best_epoch - 1
    last = len(result.val_loss) - 1
    if last <= b:
        return None
    best_val, last_val = result.val_loss[b], result.val_loss[last]
    train_then, train_now = result.train_loss[b], result.train_loss[last]
    if not (math.isfinite(best_val) and math.isfinite(last_val)):
        return None
    rise = (last_val - best_val) / max(abs(best_val), 1e-12)
    if rise > OVERFIT_RISE and train_now < train_then:
        fall = (train_then - train_now) / max(abs(train_then), 1e-12)
        return (
            f"validation loss rose {rise:.0%} after epoch {result.best_epoch} (to epoch {last + 1}) "
            f"while training loss fell {fall:.0%}"
        )
    return None
