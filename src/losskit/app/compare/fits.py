"""The unit of work of ``losskit compare``: a *fit task*, a pure function of (settings, fold
arrays, task) -- a group of candidate fits trained as one stacked model, one candidate fit, or
a baseline -- so the same task gives the same numbers in this process, in a worker process or
on a Ray node (scikit-learn's ``_fit_and_score`` shape).

A task returns scores, not metrics: each member's validation scores (binary: the F1 threshold)
and test scores, and its training history. The main process scores them against the test
targets, in a fixed order, so ``metrics.json`` does not depend on where anything ran.

:func:`plan` cuts the comparison into tasks: fits of a model that can be stacked go together
(every fold in one group for small models, where batching pays; a larger table model's fits
of a fold in stacks of two, or one by one when a step's products fill a core; an image model's
per fold), the rest one by one; every baseline fit is its own task.
"""

from __future__ import annotations

import copy
import inspect
import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import torch
from torch import nn

from losskit.app.compare import baselines as base
from losskit.app.compare.data import FoldData
from losskit.app.compare.train import TrainResult, make_model, predict, train_candidate
from losskit.tasks import Task

__all__ = ["FoldArrays", "Settings", "Member", "FitTask", "MemberOutcome", "run_task", "plan", "single_threaded"]

#: a model whose parameters x training rows stay under this is "small": per-operation overhead
#: dominates its fits, so all its folds train as one stack
SMALL_WORK = 2e7
#: a larger table model trains its fold's fits in stacks of this many: a stack of 2 trains as
#: fast per fit as one of 4 (digits, 64-256-256-10, batch 64: 19.9 s vs 19.7 s for 24 fits on
#: one thread; one by one 24.1 s), and twice the tasks share the cores more evenly at the end of
#: a stage (13.9 s vs 15.6 s for the same run on 2 workers)
TABLE_STACK = 2
#: ... unless a step's matrix products are big enough to keep a core busy alone (parameters x
#: batch rows above this): then a stack only adds work (65-256-256-1, batch 512: 3.9 ms a step
#: per member stacked by 2, 3.3 ms alone), and each fit is its own task
STACK_STEP_WORK = 2e7


@dataclass
class FoldArrays:
    """What a fit needs of one fold, as numpy arrays (shared without copies: memory-mapped
    files for worker processes, the object store for Ray). No test targets: the main process
    scores."""

    x_fit: np.ndarray
    y_fit: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    target_mean: np.ndarray | None = None
    target_std: np.ndarray | None = None

    FIELDS = ("x_fit", "y_fit", "x_val", "y_val", "x_test", "target_mean", "target_std")

    @staticmethod
    def of(fold: FoldData) -> FoldArrays:
        def arr(t: torch.Tensor | None) -> np.ndarray | None:
            return None if t is None else t.detach().cpu().numpy()

        def x(t: torch.Tensor) -> np.ndarray:  # a lazy Dataset's rows stay a view (nothing read)
            return t.numpy() if isinstance(t, torch.Tensor) else cast(np.ndarray, t)

        return FoldArrays(
            x(fold.x_fit),
            fold.y_fit.numpy(),
            x(fold.x_val),
            fold.y_val.numpy(),
            x(fold.x_test),
            arr(fold.target_mean),
            arr(fold.target_std),
        )

    def tensors(self) -> FoldData:
        """Tensors sharing the arrays' memory (read-only arrays are never written to)."""
        import warnings

        def t(a: np.ndarray | None) -> torch.Tensor | None:
            if a is None:
                return None
            if not isinstance(a, np.ndarray):  # LazyRows
                return cast(torch.Tensor, a)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "non-writable": we only read
                return torch.from_numpy(np.asarray(a))

        def req(a: np.ndarray) -> torch.Tensor:
            out = t(a)
            assert out is not None
            return out

        return FoldData(
            req(self.x_fit),
            req(self.x_val),
            req(self.x_test),
            req(self.y_fit),
            req(self.y_val),
            torch.empty(0),
            t(self.target_mean),
            t(self.target_std),
        )


@dataclass(frozen=True)
class Settings:
    """Everything a fit needs besides its fold: shared by all tasks of a comparison."""

    task: Task
    d_in: int
    d_out: int
    epochs: int
    batch_size: int
    lr: float
    seed: int
    device: str
    model: Callable[..., nn.Module] | None = None
    optimizer: Callable[..., torch.optim.Optimizer] | None = None
    #: the shape of one sample when the inputs are not a table (images ``(C, H, W)``, ...);
    #: ``d_in`` is then its first dimension (the channels), what a model factory is called with
    x_shape: tuple[int, ...] = ()

    def initial(self, fold: int) -> nn.Module:
        """The initial model of split ``fold`` (the same for every candidate of that fold)."""
        return self.build(self.seed * 1000 + fold)

    def build(self, seed: int) -> nn.Module:
        """A new model with initial weights drawn from ``seed``."""
        if self.model is None:
            if self.x_shape:
                from losskit.app.compare.models import default_model

                return default_model(self.task, self.x_shape, self.d_out, seed)
            return make_model(self.d_in, self.d_out, seed)
        takes_shape = len(inspect.signature(self.model).parameters) >= 2
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.model(self.d_in, self.d_out) if takes_shape else self.model()

    def order_seed(self, fold: int) -> int:
        """The batch order's seed of split ``fold`` (the same for every candidate of that fold)."""
        return self.seed * 1000 + fold

    def random_seed(self, fold: int, candidate: str) -> int:
        """The seed of the random layers (dropout) of one fit: its own per candidate and fold,
        whatever process runs it."""
        return (self.order_seed(fold) * 1_000_003 + zlib.crc32(candidate.encode())) % (2**63)


@dataclass(frozen=True)
class Member:
    """One fit: candidate ``candidate`` (loss module ``loss``) on split ``fold``."""

    fold: int
    candidate: str
    loss: nn.Module | None = None


@dataclass(frozen=True)
class FitTask:
    """Members trained together (``batched``), one member, or a ``baseline`` on one fold."""

    label: str
    folds: tuple[int, ...]
    members: tuple[Member, ...] = ()
    batched: bool = False
    baseline: str | None = None

    @property
    def fits(self) -> int:
        return max(1, len(self.members))


@dataclass
class MemberOutcome:
    """The scores and history of one fit."""

    fold: int
    name: str
    val_scores: np.ndarray | None
    test_scores: np.ndarray
    history: TrainResult | None = None


@dataclass
class TaskOutcome:
    members: list[MemberOutcome] = field(default_factory=list)
    seconds: float = 0.0


@contextmanager
def single_threaded() -> Iterator[None]:
    """One thread for torch and scikit-learn's native pools while fits run: the models are small,
    and on a busy machine extra threads spin-wait (40x slower measured on 2 loaded cores); every
    worker is one process on one core. losskit's value heuristics are off ("cheap" checks): they
    judge a user's batch, and an early model's logits can look like probabilities. Restored after."""
    from threadpoolctl import threadpool_limits

    import losskit

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1), losskit.set_checks("cheap"):
            yield
    finally:
        torch.set_num_threads(before)


def run_task(task: FitTask, settings: Settings, folds: dict[int, FoldArrays]) -> TaskOutcome:
    """Run one task on its folds' arrays; the same numbers wherever it runs."""
    import time

    start = time.perf_counter()
    with single_threaded():
        tensors = {k: folds[k].tensors() for k in task.folds}
        if task.baseline is not None:
            k = task.folds[0]
            val, test = base.fit_predict(task.baseline, settings.task, tensors[k], settings.seed, settings.d_out)
            members = [MemberOutcome(k, task.baseline, val.numpy(), test.numpy())]
        elif task.batched:
            with torch.random.fork_rng(devices=[]):  # random layers: the task's own numbers
                torch.manual_seed(_task_seed(settings, task))
                members = _run_stacked(task, settings, tensors)
        else:
            members = [_run_one(m, settings, tensors[m.fold]) for m in task.members]
    return TaskOutcome(members, time.perf_counter() - start)


def _task_seed(settings: Settings, task: FitTask) -> int:
    key = ",".join(f"{m.fold}:{m.candidate}" for m in task.members).encode()
    return (settings.seed * 1_000_003 + zlib.crc32(key)) % (2**63)


def _scores(settings: Settings, net: nn.Module, fold: FoldData) -> tuple[np.ndarray | None, np.ndarray]:
    device = torch.device(settings.device)
    net.to(device)
    val = predict(settings.task, net, fold.x_val, fold).numpy() if settings.task == Task.binary else None
    return val, predict(settings.task, net, fold.x_test, fold).numpy()


def _lean(history: TrainResult) -> TrainResult:
    """The history without the weights (they stay in the worker)."""
    out = copy.copy(history)
    out.state = {}
    return out


def _run_one(member: Member, settings: Settings, fold: FoldData) -> MemberOutcome:
    assert member.loss is not None
    initial = settings.initial(member.fold)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.random_seed(member.fold, member.candidate))
        run = train_candidate(
            member.candidate,
            settings.task,
            fold,
            initial,
            copy.deepcopy(member.loss),
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            lr=settings.lr,
            seed=settings.order_seed(member.fold),
            device=torch.device(settings.device),
            optimizer=settings.optimizer,
        )
    net = copy.deepcopy(initial)
    net.load_state_dict(run.state)
    val, test = _scores(settings, net, fold)
    return MemberOutcome(member.fold, member.candidate, val, test, _lean(run))


def _run_stacked(task: FitTask, settings: Settings, folds: dict[int, FoldData]) -> list[MemberOutcome]:
    from losskit.app.compare.batched import GroupData, stack_models, stacked_optimizer, train_stacked

    initial = {k: settings.initial(k) for k in task.folds}
    position = {k: i for i, k in enumerate(task.folds)}
    models = [copy.deepcopy(initial[m.fold]) for m in task.members]
    stack = stack_models(models)
    data = GroupData.of([(folds[k].x_fit, folds[k].y_fit, folds[k].x_val, folds[k].y_val) for k in task.folds])
    results = train_stacked(
        stack,
        data,
        [position[m.fold] for m in task.members],
        [copy.deepcopy(m.loss) for m in task.members if m.loss is not None],
        [m.candidate for m in task.members],
        task=settings.task,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        order_seeds=[settings.order_seed(k) for k in task.folds],
        make_optimizer=stacked_optimizer(settings.optimizer, models[0], stack, settings.lr),
        device=torch.device(settings.device),
    )
    out = []
    for member, run in zip(task.members, results):
        net = copy.deepcopy(initial[member.fold])
        net.load_state_dict(run.state)
        val, test = _scores(settings, net, folds[member.fold])
        out.append(MemberOutcome(member.fold, member.candidate, val, test, _lean(run)))
    return out


def _parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def plan(
    folds: Sequence[int],
    members_of: Callable[[int], list[Member]],
    fit_rows: Sequence[int],
    labels: Sequence[str],
    settings: Settings,
    baselines: Sequence[str],
    baseline_folds: Sequence[int],
    batch_reason: str | None,
) -> list[FitTask]:
    """The tasks of the splits ``folds``, in the order they are handed out (fold by fold).

    ``members_of(k)`` gives the fits of split ``k``; ``fit_rows[k]`` its training rows;
    ``labels[k]`` its name ("repeat 1, fold 2"); the ``baselines`` are fitted on the splits in
    ``baseline_folds``; ``batch_reason`` says why the model cannot be stacked (``None``: it
    can). The plan depends only on the data and the settings, never on how many workers run it,
    so every engine computes the same numbers.
    """
    tasks: list[FitTask] = []
    groups: list[list[int]] = []
    if batch_reason is None:
        # convolutions stacked run as grouped convolutions, no faster per fit than one by one
        # (measured): image fits stack per fold only, so the folds spread over the workers
        params = _parameters(settings.initial(0))
        small = not settings.x_shape and params * max(fit_rows[k] for k in folds) < SMALL_WORK
        stack = TABLE_STACK if params * settings.batch_size < STACK_STEP_WORK else 1
        if small:
            by_steps: dict[int, list[int]] = {}
            for k in folds:
                by_steps.setdefault(math.ceil(fit_rows[k] / settings.batch_size), []).append(k)
            groups = list(by_steps.values())
        else:
            groups = [[k] for k in folds]
    first_of = {g[0]: g for g in groups}
    for k in folds:
        if batch_reason is None:
            if k in first_of:
                g = first_of[k]
                members = tuple(m for j in g for m in members_of(j))
                where = labels[k] if len(g) == 1 else f"{len(g)} folds"
                size = stack if not small and not settings.x_shape else len(members)
                for i in range(0, len(members), size):
                    part = members[i : i + size]
                    what = f"{len(part)} fits stacked" if len(part) > 1 else f"{part[0].candidate}"
                    tasks.append(FitTask(f"{where}: {what}", tuple(g), part, batched=True))
        else:
            tasks += [FitTask(f"{labels[k]}: {m.candidate}", (k,), (m,)) for m in members_of(k)]
        if k in baseline_folds:
            tasks += [FitTask(f"{labels[k]}: {base.label(b, settings.task)}", (k,), baseline=b) for b in baselines]
    return tasks
