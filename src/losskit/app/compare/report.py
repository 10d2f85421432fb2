"""The report of ``losskit compare``: ``metrics.json``, PNG plots, a self-contained
``report.html``, the terminal table, and the recommendation."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

import torch

from losskit.app.compare.data import Prepared
from losskit.app.compare.metrics import (
    CLASSIFICATION_METRICS,
    ECE_BINS,
    HIGHER_IS_BETTER,
    REGRESSION_METRICS,
    Evaluation,
)
from losskit.app.compare.train import TrainResult
from losskit.tasks import Task

__all__ = ["metric_names", "winners", "recommendation", "write_report", "print_summary"]

#: two scores closer than this count as a tie (then calibration / the second metric decides)
TIE = 0.005


def metric_names(task: Task) -> tuple[str, ...]:
    return REGRESSION_METRICS if task == Task.regression else CLASSIFICATION_METRICS


def _better(metric: str, a: float, b: float) -> bool:
    if math.isnan(b):
        return not math.isnan(a)
    if math.isnan(a):
        return False
    return a > b if HIGHER_IS_BETTER[metric] else a < b


def winners(task: Task, evaluations: dict[str, Evaluation]) -> dict[str, list[str]]:
    """The candidates with the best test value of each metric (several on an exact tie)."""
    out: dict[str, list[str]] = {}
    for metric in metric_names(task):
        values = {n: e.metrics[metric] for n, e in evaluations.items() if not math.isnan(e.metrics[metric])}
        if not values:
            continue
        best = max(values.values()) if HIGHER_IS_BETTER[metric] else min(values.values())
        out[metric] = [n for n, v in values.items() if abs(v - best) <= 1e-12 * max(1.0, abs(best))]
    return out


def recommendation(task: Task, evaluations: dict[str, Evaluation], runs: dict[str, TrainResult]) -> str:
    """Which loss to pick and why: the best primary metric (macro F1, or RMSE for regression);
    among candidates within :data:`TIE` of the best, the one not flagged for overfitting with the
    best calibration (ECE), or the lowest MAE for regression."""
    primary, secondary = ("rmse", "mae") if task == Task.regression else ("f1", "ece")
    label = {"f1": "macro F1", "rmse": "RMSE"}[primary]

    def signed(metric: str, name: str) -> float:
        value = evaluations[name].metrics[metric]
        if math.isnan(value):
            return -math.inf
        return value if HIGHER_IS_BETTER[metric] else -value

    ranked = sorted(evaluations, key=lambda n: signed(primary, n), reverse=True)
    top = ranked[0]
    close = [
        n for n in ranked if signed(primary, top) - signed(primary, n) <= TIE * max(1.0, abs(signed(primary, top)))
    ]
    m = evaluations
    if len(close) == 1:
        pick = top
        runner = ranked[1] if len(ranked) > 1 else None
        why = f"best test {label} ({m[pick].metrics[primary]:.4g}"
        why += f"; next {m[runner].metrics[primary]:.4g}, {runner})" if runner else ")"
        if task != Task.regression:
            eces = sorted(evaluations, key=lambda n: signed("ece", n), reverse=True)
            if eces[0] == pick:
                why += f"; it is also the best calibrated (ECE {m[pick].metrics['ece']:.3g})"
            else:
                why += (
                    f"; calibration: ECE {m[pick].metrics['ece']:.3g} (best {m[eces[0]].metrics['ece']:.3g}, {eces[0]})"
                )
    else:
        fine = [n for n in close if runs[n].overfitting is None] or close
        by_secondary = sorted(fine, key=lambda n: signed(secondary, n), reverse=True)
        pick = by_secondary[0]
        others = [n for n in close if n != pick]
        what = "best calibrated (ECE " if secondary == "ece" else "lowest MAE ("
        value = f"{m[pick].metrics[secondary]:.3g}" if secondary == "ece" else f"{m[pick].metrics[secondary]:.5g}"
        nxt = by_secondary[1] if len(by_secondary) > 1 else None
        tail = ""
        if nxt:
            nv = f"{m[nxt].metrics[secondary]:.3g}" if secondary == "ece" else f"{m[nxt].metrics[secondary]:.5g}"
            tail = f"; next {nv}, {nxt}"
        if pick == top:
            why = (
                f"best test {label} ({m[pick].metrics[primary]:.4g}), with {', '.join(others)} within {TIE:g}; "
                f"of those it is the {what}{value}{tail})"
            )
        else:
            why = (
                f"its test {label} ({m[pick].metrics[primary]:.4g}) is within {TIE:g} of the best "
                f"({m[top].metrics[primary]:.4g}), as is {', '.join(others)}; of those it is the {what}{value}{tail})"
            )
    parts = [f"Pick {pick}: {why}"]
    if runs[pick].overfitting:
        parts.append(f"; note: {runs[pick].overfitting} (early stopping restored epoch {runs[pick].best_epoch})")
    else:
        parts.append("; no overfitting flagged")
    flagged = [n for n in evaluations if runs[n].overfitting and n != pick]
    if flagged:
        parts.append(f"; overfitting flagged for {', '.join(flagged)}")
    return "".join(parts) + "."


# --------------------------------------------------------------------------- plots


def _grid(plt: Any, count: int, height: float) -> tuple[Any, list[Any]]:
    """A figure with one panel per candidate (at most 4 per row); unused panels hidden."""
    cols = min(count, 4)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, height * rows), squeeze=False)
    panels = list(axes.flat)
    for ax in panels[count:]:
        ax.axis("off")
    return fig, panels[:count]


def _save(plt: Any, fig: Any, path: Path, title: str | None = None) -> None:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plots(
    out: Path, data: Prepared, evaluations: dict[str, Evaluation], runs: dict[str, TrainResult]
) -> list[tuple[str, str]]:
    """Write the PNG plots; return ``(file name, caption)`` pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(evaluations)
    made: list[tuple[str, str]] = []

    fig, panels = _grid(plt, len(names), 3.2)
    for ax, name in zip(panels, names):
        run = runs[name]
        epochs = range(1, len(run.train_loss) + 1)
        ax.plot(epochs, run.train_loss, label="train")
        ax.plot(epochs, run.val_loss, label="validation")
        ax.axvline(run.best_epoch, color="gray", linestyle="--", linewidth=1, label=f"best epoch {run.best_epoch}")
        ax.set_title(name + (" (overfitting)" if run.overfitting else ""), fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend(fontsize=8)
    _save(plt, fig, out / "curves.png", f"{data.name}: training and validation loss per candidate")
    made.append(
        ("curves.png", "Training and validation loss per epoch; the dashed line marks the restored best epoch.")
    )

    if data.task == Task.regression:
        fig, panels = _grid(plt, len(names), 3.8)
        for ax, name in zip(panels, names):
            ev = evaluations[name]
            pred, true = ev.scores.reshape(-1), ev.target.reshape(-1)
            ax.scatter(true, pred, s=10, alpha=0.6)
            lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
            ax.plot([lo, hi], [lo, hi], color="gray", linestyle="--", linewidth=1)
            ax.set_title(f"{name}  R² {ev.metrics['r2']:.3f}", fontsize=10)
            ax.set_xlabel("true")
            ax.set_ylabel("predicted")
        _save(plt, fig, out / "predicted_vs_true.png", f"{data.name}: predicted vs true (test split)")
        made.append(
            ("predicted_vs_true.png", "Predicted against true targets on the test split; the diagonal is perfect.")
        )
        return made

    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="perfectly calibrated")
    for name in names:
        conf, acc, count = _reliability(data.task, evaluations[name])
        line = ax.plot(conf, acc, linewidth=1, alpha=0.8, label=f"{name} (ECE {evaluations[name].metrics['ece']:.3f})")[
            0
        ]
        total = max(sum(count), 1)
        ax.scatter(conf, acc, s=[12 + 400 * c / total for c in count], color=line.get_color(), alpha=0.7)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy" if data.task == Task.multiclass else "fraction positive")
    ax.set_title(f"{data.name}: reliability diagram (test split, {ECE_BINS} bins)", fontsize=10)
    ax.legend(fontsize=8)
    _save(plt, fig, out / "reliability.png")
    made.append(
        (
            "reliability.png",
            "Reliability diagram: mean confidence against observed accuracy per bin (marker area: share of test predictions in the bin); closer to the diagonal is better calibrated.",
        )
    )

    if data.task == Task.multiclass:
        import torchmetrics.functional.classification as C

        k = data.num_outputs
        fig, panels = _grid(plt, len(names), 4.0)
        for ax, name in zip(panels, names):
            ev = evaluations[name]
            cm = C.multiclass_confusion_matrix(ev.scores, ev.target, k).numpy()
            ax.imshow(cm, cmap="Blues")
            ax.set_title(f"{name}  acc {ev.metrics['accuracy']:.3f}", fontsize=10)
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            ticks = range(k)
            labels = data.class_names if data.class_names and k <= 12 else [str(i) for i in ticks]
            if k <= 12:
                ax.set_xticks(
                    list(ticks), labels, rotation=90 if max(len(str(s)) for s in labels) > 3 else 0, fontsize=7
                )
                ax.set_yticks(list(ticks), labels, fontsize=7)
                for i in range(k):
                    for j in range(k):
                        if cm[i, j]:
                            ax.text(
                                j,
                                i,
                                str(int(cm[i, j])),
                                ha="center",
                                va="center",
                                fontsize=6,
                                color="white" if cm[i, j] > cm.max() / 2 else "black",
                            )
        _save(plt, fig, out / "confusion_matrices.png", f"{data.name}: confusion matrices (test split)")
        made.append(
            ("confusion_matrices.png", "Confusion matrices on the test split (rows: true class, columns: predicted).")
        )
    return made


def _reliability(task: Task, ev: Evaluation) -> tuple[list[float], list[float], list[int]]:
    if task == Task.multiclass:
        conf, pred = ev.scores.max(1)
        hit = (pred == ev.target).float()
    elif task == Task.binary:
        conf, hit = ev.scores, ev.target.float()
    else:
        conf, hit = ev.scores.reshape(-1), ev.target.reshape(-1).float()
    edges = torch.linspace(0, 1, ECE_BINS + 1)
    bins = torch.bucketize(conf, edges[1:-1], right=True)
    xs, ys, counts = [], [], []
    for b in range(ECE_BINS):
        mask = bins == b
        if mask.any():
            xs.append(float(conf[mask].mean()))
            ys.append(float(hit[mask].mean()))
            counts.append(int(mask.sum()))
    return xs, ys, counts


# --------------------------------------------------------------------------- files


def _fmt(v: float, digits: int = 4) -> str:
    return "nan" if math.isnan(v) else f"{v:.{digits}f}"


def _html(
    data: Prepared,
    payload: dict[str, Any],
    plots: list[tuple[str, str]],
    out: Path,
    runs: dict[str, TrainResult],
    win: dict[str, list[str]],
) -> str:
    metrics = metric_names(data.task)
    head = "".join(f"<th>{html.escape(m)}</th>" for m in metrics)
    rows = []
    for r in payload["results"]:
        cells = []
        for m in metrics:
            star = r["loss"] in win.get(m, [])
            cells.append(f'<td class="{"win" if star else ""}">{_fmt(r["metrics"][m])}{" ★" if star else ""}</td>')
        flag = runs[r["loss"]].overfitting
        rows.append(
            f'<tr><th scope="row">{html.escape(r["loss"])}</th>{"".join(cells)}<td>{r["best_epoch"]}</td>'
            f"<td>{html.escape(flag) if flag else 'no'}</td></tr>"
        )
    figures = []
    for file, caption in plots:
        encoded = base64.b64encode((out / file).read_bytes()).decode("ascii")
        figures.append(
            f'<figure><img src="data:image/png;base64,{encoded}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in data.notes)
    direction = " ".join(f"{m} {'↑' if HIGHER_IS_BETTER[m] else '↓'}" for m in metrics)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>losskit compare: {html.escape(payload["dataset"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
th[scope=row], thead th:first-child {{ text-align: left; }}
td.win {{ background: #e3f4e1; font-weight: bold; }}
.rec {{ background: #f3f6fb; border-left: 4px solid #3b6fb6; padding: 0.6em 1em; }}
figure {{ margin: 1.5em 0; }} img {{ max-width: 100%; }}
</style></head><body>
<h1>losskit compare: {html.escape(payload["dataset"])}</h1>
<p>Task <b>{html.escape(payload["task"])}</b>; {payload["n_train"]} / {payload["n_val"]} / {payload["n_test"]}
rows for training / validation / test. Metrics on the test split ({html.escape(direction)}); ★ marks the best value.</p>
<p class="rec" id="recommendation">{html.escape(payload["recommendation"])}</p>
<table id="results"><thead><tr><th>loss</th>{head}<th>best epoch</th><th>overfitting</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<h2>Data</h2><ul>{notes}</ul>
<h2>Plots</h2>
{"".join(figures)}
<p><small>Made by losskit compare. The numbers are in metrics.json beside this page.</small></p>
</body></html>
"""


def write_report(
    out: Path, data: Prepared, evaluations: dict[str, Evaluation], runs: dict[str, TrainResult], text: str
) -> dict[str, Any]:
    """Write ``metrics.json``, the plots and ``report.html`` into ``out`` (an empty folder)."""
    payload: dict[str, Any] = {
        "task": data.task.value,
        "dataset": data.name,
        "n_train": len(data.y_train),
        "n_val": len(data.y_val),
        "n_test": len(data.y_test),
        "results": [
            {
                "loss": name,
                "metrics": {k: (None if math.isnan(v) else v) for k, v in evaluations[name].metrics.items()},
                "history": {"train_loss": runs[name].train_loss, "val_loss": runs[name].val_loss},
                "best_epoch": runs[name].best_epoch,
            }
            for name in evaluations
        ],
        "recommendation": text,
    }
    (out / "metrics.json").write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    plots = _plots(out, data, evaluations, runs)
    shown = {
        **payload,
        "results": [
            {**r, "metrics": {k: (float("nan") if v is None else v) for k, v in r["metrics"].items()}}
            for r in payload["results"]
        ],
    }
    (out / "report.html").write_text(
        _html(data, shown, plots, out, runs, winners(data.task, evaluations)), encoding="utf-8"
    )
    return payload


def print_summary(
    console: Any, data: Prepared, evaluations: dict[str, Evaluation], runs: dict[str, TrainResult], text: str
) -> None:
    """The terminal table: one row per candidate, the best value of each metric starred."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table as RichTable

    metrics = metric_names(data.task)
    win = winners(data.task, evaluations)
    table = RichTable(
        title=f"{escape(data.name)} ({data.task.value}): test metrics, * = best",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1),
    )
    table.add_column("loss", no_wrap=True)
    for m in metrics:
        table.add_column(f"{m}{'↑' if HIGHER_IS_BETTER[m] else '↓'}", justify="right", no_wrap=True)
    table.add_column("epoch", justify="right")
    table.add_column("overfit", no_wrap=True, min_width=7)
    for name, ev in evaluations.items():
        cells = [(_fmt(ev.metrics[m], 3) + ("*" if name in win.get(m, []) else " ")) for m in metrics]
        cells = [f"[bold green]{c}[/]" if c.endswith("*") else c for c in cells]
        table.add_row(name, *cells, str(runs[name].best_epoch), "yes" if runs[name].overfitting else "no")
    console.print(table)
    console.print(
        "winner per metric: "
        + "; ".join(
            f"{m}: {' = '.join(n) if len(n) < len(evaluations) or len(n) == 1 else 'tie (all)'}" for m, n in win.items()
        )
    )
    console.print(f"[bold]recommendation[/]: {escape(text)}")
