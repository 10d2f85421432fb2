"""The report of ``losskit compare``: ``metrics.json``, PNG plots, a self-contained
``report.html`` (the verdict first), and the terminal summary."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

import torch

from losskit.app.compare.metrics import ECE_BINS, METRICS, higher_is_better
from losskit.app.compare.pictures import image_plots, iou_html, print_iou
from losskit.app.compare.run import Run
from losskit.app.compare.verdict import paired_tests
from losskit.tasks import Task

__all__ = ["significant_cells", "write_report", "print_summary"]


def _metric_names(run: Run) -> list[str]:
    return list(METRICS[run.data.task])


def significant_cells(run: Run) -> set[tuple[str, str]]:
    """``(loss, metric)`` pairs where the loss is decided better than the plain loss (the
    verdict's rule: Holm over the candidates of that metric, the metric's default margin)."""
    from losskit.app.compare.metrics import default_margin

    p = run.payload
    trained = [r for r in p["results"] if r["same_as"] is None]
    folds = {
        r["loss"]: [{k: (math.nan if v is None else v) for k, v in f.items()} for f in r["folds"]] for r in trained
    }
    if p["plain"] not in folds or len(folds) < 2:
        return set()
    ratio = _ratio(run)
    cells = set()
    for metric in _metric_names(run):
        margin = p["settings"]["margin"] if metric == p["primary_metric"] else default_margin(metric, run.data.y)
        for t in paired_tests(folds, p["plain"], metric, ratio, margin):
            if t.decision == "better":
                cells.add((t.loss, metric))
    return cells


def _ratio(run: Run) -> float:
    return float(run.payload["test_train_ratio"])


def _diff(v: dict[str, Any]) -> str:
    """``+0.013 [+0.002, +0.024]`` of a test's JSON: one decimal more than the margin has."""
    d, (lo, hi) = v.get("difference"), v.get("ci", [None, None])
    if d is None or lo is None or hi is None:
        return "n/a"
    margin = v.get("margin") or 0.0
    if margin > 0 and max(abs(d), abs(lo), abs(hi)) < 1e4 * margin:
        places = max(0, 1 - math.floor(math.log10(margin)))
        return f"{d:+.{places}f} [{lo:+.{places}f}, {hi:+.{places}f}]"
    return f"{d:+.3g} [{lo:+.3g}, {hi:+.3g}]"


def _pct(level: float | None) -> str:
    return "?" if level is None else f"{100 * level:.4g}%"


def _fmt(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    return f"{v:.{digits}f}" if abs(v) < 1000 else f"{v:.5g}"


# --------------------------------------------------------------------------- plots


def _grid(plt: Any, count: int, height: float) -> tuple[Any, list[Any]]:
    cols = min(max(count, 1), 4)
    rows = math.ceil(max(count, 1) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, height * rows), squeeze=False)
    panels = list(axes.flat)
    for ax in panels[count:]:
        ax.axis("off")
    return fig, panels[:count]


def _save(plt: Any, fig: Any, path: Path, title: str | None = None) -> None:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)


def _band(curves: list[list[float]]) -> tuple[list[int], list[float], list[float]]:
    """Mean and standard deviation per epoch over the folds still training at that epoch."""
    longest = max(len(c) for c in curves)
    xs, mean, std = [], [], []
    for e in range(longest):
        values = torch.tensor([c[e] for c in curves if e < len(c) and math.isfinite(c[e])], dtype=torch.float64)
        if len(values):
            xs.append(e + 1)
            mean.append(float(values.mean()))
            std.append(float(values.std()) if len(values) > 1 else 0.0)
    return xs, mean, std


def _plots(out: Path, run: Run) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = run.payload
    data = run.data
    trained = list(run.histories)
    made: list[tuple[str, str]] = []

    fig, panels = _grid(plt, len(trained), 3.2)
    for ax, name in zip(panels, trained):
        for key, label in (("train_loss", "train"), ("val_loss", "validation")):
            xs, mean, std = _band([getattr(r, key) for r in run.histories[name]])
            line = ax.plot(xs, mean, label=label)[0]
            ax.fill_between(
                xs,
                [m - s for m, s in zip(mean, std)],
                [m + s for m, s in zip(mean, std)],
                color=line.get_color(),
                alpha=0.2,
            )
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend(fontsize=8)
    _save(plt, fig, out / "curves.png", f"{data.name}: loss per epoch, mean ± 1 sd over folds")
    made.append(("curves.png", "Training and validation loss per epoch: mean over folds with a ±1 sd band."))

    tested = [r for r in p["results"] if r.get("versus_plain")]
    if tested:
        metric = p["primary_metric"]
        margin = p["settings"]["margin"]
        colors = {"better": "tab:green", "worse": "tab:red", "equivalent": "tab:blue", "undecided": "tab:gray"}
        fig, ax = plt.subplots(figsize=(7.5, 0.6 * len(tested) + 2.0))
        if margin:
            ax.axvspan(-margin, margin, color="tab:blue", alpha=0.12, label=f"±{margin:.3g}: practically equivalent")
        for i, r in enumerate(tested):
            v = r["versus_plain"]
            if v["difference"] is None or v["ci"][0] is None:
                continue
            ax.errorbar(
                v["difference"],
                i,
                xerr=[[v["difference"] - v["ci"][0]], [v["ci"][1] - v["difference"]]],
                fmt="o",
                color=colors[v["decision"]],
                capsize=4,
                label=v["decision"],
            )
            ax.annotate(
                f"{v['decision']} ({100 * v['level']:.4g}%)",
                (v["ci"][1], i),
                xytext=(6, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
        ax.axvline(0, color="black", linewidth=1)
        ax.set_yticks(range(len(tested)), [r["loss"] for r in tested])
        better = "right" if higher_is_better(metric) else "left"
        ax.set_xlabel(f"{metric}: candidate - {p['plain']} (better to the {better})")
        handles, names = ax.get_legend_handles_labels()
        unique = dict(zip(names, handles))
        ax.legend(unique.values(), unique.keys(), fontsize=7, loc="lower right")
        ax.margins(x=0.25)
        _save(plt, fig, out / "effects.png", f"{data.name}: each loss against {p['plain']}")
        made.append(
            (
                "effects.png",
                f"Mean paired difference in {metric} against {p['plain']}, with the interval that decided (its level "
                "in brackets: Holm over the candidates, corrected for overlapping training sets); the band is the "
                "margin of practical equivalence.",
            )
        )

    if data.task == Task.segmentation:
        return made + image_plots(out, run, plt, _save)
    names = trained + [b["model"] for b in p["baselines"]]
    labels = {b["model"]: b["label"] for b in p["baselines"]}
    if data.task == Task.regression:
        fig, panels = _grid(plt, len(names), 3.8)
        true = data.y.double().reshape(len(data.y), -1)[:, 0]
        for ax, name in zip(panels, names):
            pred = run.oof[name].reshape(len(data.y), -1)[:, 0]
            ax.scatter(true, pred, s=6, alpha=0.5)
            lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
            ax.plot([lo, hi], [lo, hi], color="gray", linestyle="--", linewidth=1)
            ax.set_title(labels.get(name, name), fontsize=10)
            ax.set_xlabel("true")
            ax.set_ylabel("predicted")
        _save(plt, fig, out / "predicted_vs_true.png", f"{data.name}: predicted vs true (out-of-fold, first repeat)")
        made.append(
            (
                "predicted_vs_true.png",
                "Out-of-fold predictions of the first repeat against the true targets; the diagonal is perfect.",
            )
        )
        return made

    fig, panels = _grid(plt, len(names), 3.6)
    for ax, name in zip(panels, names):
        conf, acc, count = _reliability(data.task, run.oof[name], data.y)
        ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1)
        total = max(sum(count), 1)
        ax.bar(conf, acc, width=1 / ECE_BINS, alpha=0.6, edgecolor="black")
        ax.scatter(conf, acc, s=[8 + 300 * c / total for c in count], color="tab:red", alpha=0.7)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(labels.get(name, name), fontsize=10)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy" if data.task == Task.multiclass else "fraction positive")
    _save(
        plt,
        fig,
        out / "reliability.png",
        f"{data.name}: reliability diagrams (out-of-fold, first repeat, {ECE_BINS} bins)",
    )
    made.append(
        (
            "reliability.png",
            "One reliability diagram per model: observed accuracy per confidence bin (dot area: share of predictions); on the diagonal is well calibrated.",
        )
    )

    if data.task == Task.binary:
        from sklearn.metrics import precision_recall_curve, roc_curve

        y = data.y.long().numpy()
        fig, (roc, pr) = plt.subplots(1, 2, figsize=(11, 4.6))
        for name in names:
            s = run.oof[name].numpy()
            fpr, tpr, _ = roc_curve(y, s)
            prec, rec, _ = precision_recall_curve(y, s)
            roc.plot(fpr, tpr, label=labels.get(name, name), linewidth=1)
            pr.plot(rec, prec, label=labels.get(name, name), linewidth=1)
        roc.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1)
        roc.set_xlabel("false positive rate")
        roc.set_ylabel("true positive rate")
        roc.set_title("ROC", fontsize=10)
        pr.axhline(float(y.mean()), color="gray", linestyle="--", linewidth=1, label="chance")
        pr.set_xlabel("recall")
        pr.set_ylabel("precision")
        pr.set_title("precision-recall", fontsize=10)
        roc.legend(fontsize=7)
        pr.legend(fontsize=7)
        _save(plt, fig, out / "roc_pr.png", f"{data.name}: ROC and precision-recall curves (out-of-fold, first repeat)")
        made.append(("roc_pr.png", "ROC and precision-recall curves of the out-of-fold scores of the first repeat."))
    return made + image_plots(out, run, plt, _save)


def _reliability(task: Task, scores: torch.Tensor, target: torch.Tensor) -> tuple[list[float], list[float], list[int]]:
    if task == Task.multiclass:
        conf, pred = scores.max(1)
        hit = (pred == target.long()).double()
    else:
        conf, hit = scores.reshape(-1), target.reshape(-1).double()
    edges = torch.linspace(0, 1, ECE_BINS + 1, dtype=conf.dtype)
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


def _html(run: Run, plots: list[tuple[str, str]], out: Path) -> str:
    p = run.payload
    metrics = _metric_names(run)
    cells_win = significant_cells(run)
    chosen = p["recommendation"]["loss"]
    head = "".join(f"<th>{html.escape(m)} {'↑' if higher_is_better(m) else '↓'}</th>" for m in metrics)
    rows = []
    for r in p["results"]:
        cells = []
        for m in metrics:
            star = (r["loss"], m) in cells_win
            lo, hi = r["ci"][m]
            cells.append(
                f'<td class="{"win" if star else ""}">{_fmt(r["metrics"][m])}{" ★" if star else ""}'
                f"<br><small>[{_fmt(lo)}, {_fmt(hi)}]</small></td>"
            )
        vs = r.get("versus_plain")
        test = (
            f"<b>{vs['decision']}</b> {_diff(vs)}<br><small>{_pct(vs['level'])} interval, P(better) = "
            f"{_fmt(vs['p_better'])}, p = {_fmt(vs['p_holm'])} Holm</small>"
            + "".join(
                f"<br><small>{html.escape(m)}: {o['decision']} {_diff(o)}</small>"
                for m, o in vs.get("other_metrics", {}).items()
            )
            if vs
            else ("same model as " + html.escape(r["same_as"]) if r["same_as"] else "reference")
        )
        rows.append(
            f'<tr class="{"chosen" if r["loss"] == chosen else ""}"><th scope="row">{html.escape(r["loss"])}</th>'
            f"{''.join(cells)}<td>{test}</td><td>{r['history']['hit_max_epochs']}</td></tr>"
        )
    for b in p["baselines"]:
        row_cells = "".join(
            f"<td>{_fmt(b['metrics'][m])}<br><small>[{_fmt(b['ci'][m][0])}, {_fmt(b['ci'][m][1])}]</small></td>"
            for m in metrics
        )
        v = b["versus_recommended"]
        versus = (
            "degenerate: the same prediction everywhere"
            if b.get("degenerate")
            else f"vs {html.escape(chosen)}: <b>{v['decision']}</b> {_diff(v)}"
        )
        rows.append(
            f'<tr class="baseline"><th scope="row">{html.escape(b["label"])} (baseline)</th>{row_cells}'
            f"<td>{versus}</td><td>-</td></tr>"
        )
    figures = []
    for file, caption in plots:
        encoded = base64.b64encode((out / file).read_bytes()).decode("ascii")
        figures.append(
            f'<figure><img src="data:image/png;base64,{encoded}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in p["warnings"])
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in p["notes"])
    s = p["settings"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>losskit compare: {html.escape(p["dataset"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
th[scope=row], thead th:first-child {{ text-align: left; }}
td.win {{ background: #e3f4e1; font-weight: bold; }} td small {{ white-space: nowrap; }}
tr.chosen {{ background: #fff6d5; }} tr.baseline {{ color: #555; font-style: italic; }}
.rec {{ background: #f3f6fb; border-left: 4px solid #3b6fb6; padding: 0.6em 1em; font-size: 1.15em; }}
.warn {{ background: #fff1f0; border-left: 4px solid #c0392b; padding: 0.3em 1em; }}
figure {{ margin: 1.5em 0; }} img {{ max-width: 100%; }}
</style></head><body>
<p class="rec" id="recommendation">{html.escape(p["recommendation"]["text"])}</p>
{f'<ul class="warn" id="warnings">{warnings}</ul>' if warnings else ""}
<h1>losskit compare: {html.escape(p["dataset"])}</h1>
<p>Task <b>{html.escape(p["task"])}</b>, {p["n_rows"]} rows; {s["repeats"]}&times;{s["folds"]}-fold cross-validation
(seed {s["seed"]}), every candidate on the same folds; metrics are means over the test folds with 95% intervals.
The last columns decide each loss against <b>{html.escape(p["plain"])}</b> on <b>{html.escape(p["primary_metric"])}</b>:
<i>better</i>, <i>worse</i>, <i>equivalent</i> (within ±{_fmt(s["margin"], 4)}) or <i>undecided</i>, from the difference's
interval (Bayesian correlated t-test / corrected resampled t-test over the test folds, at the level of the Holm step that
decided); the task's other main metrics are decided the same way below it. ★ marks a value decided better than
{html.escape(p["plain"])}'s; the highlighted row is the recommendation.</p>
<table id="results"><thead><tr><th>model</th>{head}<th>vs {html.escape(p["plain"])}</th><th>folds at --epochs</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
{iou_html(run)}
<h2>Data</h2><ul>{notes}</ul>
<h2>Plots</h2>
{"".join(figures)}
<p><small>Made by losskit compare. The numbers are in metrics.json beside this page.</small></p>
</body></html>
"""


def write_report(out: Path, run: Run) -> dict[str, Any]:
    """Write ``metrics.json``, the plots and ``report.html`` into ``out`` (an empty folder)."""
    (out / "metrics.json").write_text(json.dumps(run.payload, indent=2, allow_nan=False) + "\n")
    plots = _plots(out, run)
    (out / "report.html").write_text(_html(run, plots, out), encoding="utf-8")
    return run.payload


def print_summary(console: Any, run: Run) -> None:
    """The terminal table (at most 80 columns: the main metrics, the deciding one with its
    interval, and each candidate's decision against the plain loss), the warnings and the
    verdict."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table as RichTable

    p = run.payload
    primary = p["primary_metric"]
    second = [m for m in p.get("main_metrics", [primary]) if m != primary][:1]
    chosen = p["recommendation"]["loss"]
    s = p["settings"]
    table = RichTable(
        title=f"{escape(p['dataset'])} ({p['task']}): means over {s['repeats']}x{s['folds']} test folds; "
        f"decided on {primary} (margin ±{s['margin']:.3g})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1),
    )
    table.add_column("model", max_width=20, overflow="fold")
    table.add_column(
        f"{_short(primary)}{'↑' if higher_is_better(primary) else '↓'} [95% CI]", justify="right", no_wrap=True
    )
    for m in second:
        table.add_column(f"{_short(m)}{'↑' if higher_is_better(m) else '↓'}", justify="right", no_wrap=True)
    table.add_column(f"vs {escape(p['plain'])}", max_width=30, overflow="fold")
    for r in p["results"]:
        cells = [f"{_fmt(r['metrics'][primary])} [{_fmt(r['ci'][primary][0])}, {_fmt(r['ci'][primary][1])}]"]
        cells += [_fmt(r["metrics"][m]) for m in second]
        vs = r.get("versus_plain")
        if vs:
            style = {"better": "bold green", "worse": "bold red", "equivalent": "blue"}.get(vs["decision"], "yellow")
            test = f"[{style}]{vs['decision']}[/] {_diff(vs)}"
        else:
            test = "= " + escape(r["same_as"]) if r["same_as"] else "reference"
        name = ("> " if r["loss"] == chosen else "") + escape(r["loss"])
        table.add_row(f"[bold]{name}[/]" if r["loss"] == chosen else name, *cells, test)
    for b in p["baselines"]:
        cells = [f"{_fmt(b['metrics'][primary])} [{_fmt(b['ci'][primary][0])}, {_fmt(b['ci'][primary][1])}]"]
        cells += [_fmt(b["metrics"][m]) for m in second]
        v = b["versus_recommended"]
        what = "baseline, degenerate" if b.get("degenerate") else f"baseline: {v['decision']} vs {chosen}"
        table.add_row(f"[dim]{escape(b['label'])}[/]", *cells, f"[dim]{escape(what)}[/]")
    console.print(table, width=min(console.width, 80))
    print_iou(console, run)
    for w in p["warnings"]:
        console.print(f"[bold yellow]warning[/]: {escape(w)}")
    console.print(f"[bold]verdict[/]: {escape(p['recommendation']['text'])}")


def _short(metric: str) -> str:
    return {"balanced_accuracy": "bal_acc", "average_precision": "avg_prec"}.get(metric, metric)
