"""Where ``losskit compare``'s fits run: in this process, in local worker processes, or on a
Ray cluster. Every engine runs the same :func:`~losskit.app.compare.fits.run_task` on the same
tasks, and the caller puts the outcomes back in task order, so the report does not depend on
the engine.

* :class:`InProcess` -- one after another in this process (``jobs=1``, or a comparison so small
  that starting workers would cost more than it saves).
* :class:`Processes` -- a pool of worker processes (loky: spawned, robust to a dying worker),
  each on one thread. Folds are written once to memory-mapped ``.npy`` files that every worker
  maps (no copy per fit). With CUDA and several visible GPUs, each worker claims a slot at start
  and sees one GPU (``CUDA_VISIBLE_DEVICES``).
* :class:`Ray` -- tasks on a Ray cluster (``RAY_ADDRESS`` / ``--ray-address``, else a local
  instance); folds go into the object store once; ``--gpus-per-fit`` asks Ray for GPUs.

Ctrl-C or an error stops every worker and removes every temporary file; a worker that dies
(killed, out of memory) ends the run with :class:`WorkerDied` naming the fit it was running.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from losskit.app.compare.fits import FitTask, FoldArrays, Settings, TaskOutcome, run_task
from losskit.app.workers import cpu_count, pid_alive, pool_executor, warm_up_worker, worker_ready
from losskit.errors import LossInputError

__all__ = ["Engine", "InProcess", "Processes", "Ray", "WorkerDied", "cpu_count", "gpu_slots", "make_engine"]


class WorkerDied(RuntimeError):
    """A worker process ended without a result (killed, out of memory, crashed)."""


class Engine:
    """Runs fit tasks; ``put`` a fold's arrays before ``submit``-ting a task that uses it."""

    name = "engine"

    def __init__(self, settings: Settings, workers: int) -> None:
        self.settings = settings
        self.workers = workers

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        self.close(failed=kind is not None)

    def put(self, fold: int, arrays: FoldArrays) -> None:
        raise NotImplementedError

    def submit(self, index: int, task: FitTask) -> None:
        raise NotImplementedError

    def outcomes(self) -> Iterator[tuple[int, TaskOutcome]]:
        """``(index, outcome)`` of every submitted task, as they finish."""
        raise NotImplementedError

    def close(self, failed: bool) -> None:
        return None

    def describe(self) -> str:
        return self.name


class InProcess(Engine):
    """Every task in this process, in the order submitted."""

    name = "in-process"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, 1)
        self.folds: dict[int, FoldArrays] = {}
        self.queue: list[tuple[int, FitTask]] = []

    def put(self, fold: int, arrays: FoldArrays) -> None:
        self.folds[fold] = arrays

    def submit(self, index: int, task: FitTask) -> None:
        self.queue.append((index, task))

    def outcomes(self) -> Iterator[tuple[int, TaskOutcome]]:
        while self.queue:
            index, task = self.queue.pop(0)
            yield index, run_task(task, self.settings, {k: self.folds[k] for k in task.folds})


# --------------------------------------------------------------------------- local processes


def gpu_slots(workers: int, visible: list[str]) -> list[str]:
    """The GPU each of ``workers`` local workers sees (round robin over ``visible``)."""
    return [visible[i % len(visible)] for i in range(workers)] if visible else []


def _write_fold(root: Path, fold: int, arrays: FoldArrays) -> None:
    folder = root / f"fold-{fold}"
    folder.mkdir()
    for name in FoldArrays.FIELDS:
        value = getattr(arrays, name)
        if value is not None:
            np.save(folder / f"{name}.npy", np.ascontiguousarray(value), allow_pickle=False)


def _read_fold(root: Path, fold: int) -> FoldArrays:
    folder = root / f"fold-{fold}"
    values: dict[str, Any] = {}
    for name in FoldArrays.FIELDS:
        path = folder / f"{name}.npy"
        values[name] = np.load(path, mmap_mode="r", allow_pickle=False) if path.exists() else None
    return FoldArrays(**values)


def _run_in_worker(task: FitTask, settings: Settings, root: str, index: int) -> TaskOutcome:
    """A task in a worker process: its folds are mapped from ``root``; a marker file names the
    fit while it runs, so the main process can say which fit a dead worker was running."""
    marker = Path(root) / "running" / str(os.getpid())
    marker.write_text(task.label)
    try:
        folds = {k: _read_fold(Path(root), k) for k in task.folds}
        return run_task(task, settings, folds)
    finally:
        with contextlib.suppress(OSError):
            marker.unlink()


class Processes(Engine):
    """Local worker processes (loky's reusable executor: spawned once, kept warm for the next
    comparison of this process, replaced when one dies)."""

    name = "processes"

    def __init__(
        self, settings: Settings, workers: int, gpus: list[str] | None = None, baselines: bool = False
    ) -> None:
        super().__init__(settings, workers)
        self.root = Path(tempfile.mkdtemp(prefix="losskit-compare-"))
        (self.root / "running").mkdir()
        claims = None
        if gpus:
            claims = str(Path(tempfile.gettempdir()) / f"losskit-gpu-slots-{os.getpid()}")
            shutil.rmtree(claims, ignore_errors=True)
            Path(claims).mkdir()
        self.claims = claims
        self.executor = pool_executor(workers, gpus, claims, baselines)
        self.futures: dict[Any, int] = {}
        self.pending: set[Any] = set()
        self.labels: dict[int, str] = {}
        for _ in range(workers):  # start the workers now: they import while the folds are prepared
            self.executor.submit(worker_ready)

    def put(self, fold: int, arrays: FoldArrays) -> None:
        _write_fold(self.root, fold, arrays)

    def submit(self, index: int, task: FitTask) -> None:
        future = self.executor.submit(_run_in_worker, task, self.settings, str(self.root), index)
        self.futures[future] = index
        self.pending.add(future)
        self.labels[index] = task.label

    def outcomes(self) -> Iterator[tuple[int, TaskOutcome]]:
        from concurrent.futures import FIRST_COMPLETED, wait

        from loky.process_executor import TerminatedWorkerError

        while self.pending:
            done, _ = wait(self.pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                self.pending.discard(future)
                try:
                    outcome = future.result()
                except TerminatedWorkerError as exc:
                    raise WorkerDied(self._dead(str(exc))) from None
                yield self.futures[future], outcome

    def _dead(self, message: str) -> str:
        running = self.root / "running"
        dead = []
        for marker in running.iterdir() if running.exists() else []:
            if not pid_alive(int(marker.name)):
                with contextlib.suppress(OSError):
                    dead.append(marker.read_text())
        codes = message.split("exit codes of the workers are", 1)[-1].split("\n", 1)[0].strip(" .{}")
        what = f"the fit {dead[0]!r}" if dead else "a fit"
        return (
            f"a worker process died while running {what} (exit code {codes}: killed, out of memory or "
            "crashed); no report was written"
        )

    def close(self, failed: bool) -> None:
        if failed:
            for future in self.pending:
                future.cancel()
            with contextlib.suppress(Exception):
                self.executor.shutdown(wait=True, kill_workers=True)
        shutil.rmtree(self.root, ignore_errors=True)
        if self.claims:
            shutil.rmtree(self.claims, ignore_errors=True)

    def describe(self) -> str:
        return f"{self.workers} worker processes"


# --------------------------------------------------------------------------- Ray


def _run_on_ray(task: FitTask, settings: Settings, *arrays: FoldArrays) -> TaskOutcome:
    return run_task(task, settings, dict(zip(task.folds, arrays)))


class Ray(Engine):
    """Fits as Ray tasks (one CPU each, ``gpus_per_fit`` GPUs each when asked). Connects to
    ``address`` (``--ray-address``, else ``RAY_ADDRESS``) or starts a local instance with
    ``workers`` CPUs, which is shut down at the end."""

    name = "ray"

    def __init__(
        self,
        settings: Settings,
        workers: int,
        address: str | None = None,
        gpus_per_fit: float = 0,
        baselines: bool = False,
    ) -> None:
        super().__init__(settings, workers)
        try:
            import ray
        except ModuleNotFoundError:
            raise LossInputError(
                "--backend ray: the package 'ray' is not installed; expected it for running fits on a Ray "
                "cluster. Install it with: pip install 'losskit[ray]' (or pass --backend local)."
            ) from None
        self.ray = ray
        from losskit.app import ray_local

        ray_local.wait()  # a previous run's instance still shutting down
        address = address or os.environ.get("RAY_ADDRESS") or None
        if not ray.is_initialized():
            if address:
                ray.init(address=address, **ray_local.QUIET)
            else:
                ray_local.start(workers)
        # an instance this process started (here, or by the command line while it loaded the
        # data) is shut down at the end; one the user started is left running
        self.started = ray_local.owned()
        self.where = address or "a local Ray instance"
        self.remote = ray.remote(_run_on_ray).options(num_cpus=1, num_gpus=gpus_per_fit, max_retries=0)
        # start a worker per CPU now: they import while the main process prepares the folds
        self.warm = [ray.remote(warm_up_worker).options(num_cpus=1).remote(baselines) for _ in range(workers)]
        self.settings_ref = ray.put(settings)
        self.fold_refs: dict[int, Any] = {}
        self.refs: dict[Any, int] = {}
        self.pending: list[Any] = []
        self.labels: dict[int, str] = {}

    def put(self, fold: int, arrays: FoldArrays) -> None:
        self.fold_refs[fold] = self.ray.put(arrays)

    def submit(self, index: int, task: FitTask) -> None:
        ref = self.remote.remote(task, self.settings_ref, *(self.fold_refs[k] for k in task.folds))
        self.refs[ref] = index
        self.pending.append(ref)
        self.labels[index] = task.label

    def outcomes(self) -> Iterator[tuple[int, TaskOutcome]]:
        ray = self.ray
        while self.pending:
            done, _ = ray.wait(self.pending, num_returns=1, timeout=0.5)
            for ref in done:
                self.pending.remove(ref)
                index = self.refs[ref]
                try:
                    outcome = ray.get(ref)
                except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as exc:
                    raise WorkerDied(
                        f"a Ray worker died while running the fit {self.labels[index]!r} ({type(exc).__name__}: "
                        "killed, out of memory or crashed); no report was written"
                    ) from None
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.as_instanceof_cause()
                    inner = getattr(exc, "cause", None)
                    raise (inner if isinstance(inner, BaseException) else cause) from None
                yield index, outcome

    def close(self, failed: bool) -> None:
        ray = self.ray
        if failed:
            for ref in self.pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
        if self.started:
            from losskit.app import ray_local

            # a run that ended well shuts the instance down while its report is written
            ray_local.shutdown(background=not failed)

    def describe(self) -> str:
        return f"Ray ({self.where})"


def make_engine(
    backend: str,
    settings: Settings,
    jobs: int,
    *,
    ray_address: str | None = None,
    gpus_per_fit: float = 0,
    baselines: bool = False,
) -> Engine:
    """The engine for ``backend`` (``"local"`` or ``"ray"``) with ``jobs`` workers: ``local`` with
    one job runs in this process; with CUDA and several visible GPUs, local workers are spread
    over them."""
    if backend == "ray":
        return Ray(settings, jobs, ray_address, gpus_per_fit, baselines)
    if jobs <= 1:
        return InProcess(settings)
    gpus = None
    if settings.device.startswith("cuda") and settings.device in ("cuda", "cuda:0"):
        gpus = _visible_gpus()
        if len(gpus) < 2:
            gpus = None
    return Processes(settings, jobs, gpus, baselines)


def _visible_gpus() -> list[str]:
    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]
