"""Train one model per candidate loss: same splits, same initial weights, same batch order.

A small MLP sized from the data, Adam, early stopping on the validation loss with the best
weights restored, and a flag when the validation loss rose while the training loss fell.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from losskit.app.compare.data import Prepared
from losskit.tasks import Task

__all__ = ["TrainResult", "make_model", "train_candidate", "outputs_for_loss"]

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
    state: dict[str, torch.Tensor] = field(default_factory=dict)


def hidden_size(d_in: int, d_out: int) -> int:
    """Width of the two hidden layers: the power of two at or above 2 (inputs + outputs), in [32, 256]."""
    return int(min(256, max(32, 2 ** math.ceil(math.log2(max(2 * (d_in + d_out), 2))))))


def make_model(d_in: int, d_out: int, seed: int) -> nn.Module:
    """``Linear-ReLU-Linear-ReLU-Linear`` with seeded initial weights."""
    h = hidden_size(d_in, d_out)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(d_in, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, d_out))


def outputs_for_loss(task: Task, outputs: torch.Tensor) -> torch.Tensor:
    """Binary models have one logit per row; the binary losses take ``(N,)``."""
    return outputs.squeeze(-1) if task == Task.binary else outputs


def _epoch_loss(model: nn.Module, loss_fn: nn.Module, task: Task, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float(loss_fn(outputs_for_loss(task, model(x)), y))


def train_candidate(
    name: str,
    data: Prepared,
    initial: nn.Module,
    loss_fn: nn.Module,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: torch.device,
    progress: Any = None,
) -> TrainResult:
    """Train a copy of ``initial`` with ``loss_fn``; the result holds the best weights (on CPU)."""
    model = copy.deepcopy(initial).to(device)
    loss_fn = loss_fn.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    x_val, y_val = data.x_val.to(device), data.y_val.to(device)
    generator = torch.Generator().manual_seed(seed)  # the same batch order for every candidate
    result = TrainResult(name)
    best = math.inf
    bar = progress.add_task(f"{name:<30}", total=epochs, losses="") if progress is not None else None
    n = len(x_train)
    for epoch in range(1, epochs + 1):
        model.train()
        total = 0.0
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            loss = loss_fn(outputs_for_loss(data.task, model(x_train[idx])), y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        result.train_loss.append(total / n)
        val = _epoch_loss(model, loss_fn, data.task, x_val, y_val)
        result.val_loss.append(val)
        improved = val < best - 1e-7 * abs(best) if math.isfinite(best) else val < best
        if improved:
            best = val
            result.best_epoch = epoch
            result.state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
        if bar is not None:
            progress.update(
                bar,
                advance=1,
                losses=f"train {result.train_loss[-1]:.4f}  val {val:.4f}  best epoch {result.best_epoch}",
            )
        if not math.isfinite(val) and not math.isfinite(result.train_loss[-1]):
            break
        if epoch - result.best_epoch >= PATIENCE:
            result.stopped_early = True
            break
    if bar is not None:  # the bar ends at the epoch early stopping ended on
        progress.update(bar, total=len(result.val_loss), completed=len(result.val_loss))
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
