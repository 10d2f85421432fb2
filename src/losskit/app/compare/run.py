"""The comparison itself: every candidate loss (and the baselines) on the same folds of repeated
(stratified) k-fold, fold metrics, intervals, paired tests, the verdict, the warnings.
:func:`compare` is the Python API (``losskit.compare``); the command line calls it too."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from losskit.app.compare import baselines as base
from losskit.app.compare import candidates as cand
from losskit.app.compare import fits
from losskit.app.compare.data import Encoded, encode, fold_data, make_folds, table_columns
from losskit.app.compare.inputs import ArrayInput, encode_input
from losskit.app.compare.inputs import to_input as to_table
from losskit.app.compare.metrics import MAIN, METRICS, deciding_metric, default_margin, evaluate, tune_threshold
from losskit.app.compare.results import (
    baseline_rows,
    clean,
    loss_entries,
    still_improving,
    versions,
)
from losskit.app.compare.stages import Runner, check_execution, choose_engine, maybe_prestart, maybe_prestart_table
from losskit.app.compare.train import TrainResult, train_candidate
from losskit.app.compare.verdict import ALPHA, MIN_DF, Test, decide, paired_tests
from losskit.app.data import Table
from losskit.app.workers import hidden_size
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
    #: seconds each task took where it ran (kept out of metrics.json, which must be reproducible)
    task_seconds: list[float] = field(default_factory=list)
    #: where the fits ran: backend, workers, engine, batched, tasks (not in metrics.json either)
    execution: dict[str, Any] = field(default_factory=dict)


def default_batch_size(rows: int) -> int:
    """64, or for large tables the power of two that keeps an epoch near 200 steps (at most 4096):
    a 200,000-row table trains at batch 1024 instead of 2,500 steps an epoch."""
    if rows <= 64 * 200:
        return 64
    return int(min(4096, 2 ** math.ceil(math.log2(rows / 200))))


#: the defaults for samples that are not table rows (images): batch size (more steps per
#: epoch), epochs and Adam's learning rate -- a small U-Net learns the shapes demo in a
#: CPU budget of a few seconds per fit only at a larger step (measured: mean IoU 0.35 at 1e-2
#: vs 0.23 at 1e-3 after 30 epochs)
IMAGE_BATCH = 16
IMAGE_EPOCHS = 20
IMAGE_LR = 5e-3
#: the repeats an image comparison may grow to by default (a fit costs seconds, not a tenth)
IMAGE_MAX_REPEATS = 3

#: repeats of k-fold the adaptive design may grow to (the default of ``max_repeats``)
MAX_REPEATS = 6


def compare_table(
    table: Table | ArrayInput,
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
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
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
    check_execution(jobs, backend, ray_address, gpus_per_fit)
    dev = device if isinstance(device, torch.device) else _device(device)
    if not isinstance(table, ArrayInput):  # its shape alone can tell: workers import while it is encoded
        named = None if losses is None else len(losses.split(",")) if isinstance(losses, str) else len(losses)
        maybe_prestart_table(
            table, backend, jobs, str(dev), model is None and optimizer is None, named, folds * repeats,
            100 if epochs is None else epochs, baselines,
        )  # fmt: skip
    data = encode_input(table, task) if isinstance(table, ArrayInput) else encode(table, task=task)
    images = data.x is not None
    if max_repeats is None and images:
        most = max(repeats, IMAGE_MAX_REPEATS)
    epochs = (IMAGE_EPOCHS if images else 100) if epochs is None else epochs
    lr = (IMAGE_LR if images else 1e-3) if lr is None else lr
    notes = list(data.notes)
    seg = data.task == Task.segmentation
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
        if n not in custom
        and (
            s := cand.same_model(
                data.task, n, data.y, data.num_outputs, ignore_index=data.ignore_index if seg else None
            )
        )
        and s in names
    }
    trained = [n for n in names if n not in aliases]
    maybe_prestart(
        data, backend, jobs, str(dev), model is None and optimizer is None, len(trained), folds * repeats, epochs,
        baselines and data.x is None,
    )  # fmt: skip
    splits = make_folds(data, folds, most, seed)
    if batch_size is None:
        batch_size = IMAGE_BATCH if data.x is not None else default_batch_size(len(splits[0].fit))
    # a table knows its width from its columns: with the default model its first fold is
    # prepared after the workers are started (they import while it is computed)
    first = fold_data(data, splits[0]) if data.x is not None or model is not None or optimizer is not None else None
    if data.x is not None:
        assert first is not None
        x_shape = tuple(first.x_fit[0].shape)
        d_in = x_shape[0] if x_shape else 1
    else:
        x_shape, d_in = (), table_columns(data).width
    d_out = data.num_outputs
    settings = fits.Settings(data.task, d_in, d_out, epochs, batch_size, lr, seed, str(dev), model, optimizer, x_shape)
    baseline_names = list(base.BASELINES) if baselines and data.x is None else []
    if baselines and data.x is not None:
        notes.append(f"no scikit-learn baselines: they take tables, and these samples have the shape {x_shape}.")
    unbatchable = "your Dataset is read batch by batch, never held in memory whole" if data.lazy else None
    if unbatchable is None and (model is not None or optimizer is not None):
        from losskit.app.compare.batched import batch_reason

        assert first is not None  # prepared above for a model or optimizer of the user's
        with fits.single_threaded():
            unbatchable = batch_reason(settings.initial(0), first.x_fit[:4], optimizer)
    if unbatchable is not None:
        notes.append(f"your model trains one fit at a time (not stacked): {unbatchable}.")
    labels = [f"repeat {s.repeat + 1}, fold {s.fold + 1}" for s in splits]
    fit_rows = [len(s.fit) for s in splits]
    baseline_folds = list(range(repeats * folds)) if baseline_names else []

    def tasks_for(ks: list[int], names: list[str] | None = None) -> list[fits.FitTask]:
        chosen = trained if names is None else names
        return fits.plan(
            ks,
            lambda k: [fits.Member(k, n) for n in chosen],
            fit_rows,
            labels,
            settings,
            baseline_names,
            baseline_folds,
            unbatchable,
        )

    initial = tasks_for(list(range(repeats * folds)))
    engine = choose_engine(backend, settings, jobs, ray_address, gpus_per_fit, initial, fit_rows, data.lazy)
    if first is None:
        first = fold_data(data, splits[0])
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
        if model is None and x_shape:
            from losskit.app.compare.models import describe_model

            shape = describe_model(data.task, x_shape)
        size = f"samples of shape {x_shape}" if x_shape else f"{d_in} features"
        grow = f", more repeats (up to {most}) while a candidate is undecided" if most > repeats else ""
        console.print(
            f"[bold]losskit compare[/]: {escape(data.name)}, task {data.task.value}, {len(data.y)} rows, {size}; "
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
    label_names = data.class_names if data.task in (Task.multilabel, Task.segmentation) else None

    def score(outcome: fits.TaskOutcome) -> None:
        """Metrics of each fit on its test fold (in this process, while the workers go on)."""
        for m in outcome.members:
            split = splits[m.fold]
            scores = torch.tensor(np.asarray(m.test_scores))  # a copy: Ray hands back read-only arrays
            threshold = 0.5
            if data.task == Task.binary and m.val_scores is not None:
                threshold = tune_threshold(torch.tensor(np.asarray(m.val_scores)), data.y[split.val])
            ev = evaluate(data.task, scores, data.y[split.test], d_out, threshold, label_names, data.ignore_index)
            fold_scores[m.name][m.fold] = ev.metrics
            if m.history is not None:
                histories[m.name][m.fold] = m.history
            elif m.name in constant and bool((scores == scores[:1]).all()):
                constant[m.name] += 1
            if split.repeat == 0:
                _store(oof, m.name, scores, split.test, len(data.y))

    runner = Runner(engine, splits, data, first, trained, custom, settings, score, console, progress)
    done = repeats
    stop_reason = None
    # the folds each candidate has; a candidate decided at a look keeps that decision and trains
    # no more (a group-sequential design: the later repeats train the plain loss and the
    # candidates still undecided that more data would likely decide)
    reached = dict.fromkeys(trained, repeats * folds)
    frozen: dict[str, Test] = {}

    def look() -> list[Test]:
        ratio = _ratio(splits[: max(reached.values())])
        current = paired_tests(
            {n: fold_scores[n][: reached[n]] for n in trained}, plain, primary, ratio, the_margin, folds
        )
        return [frozen.get(t.loss, t) for t in current]

    with runner:
        runner.run(initial)
        while True:
            tests = look()
            frozen.update({t.loss: t for t in tests if t.decision != "undecided"})
            undecided = [t for t in tests if t.decision == "undecided" and t.more_repeats is not None]
            if done >= most or not undecided:
                if undecided and most > repeats:
                    stop_reason = f"stopped at --max-repeats {most} with {len(undecided)} candidate(s) undecided"
                break
            step = min(*(t.more_repeats or 1 for t in undecided), most - done)
            if budget is not None:
                spent = time.perf_counter() - started
                per_repeat = spent / done
                if spent + per_repeat * step > budget:
                    stop_reason = f"stopped adding repeats at the --budget of {budget:g} s ({spent:.0f} s spent)"
                    break
            active = [plain, *(t.loss for t in undecided)]
            ks = list(range(done * folds, (done + step) * folds))
            runner.run(tasks_for(ks, active))
            done += step
            for n in active:
                reached[n] = done * folds
    used = done * folds
    ratio = _ratio(splits[:used])
    fold_scores = {n: f[: reached[n]] if n in trained else f[: len(baseline_folds)] for n, f in fold_scores.items()}
    histories = {n: h[: reached[n]] for n, h in histories.items()}
    candidate_folds = {n: fold_scores[n] for n in trained}
    tests = look()
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
        hit = sum(still_improving(r) for r in histories[name])
        if hit:
            warnings.append(
                f"{name}: training hit --epochs {epochs} in {hit} of {len(histories[name])} folds while the validation loss was still "
                "falling; pass a larger --epochs."
            )
    if stop_reason:
        notes.append(stop_reason + ".")
    baseline_table = baseline_rows(
        baseline_names, data, fold_scores, chosen, primary, ratio_of(splits, len(baseline_folds)),
        the_margin, constant, warnings, notes, means_primary,
    )  # fmt: skip
    results = loss_entries(names, aliases, fold_scores, histories, ratio, tests, other_tests)
    recommendation = {k: (clean(v) if isinstance(v, float) else v) for k, v in recommendation.items()}
    payload: dict[str, Any] = {
        "task": data.task.value,
        "dataset": data.name,
        "n_rows": len(data.y),
        "primary_metric": primary,
        "main_metrics": [primary, *others],
        "plain": plain,
        "test_train_ratio": ratio,
        "results": results,
        "baselines": baseline_table,
        "recommendation": recommendation,
        "warnings": warnings,
        "notes": notes,
        "settings": {
            "task": task,
            "losses": names,
            "model": ("mlp" if not x_shape else "unet" if seg else "cnn") if model is None else "custom",
            "sample_shape": list(x_shape) or None,
            "ignore_index": data.ignore_index if seg else None,
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
        "versions": versions(),
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


def _check_design(
    folds: int,
    repeats: int,
    max_repeats: int,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
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
    if epochs is not None and not (isinstance(epochs, int) and epochs >= 1):
        bad.append(f"--epochs {epochs!r}: expected an integer >= 1")
    if batch_size is not None and not (isinstance(batch_size, int) and batch_size >= 1):
        bad.append(f"--batch-size {batch_size!r}: expected an integer >= 1")
    if lr is not None and not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
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
    ignore = data.ignore_index if data.task == Task.segmentation else None
    loss_fn = (
        copy.deepcopy(custom[name])
        if name in custom
        else cand.build(data.task, name, fd.y_fit, data.num_outputs, ignore_index=ignore)
    )
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
