"""Fused linear + cross-entropy: forward+backward time and peak memory against the floor and torch.

    .venv/bin/python benchmarks/bench_linear_cross_entropy.py           # full (about 10 minutes on 2 cores)
    .venv/bin/python benchmarks/bench_linear_cross_entropy.py --quick   # quarter-size batches, a smoke run

Providers (each call of each provider runs in a fresh process):

* ``floor``   -- the three matrix products every implementation must do, as plain torch calls
  (``L = h @ W.T``, ``L @ W``, ``L.T @ h``), no softmax, no autograd;
* ``torch``   -- eager ``F.cross_entropy(h @ W.T, t)`` (the reference, imported from the tests);
* ``compile`` -- ``torch.compile`` of the same (compiled before the measured call);
* ``torch-chunked`` -- torch 2.13's ``F.linear_cross_entropy(..., options=LinearCrossEntropyOptions())``;
* ``losskit`` -- ``losskit.functional.linear_cross_entropy`` (default checks).

A process builds the inputs (``h`` ``(N, D)`` and ``W`` ``(V, D)`` requiring grad, ``t``), warms
the kernels up on a few rows (the compiled provider on the full size), reads its resident set,
resets the high-water mark (``/proc/self/clear_refs``), runs forward+backward once and reports
the time and the peak memory above that baseline (``W.grad`` and ``h.grad`` included for all).
Rounds are interleaved (every provider once per round) and each round's times are divided by
that round's floor; the table shows the median of those ratios, so machine noise between
rounds cancels. Writes JSON, a markdown table and a PNG plot (time ratio and memory against V)
to ``--out-dir``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: name -> (N, D, V, dtype)
CONFIGS = {
    "N=2048 D=512 V=32768": (2048, 512, 32768, "float32"),
    "N=4096 D=1024 V=32768": (4096, 1024, 32768, "float32"),
    "N=4096 D=2048 V=128256": (4096, 2048, 128256, "float32"),
    "bf16 N=2048 D=512 V=32768": (2048, 512, 32768, "bfloat16"),
}
PROVIDERS = ["floor", "torch", "compile", "torch-chunked", "losskit"]


def _kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _inputs(n: int, d: int, v: int, dtype: str, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    dt = getattr(torch, dtype)
    h = torch.randn(n, d, generator=g).to(dt).requires_grad_()
    w = (torch.randn(v, d, generator=g) / d**0.5).to(dt).requires_grad_()
    t = torch.randint(0, v, (n,), generator=g)
    t[::17] = -100  # some padding, as in language-model batches
    return h, w, t


def _step(provider: str):
    """A function ``(h, W, t) -> None`` doing forward+backward (or the floor's products)."""
    import torch
    import torch.nn.functional as F

    from tests._parity import linear_cross_entropy_reference

    if provider == "floor":

        def floor(h, w, t):
            with torch.no_grad():
                logits = h @ w.T
                logits @ w
                logits.T @ h

        return floor
    if provider == "torch":
        return lambda h, w, t: linear_cross_entropy_reference(h, w, t).backward()
    if provider == "compile":
        compiled = torch.compile(lambda h, w, t: F.cross_entropy(h @ w.T, t))
        return lambda h, w, t: compiled(h, w, t).backward()
    if provider == "torch-chunked":
        options = torch.nn.LinearCrossEntropyOptions()
        return lambda h, w, t: F.linear_cross_entropy(h, w, t, options=options).backward()
    if provider == "losskit":
        import losskit.functional as LF

        return lambda h, w, t: LF.linear_cross_entropy(h, w, t).backward()
    raise SystemExit(f"unknown provider {provider!r}; expected one of {PROVIDERS}")


def measure(provider: str, config: str, quick: bool) -> dict:
    """In a fresh process: warm up, then time one forward+backward and its peak extra memory."""
    import torch

    n, d, v, dtype = CONFIGS[config]
    if quick:
        n //= 4
    step = _step(provider)
    warm_rows = n if provider == "compile" else min(n, 64)
    h, w, t = _inputs(warm_rows, d, v, dtype, seed=1)
    step(h, w, t)
    del h, w, t
    h, w, t = _inputs(n, d, v, dtype)
    gc.collect()
    before = _kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM to the current resident set
    start = time.perf_counter()
    step(h, w, t)
    elapsed = time.perf_counter() - start
    peak = (_kib("VmHWM") - before) * 1024
    return {"time_s": elapsed, "peak_extra_bytes": peak, "threads": torch.get_num_threads()}


def _child(provider: str, config: str, quick: bool) -> dict:
    cmd = [sys.executable, __file__, "--_child", provider, config] + (["--quick"] if quick else [])
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, env={**os.environ, "LOSSKIT_CHECKS": "auto"})
    if out.returncode != 0:
        raise SystemExit(f"benchmark {config} / {provider} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _table_rows(results: list[dict]) -> list[list[str]]:
    rows = []
    for r in results:
        for p in PROVIDERS:
            s = r["providers"][p]
            rows.append(
                [
                    r["config"],
                    p,
                    f"{s['time_s'] * 1e3:.0f}",
                    f"{s['time_vs_floor']:.3f}x",
                    f"{s['peak_extra_bytes'] / 2**20:.0f}",
                    f"{s['memory_vs_torch']:.3f}x",
                ]
            )
    return rows


HEADER = ["config", "provider", "median ms", "time / floor", "peak extra MiB", "memory / torch eager"]


def _plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fp32 = sorted((r for r in results if r["dtype"] == "float32"), key=lambda r: (r["V"], r["N"] * r["D"]))
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.5))
    labels = [f"V={r['V']}\n(N={r['N']}, D={r['D']})" for r in fp32]
    xs = range(len(fp32))
    for p in PROVIDERS:
        ax_t.plot(xs, [r["providers"][p]["time_vs_floor"] for r in fp32], marker="o", label=p)
        ax_m.plot(xs, [r["providers"][p]["peak_extra_bytes"] / 2**20 for r in fp32], marker="o", label=p)
    ax_t.axhline(1.10, color="grey", linestyle="--", linewidth=1, label="target 1.10x")
    ax_t.set_ylabel("forward+backward time / floor")
    ax_m.set_ylabel("peak extra memory (MiB)")
    ax_m.set_yscale("log")
    for ax in (ax_t, ax_m):
        ax.set_xticks(list(xs), labels)
        ax.grid(alpha=0.3)
    ax_t.legend(fontsize=8)
    fig.suptitle("fused linear + cross-entropy, float32, CPU (median of per-round ratios)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="quarter-size batches (smoke run)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median of ratios)")
    parser.add_argument("--only", default="", help="comma-separated substrings of config names to run")
    parser.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        print(json.dumps(measure(*args._child, args.quick)))
        return

    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    wanted = [c for c in CONFIGS if not args.only or any(s in c for s in args.only.split(","))]
    results = []
    for config in wanted:
        n, d, v, dtype = CONFIGS[config]
        runs: dict[str, list[dict]] = {p: [] for p in PROVIDERS}
        for rnd in range(args.rounds):
            for p in PROVIDERS:
                runs[p].append(_child(p, config, args.quick))
                console.print(
                    f"  {config:28s} round {rnd + 1}/{args.rounds} {p:14s} "
                    f"{runs[p][-1]['time_s'] * 1e3:9.0f} ms {runs[p][-1]['peak_extra_bytes'] / 2**20:9.0f} MiB"
                )
        floor = [r["time_s"] for r in runs["floor"]]
        torch_mem = statistics.median(r["peak_extra_bytes"] for r in runs["torch"])
        providers = {}
        for p in PROVIDERS:
            times = [r["time_s"] for r in runs[p]]
            mem = statistics.median(r["peak_extra_bytes"] for r in runs[p])
            providers[p] = {
                "time_s": statistics.median(times),
                "times_s": times,
                "time_vs_floor": statistics.median(t / f for t, f in zip(times, floor)),
                "peak_extra_bytes": mem,
                "memory_vs_torch": mem / torch_mem if torch_mem else float("nan"),
            }
        results.append(
            {"config": config, "N": n // 4 if args.quick else n, "D": d, "V": v, "dtype": dtype, "providers": providers}
        )

    table = Table(
        title=f"forward+backward, CPU, {args.rounds} interleaved rounds" + (" (quick: N/4)" if args.quick else "")
    )
    for col in HEADER:
        table.add_column(col, justify="left" if col in ("config", "provider") else "right")
    for row in _table_rows(results):
        table.add_row(*row)
    console.print(table)

    import torch

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "bench_linear_cross_entropy" + ("_quick" if args.quick else "")
    payload = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "quick": args.quick,
        "rounds": args.rounds,
        "results": results,
    }
    (out_dir / f"{stem}.json").write_text(json.dumps(payload, indent=2))
    md = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    md += ["| " + " | ".join(r) + " |" for r in _table_rows(results)]
    (out_dir / f"{stem}.md").write_text("\n".join(md) + "\n")
    _plot(results, out_dir / f"{stem}.png")
    console.print(f"wrote {out_dir / stem}.json, .md and .png")


if __name__ == "__main__":
    main()
