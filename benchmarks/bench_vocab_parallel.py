"""Vocabulary-parallel cross-entropy against torch's loss_parallel and an all-gather: time, memory, bytes.

    .venv/bin/python benchmarks/bench_vocab_parallel.py              # N=4096, V=32768 per rank, 2 and 3 ranks
    .venv/bin/python benchmarks/bench_vocab_parallel.py --quick      # N=512, a smoke run
    .venv/bin/python benchmarks/bench_vocab_parallel.py --rounds 9 --worlds 2

Each world size runs as gloo processes on loopback. Every rank holds ``(N, 32768)`` float32
logits (its shard of ``V = 32768 * world`` classes, in rank order) and computes forward +
backward of the mean cross-entropy four ways (:func:`setup`):

* ``gather``  -- ``all_gather`` the shards, ``F.cross_entropy`` (the torch reference, imported
  from the tests) on the full ``(N, V)`` logits; every rank computes the whole loss, the
  gradient of its shard is a slice of the full one, no more traffic;
* ``loss_parallel`` -- the shard as a DTensor (``DTensor.from_local(local, mesh, [Shard(1)])``
  on a 1-D ``DeviceMesh("cpu", ...)`` over the gloo group), ``F.cross_entropy`` and backward
  under ``torch.distributed.tensor.parallel.loss_parallel()``;
* ``losskit`` -- ``losskit.distributed.vocab_parallel_cross_entropy(local, target)`` on the plain
  shard and the default process group;
* ``losskit-dtensor`` -- the same function given the DTensor logits of ``loss_parallel``.

Measurements, per world size:

* time -- the median over ``--rounds`` rounds of forward+backward on rank 0, started after a
  barrier; every method runs once per round, in a (seeded) random order each round, and
  "time vs gather" is the median of the per-round ratios (noise on a shared machine cancels);
* peak memory per rank -- each process reads its resident set (``VmRSS``, with the inputs
  already allocated), resets the high-water mark (``/proc/self/clear_refs``), runs
  forward+backward and reads ``VmHWM``: the extra resident memory, including the
  ``(N, 32768)`` float32 gradient of the logits that every method returns (512 MiB per rank at
  N=4096: the floor). RSS is per process; the table shows the largest rank, median over rounds;
* bytes per rank -- ``payload`` is the size of the tensors a rank hands to collectives;
  ``sent`` is what a ring algorithm sends per rank (all-reduce ``2 (W-1)/W`` of the payload,
  all-gather ``(W-1)`` times the rank's input, reduce-scatter and all-to-all ``(W-1)/W``), the
  usual model of the wire traffic. Plain calls are counted by wrapping ``dist.all_reduce`` and
  friends; DTensor code calls functional collectives (``torch.ops._c10d_functional.*``), counted
  by a ``TorchDispatchMode`` (:class:`FunctionalCollectives`). Bytes are counted in a first,
  untimed round, which also checks every method's loss and gradient against ``gather``'s and
  checks the counter: plain ``F.cross_entropy`` on the DTensor logits (no ``loss_parallel``)
  all-gathers them inside DTensor's dispatch, and must count exactly the ``gather`` bytes.

Writes ``benchmarks/results/bench_vocab_parallel.json`` (``..._quick.json`` with ``--quick``)
and the table as markdown beside it (``.md``), and prints the table.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import queue as queue_module
import random
import socket
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from _memory import kib
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

V_PER_RANK = 32768
METHODS = ["gather", "loss_parallel", "losskit", "losskit-dtensor"]
TIMEOUT = timedelta(seconds=600)  # process group: a hung collective fails instead of waiting forever

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------------------------
# counting bytes


class Traffic:
    """Bytes a rank hands to collectives (``payload``), the ring model's bytes sent (``sent``)
    and how often each collective was called."""

    def __init__(self, world: int) -> None:
        self.world = world
        self.payload = 0
        self.sent = 0.0
        self.calls: Counter[str] = Counter()

    def add(self, name: str, nbytes: int, ring: str) -> None:
        w = self.world
        factor = {"all_reduce": 2 * (w - 1) / w, "all_gather": w - 1, "scatter": (w - 1) / w, "one": 1.0}[ring]
        self.payload += nbytes
        self.sent += factor * nbytes
        self.calls[name] += 1


def _nbytes(tensors: Any) -> int:
    leaves = torch.utils._pytree.tree_leaves(tensors)
    return sum(t.numel() * t.element_size() for t in leaves if isinstance(t, torch.Tensor))


#: ring model of the ``_c10d_functional`` ops (their names without overload and trailing ``_``)
FUNCTIONAL_RING = {
    "all_reduce": "all_reduce",
    "all_reduce_coalesced": "all_reduce",
    "all_gather_into_tensor": "all_gather",
    "all_gather_into_tensor_out": "all_gather",
    "all_gather_into_tensor_coalesced": "all_gather",
    "reduce_scatter_tensor": "scatter",
    "reduce_scatter_tensor_coalesced": "scatter",
    "all_to_all_single": "scatter",
    "broadcast": "one",
}
#: ``_c10d_functional`` ops that move no data
FUNCTIONAL_NO_TRAFFIC = {"wait_tensor", "_wrap_tensor_autograd"}


class FunctionalCollectives(TorchDispatchMode):
    """Counts the input bytes of every ``torch.ops._c10d_functional`` collective.

    DTensor runs its sharding rules (and the collectives they need, on the local tensors)
    inside its own ``__torch_dispatch__``. A mode normally handles an op before the subclass
    and is popped while doing so, so it would never see those collectives; returning
    ``NotImplemented`` for DTensor arguments hands the op to DTensor with this mode still
    active, and the collectives it issues come back here as ops on plain tensors."""

    def __init__(self, traffic: Traffic) -> None:
        super().__init__()
        self.traffic = traffic

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        from torch.distributed.tensor import DTensor

        if any(issubclass(t, DTensor) for t in types):
            return NotImplemented
        if func.namespace == "_c10d_functional":
            name = func.overloadpacket.__name__.rstrip("_")
            if name not in FUNCTIONAL_NO_TRAFFIC:
                # an unknown collective still counts its payload (ring factor 1) and shows in "calls"
                self.traffic.add(f"_c10d_functional.{name}", _nbytes(args), FUNCTIONAL_RING.get(name, "one"))
        return func(*args, **(kwargs or {}))


#: plain ``torch.distributed`` calls: name -> (ring model, index of the input argument)
DIST_CALLS = {
    "all_reduce": ("all_reduce", 0),
    "all_gather": ("all_gather", 1),
    "all_gather_into_tensor": ("all_gather", 1),
    "reduce_scatter_tensor": ("scatter", 1),
    "all_to_all_single": ("scatter", 1),
    "broadcast": ("one", 0),
}


@contextlib.contextmanager
def count_traffic(world: int) -> Iterator[Traffic]:
    """Counts plain ``dist.*`` collectives (by wrapping them) and functional ones (by a mode)."""
    traffic = Traffic(world)
    originals = {name: getattr(dist, name) for name in DIST_CALLS}

    def wrap(name: str) -> Callable[..., Any]:
        ring, index = DIST_CALLS[name]
        original = originals[name]

        def counted(*args: Any, **kwargs: Any) -> Any:
            traffic.add(f"dist.{name}", _nbytes(args[index]), ring)
            return original(*args, **kwargs)

        return counted

    for name in DIST_CALLS:
        setattr(dist, name, wrap(name))
    try:
        with FunctionalCollectives(traffic):
            yield traffic
    finally:
        for name, original in originals.items():
            setattr(dist, name, original)


# ---------------------------------------------------------------------------------------------
# the methods


def setup(method: str, mesh: Any) -> Step:
    """``step(local, target) -> loss``: forward + backward of the mean cross-entropy of the
    logits whose class block ``local`` ``(N, V_r)`` is on this rank (its gradient lands in
    ``local.grad``); returns the detached loss as a plain tensor."""
    import torch.nn.functional as F
    from torch.distributed.tensor import DTensor, Shard
    from torch.distributed.tensor.parallel import loss_parallel

    from losskit.distributed import vocab_parallel_cross_entropy
    from tests._parity import torch_reference

    cross_entropy = torch_reference("cross_entropy")

    def sharded(local: torch.Tensor) -> DTensor:
        # what a column-parallel output layer returns; run_check=False: no broadcast
        return DTensor.from_local(local, mesh, [Shard(1)], run_check=False)

    def gather(local: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, local.detach())
        parts[dist.get_rank()] = local  # keep the autograd path to this rank's shard
        loss = cross_entropy(torch.cat(parts, 1), target)
        loss.backward()
        return loss.detach()

    def torch_loss_parallel(local: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with loss_parallel():  # backward must run inside it too
            loss = F.cross_entropy(sharded(local), target)
            loss.backward()
        return loss.detach().to_local()

    def losskit(local: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = vocab_parallel_cross_entropy(local, target)
        loss.backward()
        return loss.detach()

    def losskit_dtensor(local: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = vocab_parallel_cross_entropy(sharded(local), target)
        loss.backward()
        return loss.detach()

    steps = {
        "gather": gather,
        "loss_parallel": torch_loss_parallel,
        "losskit": losskit,
        "losskit-dtensor": losskit_dtensor,
    }
    return steps[method]


def dtensor_gather_check(local: torch.Tensor, target: torch.Tensor, mesh: Any) -> tuple[Traffic, torch.Tensor]:
    """Plain ``F.cross_entropy`` on the DTensor logits, counted: DTensor all-gathers them inside
    its dispatch (one ``all_gather_into_tensor``), so the counter must see ``gather``'s bytes."""
    import torch.nn.functional as F
    from torch.distributed.tensor import DTensor, Replicate, Shard

    logits = DTensor.from_local(local.detach(), mesh, [Shard(1)], run_check=False)
    with count_traffic(dist.get_world_size()) as traffic:
        loss = F.cross_entropy(logits, DTensor.from_local(target, mesh, [Replicate()], run_check=False))
    return traffic, loss.to_local()


# ---------------------------------------------------------------------------------------------
# one world size


def _measured(step: Step, local: torch.Tensor, target: torch.Tensor) -> tuple[float, int]:
    """Seconds (after a barrier) and extra resident bytes of one forward+backward."""
    local.grad = None
    gc.collect()
    before = kib("VmRSS") * 1024
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM to the current resident set
    dist.barrier()
    start = time.perf_counter()
    step(local, target)
    elapsed = time.perf_counter() - start
    return elapsed, kib("VmHWM") * 1024 - before


def _check_round(
    steps: dict[str, Step], local: torch.Tensor, target: torch.Tensor, mesh: Any, world: int
) -> tuple[dict, dict]:
    """Warm-up round: bytes of each method, its loss and gradient against ``gather``'s, and the
    counter's check. Returns ``(per-method results, counter check)`` of this rank."""
    out: dict[str, dict] = {}
    reference: tuple[torch.Tensor, torch.Tensor] | None = None
    n = local.shape[0]
    for name, step in steps.items():
        local.grad = None
        dist.barrier()
        try:
            with count_traffic(world) as traffic:
                loss = step(local, target)
        except Exception as exc:  # loss_parallel may not support a configuration: report it
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        grad = local.grad
        if reference is None:  # gather, the first method
            reference = (loss, grad.clone())
        ref_loss, ref_grad = reference
        # gradient entries are O(1/N): compare N * grad, the per-row gradients (in place: the
        # full-size temporaries would dwarf the methods' own memory)
        diff = grad.sub(ref_grad).mul_(n).abs_()
        tolerance = ref_grad.mul(n).abs_().mul_(1e-4).add_(1e-6)
        out[name] = {
            "payload_bytes": traffic.payload,
            "sent_bytes": traffic.sent,
            "calls": dict(traffic.calls),
            "loss": float(loss),
            "loss_abs_diff": float((loss - ref_loss).abs()),
            "grad_abs_diff": float(diff.max()),
            "grad_ok": bool((diff <= tolerance).all()),
            "loss_ok": bool(torch.allclose(loss, ref_loss, rtol=1e-5, atol=1e-5)),
        }
        del diff, tolerance, grad
    local.grad = None
    dist.barrier()
    traffic, loss = dtensor_gather_check(local, target, mesh)
    check = {
        "payload_bytes": traffic.payload,
        "sent_bytes": traffic.sent,
        "calls": dict(traffic.calls),
        "loss": float(loss),
        "expected_payload_bytes": local.numel() * local.element_size(),
    }
    return out, check


def worker(rank: int, world: int, port: int, n: int, rounds: int, queue) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world, timeout=TIMEOUT)
    try:
        from torch.distributed.device_mesh import DeviceMesh

        mesh = DeviceMesh("cpu", list(range(world)))  # 1-D, over the default (gloo) group
        steps = {m: setup(m, mesh) for m in METHODS}
        target = torch.randint(0, V_PER_RANK * world, (n,), generator=torch.Generator().manual_seed(0))
        local = torch.randn(n, V_PER_RANK, generator=torch.Generator().manual_seed(rank + 1))
        local.requires_grad_(True)

        checked, counter_check = _check_round(steps, local, target, mesh, world)
        runnable = [m for m in METHODS if "error" not in checked[m]]
        seconds: dict[str, list[float]] = {m: [] for m in runnable}
        peaks: dict[str, list[int]] = {m: [] for m in runnable}
        order = random.Random(0)  # the same sequence on every rank
        for _ in range(rounds):
            # a fresh order each round: no method always runs after the same one (whose freed
            # memory the kernel may still be reclaiming)
            for name in order.sample(runnable, len(runnable)):
                elapsed, peak = _measured(steps[name], local, target)
                seconds[name].append(elapsed)
                peaks[name].append(peak)
        mine = {"checked": checked, "counter_check": counter_check, "seconds": seconds, "peaks": peaks}
        everyone: list[Any] = [None] * world
        dist.all_gather_object(everyone, mine)
        if rank == 0:
            queue.put(_summary(world, n, rounds, everyone))
    except Exception:
        import traceback

        queue.put({"error": f"rank {rank}:\n{traceback.format_exc()}"})
        raise
    finally:
        dist.destroy_process_group()


def _summary(world: int, n: int, rounds: int, ranks: list[dict]) -> dict:
    """One world size's result from every rank's measurements (time from rank 0)."""
    zero = ranks[0]
    methods: dict[str, dict] = {}
    base = zero["seconds"]["gather"]
    for m in METHODS:
        c = zero["checked"][m]
        if "error" in c:
            methods[m] = {"error": c["error"]}
            continue
        per_rank_peak = [statistics.median(r["peaks"][m]) for r in ranks]
        methods[m] = {
            "seconds": statistics.median(zero["seconds"][m]),
            "seconds_per_round": zero["seconds"][m],
            "time_vs_gather": statistics.median(t / b for t, b in zip(zero["seconds"][m], base)),
            "peak_bytes": max(per_rank_peak),
            "peak_bytes_per_rank": per_rank_peak,
            "payload_bytes": max(r["checked"][m]["payload_bytes"] for r in ranks),
            "sent_bytes": max(r["checked"][m]["sent_bytes"] for r in ranks),
            "calls": c["calls"],
            "loss": c["loss"],
            "loss_abs_diff_vs_gather": max(r["checked"][m]["loss_abs_diff"] for r in ranks),
            "grad_abs_diff_vs_gather_times_N": max(r["checked"][m]["grad_abs_diff"] for r in ranks),
            "agrees_with_gather": all(r["checked"][m]["loss_ok"] and r["checked"][m]["grad_ok"] for r in ranks),
        }
    gather_peak = methods["gather"]["peak_bytes"]
    for m in methods.values():
        if "error" not in m:
            m["memory_vs_gather"] = m["peak_bytes"] / gather_peak
    return {
        "world": world,
        "N": n,
        "V": V_PER_RANK * world,
        "V_per_rank": V_PER_RANK,
        "rounds": rounds,
        "grad_bytes": n * V_PER_RANK * 4,
        "methods": methods,
        "counter_check": [r["counter_check"] for r in ranks],
    }


def run(world: int, n: int, rounds: int) -> dict:
    """Spawns ``world`` gloo processes; fails (instead of hanging) when one of them dies."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(r, world, port, n, rounds, queue)) for r in range(world)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + TIMEOUT.total_seconds() * 3
    result = None
    try:
        while result is None:
            try:
                result = queue.get(timeout=2)
            except queue_module.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead or time.monotonic() > deadline:
                    raise SystemExit(f"world {world}: a worker exited with {dead} or timed out") from None
        if "error" in result:
            raise SystemExit(f"world {world} failed on {result['error']}")
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.terminate()
    return result


# ---------------------------------------------------------------------------------------------
# checks, table, files


def verify(res: dict) -> list[str]:
    """Raises when a method disagrees with ``gather`` or the counter misses known bytes; returns
    the lines to print about it."""
    world, methods = res["world"], res["methods"]
    lines = []
    shard_bytes = res["N"] * res["V_per_rank"] * 4
    gather = methods["gather"]
    if gather["payload_bytes"] != shard_bytes or gather["sent_bytes"] != (world - 1) * shard_bytes:
        raise SystemExit(f"world {world}: the dist wrapper counted {gather['payload_bytes']} bytes for gather")
    for check in res["counter_check"]:
        if (check["payload_bytes"], check["sent_bytes"]) != (gather["payload_bytes"], gather["sent_bytes"]):
            raise SystemExit(f"world {world}: the dispatch-mode counter saw {check}; gather counted {gather}")
        if abs(check["loss"] - gather["loss"]) > 1e-4 * max(1.0, abs(gather["loss"])):
            raise SystemExit(f"world {world}: DTensor cross_entropy {check['loss']} != gather {gather['loss']}")
    lines.append(
        f"world {world}: counter check: F.cross_entropy on the DTensor logits (DTensor's own all-gather) "
        f"counted {check['payload_bytes']} B payload {check['calls']} = gather's dist.all_gather: ok"
    )
    for name, m in methods.items():
        if "error" in m:
            lines.append(f"world {world}: {name} FAILED: {m['error']}")
            continue
        lines.append(
            f"world {world}: {name}: loss {m['loss']:.6f}, max |loss - gather| {m['loss_abs_diff_vs_gather']:.2e}, "
            f"max |N*(grad - gather grad)| {m['grad_abs_diff_vs_gather_times_N']:.2e}; collectives {m['calls']}"
        )
        if not m["agrees_with_gather"]:
            raise SystemExit(f"world {world}: {name} disagrees with gather: {m}")
    return lines


def _size(nbytes: float) -> str:
    if nbytes < 2**20:
        return f"{nbytes / 2**10:.1f} KiB"
    return f"{nbytes / 2**20:.1f} MiB"


COLUMNS = [
    "world",
    "V",
    "method",
    "time ms",
    "time vs gather",
    "peak MiB / rank",
    "memory vs gather",
    "payload / rank",
    "sent / rank (ring)",
]


def table_rows(results: list[dict]) -> list[list[str]]:
    rows = []
    for res in results:
        for name, m in res["methods"].items():
            head = [str(res["world"]), str(res["V"]), name]
            if "error" in m:
                rows.append(head + ["failed", "-", "-", "-", "-", m["error"][:60]])
                continue
            rows.append(
                head
                + [
                    f"{m['seconds'] * 1000:.0f}",
                    f"{m['time_vs_gather']:.2f}x",
                    f"{m['peak_bytes'] / 2**20:.0f}",
                    f"{m['memory_vs_gather']:.2f}x",
                    _size(m["payload_bytes"]),
                    _size(m["sent_bytes"]),
                ]
            )
    return rows


def markdown(title: str, notes: str, rows: list[list[str]]) -> str:
    lines = [f"**{title}**", "", "| " + " | ".join(COLUMNS) + " |"]
    lines.append("|" + "|".join(":---" if c == "method" else "---:" for c in COLUMNS) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines + ["", notes, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N=512 instead of 4096 (a smoke run)")
    parser.add_argument("--worlds", default="2,3", help="comma-separated process counts (default 2,3)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds after the checking round (default 5)")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/bench_vocab_parallel.json)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    n = 512 if args.quick else 4096
    default = ROOT / "benchmarks" / "results" / f"bench_vocab_parallel{'_quick' if args.quick else ''}.json"
    out = Path(args.out) if args.out else default

    results = []
    for w in args.worlds.split(","):
        res = run(int(w), n, args.rounds)
        for line in verify(res):
            print(line)
        results.append(res)

    from rich.console import Console
    from rich.table import Table

    title = (
        f"vocab-parallel cross-entropy, forward+backward, N={n}, V=32768 x world, float32, "
        f"gloo on loopback, median of {args.rounds} rounds"
    )
    notes = (
        f"time: rank 0 after a barrier; 'vs gather' is the median of per-round ratios. peak: extra "
        f"resident memory of one process (VmHWM above VmRSS with the inputs allocated), largest rank, "
        f"including the logits' gradient every method returns ({n * V_PER_RANK * 4 / 2**20:.0f} MiB per "
        f"rank). payload: bytes a rank hands to collectives; sent: ring model (all-reduce 2(W-1)/W, "
        f"all-gather W-1 times the input)."
    )
    table = Table(title=title, caption=notes)
    for col in COLUMNS:
        table.add_column(col, justify="left" if col == "method" else "right")
    rows = table_rows(results)
    for row in rows:
        table.add_row(*row)
    Console(width=170).print(table)

    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "threads_per_rank": 1,
        "argv": sys.argv[1:],
    }
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(title, notes, rows))
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
