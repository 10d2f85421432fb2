"""Vocabulary-parallel cross-entropy against gathering the full logits: bytes sent and time.

    .venv/bin/python benchmarks/bench_vocab_parallel.py            # N=4096, V=32768 per rank, 2 and 3 ranks
    .venv/bin/python benchmarks/bench_vocab_parallel.py --quick    # N=512

Each world size runs as gloo processes on loopback. Every rank holds ``(N, 32768)`` float32
logits (its shard of ``V = 32768 * world`` classes) and computes forward + backward of the mean
cross-entropy two ways:

* ``gather``  -- ``all_gather`` the shards, ``F.cross_entropy`` on the full ``(N, V)`` logits
  (every rank computes the whole loss; the gradient of its shard is a slice, no more traffic);
* ``losskit`` -- ``losskit.distributed.vocab_parallel_cross_entropy`` (all-reduces of size N).

Bytes are counted by wrapping the collectives: ``payload`` is the size of the tensors a rank
hands to them; ``sent`` is what a ring algorithm sends per rank (all-reduce ``2 (W-1)/W`` of
the payload, all-gather ``(W-1)`` times the rank's input), the usual model of the wire traffic.
Times are medians over rounds (the two methods alternate), measured on rank 0 after a barrier.
Writes ``benchmarks/results/bench_vocab_parallel.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

V_PER_RANK = 32768


class Counter:
    """Wraps all_reduce / all_gather to count the bytes each rank hands over."""

    def __init__(self) -> None:
        self.payload = 0
        self.sent = 0.0
        self._reduce, self._gather = dist.all_reduce, dist.all_gather

    def __enter__(self) -> Counter:
        world = dist.get_world_size()

        def all_reduce(tensor, *args, **kwargs):
            b = tensor.numel() * tensor.element_size()
            self.payload += b
            self.sent += 2 * (world - 1) / world * b
            return self._reduce(tensor, *args, **kwargs)

        def all_gather(out, tensor, *args, **kwargs):
            b = tensor.numel() * tensor.element_size()
            self.payload += b
            self.sent += (world - 1) * b
            return self._gather(out, tensor, *args, **kwargs)

        dist.all_reduce, dist.all_gather = all_reduce, all_gather
        return self

    def __exit__(self, *exc) -> None:
        dist.all_reduce, dist.all_gather = self._reduce, self._gather


def _gather_loss(local: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    world = dist.get_world_size()
    parts = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(parts, local.detach())
    parts[dist.get_rank()] = local  # keep the autograd path to this rank's shard
    return F.cross_entropy(torch.cat(parts, 1), target)


def worker(rank: int, world: int, port: int, n: int, rounds: int, queue) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world, timeout=timedelta(seconds=300)
    )
    from losskit.distributed import vocab_parallel_cross_entropy

    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, V_PER_RANK * world, (n,), generator=g)
    local = torch.randn(n, V_PER_RANK, generator=torch.Generator().manual_seed(rank + 1)).requires_grad_(True)
    methods = {"gather": _gather_loss, "losskit": vocab_parallel_cross_entropy}
    times: dict[str, list[float]] = {m: [] for m in methods}
    traffic: dict[str, tuple[int, float]] = {}
    values = {}
    for r in range(rounds + 1):  # round 0 warms up
        for name, fn in methods.items():
            local.grad = None
            dist.barrier()
            with Counter() as counter:
                start = time.perf_counter()
                loss = fn(local, target)
                loss.backward()
                elapsed = time.perf_counter() - start
            if r:
                times[name].append(elapsed)
            traffic[name] = (counter.payload, counter.sent)
            values[name] = float(loss.detach())
    if rank == 0:
        queue.put(
            {
                "world": world,
                "N": n,
                "V": V_PER_RANK * world,
                "values": values,
                "methods": {
                    m: {
                        "payload_bytes": traffic[m][0],
                        "sent_bytes": traffic[m][1],
                        "seconds": statistics.median(times[m]),
                    }
                    for m in methods
                },
            }
        )
    dist.destroy_process_group()


def run(world: int, n: int, rounds: int) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(r, world, port, n, rounds, queue)) for r in range(world)]
    for p in procs:
        p.start()
    result = queue.get(timeout=1200)
    for p in procs:
        p.join(timeout=60)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N=512 instead of 4096")
    parser.add_argument("--worlds", default="2,3", help="comma-separated process counts (default 2,3)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_vocab_parallel.json"))
    args = parser.parse_args()
    n = 512 if args.quick else 4096
    results = [run(int(w), n, args.rounds) for w in args.worlds.split(",")]
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"vocab-parallel cross-entropy, forward+backward, N={n}, V=32768 x world, float32, gloo on loopback"
    )
    for col in (
        "world",
        "V",
        "method",
        "payload / rank",
        "sent / rank (ring)",
        "time",
        "bytes vs gather",
        "time vs gather",
    ):
        table.add_column(col, justify="right" if col not in ("method",) else "left")
    for res in results:
        base = res["methods"]["gather"]
        for name, m in res["methods"].items():
            table.add_row(
                str(res["world"]),
                str(res["V"]),
                name,
                f"{m['payload_bytes'] / 2**20:.3f} MiB",
                f"{m['sent_bytes'] / 2**20:.3f} MiB",
                f"{m['seconds'] * 1000:.0f} ms",
                f"{m['sent_bytes'] / base['sent_bytes']:.5f}x",
                f"{m['seconds'] / base['seconds']:.2f}x",
            )
        assert abs(res["values"]["gather"] - res["values"]["losskit"]) < 1e-3 * max(1.0, abs(res["values"]["gather"]))
    Console(width=160).print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
