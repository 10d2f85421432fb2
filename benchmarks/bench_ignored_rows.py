"""Fused linear + cross-entropy with ignored targets (prompt and padding tokens): time of forward
+ backward with a share of the rows ignored, as a ratio to the same batch with none ignored.

    .venv/bin/python benchmarks/bench_ignored_rows.py            # N=4096, D=1024, V=32000
    .venv/bin/python benchmarks/bench_ignored_rows.py --quick    # N=1024, D=256, V=8000

Rows whose target is ``ignore_index`` are dropped before any matrix product, so the work should
fall with the share of counted rows (target: 75 % ignored takes at most 0.35x the time of none
ignored). Both batches run in alternation in one process; the ratio is the median of per-round
ratios, robust to a shared machine's load. Prints a table, writes
``benchmarks/results/bench_ignored_rows.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import losskit  # noqa: E402
import losskit.functional as LF  # noqa: E402

SHARES = (0.0, 0.25, 0.5, 0.75, 0.9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small size, for a smoke run")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n, d, v = (1024, 256, 8000) if args.quick else (4096, 1024, 32000)
    torch.manual_seed(0)
    h = torch.randn(n, d, requires_grad=True)
    w = (torch.randn(v, d) * 0.02).requires_grad_()
    base = torch.randint(0, v, (n,))
    targets = {}
    for share in SHARES:
        t = base.clone()
        t[torch.randperm(n)[: int(share * n)]] = -100
        targets[share] = t
    losskit.set_checks("off")

    def run(t: torch.Tensor) -> float:
        h.grad = None
        w.grad = None
        start = time.perf_counter()
        LF.linear_cross_entropy(h, w, t).backward()
        return time.perf_counter() - start

    for t in targets.values():  # warm-up
        run(t)
    times: dict[float, list[float]] = {s: [] for s in SHARES}
    ratios: dict[float, list[float]] = {s: [] for s in SHARES}
    for _ in range(args.rounds):
        reference = run(targets[0.0])
        times[0.0].append(reference)
        for share in SHARES[1:]:
            elapsed = run(targets[share])
            times[share].append(elapsed)
            ratios[share].append(elapsed / reference)

    rows = [
        {
            "ignored": share,
            "ms": 1000 * statistics.median(times[share]),
            "ratio": 1.0 if share == 0.0 else statistics.median(ratios[share]),
        }
        for share in SHARES
    ]
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"linear_cross_entropy fwd+bwd, N={n}, D={d}, V={v}, float32, median of {args.rounds} rounds")
    for column in ("rows ignored", "ms", "time vs none ignored"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(f"{row['ignored']:.0%}", f"{row['ms']:.1f}", f"{row['ratio']:.3f}x")
    Console().print(table)
    out = ROOT / "benchmarks" / "results" / "bench_ignored_rows.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"n": n, "d": d, "v": v, "rounds": args.rounds, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
