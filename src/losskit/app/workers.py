"""The worker processes of ``losskit compare``, and the estimate of when they pay -- without
importing torch, so that the command line can start them before it imports torch and reads the
data (:func:`prestart_for_command`): the workers' own imports (torch, scikit-learn: 2-3 s each)
then overlap the main process's.

The pool is loky's reusable executor (spawned workers, each on one thread, Ctrl-C left to the
main process); :class:`~losskit.app.compare.engines.Processes` finds a pool started here by
asking for the same options.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
from pathlib import Path
from typing import Any

__all__ = [
    "BUNDLED_SHAPES",
    "IN_PROCESS_WORK",
    "baselines_wanted",
    "clearly_big",
    "cpu_count",
    "free_cores",
    "hidden_size",
    "prestart",
    "prestart_if_big",
    "prestart_for_command",
    "prestart_free",
    "prestarted",
    "stop_prestarted",
    "take_prestarted",
]

#: below this much work (model parameters x training rows x epochs, summed over fits) a
#: comparison runs in this process: starting worker processes (a second or more each, importing
#: torch) would cost more than they save
IN_PROCESS_WORK = 3e9

#: the bundled tables' rows, feature columns and outputs, known before they are read
BUNDLED_SHAPES: dict[str, tuple[int, int, int]] = {
    "digits": (1797, 64, 10),
    "iris": (150, 4, 3),
    "wine": (178, 13, 3),
    "breast_cancer": (569, 30, 1),
    "diabetes": (442, 10, 1),
    "linnerud": (20, 3, 3),
}


def hidden_size(d_in: int, d_out: int) -> int:
    """Width of the two hidden layers: the power of two at or above 2 (inputs + outputs), in [32, 256]."""
    return int(min(256, max(32, 2 ** math.ceil(math.log2(max(2 * (d_in + d_out), 2))))))


def clearly_big(d_in: int, d_out: int, rows: float, candidates: int, fits_per_candidate: int, epochs: int) -> bool:
    """Whether the default model's fits clearly pay for worker processes: their work (a lower
    bound of what :func:`~losskit.app.compare.stages.choose_engine` counts) is 10x its threshold
    or more, and this process has more than one core."""
    h = hidden_size(d_in, d_out)
    params = d_in * h + h * h + h * d_out
    work = candidates * fits_per_candidate * params * rows * epochs
    return work >= 10 * IN_PROCESS_WORK and cpu_count() > 1


def prestart_if_big(
    backend: str, jobs: int | None, device: str, default_model: bool, d_in: int, d_out: int, rows: float,
    candidates: int, fits_per_candidate: int, epochs: int, baselines: bool,
) -> None:  # fmt: skip
    """The one rule of every early start: with the local backend, the default ``--jobs``, on CPU
    and the default model, start the workers (:func:`prestart_free`) when the fits are
    :func:`clearly_big`."""
    if backend != "local" or jobs is not None or device != "cpu" or not default_model:
        return
    if clearly_big(d_in, d_out, rows, candidates, fits_per_candidate, epochs):
        prestart_free(baselines)


def prestart_free(baselines: bool) -> None:
    """Start a worker on every free core (when more than one is free), unless a pool is started.
    In this thread: loky's reusable executor belongs to the thread that made it (one made in a
    helper thread is not found by the engine, which would start a second pool)."""
    if prestarted() is not None:
        return
    workers = free_cores(cpu_count())
    if workers > 1:
        prestart(workers, baselines)


def baselines_wanted(args: Any) -> bool:
    """Whether ``losskit compare``'s options ask for scikit-learn baselines: a table (images get
    none) without ``--no-baselines``."""
    from losskit.app.cli_images import IMAGE_DATASETS

    images = args.images or args.dataset in IMAGE_DATASETS or (args.data and os.path.isdir(args.data))
    return not (args.no_baselines or images)


def prestart_for_command(args: Any) -> None:
    """The command line's earliest start: for a bundled table whose comparison is clearly big
    (the default digits run), the workers start before torch is imported and the table read
    (scikit-learn's dataset loader: 1.5 s for digits)."""
    name = args.dataset or "digits"
    if args.data or args.images or name not in BUNDLED_SHAPES:
        return
    rows, d_in, d_out = BUNDLED_SHAPES[name]
    # the default candidates are three or more; --losses names them
    candidates = len([s for s in args.losses.split(",") if s.strip()]) if args.losses else 2
    fit_rows = rows * (1 - 1 / args.folds) * 0.8  # a fold's training rows, less its validation split
    epochs = 100 if args.epochs is None else args.epochs
    prestart_if_big(
        args.backend, args.jobs, args.device, not args.model, d_in, d_out, fit_rows, candidates,
        args.folds * args.repeats, epochs, not args.no_baselines,
    )  # fmt: skip


def cpu_count() -> int:
    """The cores this process may use (CPU affinity and cgroup quotas respected)."""
    from loky import cpu_count as loky_cpu_count

    return max(1, int(loky_cpu_count()))


def free_cores(cores: int, sample: float = 0.25) -> int:
    """How many of ``cores`` other processes leave free: the cores under half busy over a
    ``sample``-second look, this process's own use left out, at least 1. A worker sharing a core
    with another program runs at half speed and holds up the stage it belongs to, so the default
    ``--jobs`` starts workers only for the free cores. Without psutil: ``cores``."""
    try:
        import psutil
    except ModuleNotFoundError:
        return cores
    try:
        own = psutil.Process()
        own.cpu_percent(None)
        busy = sorted(psutil.cpu_percent(interval=sample, percpu=True), reverse=True)
        mine = own.cpu_percent(None)  # 100 = one core's worth
    except Exception:  # no per-CPU counters on this platform
        return cores
    # this process's own use (its main thread, preparing the data while a thread looks) is
    # not another program's: taken off the busiest cores first
    for i, b in enumerate(busy):
        take = min(b, mine)
        busy[i], mine = b - take, mine - take
    free = sum(1 for b in busy if b < 50.0)
    return max(1, min(cores, free))


#: a pool started ahead of the engine (:func:`prestart`) in this process: its executor and size
_prestarted: dict[str, Any] = {}


def pool_executor(workers: int, gpus: list[str] | None, claims: str | None, baselines: bool) -> Any:
    """loky's reusable executor of ``workers`` warmed-up workers: the same options give the same
    executor, which is how :class:`~losskit.app.compare.engines.Processes` finds a pool that :func:`prestart` started."""
    from loky import get_reusable_executor

    return get_reusable_executor(
        max_workers=workers, timeout=60, initializer=worker_start, initargs=(gpus, claims, baselines)
    )


def prestart(workers: int, baselines: bool) -> None:
    """Start ``workers`` worker processes now, before the folds exist: :class:`~losskit.app.compare.engines.Processes` with the
    same count and ``baselines`` finds them, so their imports (torch, scikit-learn: 3-5 s)
    overlap the main process's preparation."""
    executor = pool_executor(workers, None, None, baselines)
    for _ in range(workers):
        executor.submit(worker_ready)
    _prestarted.update(executor=executor, workers=workers)


def prestarted() -> int | None:
    """The worker count of a pool started by :func:`prestart` and not yet taken, else ``None``."""
    return _prestarted.get("workers")


def take_prestarted() -> None:
    """The engine takes the prestarted pool over (it finds the same executor)."""
    _prestarted.clear()


def stop_prestarted() -> None:
    """Stop a prestarted pool that the run will not use."""
    executor = _prestarted.pop("executor", None)
    _prestarted.clear()
    if executor is not None:
        with contextlib.suppress(Exception):
            executor.shutdown(wait=True, kill_workers=True)


def _claim_slot(claims: Path, count: int) -> int:
    """Take the first free worker slot (a file named after it, holding the owner's pid); a slot
    whose owner died is taken over. Slots decide which GPU a worker sees."""
    for i in range(count):
        path = claims / f"slot-{i}"
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                owner = int(path.read_text() or "0")
            except (OSError, ValueError):
                continue
            if owner and pid_alive(owner):
                continue
            path.write_text(str(os.getpid()))
            return i
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return i
    return os.getpid() % max(count, 1)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_start(gpus: list[str] | None, claims: str | None, baselines: bool = False) -> None:
    """Each worker: Ctrl-C is the main process's to handle (it stops the workers), one thread,
    with several GPUs one of them; and the imports of a first fit done now, while the main
    process is still preparing folds."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if gpus and claims:
        slot = _claim_slot(Path(claims), len(gpus))
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    warm_up_worker(baselines)


def warm_up_worker(baselines: bool) -> int:
    """The imports of a first fit, done before it: torch on one thread, the training code, and
    scikit-learn when baselines will run (1 s of CPU a worker otherwise spent for nothing)."""
    if baselines:
        import sklearn.ensemble
        import sklearn.linear_model  # noqa: F401
    import torch

    from losskit.app.compare import batched, fits  # noqa: F401

    torch.set_num_threads(1)
    return os.getpid()


def worker_ready() -> int:
    return os.getpid()
