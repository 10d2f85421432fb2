"""The comparison itself: every candidate loss (and the baselines) on the same folds of repeated
(stratified) k-fold, fold metrics, intervals, paired tests, the verdict, the warnings.
:func:`compare` is the Python API (``losskit.compare``); the command line calls it too."""

from __future__ import annotations

import copy
import inspect
import math
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from losskit.app.compare import baselines as base
from losskit.app.compare import candidates as cand
from losskit.app.compare.data import Encoded, encode, fold_data, make_folds
from losskit.app.compare.metrics import METRICS, PRIMARY, evaluate, higher_is_better, tune_threshold
from losskit.app.compare.stats import corrected_t_test, mean_ci
from losskit.app.compare.train import TrainResult, hidden_size, make_model, predict, train_candidate
from losskit.app.compare.verdict import ALPHA, Test, decide, paired_tests
from losskit.app.data import Table
from losskit.errors import LossInputError
from losskit.tasks import Task

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
    #: wall-clock seconds per fold (kept out of metrics.json, which must be reproducible)
    fold_seconds: list[float] = field(default_factory=list)


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


def _factory(model: Callable[..., nn.Module] | None, d_in: int, d_out: int) -> Callable[[int], nn.Module]:
    """A function of the seed giving the initial model (the same for every candidate of a fold)."""
    if model is None:
        return lambda seed: make_model(d_in, d_out, seed)
    takes_shape = len(inspect.signature(model).parameters) >= 2

    def build(seed: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return model(d_in, d_out) if takes_shape else model()

    return build


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


def compare_table(
    table: Table,
    *,
    task: str = "auto",
    losses: str | Sequence[str | nn.Module] | None = None,
    model: Callable[..., nn.Module] | None = None,
    optimizer: Callable[..., torch.optim.Optimizer] | None = None,
    folds: int = 3,
    repeats: int = 2,
    epochs: int = 100,
    batch_size: int | None = None,
    lr: float = 1e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    baselines: bool = True,
    metric: str | None = None,
    save_model: bool = False,
    console: Any = None,
    progress: bool = False,
) -> Run:
    """Run the comparison on ``table`` (see :func:`losskit.app.compare.compare`)."""
    from losskit.app.compare import _device

    if folds < 2 or repeats < 1 or epochs < 1 or (batch_size is not None and batch_size < 1) or not lr > 0:
        raise LossInputError(
            f"compare: folds={folds}, repeats={repeats}, epochs={epochs}, batch_size={batch_size}, lr={lr}; "
            "expected folds >= 2, repeats, epochs and batch_size >= 1, lr > 0."
        )
    dev = device if isinstance(device, torch.device) else _device(device)
    data = encode(table, task=task)
    primary = metric or PRIMARY[data.task]
    if primary not in METRICS[data.task]:
        raise LossInputError(
            f"--metric {primary!r} is not a {data.task.value} metric; expected one of {', '.join(METRICS[data.task])}."
        )
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
    splits = make_folds(data, folds, repeats, seed)
    if batch_size is None:
        batch_size = default_batch_size(len(splits[0].fit))
    n_test = sum(len(f.test) for f in splits) / len(splits)
    n_train = sum(len(f.fit) + len(f.val) for f in splits) / len(splits)
    ratio = n_test / n_train
    d_in = len(fold_data(data, splits[0]).x_fit[0])
    d_out = data.num_outputs
    initial_for = _factory(model, d_in, d_out)
    baseline_names = list(base.BASELINES) if baselines else []
    h = hidden_size(d_in, d_out)
    if console is not None:
        from rich.markup import escape

        shape = f"MLP {d_in}-{h}-{h}-{d_out}" if model is None else "your model"
        console.print(
            f"[bold]losskit compare[/]: {escape(data.name)}, task {data.task.value}, {len(data.y)} rows, {d_in} features; "
            f"{shape}, {'Adam lr=' + format(lr, 'g') if optimizer is None else 'your optimizer'}, batch {batch_size}, up to "
            f"{epochs} epochs with early stopping on a validation split of each training fold; {repeats}x{folds}-fold "
            f"cross-validation; candidates: {', '.join(names)}"
            + (f"; baselines: {', '.join(base.label(b, data.task) for b in baseline_names)}" if baseline_names else "")
        )
        for note in data.notes:
            console.print(f"  [dim]- {escape(note)}[/]")
        for alias, same in aliases.items():
            console.print(
                f"  [dim]- {escape(alias)} is the same model as {escape(same)} here (neutral weights): not trained twice.[/]"
            )

    fold_seconds: list[float] = []
    fold_scores: dict[str, list[dict[str, float]]] = {n: [] for n in trained + baseline_names}
    histories: dict[str, list[TrainResult]] = {n: [] for n in trained}
    oof: dict[str, torch.Tensor] = {}
    label_names = data.class_names if data.task == Task.multilabel else None
    bars: Any = nullcontext()
    if console is not None and progress:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        bars = Progress(
            TextColumn("{task.description:<44}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("fits"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
    with bars as bar, _single_threaded():
        job = bar.add_task("", total=len(splits) * (len(trained) + len(baseline_names))) if bar is not None else None
        for k, split in enumerate(splits):
            fold_start = time.perf_counter()
            fd = fold_data(data, split)
            initial = initial_for(seed * 1000 + k)
            where = f"repeat {split.repeat + 1}, fold {split.fold + 1}"
            for name in trained:
                loss_fn = (
                    copy.deepcopy(custom[name]) if name in custom else cand.build(data.task, name, fd.y_fit, d_out)
                )
                if bar is not None:
                    bar.update(job, description=f"{where}: {name}")
                run = train_candidate(
                    name, data.task, fd, initial, loss_fn, epochs=epochs, batch_size=batch_size, lr=lr,
                    seed=seed * 1000 + k, device=dev, optimizer=optimizer,
                )  # fmt: skip
                net = copy.deepcopy(initial)
                net.load_state_dict(run.state)
                net.to(dev)
                threshold = (
                    tune_threshold(predict(data.task, net, fd.x_val, fd), fd.y_val) if data.task == Task.binary else 0.5
                )
                scores = predict(data.task, net, fd.x_test, fd)
                ev = evaluate(data.task, scores, data.y[split.test], d_out, threshold, label_names)
                fold_scores[name].append(ev.metrics)
                histories[name].append(run)
                if split.repeat == 0:
                    _store(oof, name, scores, split.test, len(data.y))
                if bar is not None:
                    bar.advance(job)
            for name in baseline_names:
                if bar is not None:
                    bar.update(job, description=f"{where}: {base.label(name, data.task)}")
                val_scores, scores = base.fit_predict(name, data.task, fd, seed, d_out)
                threshold = tune_threshold(val_scores, fd.y_val) if data.task == Task.binary else 0.5
                ev = evaluate(data.task, scores, data.y[split.test], d_out, threshold, label_names)
                fold_scores[name].append(ev.metrics)
                if split.repeat == 0:
                    _store(oof, name, scores, split.test, len(data.y))
                if bar is not None:
                    bar.advance(job)
            fold_seconds.append(time.perf_counter() - fold_start)
            if console is not None and progress and not console.is_terminal:  # a log file gets a line per fold
                console.print(f"  fold {k + 1}/{len(splits)} done in {fold_seconds[-1]:.1f} s")

    candidate_folds = {n: fold_scores[n] for n in trained}
    tests = paired_tests(candidate_folds, plain, primary, ratio)
    means_primary = {n: sum(f[primary] for f in fold_scores[n]) / len(splits) for n in fold_scores}
    recommendation = decide(tests, plain, primary, means_primary, f"{repeats}x{folds}")
    chosen = recommendation["loss"]
    warnings = list(data.warnings)
    for name in trained:
        hit = sum(r.hit_max_epochs for r in histories[name])
        if hit:
            warnings.append(
                f"{name}: training hit --epochs {epochs} in {hit} of {len(splits)} folds (early stopping did not "
                "trigger); pass a larger --epochs."
            )
    baseline_rows = []
    for b in baseline_names:
        c = corrected_t_test([f[primary] for f in fold_scores[b]], [f[primary] for f in fold_scores[chosen]], ratio)
        better = (c.difference > 0) == higher_is_better(primary) and c.difference != 0
        if better:
            sure = "significantly" if c.p_value < ALPHA else "not significantly"
            warnings.append(
                f"the network ({chosen}) loses to the {base.label(b, data.task)} baseline on {primary}: "
                f"{means_primary[b]:.4g} vs {means_primary[chosen]:.4g} ({sure}, {'p < 0.001' if c.p_value < 0.001 else f'p = {c.p_value:.3f}'}); a simpler "
                "model may do."
            )
        means, cis = _summary(fold_scores[b], ratio)
        baseline_rows.append(
            {
                "model": b,
                "label": base.label(b, data.task),
                "metrics": means,
                "folds": [{k: _clean(v) for k, v in f.items()} for f in fold_scores[b]],
                "ci": cis,
                "versus_recommended": {
                    "difference": _clean(c.difference),
                    "ci": [_clean(c.ci[0]), _clean(c.ci[1])],
                    "p_value": _clean(c.p_value),
                },
            }
        )
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
            t = by_loss[source]
            entry["versus_plain"] = {
                "metric": primary,
                "difference": _clean(t.difference),
                "ci": [_clean(t.ci[0]), _clean(t.ci[1])],
                "p_value": _clean(t.p_value),
                "p_holm": _clean(t.p_holm),
                "significant": t.significant,
            }
        results.append(entry)
    recommendation = {k: (_clean(v) if isinstance(v, float) else v) for k, v in recommendation.items()}
    payload: dict[str, Any] = {
        "task": data.task.value,
        "dataset": data.name,
        "n_rows": len(data.y),
        "primary_metric": primary,
        "plain": plain,
        "test_train_ratio": ratio,
        "results": results,
        "baselines": baseline_rows,
        "recommendation": recommendation,
        "warnings": warnings,
        "notes": data.notes,
        "settings": {
            "task": task,
            "losses": names,
            "model": "mlp" if model is None else "custom",
            "optimizer": "adam" if optimizer is None else "custom",
            "folds": folds,
            "repeats": repeats,
            "validation": 0.2,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
            "device": str(dev),
            "baselines": baselines,
            "metric": primary,
            "alpha": ALPHA,
        },
        "versions": _versions(),
    }
    out = Run(data, payload, histories, oof, tests, warnings=warnings, fold_seconds=fold_seconds)
    if save_model:
        with _single_threaded():
            out.model = _refit(data, chosen, custom, initial_for, epochs, batch_size, lr, seed, dev, optimizer)
    return out


@contextmanager
def _single_threaded() -> Iterator[None]:
    """One thread for torch and scikit-learn's native pools while the folds run: the models are
    small, and on a busy machine with few cores extra threads spin-wait (40x slower measured on 2
    loaded cores). losskit's value heuristics are off ("cheap" checks): they judge a user's
    batch, and an early model's logits can look like probabilities. Settings are restored."""
    from threadpoolctl import threadpool_limits

    import losskit

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1), losskit.set_checks("cheap"):
            yield
    finally:
        torch.set_num_threads(before)


def _store(oof: dict[str, torch.Tensor], name: str, scores: torch.Tensor, rows: Any, n: int) -> None:
    if name not in oof:
        oof[name] = torch.full((n, *scores.shape[1:]), math.nan, dtype=torch.float64)
    oof[name][torch.as_tensor(rows)] = scores.double()


def _refit(
    data: Encoded,
    name: str,
    custom: dict[str, nn.Module],
    initial_for: Callable[[int], nn.Module],
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: torch.device,
    optimizer: Callable[..., torch.optim.Optimizer] | None,
) -> nn.Module:
    """The recommended loss trained on all rows (20 % held out for early stopping)."""
    import numpy as np

    from losskit.app.compare.data import Fold

    split = make_folds(data, 5, 1, seed)[0]
    everything = Fold(0, 0, np.sort(np.concatenate([split.fit, split.test])), split.val, split.val)
    fd = fold_data(data, everything)
    loss_fn = copy.deepcopy(custom[name]) if name in custom else cand.build(data.task, name, fd.y_fit, data.num_outputs)
    initial = initial_for(seed)
    run = train_candidate(
        name,
        data.task,
        fd,
        initial,
        loss_fn,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        optimizer=optimizer,
    )
    net = copy.deepcopy(initial)
    net.load_state_dict(run.state)
    return net.cpu()
