"""How a comparison's fit tasks run: the checks of the execution options, the choice of engine
(this process for small work, worker processes, Ray) and :class:`Runner`, which prepares each
fold once, submits a stage's tasks as their folds are ready and passes outcomes on as they
arrive, under one progress bar."""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from torch import nn

from losskit.app.compare import candidates as cand
from losskit.app.compare import fits
from losskit.app.compare.data import Encoded, fold_data
from losskit.app.workers import IN_PROCESS_WORK, prestart_if_big
from losskit.errors import LossInputError
from losskit.tasks import Task

if TYPE_CHECKING:
    from losskit.app.compare.engines import Engine

__all__ = [
    "IN_PROCESS_WORK",
    "Runner",
    "check_execution",
    "choose_engine",
    "maybe_prestart",
    "maybe_prestart_table",
]


def check_execution(jobs: int | None, backend: str, ray_address: str | None, gpus_per_fit: float) -> None:
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


def choose_engine(
    backend: str,
    settings: fits.Settings,
    jobs: int | None,
    ray_address: str | None,
    gpus_per_fit: float,
    tasks: list[fits.FitTask],
    fit_rows: list[int],
    lazy: bool = False,
) -> Engine:
    from losskit.app.compare.engines import InProcess, make_engine
    from losskit.app.workers import cpu_count, free_cores, prestarted, stop_prestarted, take_prestarted

    ahead = prestarted()
    if lazy and backend == "local":  # a Dataset read batch by batch: this process reads it
        stop_prestarted()
        return InProcess(settings)
    workers = jobs or cpu_count()
    if backend == "local" and jobs is None:
        params = sum(p.numel() for p in settings.initial(0).parameters())
        # a convolution uses each weight once per pixel: images cost their pixels times more
        params *= math.prod(settings.x_shape[1:]) if len(settings.x_shape) >= 3 else 1
        work = 0.0
        for t in tasks:
            for k in t.folds:
                fits_of_fold = sum(m.fold == k for m in t.members) if t.members else 1
                work += fits_of_fold * params * fit_rows[k] * settings.epochs
        if workers == 1 or work < IN_PROCESS_WORK:
            stop_prestarted()
            return InProcess(settings)
        workers = ahead or free_cores(workers)  # a pool started ahead looked at the cores already
        if workers == 1:  # the other cores are busy: one worker would only add its start-up
            return InProcess(settings)
    baselines = any(t.baseline for t in tasks)  # the workers import scikit-learn only for them
    take_prestarted()
    return make_engine(
        backend, settings, workers, ray_address=ray_address, gpus_per_fit=gpus_per_fit, baselines=baselines
    )


class Runner:
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

    def __enter__(self) -> Runner:
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

    @property
    def _ignore(self) -> int | None:
        return self.data.ignore_index if self.data.task == Task.segmentation else None

    def _prepare(self, k: int) -> None:
        if k in self.losses:
            return
        fd = self.first if k == 0 else fold_data(self.data, self.splits[k])
        self.engine.put(k, fits.FoldArrays.of(fd))
        # fitted options (class weights, Huber's delta) come from the fold's own training targets
        self.losses[k] = {
            n: copy.deepcopy(self.custom[n])
            if n in self.custom
            else cand.build(self.data.task, n, fd.y_fit, self.settings.d_out, ignore_index=self._ignore)
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
        # the longest tasks first, so that no worker is left alone with a long one at the end of
        # the stage (gradient boosting, then the network fits by size, then the linear models);
        # outcomes are keyed by index, so the order changes no number. A task is handed out as
        # soon as its folds are prepared: the workers start on the first fold's tasks while the
        # next folds are computed here (at 200,000 x 50: 2.5 s sooner)
        for i in sorted(range(len(tasks)), key=lambda i: _expected_cost(tasks[i], self.splits)):
            t = tasks[i]
            for k in t.folds:
                self._prepare(k)
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


def _expected_cost(task: fits.FitTask, splits: list[Any]) -> tuple[int, int]:
    """A sort key, longest first: gradient boosting (on a large table as long as two network
    fits, measured: 4.5 s vs 2.5 s a fold at 200,000 x 50), the network fits by members x rows,
    the linear baselines (a tenth of a fit) last."""
    rows = sum(len(splits[k].fit) for k in task.folds)
    if task.baseline is not None:
        return (0 if task.baseline == "gradient_boosting" else 2, -rows)
    return (1, -task.fits * rows)


def maybe_prestart(
    data: Encoded, backend: str, jobs: int | None, device: str, default_model: bool, candidates: int,
    fits_per_candidate: int, epochs: int, baselines: bool,
) -> None:  # fmt: skip
    """Start the worker processes before the folds are cut when the comparison is clearly big
    enough for them (a lower bound of :func:`choose_engine`'s work, with a margin of 10x): a
    table of the default model, local backend, the default ``--jobs``, on CPU. Their imports
    then overlap the main process's (scikit-learn's model selection, the columns, the first
    fold): 2 s sooner at 200,000 x 50."""
    if data.x is None:
        d_in = len(data.numeric) + len(data.categorical)  # at most the width after one-hot encoding
        rows = len(data.y) * 0.5 * 0.8  # training rows of a fold: at least half, less the validation
        prestart_if_big(
            backend, jobs, device, default_model, d_in, data.num_outputs, rows, candidates, fits_per_candidate,
            epochs, baselines,
        )  # fmt: skip


def maybe_prestart_table(
    table: Any, backend: str, jobs: int | None, device: str, default_model: bool, candidates: int | None,
    fits_per_candidate: int, epochs: int, baselines: bool,
) -> None:  # fmt: skip
    """:func:`maybe_prestart` from a table's shape alone, before it is encoded (its rows, one
    input per feature column, one output, two candidates unless named): the workers then import
    while the columns are checked and encoded (0.7 s at 200,000 x 50)."""
    rows = len(table.features) * 0.5 * 0.8
    d_in = max(1, len(table.features.columns))
    prestart_if_big(
        backend, jobs, device, default_model, d_in, 1, rows, candidates or 2, fits_per_candidate, epochs, baselines
    )
