"""``losskit compare``: train the same model with each candidate loss on the same data, and judge
the candidates on the test split by metrics, calibration and training curves.

* :mod:`losskit.compare.data` -- splits, imputation, encoding, standardization
* :mod:`losskit.compare.candidates` -- the candidate losses per task
* :mod:`losskit.compare.train` -- the MLP, Adam, early stopping, overfitting flag
* :mod:`losskit.compare.metrics` -- torchmetrics on the test split
* :mod:`losskit.compare.report` -- metrics.json, plots, report.html, terminal table

Needs the ``cli`` extra (scikit-learn, pandas, rich, torchmetrics, matplotlib).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from losskit.app.data import Table
from losskit.errors import LossInputError

__all__ = ["CompareResult", "run_compare", "MARKER"]

#: a file every report folder holds, so a later run knows it may replace the folder
MARKER = ".losskit-report"


@dataclass
class CompareResult:
    """What :func:`run_compare` wrote: the ``metrics.json`` payload and the report folder."""

    payload: dict[str, Any]
    out: Path
    seconds: float


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LossInputError(
            f"--device {name!r} is not a torch device; expected e.g. cpu, cuda, cuda:1 or mps."
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LossInputError(
            f"--device {name!r}: CUDA is not available in this torch build or machine; expected an available device. Use --device cpu."
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise LossInputError(
            f"--device {name!r}: MPS is not available on this machine; expected an available device. Use --device cpu."
        )
    return device


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise LossInputError(f"--out {str(out)!r} is a file; expected a folder for the report. Pass another --out.")
    ancestor = out.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK):
        raise LossInputError(
            f"--out {str(out)!r} cannot be created: {str(ancestor)!r} is "
            + ("not a folder" if not ancestor.is_dir() else "not writable")
            + "; expected a writable place for the report folder. Pass another --out."
        )
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise LossInputError(
            f"--out {str(out)!r} exists and is not a losskit report (no {MARKER} file); expected a new "
            "or empty folder, or a previous report to replace. Pass another --out; nothing was changed."
        )


def run_compare(
    table: Table,
    *,
    task: str = "auto",
    losses: str | None = None,
    epochs: int = 100,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    out: str | Path = "losskit-report",
    device: str = "cpu",
    console: Any = None,
    progress: bool = True,
) -> CompareResult:
    """Train one model per candidate loss and write the report to ``out``.

    The report is written to a temporary folder beside ``out`` and moved into place only when
    complete, so a failed run never leaves a report that looks finished; an existing ``out``
    is replaced only when it is an earlier losskit report.

    Raises:
        LossInputError: bad data, task, candidate names, device or output folder.
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from losskit.app.compare import candidates as cand
    from losskit.app.compare.data import prepare
    from losskit.app.compare.metrics import evaluate
    from losskit.app.compare.report import print_summary, recommendation, write_report
    from losskit.app.compare.train import (
        hidden_size,
        make_model,
        outputs_for_loss,
        train_candidate,
    )

    start = time.perf_counter()
    if console is None:
        import sys

        # a pipe or a log file gets the full table; a terminal its own width
        console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    out = Path(out).expanduser().resolve()
    _check_out(out)
    dev = _device(device)
    data = prepare(table, task=task, seed=seed)
    names = cand.parse_losses(data.task, losses)
    d_in, d_out = data.x_train.shape[1], data.num_outputs
    initial = make_model(d_in, d_out, seed)
    h = hidden_size(d_in, d_out)
    console.print(
        f"[bold]losskit compare[/]: {escape(data.name)}, task {data.task.value}, {len(data.y_train)} / "
        f"{len(data.y_val)} / {len(data.y_test)} rows (train / val / test), {d_in} features; MLP "
        f"{d_in}-{h}-{h}-{d_out}, Adam lr={lr}, batch {batch_size}, up to {epochs} epochs with early stopping; "
        f"candidates: {', '.join(names)}"
    )
    for note in data.notes:
        console.print(f"  [dim]- {escape(note)}[/]")

    runs, evaluations = {}, {}
    columns = (
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TextColumn("epochs  {task.fields[losses]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=not progress) as bars:
        for name in names:
            loss_fn = cand.build(data.task, name, data.y_train, d_out)
            run = train_candidate(
                name,
                data,
                initial,
                loss_fn,
                epochs=epochs,
                batch_size=batch_size,
                lr=lr,
                seed=seed,
                device=dev,
                progress=bars,
            )
            model = make_model(d_in, d_out, seed)
            model.load_state_dict(run.state)
            model.eval()
            with torch.no_grad():
                outputs = outputs_for_loss(data.task, model(data.x_test))
            runs[name] = run
            evaluations[name] = evaluate(data.task, outputs, data.y_test, d_out, data.target_mean, data.target_std)
    text = recommendation(data.task, evaluations, runs)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        payload = write_report(tmp, data, evaluations, runs, text)
        (tmp / MARKER).write_text("written by losskit compare; a later run may replace this folder\n")
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print_summary(console, data, evaluations, runs, text)
    seconds = time.perf_counter() - start
    console.print(f"report: {escape(str(out / 'report.html'))} (metrics.json and the plots beside it); {seconds:.1f} s")
    return CompareResult(payload, out, seconds)
