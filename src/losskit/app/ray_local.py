"""The local Ray instance of one losskit run: started by ``losskit compare --backend ray`` (when
no cluster address is given), used by compare's Ray engine, shut down and its session folder
removed at the end.

Starting an instance takes about 4.5 s, spent waiting on its own processes, and shutting it
down 1.4 s: the command line starts it while another thread imports torch and loads the data
(:func:`start_beside`), and a run that ended well shuts it down while the report is written
(:func:`shutdown` with ``background=True``). Importing this module imports neither torch nor ray.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["QUIET", "owned", "shutdown", "start", "start_beside", "wait", "warm_up"]

T = TypeVar("T")

#: ``ray.init`` options: no log lines from the workers or from Ray itself below errors
QUIET: dict[str, Any] = {"log_to_driver": False, "logging_level": "ERROR", "configure_logging": True}

_state: dict[str, Any] = {}  # "temp": the session folder of the instance this process started
_stopping: list[threading.Thread] = []


def owned() -> bool:
    """Whether this process started the Ray instance it is connected to."""
    return "temp" in _state


def start(cpus: int) -> None:
    """Start a local instance with ``cpus`` CPUs, its session files in a new folder (short
    enough for Ray's socket paths: AF_UNIX paths are at most 107 bytes)."""
    import ray

    wait()
    base = tempfile.gettempdir()
    if len(base) > 30 and os.access("/tmp", os.W_OK):
        base = "/tmp"
    temp = tempfile.mkdtemp(prefix="losskit-ray-", dir=base)
    try:
        ray.init(num_cpus=cpus, include_dashboard=False, _temp_dir=temp, **QUIET)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    _state["temp"] = temp


def start_beside(work: Callable[[], T], cpus: int, baselines: bool = False) -> T:
    """Run ``work`` in a second thread while a local instance of ``cpus`` CPUs starts in this
    one, then warm its workers up (:func:`warm_up`); return what ``work`` returned (or raise what
    it raised, the instance shut down). Without the ``ray`` package, just ``work()`` (the engine
    then says how to install it)."""
    try:
        import ray  # noqa: F401
    except ModuleNotFoundError:
        return work()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="losskit-load") as pool:
        future = pool.submit(work)
        try:
            start(cpus)
            if not future.done():  # the data is still loading: the workers import meanwhile
                warm_up(cpus, baselines)
        finally:
            try:
                out = future.result()
            except BaseException:
                shutdown()
                raise
    return out


def warm_up(cpus: int, baselines: bool) -> None:
    """Start ``cpus`` Ray workers on the imports of a first fit (torch, the training code, and
    scikit-learn for baselines) -- the same task the engine sends when it starts, so the workers
    that ran it are found warm. Not waited for."""
    import ray

    from losskit.app.workers import warm_up_worker

    remote = ray.remote(warm_up_worker).options(num_cpus=1)
    _state["warming"] = [remote.remote(baselines) for _ in range(cpus)]


def shutdown(background: bool = False) -> None:
    """Shut down the instance this process started (if any) and remove its folder; with
    ``background``, in a thread that the interpreter waits for at exit (and :func:`start` before
    a new instance), so a finished run writes its report meanwhile."""
    _state.pop("warming", None)
    temp = _state.pop("temp", None)
    if temp is None:
        return

    def stop() -> None:
        import ray

        with contextlib.suppress(Exception):
            ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)

    if not background:
        stop()
        return
    thread = threading.Thread(target=stop, name="losskit-ray-shutdown")
    thread.start()
    _stopping.append(thread)


def wait() -> None:
    """Wait for a shutdown started in the background."""
    while _stopping:
        _stopping.pop().join()
