"""The comparison itself: every candidate loss (and the baselines) on the same folds of repeated
(stratified) k-fold, fold metrics, intervals, paired tests, the verdict, the warnings.
:func:`compare` is the Python API (``losskit.compare``); the command line calls it too."""

from __future__ import annotations

import copy
import math
import platform
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from losskit.app.compare import baselines as base
from losskit.app.compare import candidates as cand
from losskit.app.compare import fits
from losskit.app.compare.data import Encoded, encode, fold_data, make_folds
from losskit.app.compare.metrics import METRICS, PRIMARY, evaluate, higher_is_better, tune_threshold
from losskit.app.compare.stats import corrected_t_test, mean_ci
from losskit.app.compare.train import TrainResult, hidden_size, train_candidate
from losskit.app.compare.verdict import ALPHA, Test, decide, paired_tests
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
    jobs: int | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    gpus_per_fit: float = 0,
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
    _check_execution(jobs, backend, ray_address, gpus_per_fit)
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
    labels = [f"repeat {s.repeat + 1}, fold {s.fold + 1}" for s in splits]
    tasks = fits.plan(
        lambda k: [fits.Member(k, n) for n in trained],
        [len(s.fit) for s in splits],
        labels,
        settings,
        baseline_names,
        unbatchable,
    )
    engine = _engine(backend, settings, jobs, ray_address, gpus_per_fit, tasks, [len(s.fit) for s in splits])
    h = hidden_size(d_in, d_out)
    execution = {
        "backend": backend,
        "workers": engine.workers,
        "engine": engine.describe(),
        "batched": unbatchable is None,
        "tasks": len(tasks),
    }
    notes = list(data.notes)
    if unbatchable is not None:
        notes.append(f"your model trains one fit at a time (not stacked): {unbatchable}.")
    if console is not None:
        from rich.markup import escape

        shape = f"MLP {d_in}-{h}-{h}-{d_out}" if model is None else "your model"
        console.print(
            f"[bold]losskit compare[/]: {escape(data.name)}, task {data.task.value}, {len(data.y)} rows, {d_in} features; "
            f"{shape}, {'Adam lr=' + format(lr, 'g') if optimizer is None else 'your optimizer'}, batch {batch_size}, up to "
            f"{epochs} epochs with early stopping on a validation split of each training fold; {repeats}x{folds}-fold "
            f"cross-validation; candidates: {', '.join(names)}"
            + (f"; baselines: {', '.join(base.label(b, data.task) for b in baseline_names)}" if baseline_names else "")
            + f"; {sum(t.fits for t in tasks)} fits on {escape(engine.describe())}"
        )
        for note in notes:
            console.print(f"  [dim]- {escape(note)}[/]")
        for alias, same in aliases.items():
            console.print(
                f"  [dim]- {escape(alias)} is the same model as {escape(same)} here (neutral weights): not trained twice.[/]"
            )

    outcomes = _run_tasks(engine, tasks, splits, data, first, trained, custom, settings, console, progress)
    fold_scores: dict[str, list[dict[str, float]]] = {n: [{} for _ in splits] for n in trained + baseline_names}
    histories: dict[str, list[TrainResult]] = {n: [TrainResult(n) for _ in splits] for n in trained}
    oof: dict[str, torch.Tensor] = {}
    label_names = data.class_names if data.task == Task.multilabel else None
    task_seconds = []
    for outcome in outcomes:
        task_seconds.append(outcome.seconds)
        for m in outcome.members:
            split = splits[m.fold]
            y_val = data.y[split.val]
            scores = torch.from_numpy(np.asarray(m.test_scores))
            threshold = 0.5
            if data.task == Task.binary and m.val_scores is not None:
                threshold = tune_threshold(torch.from_numpy(np.asarray(m.val_scores)), y_val)
            ev = evaluate(data.task, scores, data.y[split.test], d_out, threshold, label_names)
            fold_scores[m.name][m.fold] = ev.metrics
            if m.history is not None:
                histories[m.name][m.fold] = m.history
            if split.repeat == 0:
                _store(oof, m.name, scores, split.test, len(data.y))

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
        "notes": notes,
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
    out = Run(data, payload, histories, oof, tests, warnings=warnings, task_seconds=task_seconds, execution=execution)
    if save_model:
        with fits.single_threaded():
            out.model = _refit(data, chosen, custom, settings)
    return out


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


def _run_tasks(
    engine: Engine,
    tasks: list[fits.FitTask],
    splits: list[Any],
    data: Encoded,
    first: Any,
    trained: list[str],
    custom: dict[str, nn.Module],
    settings: fits.Settings,
    console: Any,
    progress: bool,
) -> list[fits.TaskOutcome]:
    """Prepare each fold (features standardized on its training rows), hand its tasks to the
    engine as soon as their folds are ready, and collect the outcomes in task order."""
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
    last_fold = [max(t.folds) for t in tasks]
    losses: dict[int, dict[str, nn.Module]] = {}
    outcomes: list[fits.TaskOutcome | None] = [None] * len(tasks)
    total = sum(t.fits for t in tasks)
    done = 0
    with bars as bar, fits.single_threaded(), engine:
        job = bar.add_task("preparing folds", total=total) if bar is not None else None
        for k, split in enumerate(splits):
            fd = first if k == 0 else fold_data(data, split)
            engine.put(k, fits.FoldArrays.of(fd))
            # fitted options (class weights, Huber's delta) come from the fold's own training targets
            losses[k] = {
                n: copy.deepcopy(custom[n]) if n in custom else cand.build(data.task, n, fd.y_fit, settings.d_out)
                for n in trained
            }
            for i, t in enumerate(tasks):
                if last_fold[i] == k:
                    members = tuple(replace(m, loss=losses[m.fold][m.candidate]) for m in t.members)
                    engine.submit(i, replace(t, members=members))
        for i, outcome in engine.outcomes():
            outcomes[i] = outcome
            done += tasks[i].fits
            if bar is not None:
                bar.update(job, advance=tasks[i].fits, description=f"{done} of {total} fits done")
            if console is not None and progress and not console.is_terminal:  # a log file gets a line per task
                console.print(f"  {tasks[i].label} done in {outcome.seconds:.1f} s")
    return [o for o in outcomes if o is not None]
