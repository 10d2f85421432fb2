"""The fused linear + cross-entropy against the bare-GEMM floor, alternating in one process.

    .venv/bin/python benchmarks/bench_fused_floor.py            # the issue's sizes
    .venv/bin/python benchmarks/bench_fused_floor.py --quick    # small sizes, a smoke run

``bench_linear_cross_entropy.py`` runs every provider in a fresh process (needed to measure each
one's peak memory), so on a shared machine two processes minutes apart see different loads.
This one answers only the time question, as robustly as a shared machine allows: in one process,
the floor (the three matrix products any implementation must do: ``h @ W.T``, ``L @ W``,
``L.T @ h``) and losskit's ``linear_cross_entropy`` forward+backward take turns, round after
round, and the reported ratio is the median of the per-round ratios (a slow spell hits both
halves of a round). Targets (issue 17, item 6): at most 1.05x the floor at D >= 1024 and at
most 1.10x at D = 512. Prints a table; writes ``benchmarks/results/bench_fused_floor.json`` and
``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import losskit.functional as LF  # noqa: E402

#: name -> (N, D, V, dtype, rounds, target)
CONFIGS = {
    "N=2048 D=512 V=32768": (2048, 512, 32768, torch.float32, 9, 1.10),
    "N=4096 D=1024 V=32768": (4096, 1024, 32768, torch.float32, 7, 1.05),
    "N=4096 D=2048 V=128256": (4096, 2048, 128256, torch.float32, 3, 1.05),
    "bf16 N=2048 D=512 V=32768": (2048, 512, 32768, torch.bfloat16, 9, None),
}
QUICK = {"N=512 D=256 V=8192": (512, 256, 8192, torch.float32, 5, None)}
HEADER = ["config", "floor ms", "losskit ms", "losskit / floor (median of rounds)", "rounds", "target", "met"]


def _inputs(n: int, d: int, v: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    h = torch.randn(n, d, generator=g).to(dtype).requires_grad_()
    w = (torch.randn(v, d, generator=g) / d**0.5).to(dtype).requires_grad_()
    t = torch.randint(0, v, (n,), generator=g)
    t[::17] = -100  # some padding, as in language-model batches
    return h, w, t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--only", default="", help="comma-separated substrings of config names")
    parser.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    configs = QUICK if args.quick else CONFIGS
    results = []
    for name, (n, d, v, dtype, rounds, target) in configs.items():
        if args.only and not any(s in name for s in args.only.split(",")):
            continue
        h, w, t = _inputs(n, d, v, dtype)

        def floor() -> None:
            with torch.no_grad():
                logits = h @ w.T
                logits @ w
                logits.T @ h

        def fused() -> None:
            h.grad = w.grad = None
            LF.linear_cross_entropy(h, w, t).backward()

        floor()  # warm-up: allocator, kernels
        fused()
        times: dict[str, list[float]] = {"floor": [], "losskit": []}
        for _ in range(rounds):
            for label, fn in (("floor", floor), ("losskit", fused)):
                start = time.perf_counter()
                fn()
                times[label].append(time.perf_counter() - start)
        ratio = statistics.median(a / b for a, b in zip(times["losskit"], times["floor"]))
        results.append(
            {
                "config": name,
                "N": n,
                "D": d,
                "V": v,
                "dtype": str(dtype).replace("torch.", ""),
                "floor_s": statistics.median(times["floor"]),
                "losskit_s": statistics.median(times["losskit"]),
                "ratio": ratio,
                "ratios": [a / b for a, b in zip(times["losskit"], times["floor"])],
                "rounds": rounds,
                "target": target,
                "met": None if target is None else ratio <= target,
            }
        )
        r = results[-1]
        print(f"  {name:28s} floor {r['floor_s'] * 1e3:8.0f} ms  losskit {r['losskit_s'] * 1e3:8.0f} ms  {ratio:.3f}x")

    rows = [
        [
            r["config"],
            f"{r['floor_s'] * 1e3:.0f}",
            f"{r['losskit_s'] * 1e3:.0f}",
            f"{r['ratio']:.3f}x",
            str(r["rounds"]),
            "-" if r["target"] is None else f"<= {r['target']:.2f}x",
            "-" if r["met"] is None else ("yes" if r["met"] else "NO"),
        ]
        for r in results
    ]
    from rich.console import Console
    from rich.table import Table

    table = Table(title="fused linear + cross-entropy vs the three bare GEMMs, alternating in one process (CPU)")
    for col in HEADER:
        table.add_column(col, justify="left" if col == "config" else "right")
    for row in rows:
        table.add_row(*row)
    Console(width=140).print(table)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "bench_fused_floor" + ("_quick" if args.quick else "")
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__}
    (out_dir / f"{stem}.json").write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    md = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)] + ["| " + " | ".join(r) + " |" for r in rows]
    (out_dir / f"{stem}.md").write_text("\n".join(md) + "\n")
    print(f"wrote {out_dir / stem}.json and .md")


if __name__ == "__main__":
    main()
