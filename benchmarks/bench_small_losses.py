"""Forward+backward time of ``losskit compare``'s candidate losses on small batches, beside torch.

    .venv/bin/python benchmarks/bench_small_losses.py            # about a minute
    .venv/bin/python benchmarks/bench_small_losses.py --quick    # a smoke run

``losskit compare`` trains small models for thousands of steps on batches of 64 - 256 rows, so a
loss's fixed cost per call (checks, Python, small operations) is what its speed is made of. Each
candidate (:data:`losskit.registry.CANDIDATES`, with the options compare gives it) runs at
``(64, 10)`` and ``(256, 10)`` logits for the multiclass losses and ``(64, 1)`` / ``(256, 1)``
outputs for the regression and binary ones, beside the torch code a user would write for it
(torch's own function where there is one, else the plain formula in float32). losskit runs with
its default checks (``full`` on CPU). torch and losskit take turns in one process: each round
times ``--calls`` calls of one, then of the other; "vs torch" is the median of the per-round
ratios (machine noise between rounds cancels), "max/min" each provider's slowest round over its
fastest. Prints a table and writes JSON (``--out``) and the table as markdown beside it
(``docs/benchmarks.md`` is regenerated from it by ``update_docs.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import losskit  # noqa: E402
import losskit.functional as LF  # noqa: E402
from losskit import registry  # noqa: E402
from tests.functional.test_focal_poly import torchvision_sigmoid_focal_loss  # noqa: E402

SHAPES = {"multiclass": [(64, 10), (256, 10)], "other": [(64, 1), (256, 1)]}
HUBER_DELTA = 1.345  # compare fits delta to the targets; any fixed value times the same


def _focal_torch(x: torch.Tensor, y: torch.Tensor, gamma: float) -> torch.Tensor:
    logp_t = F.log_softmax(x, 1).gather(1, y[:, None])[:, 0]
    return (-((1 - logp_t.exp()) ** gamma) * logp_t).mean()


def _poly1_torch(x: torch.Tensor, y: torch.Tensor, epsilon: float) -> torch.Tensor:
    p_t = F.softmax(x, 1).gather(1, y[:, None])[:, 0]
    return F.cross_entropy(x, y) + epsilon * (1 - p_t).mean()


def cases(
    shape: tuple[int, int],
) -> dict[str, tuple[Callable[[], torch.Tensor], Callable[[], torch.Tensor], torch.Tensor]]:
    """``name -> (losskit call, torch call, the logits)`` for every candidate of ``shape``'s task."""
    torch.manual_seed(0)
    n, c = shape
    x = torch.randn(n, c, requires_grad=True)
    out: dict = {}
    for cand in registry.CANDIDATES:
        task = cand.tasks[0].value
        if task == "segmentation":  # images, not small batches of rows: bench_losses.py times them
            continue
        if (task == "multiclass") != (c > 1):
            continue
        opts = dict(cand.options)
        if task == "multiclass":
            y = torch.randint(0, c, (n,))
            if "weight" in cand.fitted:
                opts["weight"] = losskit.class_weights(y, num_classes=c)
            ref = {
                "cross_entropy": lambda y=y, o=opts: F.cross_entropy(x, y, **o),
                "focal_loss": lambda y=y, o=opts: _focal_torch(x, y, o["gamma"]),
                "poly1_cross_entropy": lambda y=y, o=opts: _poly1_torch(x, y, o["epsilon"]),
            }[cand.spec.functional]
        elif task == "regression":
            y = torch.randn(n, 1)
            if "delta" in cand.fitted:
                opts["delta"] = HUBER_DELTA
            ref = lambda y=y, f=cand.spec.functional, o=opts: getattr(F, f)(x, y, **o)  # noqa: E731
        else:
            y = (torch.rand(n, 1) > 0.7).float()
            if "pos_weight" in cand.fitted:
                opts["pos_weight"] = losskit.pos_weight(y)
            if cand.spec.functional == "sigmoid_focal_loss":
                opts["reduction"] = "mean"  # compare trains on the mean
                ref = lambda y=y, o=opts: torchvision_sigmoid_focal_loss(x, y, **o)  # noqa: E731
            else:
                smooth = opts.get("label_smoothing", 0.0)
                torch_opts = {k: v for k, v in opts.items() if k != "label_smoothing"}
                ref = lambda y=y, s=smooth, o=torch_opts: F.binary_cross_entropy_with_logits(  # noqa: E731
                    x, y * (1 - s) + 0.5 * s, **o
                )
        ours = lambda y=y, f=cand.spec.functional, o=opts: getattr(LF, f)(x, y, **o)  # noqa: E731
        out[f"{task}: {cand.name}"] = (ours, ref, x)
    return out


def time_pair(ours: Callable, ref: Callable, x: torch.Tensor, rounds: int, calls: int) -> dict:
    def block(fn: Callable) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            fn().backward()
            x.grad = None
        return (time.perf_counter() - start) / calls

    for _ in range(3):
        block(ours), block(ref)  # warm-up
    t_ours, t_ref = [], []
    for _ in range(rounds):
        t_ref.append(block(ref))
        t_ours.append(block(ours))
    return {
        "torch_us": statistics.median(t_ref) * 1e6,
        "losskit_us": statistics.median(t_ours) * 1e6,
        "ratio": statistics.median(a / b for a, b in zip(t_ours, t_ref)),
        "torch_max_over_min": max(t_ref) / min(t_ref),
        "losskit_max_over_min": max(t_ours) / min(t_ours),
        "torch_rounds_us": [t * 1e6 for t in t_ref],
        "losskit_rounds_us": [t * 1e6 for t in t_ours],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few rounds (smoke run)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=100, help="calls per round and provider")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_small_losses.json"))
    args = parser.parse_args()
    rounds, calls = (3, 5) if args.quick else (args.rounds, args.calls)

    from rich.console import Console
    from rich.table import Table

    results = []
    for shapes in SHAPES.values():
        for shape in shapes:
            for name, (ours, ref, x) in cases(shape).items():
                row = {"loss": name, "shape": list(shape), **time_pair(ours, ref, x, rounds, calls)}
                results.append(row)
    title = (
        f"forward+backward per call, float32, cpu, {torch.get_num_threads()} threads, median of {rounds} rounds "
        f"of {calls} calls; vs torch: median of per-round ratios"
    )
    columns = ("loss", "shape", "torch us", "losskit us", "vs torch", "max/min torch / losskit")
    cells = [
        [
            r["loss"],
            "x".join(map(str, r["shape"])),
            f"{r['torch_us']:.0f}",
            f"{r['losskit_us']:.0f}",
            f"{r['ratio']:.2f}x",
            f"{r['torch_max_over_min']:.2f} / {r['losskit_max_over_min']:.2f}",
        ]
        for r in results
    ]
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="left" if col == "loss" else "right")
    for line in cells:
        table.add_row(*line)
    Console(width=160).print(table)
    payload = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
        "rounds": rounds,
        "calls": calls,
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1))
    md = [f"**{title}**", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    md += ["| " + " | ".join(line) + " |" for line in cells]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print(f"wrote {out} and {out.with_suffix('.md').name}")


if __name__ == "__main__":
    main()
