"""Fused linear + cross-entropy: forward+backward time and peak memory against the floor and torch.

    .venv/bin/python benchmarks/bench_linear_cross_entropy.py           # full (about 10 minutes on 2 cores)
    .venv/bin/python benchmarks/bench_linear_cross_entropy.py --quick   # quarter-size batches, a smoke run

Providers (each call of each provider runs in a fresh process):

* ``floor``   -- the three matrix products every implementation must do, as plain torch calls
  (``L = h @ W.T``, ``L @ W``, ``L.T @ h``), no softmax, no autograd;
* ``torch``   -- eager ``F.cross_entropy(h @ W.T, t)`` (the reference, imported from the tests);
* ``compile`` -- ``torch.compile`` of the same (compiled before the measured call);
* ``torch-chunked`` -- torch 2.13's ``F.linear_cross_entropy(..., options=LinearCrossEntropyOptions())``;
* ``cce-compile`` -- cut-cross-entropy's ``torch_compile`` implementation (its CPU path:
  ``torch.compile`` of the logits and the loss), where ``cut_cross_entropy`` imports (it needs
  ``pip install cut-cross-entropy triton``; otherwise the row says so);
* ``liger`` -- Liger-Kernel's fused linear cross-entropy, on a CUDA device only (Triton kernels);
* ``losskit`` -- ``losskit.functional.linear_cross_entropy`` (default checks).

On a machine with a GPU, ``--device cuda`` (the default there) runs the same table on it, with
peak memory from ``torch.cuda.max_memory_allocated``.

A process builds the inputs (``h`` ``(N, D)`` and ``W`` ``(V, D)`` requiring grad, ``t``), warms
the kernels up on a few rows (the compiled providers on the full size), reads its resident set,
resets the high-water mark (``/proc/self/clear_refs``), runs forward+backward once and reports
the peak memory above that baseline and the time (the fastest of up to 5 calls while they add up
to less than 10 s: the least disturbed by other work on a shared machine) (``W.grad`` and ``h.grad`` included for all),
and the peak above the returned gradients (that minus the bytes of ``W.grad`` and ``h.grad``:
what an implementation needs beyond what it must hand back).
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

from _memory import kib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: name -> (N, D, V, dtype)
CONFIGS = {
    "N=2048 D=512 V=32768": (2048, 512, 32768, "float32"),
    "N=4096 D=1024 V=32768": (4096, 1024, 32768, "float32"),
    "N=4096 D=2048 V=128256": (4096, 2048, 128256, "float32"),
    "bf16 N=2048 D=512 V=32768": (2048, 512, 32768, "bfloat16"),
}
PROVIDERS = ["floor", "torch", "compile", "torch-chunked", "cce-compile", "liger", "losskit"]


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
    if provider == "cce-compile":
        from cut_cross_entropy import linear_cross_entropy as cce

        return lambda h, w, t: cce(h, w, t, impl="torch_compile").backward()
    if provider == "liger":
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

        return lambda h, w, t: liger_fused_linear_cross_entropy(h, w, t).backward()
    if provider == "losskit":
        import losskit.functional as LF

        return lambda h, w, t: LF.linear_cross_entropy(h, w, t).backward()
    raise SystemExit(f"unknown provider {provider!r}; expected one of {PROVIDERS}")


def unavailable(provider: str, device: str) -> str | None:
    """Why ``provider`` cannot run here (``None`` when it can)."""
    import importlib.util

    if provider == "cce-compile" and importlib.util.find_spec("cut_cross_entropy") is None:
        return "not installed (pip install cut-cross-entropy triton)"
    if provider == "cce-compile" and importlib.util.find_spec("triton") is None:
        return "cut_cross_entropy imports triton (pip install triton)"
    if provider == "liger" and device != "cuda":
        return "needs a CUDA device (Triton kernels)"
    if provider == "liger" and importlib.util.find_spec("liger_kernel") is None:
        return "not installed (pip install liger-kernel)"
    return None


def measure(provider: str, config: str, quick: bool, device: str = "cpu") -> dict:
    """In a fresh process: warm up, then time one forward+backward and its peak extra memory."""
    import torch

    n, d, v, dtype = CONFIGS[config]
    if quick:
        n //= 4
    step = _step(provider)
    cuda = device == "cuda"
    warm_rows = n if provider in ("compile", "cce-compile") else min(n, 64)
    h, w, t = (x.to(device) for x in _inputs(warm_rows, d, v, dtype, seed=1))
    step(h.detach().requires_grad_(), w.detach().requires_grad_(), t)
    del h, w, t
    h, w, t = _inputs(n, d, v, dtype)
    if cuda:
        h, w, t = h.detach().to(device).requires_grad_(), w.detach().to(device).requires_grad_(), t.to(device)
    gc.collect()
    if cuda:
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        before = kib("VmRSS") * 1024
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current resident set
    start = time.perf_counter()
    step(h, w, t)
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() if cuda else kib("VmHWM") * 1024) - before
    # more calls, while they are cheap: the fastest is the least disturbed by other work
    times = [elapsed]
    while len(times) < 5 and sum(times) < 10.0:
        h.grad = w.grad = None
        start = time.perf_counter()
        step(h, w, t)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    elapsed = min(times)
    grads = 0 if provider == "floor" else h.numel() * h.element_size() + w.numel() * w.element_size()
    return {
        "time_s": elapsed,
        "peak_extra_bytes": peak,
        "grad_bytes": grads,
        "threads": torch.get_num_threads(),
    }


def _child(provider: str, config: str, quick: bool, device: str) -> dict:
    cmd = [sys.executable, __file__, "--_child", provider, config, "--device", device] + (["--quick"] if quick else [])
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, env={**os.environ, "LOSSKIT_CHECKS": "auto"})
    if out.returncode != 0:
        raise SystemExit(f"benchmark {config} / {provider} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _table_rows(results: list[dict]) -> list[list[str]]:
    rows = []
    for r in results:
        for p in r["providers"]:
            s = r["providers"][p]
            if "skipped" in s:
                rows.append([r["config"], p, "-", "-", "-", "-", "-", "-", s["skipped"]])
                continue
            rows.append(
                [
                    r["config"],
                    p,
                    f"{s['time_s'] * 1e3:.0f}",
                    f"{s['time_vs_floor']:.3f}x",
                    f"{s['peak_extra_bytes'] / 2**20:.0f}",
                    f"{s['memory_vs_torch']:.3f}x",
                    "-" if p == "floor" else f"{s['above_grads_bytes'] / 2**20:.0f}",
                    "-" if p == "floor" else f"{s['above_grads_vs_torch']:.3f}x",
                    "",
                ]
            )
    return rows


HEADER = [
    "config",
    "provider",
    "median ms",
    "time / floor",
    "peak extra MiB",
    "memory / eager",
    "above grads MiB",
    "above grads / eager",
    "note",
]


def _plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fp32 = sorted((r for r in results if r["dtype"] == "float32"), key=lambda r: (r["V"], r["N"] * r["D"]))
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.5))
    labels = [f"V={r['V']}\n(N={r['N']}, D={r['D']})" for r in fp32]
    xs = range(len(fp32))
    for p in PROVIDERS:
        if not fp32 or "skipped" in fp32[0]["providers"].get(p, {"skipped": ""}):
            continue
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
    parser.add_argument(
        "--only", default="", help="comma-separated config names, or substrings of them, to run (an exact name wins)"
    )
    parser.add_argument("--providers", default="", help="comma-separated providers (default: all that run here)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args._child:
        print(json.dumps(measure(*args._child, args.quick, device)))
        return

    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    tokens = args.only.split(",") if args.only else []
    wanted = [c for c in CONFIGS if c in tokens] or [c for c in CONFIGS if not tokens or any(s in c for s in tokens)]
    chosen = [p for p in PROVIDERS if not args.providers or p in args.providers.split(",") or p in ("floor", "torch")]
    skipped = {p: why for p in chosen if (why := unavailable(p, device))}
    running = [p for p in chosen if p not in skipped]
    results = []
    for config in wanted:
        n, d, v, dtype = CONFIGS[config]
        runs: dict[str, list[dict]] = {p: [] for p in running}
        for rnd in range(args.rounds):
            for p in running:
                runs[p].append(_child(p, config, args.quick, device))
                console.print(
                    f"  {config:28s} round {rnd + 1}/{args.rounds} {p:14s} "
                    f"{runs[p][-1]['time_s'] * 1e3:9.0f} ms {runs[p][-1]['peak_extra_bytes'] / 2**20:9.0f} MiB"
                )
        floor = [r["time_s"] for r in runs["floor"]]
        torch_mem = statistics.median(r["peak_extra_bytes"] for r in runs["torch"])
        torch_above = torch_mem - runs["torch"][0]["grad_bytes"]
        providers: dict[str, dict] = {}
        for p in chosen:
            if p in skipped:
                providers[p] = {"skipped": skipped[p]}
                continue
            times = [r["time_s"] for r in runs[p]]
            mem = statistics.median(r["peak_extra_bytes"] for r in runs[p])
            above = mem - runs[p][0]["grad_bytes"]
            providers[p] = {
                "time_s": statistics.median(times),
                "times_s": times,
                "time_vs_floor": statistics.median(t / f for t, f in zip(times, floor)),
                "peak_extra_bytes": mem,
                "memory_vs_torch": mem / torch_mem if torch_mem else float("nan"),
                "above_grads_bytes": above,
                "above_grads_vs_torch": above / torch_above if torch_above > 0 else float("nan"),
            }
        results.append(
            {"config": config, "N": n // 4 if args.quick else n, "D": d, "V": v, "dtype": dtype, "providers": providers}
        )

    table = Table(
        title=f"forward+backward, {device}, {args.rounds} interleaved rounds" + (" (quick: N/4)" if args.quick else "")
    )
    for col in HEADER:
        table.add_column(col, justify="left" if col in ("config", "provider", "note") else "right")
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
            "device": device,
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
