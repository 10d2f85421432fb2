"""``losskit doctor --demo``: :func:`losskit.doctor` on a broken and a fixed setup, side by side."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from losskit.doctor import CHECK_NAMES, DoctorReport, doctor
from losskit.doctor.report import show_value

__all__ = ["demo_models", "run_demo"]


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
            cells.append(f"[{colour[c.status]}]{c.status}[/] {escape(show_value(c.measured))}")
        side.add_row(check, *cells)
    console.print(side)
    for name, report in reports.items():
        console.print(report.table(title=name))
    return reports
