"""The built-in demo: train a small MLP on scikit-learn's bundled digits data with
:class:`losskit.nn.CrossEntropyLoss`, printing train/validation loss and accuracy per epoch.

Run it with ``losskit demo`` (or ``python -m losskit demo``). Needs the ``demo`` extra
(scikit-learn for the data, rich for the progress bar and table).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

import losskit


@dataclass
class EpochResult:
    """Metrics of one epoch."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float


def load_digits_split(seed: int, val_fraction: float = 0.2) -> tuple[torch.Tensor, ...]:
    """Digits (1,797 8x8 images, 10 classes) split stratified, standardised on the train part."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x_train, x_val, y_train, y_val = train_test_split(
        data.data, data.target, test_size=val_fraction, stratify=data.target, random_state=seed
    )
    x_train = torch.tensor(x_train, dtype=torch.float32)
    x_val = torch.tensor(x_val, dtype=torch.float32)
    mean, std = x_train.mean(0), x_train.std(0)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))  # constant pixels: leave unscaled
    return (
        (x_train - mean) / std,
        torch.tensor(y_train, dtype=torch.long),
        (x_val - mean) / std,
        torch.tensor(y_val, dtype=torch.long),
    )


def _evaluate(model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(x)
        return float(loss_fn(logits, y)), float((logits.argmax(1) == y).float().mean())


def run_demo(epochs: int = 20, batch_size: int = 64, lr: float = 1e-3, seed: int = 0) -> list[EpochResult]:
    """Train and report; returns the per-epoch results (also printed as a table)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.table import Table

    console = Console()
    torch.manual_seed(seed)
    x_train, y_train, x_val, y_val = load_digits_split(seed)
    n_classes = int(y_train.max()) + 1
    model = nn.Sequential(nn.Linear(x_train.shape[1], 128), nn.ReLU(), nn.Linear(128, n_classes))
    loss_fn = losskit.nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    console.print(
        f"[bold]losskit demo[/]: digits ({len(x_train)} train / {len(x_val)} validation images, "
        f"{n_classes} classes), MLP 64-128-10, {loss_fn!r}, Adam lr={lr}"
    )
    table = Table(
        "epoch", "train loss", "train acc", "val loss", "val acc", title="digits with losskit.nn.CrossEntropyLoss"
    )
    results: list[EpochResult] = []
    steps_per_epoch = -(-len(x_train) // batch_size)
    start = time.perf_counter()
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("training", total=epochs * steps_per_epoch, status="")
        for epoch in range(1, epochs + 1):
            model.train()
            order = torch.randperm(len(x_train))
            total, correct = 0.0, 0
            for i in range(0, len(x_train), batch_size):
                idx = order[i : i + batch_size]
                logits = model(x_train[idx])
                loss = loss_fn(logits, y_train[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(idx)
                correct += int((logits.argmax(1) == y_train[idx]).sum())
                progress.update(task, advance=1, status=f"epoch {epoch}/{epochs} loss {float(loss.detach()):.4f}")
            val_loss, val_acc = _evaluate(model, loss_fn, x_val, y_val)
            result = EpochResult(epoch, total / len(x_train), correct / len(x_train), val_loss, val_acc)
            results.append(result)
            progress.console.print(
                f"epoch {epoch:3d}  train loss {result.train_loss:.4f}  train acc {result.train_accuracy:.3f}"
                f"  val loss {result.val_loss:.4f}  val acc {result.val_accuracy:.3f}"
            )
            table.add_row(
                str(epoch),
                f"{result.train_loss:.4f}",
                f"{result.train_accuracy:.3f}",
                f"{result.val_loss:.4f}",
                f"{result.val_accuracy:.3f}",
            )
    console.print(table)
    best = max(results, key=lambda r: r.val_accuracy)
    console.print(
        f"best validation accuracy {best.val_accuracy:.3f} at epoch {best.epoch}; {time.perf_counter() - start:.1f} s"
    )
    return results
