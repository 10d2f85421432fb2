"""The comparison itself: every candidate loss (and the baselines) on the same folds of repeated
(stratified) k-fold, fold metrics, intervals, paired tests, the verdict, the warnings.
:func:`compare` is the Python API (``losskit.compare``); the command line calls it too."""

from __future__ import annotations

import contextlib
import copy
import math
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from losskit.app.compare import baselines as base
from losskit.app.compare import candidates as cand
from losskit.app.compare import fits
from losskit.app.compare.data import Encoded, encode, fold_data, make_folds
from losskit.app.compare.metrics import MAIN, METRICS, deciding_metric, default_margin, evaluate, tune_threshold
from losskit.app.compare.stats import mean_ci
from losskit.app.compare.train import PATIENCE, TrainResult, hidden_size, train_candidate
from losskit.app.compare.verdict import ALPHA, MIN_DF, Test, decide, paired_tests
from losskit.app.data import Table
from losskit.errors import LossInputError
from losskit.tasks import Task

if TYPE_CHECKING:
    from losskit.app.compare.engines import Engine

__all__ = ["Run", "compare_table", "to_table", "default_batch_size"]


@dataclass
class Run:
    """Everything a comparison produced; :class:`losskit.app.compare.CompareResult` wraps it."""

    data: Encoded
    payload: dict[str, Any]
    histories: dict[str, list[TrainResult]]
    #: out-of-fold scores of the first repeat (every row scored once), per candidate / baseline
    oof: dict[str, torch.Tensor]
    tests: list[Test]
    model: nn.Module | None = None
    warnings: list[str] = field(default_factory=list)
    #: seconds each task took where it ran (kept out of metrics.json, which must be reproducible)
    task_seconds: list[float] = field(default_factory=list)
    #: where the fits ran: backend, workers, engine, batched, tasks (not in metrics.json either)
    execution: dict[str, Any] = field(default_factory=dict)


def to_table(data: Any, target: Any = None, name: str | None = None) -> Table:
    """A :class:`Table` from a Table, a DataFrame (``target`` = column name(s)), arrays or
    tensors (``data`` = features, ``target`` = labels, or ``data`` = ``(X, y)``), or a torch
    ``Dataset`` of ``(x, y)`` pairs."""
    import numpy as np
    import pandas as pd

    if isinstance(data, Table):
        return data
    if isinstance(data, pd.DataFrame):
        if target is None:
            raise LossInputError("compare: target is missing; expected the name of the DataFrame's target column.")
        wanted = [target] if isinstance(target, str) else list(target)
        missing = [c for c in wanted if c not in data.columns]
        if missing:
            raise LossInputError(
                f"compare: target column(s) {missing} not in the DataFrame; expected one of {list(data.columns)[:20]}."
            )
        y = data[wanted[0]] if len(wanted) == 1 else data[wanted]
        keep = y.notna() if len(wanted) == 1 else y.notna().all(axis=1)
        frame = data[keep].reset_index(drop=True)
        y = frame[wanted[0]] if len(wanted) == 1 else frame[wanted]
        return Table(name or "DataFrame", frame.drop(columns=wanted), y, dropped_rows=int((~keep).sum()))
    if isinstance(data, tuple) and len(data) == 2 and target is None:
        data, target = data
    if isinstance(data, torch.utils.data.Dataset) and target is None:
        pairs = [data[i] for i in range(len(data))]  # type: ignore[arg-type]
        data = torch.stack([torch.as_tensor(p[0]) for p in pairs])
        target = torch.stack([torch.as_tensor(p[1]) for p in pairs])
    if target is None:
        raise LossInputError(
            "compare: no target; expected compare(X, y), compare((X, y)), compare(df, 'col') or a Dataset of (x, y)."
        )
    x = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    t = target.detach().cpu().numpy() if isinstance(target, torch.Tensor) else np.asarray(target)
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    if x.ndim != 2 or len(x) != len(t):
        raise LossInputError(
            f"compare: features of shape {tuple(x.shape)} and target of shape {tuple(t.shape)}; expected "
            "(N, features) and (N,) or (N, outputs) with the same N."
        )
    features = pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])
    y = pd.Series(t, name="target") if t.ndim == 1 else pd.DataFrame(t, columns=[f"y{i}" for i in range(t.shape[1])])
    return Table(name or "arrays", features, y)


def _versions() -> dict[str, str]:
    import sklearn

    import losskit

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "losskit": losskit.__version__,
        "scikit-learn": sklearn.__version__,
    }


def _clean(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


#: the range of each bounded metric: an interval is clipped to it (R² and unbounded errors are not)
_RANGE = {
    **dict.fromkeys(
        ("roc_auc", "average_precision", "f1", "brier", "ece", "macro_f1", "micro_f1", "macro_roc_auc"), (0.0, 1.0)
    ),
    **dict.fromkeys(("balanced_accuracy", "accuracy"), (0.0, 1.0)),
    **dict.fromkeys(("log_loss", "mae", "rmse"), (0.0, math.inf)),
}


def _summary(
    folds: list[dict[str, float]], ratio: float
) -> tuple[dict[str, float | None], dict[str, list[float | None]]]:
    keys = list(folds[0]) if folds else []
    means, cis = {}, {}
    for k in keys:
        values = [f[k] for f in folds if math.isfinite(f[k])]
        means[k] = _clean(sum(values) / len(values)) if values else None
        lo, hi = mean_ci([f[k] for f in folds], ratio)
        low_bound, high_bound = _RANGE.get(k.split("[")[0], (-math.inf, math.inf))
        cis[k] = [_clean(max(lo, low_bound)), _clean(min(hi, high_bound))]
    return means, cis


def _mean_curve(curves: list[list[float]]) -> list[float | None]:
    longest = max((len(c) for c in curves), default=0)
    out = []
    for e in range(longest):
        values = [c[e] for c in curves if e < len(c) and math.isfinite(c[e])]
        out.append(_clean(sum(values) / len(values)) if values else None)
    return out


def default_batch_size(rows: int) -> int:
    """64, or for large tables the power of two that keeps an epoch near 200 steps (at most 4096):
    a 200,000-row table trains at batch 1024 instead of 2,500 steps an epoch."""
    if rows <= 64 * 200:
        return 64
    return int(min(4096, 2 ** math.ceil(math.log2(rows / 200))))


#: repeats of k-fold the adaptive design may grow to (the default of ``max_repeats``)
MAX_REPEATS = 6


def compare_table(
    table: Table,
    *,
    task: str = "auto",
    losses: str | Sequence[str | nn.Module] | None = None,
    model: Callable[..., nn.Module] | None = None,
    optimizer: Callable[..., torch.optim.Optimizer] | None = None,
    folds: int = 5,
    repeats: int = 2,
    max_repeats: int | None = None,
    budget: float | None = None,
    margin: float | None = None,
    epochs: int = 100,
    batch_size: int | None = None,
    lr: float = 1e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    baselines: bool = True,
    metric: str | None = None,
    save_model: bool = False,
    jobs: int | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    gpus_per_fit: float = 0,
    console: Any = None,
    progress: bool = False,
) -> Run:
    """Run the comparison on ``table`` (see :func:`losskit.app.compare.compare`)."""
    import time

    from losskit.app.compare import _device

    started = time.perf_counter()
    most = max(repeats, MAX_REPEATS) if max_repeats is None else max_repeats
    _check_design(folds, repeats, most, epochs, batch_size, lr, budget, margin)
    _check_execution(jobs, backend, ray_address, gpus_per_fit)
    dev = device if isinstance(device, torch.device) else _device(device)
    data = encode(table, task=task)
    notes = list(data.notes)
    if metric is None:
        primary, why = deciding_metric(data.task, data.y, data.num_outputs)
        if why:
            notes.append(why + ".")
    else:
        primary = metric
    if primary not in METRICS[data.task]:
        raise LossInputError(
            f"--metric {primary!r} is not a {data.task.value} metric; expected one of {', '.join(METRICS[data.task])}."
        )
    the_margin = default_margin(primary, data.y) if margin is None else float(margin)
    others = [m for m in MAIN[data.task] if m != primary]
    margins = {m: default_margin(m, data.y) for m in others}
    custom: dict[str, nn.Module] = {}
    names: list[str] = []
    if losses is not None and not isinstance(losses, str):
        for item in losses:
            if isinstance(item, nn.Module):
                label = type(item).__name__
                while label in custom or label in names:
                    label += "'"
                custom[label] = item
                names.append(label)
            else:
                names.extend(cand.parse_losses(data.task, str(item)))
        if len(set(names)) != len(names) or not names:
            raise LossInputError(f"losses {names!r}: expected each candidate once, at least one.")
    else:
        names = cand.parse_losses(data.task, losses)
    plain = cand.plain(data.task) if cand.plain(data.task) in names else names[0]
    aliases = {
        n: s
        for n in names
        if n not in custom and (s := cand.same_model(data.task, n, data.y, data.num_outputs)) and s in names
    }
    trained = [n for n in names if n not in aliases]
    splits = make_folds(data, folds, most, seed)
    if batch_size is None:
        batch_size = default_batch_size(len(splits[0].fit))
    first = fold_data(data, splits[0])
    d_in = int(first.x_fit[0].numel())
    d_out = data.num_outputs
    settings = fits.Settings(data.task, d_in, d_out, epochs, batch_size, lr, seed, str(dev), model, optimizer)
    baseline_names = list(base.BASELINES) if baselines else []
    unbatchable = None
    if model is not None or optimizer is not None:
        from losskit.app.compare.batched import batch_reason

        with fits.single_threaded():
            unbatchable = batch_reason(settings.initial(0), first.x_fit[:4], optimizer)
    if unbatchable is not None:
        notes.append(f"your model trains one fit at a time (not stacked): {unbatchable}.")
    labels = [f"repeat {s.repeat + 1}, fold {s.fold + 1}" for s in splits]
    fit_rows = [len(s.fit) for s in splits]
    baseline_folds = list(range(repeats * folds)) if baseline_names else []

    def tasks_for(ks: list[int]) -> list[fits.FitTask]:
        return fits.plan(
            ks,
            lambda k: [fits.Member(k, n) for n in trained],
            fit_rows,
            labels,
            settings,
            baseline_names,
            baseline_folds,
            unbatchable,
        )

    initial = tasks_for(list(range(repeats * folds)))
    engine = _engine(backend, settings, jobs, ray_address, gpus_per_fit, initial, fit_rows)
    execution = {
        "backend": backend,
        "workers": engine.workers,
        "engine": engine.describe(),
        "batched": unbatchable is None,
    }
    if console is not None:
        from rich.markup import escape

        h = hidden_size(d_in, d_out)
        shape = f"MLP {d_in}-{h}-{h}-{d_out}" if model is None else "your model"
        grow = f", more repeats (up to {most}) while a candidate is undecided" if most > repeats else ""
        console.print(
            f"[bold]losskit compare[/]: {escape(data.name)}, task {data.task.value}, {len(data.y)} rows, {d_in} features; "
            f"{shape}, {'Adam lr=' + format(lr, 'g') if optimizer is None else 'your optimizer'}, batch {batch_size}, up to "
            f"{epochs} epochs with early stopping on a validation split of each training fold; {repeats}x{folds}-fold "
            f"cross-validation{grow}; deciding on {primary} (margin ±{the_margin:.3g}); candidates: {', '.join(names)}"
            + (f"; baselines: {', '.join(base.label(b, data.task) for b in baseline_names)}" if baseline_names else "")
            + f"; fits on {escape(engine.describe())}"
        )
        for note in notes:
            console.print(f"  [dim]- {escape(note)}[/]")
        for alias, same in aliases.items():
            console.print(
                f"  [dim]- {escape(alias)} is the same model as {escape(same)} here (neutral weights): not trained twice.[/]"
            )

    fold_scores: dict[str, list[dict[str, float]]] = {n: [{} for _ in splits] for n in trained + baseline_names}
    histories: dict[str, list[TrainResult]] = {n: [TrainResult(n) for _ in splits] for n in trained}
    oof: dict[str, torch.Tensor] = {}
    constant: dict[str, int] = dict.fromkeys(baseline_names, 0)
    label_names = data.class_names if data.task == Task.multilabel else None

    def score(outcome: fits.TaskOutcome) -> None:
        """Metrics of each fit on its test fold (in this process, while the workers go on)."""
        for m in outcome.members:
            split = splits[m.fold]
            scores = torch.from_numpy(np.asarray(m.test_scores))
            threshold = 0.5
            if data.task == Task.binary and m.val_scores is not None:
                threshold = tune_threshold(torch.from_numpy(np.asarray(m.val_scores)), data.y[split.val])
            ev = evaluate(data.task, scores, data.y[split.test], d_out, threshold, label_names)
            fold_scores[m.name][m.fold] = ev.metrics
            if m.history is not None:
                histories[m.name][m.fold] = m.history
            elif m.name in constant and bool((scores == scores[:1]).all()):
                constant[m.name] += 1
            if split.repeat == 0:
                _store(oof, m.name, scores, split.test, len(data.y))

    runner = _Runner(engine, splits, data, first, trained, custom, settings, score, console, progress)
    done = repeats
    stop_reason = None
    with runner:
        runner.run(initial)
        while True:
            used = done * folds
            ratio = _ratio(splits[:used])
            candidate_folds = {n: fold_scores[n][:used] for n in trained}
            tests = paired_tests(candidate_folds, plain, primary, ratio, the_margin, folds)
            undecided = [t for t in tests if t.decision == "undecided" and t.more_repeats is not None]
            if done >= most or not undecided or (used - 1 < MIN_DF and done >= most):
                if done >= most and undecided and most > repeats:
                    stop_reason = f"stopped at --max-repeats {most} with {len(undecided)} candidate(s) undecided"
                break
            step = min(*(t.more_repeats or 1 for t in undecided), most - done)
            if budget is not None:
                spent = time.perf_counter() - started
                per_repeat = spent / done
                if spent + per_repeat * step > budget:
                    stop_reason = f"stopped adding repeats at the --budget of {budget:g} s ({spent:.0f} s spent)"
                    break
            runner.run(tasks_for(list(range(used, used + step * folds))))
            done += step
    used = done * folds
    splits_used = splits[:used]
    ratio = _ratio(splits_used)
    fold_scores = {n: f[:used] if n in trained else f[: len(baseline_folds)] for n, f in fold_scores.items()}
    histories = {n: h[:used] for n, h in histories.items()}
    candidate_folds = {n: fold_scores[n] for n in trained}
    tests = paired_tests(candidate_folds, plain, primary, ratio, the_margin, folds)
    other_tests = {m: paired_tests(candidate_folds, plain, m, ratio, margins[m], folds) for m in others}
    means_primary = {n: _mean([f[primary] for f in fold_scores[n]]) for n in fold_scores}
    design = f"{done}x{folds}"
    recommendation = decide(
        tests, plain, primary, means_primary, design, margin=the_margin, folds_per_repeat=folds, others=other_tests
    )
    chosen = recommendation["loss"]
    warnings = list(data.warnings)
    if used - 1 < MIN_DF:
        warnings.append(
            f"{used} test folds ({design}) give {used - 1} degrees of freedom: no decision is possible at this design "
            f"(at least {MIN_DF} are needed); use more folds, e.g. --folds 5 --repeats 2."
        )
    for name in trained:
        hit = sum(_still_improving(r) for r in histories[name])
        if hit:
            warnings.append(
                f"{name}: training hit --epochs {epochs} in {hit} of {used} folds while the validation loss was still "
                "falling; pass a larger --epochs."
            )
    if stop_reason:
        notes.append(stop_reason + ".")
    baseline_rows = _baselines(
        baseline_names, data, fold_scores, chosen, primary, ratio_of(splits, len(baseline_folds)),
        the_margin, constant, warnings, notes, means_primary,
    )  # fmt: skip
    by_loss = {t.loss: t for t in tests}
    results = []
    for name in names:
        source = aliases.get(name, name)
        means, cis = _summary(fold_scores[source], ratio)
        runs = histories[source]
        entry: dict[str, Any] = {
            "loss": name,
            "metrics": means,
            "history": {
                "train_loss": _mean_curve([r.train_loss for r in runs]),
                "val_loss": _mean_curve([r.val_loss for r in runs]),
                "best_epoch": [r.best_epoch for r in runs],
                "hit_max_epochs": sum(r.hit_max_epochs for r in runs),
                "overfitting": [r.overfitting for r in runs],
            },
            "folds": [{k: _clean(v) for k, v in f.items()} for f in fold_scores[source]],
            "ci": cis,
            "same_as": aliases.get(name),
        }
        if source in by_loss and name not in aliases:
            entry["versus_plain"] = {
                **_test_json(by_loss[source]),
                "other_metrics": {
                    m: _test_json(next(t for t in other_tests[m] if t.loss == source), short=True) for m in others
                },
            }
        results.append(entry)
    recommendation = {k: (_clean(v) if isinstance(v, float) else v) for k, v in recommendation.items()}
    payload: dict[str, Any] = {
        "task": data.task.value,
        "dataset": data.name,
        "n_rows": len(data.y),
        "primary_metric": primary,
        "main_metrics": [primary, *others],
        "plain": plain,
        "test_train_ratio": ratio,
        "results": results,
        "baselines": baseline_rows,
        "recommendation": recommendation,
        "warnings": warnings,
        "notes": notes,
        "settings": {
            "task": task,
            "losses": names,
            "model": "mlp" if model is None else "custom",
            "optimizer": "adam" if optimizer is None else "custom",
            "folds": folds,
            "repeats": done,
            "initial_repeats": repeats,
            "max_repeats": most,
            "budget": budget,
            "validation": 0.2,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
            "device": str(dev),
            "baselines": baselines,
            "metric": primary,
            "margin": the_margin,
            "alpha": ALPHA,
        },
        "versions": _versions(),
    }
    execution["tasks"] = runner.tasks
    out = Run(data, payload, histories, oof, tests, warnings=warnings, task_seconds=runner.seconds, execution=execution)
    if save_model:
        with fits.single_threaded():
            out.model = _refit(data, chosen, custom, settings)
    return out


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _ratio(splits: Sequence[Any]) -> float:
    """``n_test / n_train`` averaged over ``splits`` (the Nadeau–Bengio correction's ratio)."""
    n_test = sum(len(f.test) for f in splits) / len(splits)
    n_train = sum(len(f.fit) + len(f.val) for f in splits) / len(splits)
    return n_test / n_train


def ratio_of(splits: Sequence[Any], count: int) -> float:
    return _ratio(splits[: max(count, 1)])


def _still_improving(run: TrainResult) -> bool:
    """Training ran all its epochs while the validation loss was still falling: over its last
    ``PATIENCE`` epochs (all but the first, for shorter runs) the best validation loss improved
    by more than 0.1 % an epoch. A loss that only inched down is not worth more epochs."""
    if not run.hit_max_epochs:
        return False
    finite = [v for v in run.val_loss if math.isfinite(v)]
    if len(finite) < 2:
        return len(finite) == 1
    window = min(PATIENCE, len(finite) - 1)
    before, after = min(finite[:-window]), min(finite)
    return after < before - 0.001 * window * abs(before)


def _test_json(t: Test, short: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "metric": t.metric,
        "difference": _clean(t.difference),
        "ci": [_clean(t.ci[0]), _clean(t.ci[1])],
        "level": t.level,
        "decision": t.decision,
        "margin": t.margin,
    }
    if short:
        return out
    return {
        **out,
        "p_value": _clean(t.p_value),
        "p_holm": _clean(t.p_holm),
        "significant": t.significant,
        "p_better": _clean(t.p_better),
        "p_equivalent": _clean(t.p_equivalent),
        "p_worse": _clean(t.p_worse),
        "more_repeats": t.more_repeats,
    }


def _baselines(
    baseline_names: list[str],
    data: Encoded,
    fold_scores: dict[str, list[dict[str, float]]],
    chosen: str,
    primary: str,
    ratio: float,
    margin: float,
    constant: dict[str, int],
    warnings: list[str],
    notes: list[str],
    means: dict[str, float],
) -> list[dict[str, Any]]:
    """The baselines' rows, each against the recommended loss on the folds both ran (Holm over
    the baselines): a warning when a baseline is decided better than the network, a note when
    the network is decided better than every baseline, and a degenerate baseline (the same
    prediction for every row of every test fold) flagged and left out."""
    from losskit.app.compare.verdict import paired_tests as decide_pairs

    rows: list[dict[str, Any]] = []
    if not baseline_names:
        return rows
    count = len(fold_scores[baseline_names[0]])
    degenerate = [b for b in baseline_names if constant[b] == count]
    live = [b for b in baseline_names if b not in degenerate]
    network = fold_scores[chosen][:count]
    # each baseline's "difference" is baseline - network; a baseline "better" beats the network
    tests = {
        t.loss: t
        for t in decide_pairs({chosen: network, **{b: fold_scores[b] for b in live}}, chosen, primary, ratio, margin)
    }
    beaten = []
    for b in baseline_names:
        label = base.label(b, data.task)
        row_means, cis = _summary(fold_scores[b], ratio)
        row: dict[str, Any] = {
            "model": b,
            "label": label,
            "metrics": row_means,
            "folds": [{k: _clean(v) for k, v in f.items()} for f in fold_scores[b]],
            "ci": cis,
            "degenerate": b in degenerate,
        }
        if b in degenerate:
            warnings.append(
                f"the {label} baseline predicted the same value for every row of every test fold ({primary} "
                f"{means[b]:.4g}): it is degenerate here and left out of the comparison."
            )
            row["versus_recommended"] = {
                "difference": None,
                "ci": [None, None],
                "p_value": None,
                "decision": "degenerate",
            }
        else:
            t = tests[b]
            row["versus_recommended"] = {**_test_json(t), "versus": chosen}
            if t.decision == "better":
                warnings.append(
                    f"the {label} baseline beats the network ({chosen}) on {primary}: {means[b]:.4g} vs "
                    f"{means[chosen]:.4g} (difference {t.difference:+.3g} [{t.ci[0]:+.3g}, {t.ci[1]:+.3g}]); a simpler model may do."
                )
            elif t.decision == "worse":
                beaten.append(label)
        rows.append(row)
    if live and len(beaten) == len(live):
        notes.append(
            f"the network ({chosen}) beats the {_and(beaten)} baseline{'s' if len(beaten) > 1 else ''} on {primary}."
        )
    return rows


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _check_design(
    folds: int,
    repeats: int,
    max_repeats: int,
    epochs: int,
    batch_size: int | None,
    lr: float,
    budget: float | None,
    margin: float | None,
) -> None:
    bad = []
    if not (isinstance(folds, int) and folds >= 2):
        bad.append(f"--folds {folds!r}: expected an integer >= 2 (the k of k-fold)")
    if not (isinstance(repeats, int) and repeats >= 1):
        bad.append(f"--repeats {repeats!r}: expected an integer >= 1")
    elif not (isinstance(max_repeats, int) and max_repeats >= repeats):
        bad.append(f"--max-repeats {max_repeats!r}: expected an integer >= --repeats ({repeats})")
    if not (isinstance(epochs, int) and epochs >= 1):
        bad.append(f"--epochs {epochs!r}: expected an integer >= 1")
    if batch_size is not None and not (isinstance(batch_size, int) and batch_size >= 1):
        bad.append(f"--batch-size {batch_size!r}: expected an integer >= 1")
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        bad.append(f"--lr {lr!r}: expected a number > 0")
    if budget is not None and not (isinstance(budget, (int, float)) and budget > 0 and math.isfinite(budget)):
        bad.append(f"--budget {budget!r}: expected a number of seconds > 0")
    if margin is not None and not (isinstance(margin, (int, float)) and margin >= 0 and math.isfinite(margin)):
        bad.append(f"--margin {margin!r}: expected a number >= 0 in the metric's units (e.g. 0.01)")
    if bad:
        raise LossInputError("; ".join(bad) + ". Fix the option(s) and run again.")


def _store(oof: dict[str, torch.Tensor], name: str, scores: torch.Tensor, rows: Any, n: int) -> None:
    if name not in oof:
        oof[name] = torch.full((n, *scores.shape[1:]), math.nan, dtype=torch.float64)
    oof[name][torch.as_tensor(rows)] = scores.double()


def _refit(data: Encoded, name: str, custom: dict[str, nn.Module], settings: fits.Settings) -> nn.Module:
    """The recommended loss trained on all rows (20 % held out for early stopping)."""
    from losskit.app.compare.data import Fold

    split = make_folds(data, 5, 1, settings.seed)[0]
    everything = Fold(0, 0, np.sort(np.concatenate([split.fit, split.test])), split.val, split.val)
    fd = fold_data(data, everything)
    loss_fn = copy.deepcopy(custom[name]) if name in custom else cand.build(data.task, name, fd.y_fit, data.num_outputs)
    initial = settings.build(settings.seed)
    run = train_candidate(
        name,
        data.task,
        fd,
        initial,
        loss_fn,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        seed=settings.seed,
        device=torch.device(settings.device),
        optimizer=settings.optimizer,
    )
    net = copy.deepcopy(initial)
    net.load_state_dict(run.state)
    return net.cpu()


def _check_execution(jobs: int | None, backend: str, ray_address: str | None, gpus_per_fit: float) -> None:
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise LossInputError(
            f"--jobs {jobs!r}: expected a positive number of worker processes (default: one per core). Pass e.g. --jobs 2."
        )
    if backend not in ("local", "ray"):
        raise LossInputError(f"--backend {backend!r}: expected 'local' (this machine) or 'ray' (a Ray cluster).")
    if ray_address is not None and backend != "ray":
        raise LossInputError(
            f"--ray-address {ray_address!r} is given with --backend {backend}; expected --backend ray."
        )
    if not (isinstance(gpus_per_fit, (int, float)) and gpus_per_fit >= 0 and math.isfinite(gpus_per_fit)):
        raise LossInputError(f"--gpus-per-fit {gpus_per_fit!r}: expected a number of GPUs >= 0 (e.g. 1 or 0.5).")
    if gpus_per_fit and backend != "ray":
        raise LossInputError(
            f"--gpus-per-fit {gpus_per_fit:g} needs --backend ray (Ray hands out the GPUs); with --backend local and "
            "--device cuda, the workers are spread over the visible GPUs by themselves."
        )


#: below this much work (model parameters x training rows x epochs, summed over fits) a
#: comparison runs in this process: starting worker processes (a second or more each, importing
#: torch) would cost more than they save
IN_PROCESS_WORK = 3e9


def _engine(
    backend: str,
    settings: fits.Settings,
    jobs: int | None,
    ray_address: str | None,
    gpus_per_fit: float,
    tasks: list[fits.FitTask],
    fit_rows: list[int],
) -> Engine:
    from losskit.app.compare.engines import InProcess, cpu_count, make_engine

    workers = jobs or cpu_count()
    if backend == "local" and jobs is None:
        params = sum(p.numel() for p in settings.initial(0).parameters())
        work = 0.0
        for t in tasks:
            for k in t.folds:
                fits_of_fold = sum(m.fold == k for m in t.members) if t.members else 1
                work += fits_of_fold * params * fit_rows[k] * settings.epochs
        if workers == 1 or work < IN_PROCESS_WORK:
            return InProcess(settings)
    return make_engine(backend, settings, workers, ray_address=ray_address, gpus_per_fit=gpus_per_fit)


class _Runner:
    """Prepares each fold once (features standardized on its training rows), hands the tasks of
    a stage to the engine as soon as their folds are ready, passes each outcome to ``on_outcome``
    as it arrives, with one progress bar over every stage."""

    def __init__(
        self,
        engine: Engine,
        splits: list[Any],
        data: Encoded,
        first: Any,
        trained: list[str],
        custom: dict[str, nn.Module],
        settings: fits.Settings,
        on_outcome: Callable[[fits.TaskOutcome], None],
        console: Any,
        progress: bool,
    ) -> None:
        self.engine, self.splits, self.data, self.first = engine, splits, data, first
        self.trained, self.custom, self.settings, self.on_outcome = trained, custom, settings, on_outcome
        self.console, self.progress = console, progress
        self.losses: dict[int, dict[str, nn.Module]] = {}
        self.seconds: list[float] = []
        self.tasks = 0
        self.total = 0
        self.done = 0
        self.next_index = 0
        self.bar: Any = None
        self.job: Any = None
        self.stack = contextlib.ExitStack()

    def __enter__(self) -> _Runner:
        if self.console is not None and self.progress:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = self.stack.enter_context(
                Progress(
                    TextColumn("{task.description:<44}"),
                    BarColumn(bar_width=24),
                    MofNCompleteColumn(),
                    TextColumn("fits"),
                    TimeElapsedColumn(),
                    TimeRemainingColumn(),
                    console=self.console,
                    transient=True,
                )
            )
            self.job = self.bar.add_task("preparing folds", total=0)
        self.stack.enter_context(fits.single_threaded())
        self.stack.enter_context(self.engine)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stack.__exit__(*exc)

    def _prepare(self, k: int) -> None:
        if k in self.losses:
            return
        fd = self.first if k == 0 else fold_data(self.data, self.splits[k])
        self.engine.put(k, fits.FoldArrays.of(fd))
        # fitted options (class weights, Huber's delta) come from the fold's own training targets
        self.losses[k] = {
            n: copy.deepcopy(self.custom[n])
            if n in self.custom
            else cand.build(self.data.task, n, fd.y_fit, self.settings.d_out)
            for n in self.trained
        }

    def run(self, tasks: list[fits.FitTask]) -> None:
        """Run ``tasks`` (one stage) to the end."""
        self.total += sum(t.fits for t in tasks)
        if self.bar is not None:
            self.bar.update(self.job, total=self.total)
        base_index = self.next_index
        self.next_index += len(tasks)
        self.tasks += len(tasks)
        last_fold = [max(t.folds) for t in tasks]
        for k in sorted({k for t in tasks for k in t.folds}):
            self._prepare(k)
            for i, t in enumerate(tasks):
                if last_fold[i] == k:
                    members = tuple(replace(m, loss=self.losses[m.fold][m.candidate]) for m in t.members)
                    self.engine.submit(base_index + i, replace(t, members=members))
        for i, outcome in self.engine.outcomes():
            self.seconds.append(outcome.seconds)
            self.on_outcome(outcome)
            task = tasks[i - base_index]
            self.done += task.fits
            if self.bar is not None:
                self.bar.update(self.job, advance=task.fits, description=f"{self.done} of {self.total} fits done")
            if self.console is not None and self.progress and not self.console.is_terminal:
                self.console.print(f"  {task.label} done in {outcome.seconds:.1f} s")
