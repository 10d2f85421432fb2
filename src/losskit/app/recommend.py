"""``losskit recommend``: infer the task of a data set's target, show the class balance, and
print the configured loss with its reasons."""

from __future__ import annotations

from typing import Any

import torch

import losskit
from losskit.app.data import Table
from losskit.tasks import Task, TaskGuess


def target_for_losses(table: Table) -> Any:
    """The target as :func:`losskit.infer_task` should see it: numeric columns as tensors,
    text / categories as a list of labels."""
    y = table.target
    if hasattr(y, "columns"):  # several target columns
        if all(str(t) != "object" and str(t) not in ("category", "string", "str") for t in y.dtypes):
            return torch.tensor(y.to_numpy(dtype="float64"))
        raise losskit.LossInputError(
            f"{table.name}: several target columns with non-numeric values; expected numeric "
            "columns for multi-output targets. Pass one --target column for labels."
        )
    if str(y.dtype) in ("object", "category", "string", "str", "bool"):
        return y if str(y.dtype) != "bool" else torch.tensor(y.to_numpy())
    return torch.tensor(y.to_numpy())


def _balance_rows(guess: TaskGuess, table: Table) -> list[tuple[str, int, float]]:
    if guess.counts is None:
        return []
    names: list[str]
    if guess.encoder is not None:
        names = [str(c) for c in guess.encoder.classes_]
    elif table.target_names and len(table.target_names) == len(guess.counts):
        names = [str(i) if str(n) == str(i) else f"{i} ({n})" for i, n in enumerate(table.target_names)]
    elif guess.task == Task.multilabel and hasattr(table.target, "columns"):
        names = [str(c) for c in table.target.columns]
    else:
        names = [str(i) for i in range(len(guess.counts))]
    total = sum(guess.counts) if guess.task != Task.multilabel else len(table.target)
    return [(n, c, c / total if total else 0.0) for n, c in zip(names, guess.counts)]


def recommend(table: Table, *, task: str = "auto", imbalance: str = "auto") -> dict[str, Any]:
    """The recommendation as a dict (what the command prints)."""
    y = target_for_losses(table)
    guess = losskit.infer_task(y)
    if task != "auto":
        forced = Task.parse(task)
        if forced != guess.task:
            guess = TaskGuess(
                forced,
                guess.num_classes,
                f"set by --task (the targets look like {guess.task.value}: {guess.reason})",
                num_outputs=guess.num_outputs,
                encoder=guess.encoder,
                counts=guess.counts,
            )
    loss = losskit.loss_for(guess, targets=y, imbalance=imbalance)
    balance = _balance_rows(guess, table)
    present = [c for _, c, _ in balance if c > 0]
    ratio = max(present) / min(present) if len(present) > 1 else None
    return {
        "data": table.name,
        "samples": len(table.target),
        "dropped_rows": table.dropped_rows,
        "target": table.target_label,
        "task": guess.task.value,
        "num_classes": guess.num_classes,
        "num_outputs": guess.num_outputs,
        "reason": guess.reason,
        "ambiguous": guess.ambiguous,
        "balance": balance,
        "imbalance_ratio": ratio,
        "loss": loss.describe() if hasattr(loss, "describe") else repr(loss),  # type: ignore[operator]
        "reasons": list(getattr(loss, "reasons", [])),
        "code": _code(guess, imbalance),
    }


def _code(guess: TaskGuess, imbalance: str) -> str:
    extra = "" if imbalance == "auto" else f", imbalance={imbalance!r}"
    return f'loss_fn = losskit.loss_for("{guess.task.value}", targets=y_train{extra})'


def print_recommendation(result: dict[str, Any]) -> None:
    """Print :func:`recommend`'s result as rich tables."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table as RichTable

    console = Console(highlight=False)
    dropped = f", {result['dropped_rows']} row(s) without a target dropped" if result["dropped_rows"] else ""
    console.print(
        f"[bold]losskit recommend[/bold]: {escape(result['data'])} ({result['samples']} samples{dropped}), target {escape(repr(result['target']))}"
    )
    summary = RichTable(show_header=False, box=None, pad_edge=False)
    summary.add_column(style="bold")
    summary.add_column()
    unit = "outputs" if result["task"] == "regression" else "classes"
    summary.add_row(
        "task", f"{result['task']} ({result['num_classes']} {unit}, {result['num_outputs']} model output(s))"
    )
    summary.add_row("why", escape(result["reason"]) + (" [yellow](ambiguous)[/yellow]" if result["ambiguous"] else ""))
    summary.add_row("loss", escape(result["loss"]))
    summary.add_row("code", escape(result["code"]))
    console.print(summary)
    if result["balance"]:
        title = "positives per label" if result["task"] == "multilabel" else "class balance"
        if result["imbalance_ratio"] is not None and result["task"] != "multilabel":
            title += f", largest / smallest = {result['imbalance_ratio']:.3g}:1"
        console.print(f"[bold]{title}[/bold]")
        table = RichTable()
        table.add_column("class" if result["task"] != "multilabel" else "label")
        table.add_column("count", justify="right")
        table.add_column("share", justify="right")
        for name, count, share in result["balance"]:
            table.add_row(escape(name), str(count), f"{share:.1%}")
        console.print(table)
    console.print("[bold]reasons[/bold]")
    for reason in result["reasons"]:
        console.print(f"  - {escape(reason)}")
