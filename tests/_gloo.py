"""Run a workers module's cases on ``world`` gloo processes, with a deadline so nothing hangs.

A workers module has ``CASES`` (names of its ``case_*`` functions) and ``entry(rank, world, port,
cases, queue)``, which puts ``(rank, case, traceback or None[, reported lines])`` on the queue
for every case."""

from __future__ import annotations

import queue as queue_module
import socket
import time
from types import ModuleType
from typing import Any

import torch.multiprocessing as mp

import losskit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cases(workers: ModuleType, world: int, deadline_s: float) -> tuple[dict[str, dict[int, str | None]], list[str]]:
    """``{case: {rank: traceback or None}}`` (a rank that died or hung gets a message saying so)
    and the lines the ranks reported."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    procs = [
        ctx.Process(target=workers.entry, args=(r, world, port, workers.CASES, results), daemon=True)
        for r in range(world)
    ]
    for p in procs:
        p.start()
    outcome: dict[str, dict[int, str | None]] = {name: {} for name in workers.CASES}
    reports: list[str] = []
    expected, got = world * len(workers.CASES), 0
    deadline = time.monotonic() + deadline_s
    while got < expected and time.monotonic() < deadline:
        try:
            rank, name, error, *reported = results.get(timeout=1)
        except queue_module.Empty:
            if all(not p.is_alive() for p in procs):
                break
            continue
        outcome[name][rank] = error
        reports += [f"{name}: {line}" for line in (reported[0] if reported else [])]
        got += 1
    for p in procs:
        p.join(timeout=max(1.0, deadline - time.monotonic()))
    hung = [p for p in procs if p.is_alive()]
    for p in hung:
        p.kill()
    for name in workers.CASES:
        for r in range(world):
            outcome[name].setdefault(
                r, "no result: the process died or hung" + (" (killed at the deadline)" if hung else "")
            )
    return outcome, reports


def expect_error(fn: Any, *patterns: str) -> None:
    """``fn()`` raises a :class:`losskit.LossInputError` whose message holds every pattern."""
    try:
        fn()
    except losskit.LossInputError as exc:
        text = str(exc)
        for p in patterns:
            assert p in text, f"{p!r} not in {text!r}"
        return
    raise AssertionError("no LossInputError raised")
