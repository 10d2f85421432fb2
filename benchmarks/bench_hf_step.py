"""A Hugging Face causal LM's training step, stock against patched by losskit: time and peak memory.

    .venv/bin/python benchmarks/bench_hf_step.py            # Llama config, V=128256 and V=262144
    .venv/bin/python benchmarks/bench_hf_step.py --quick    # a small vocabulary, a smoke run

A training step is forward with ``labels`` + backward + ``AdamW.step()`` + ``zero_grad``, on a
Llama built from a config (random weights, nothing downloaded): 2 layers of width 512, sequence
length 512, batch 4, 10 % of the labels ``-100`` (padding). ``stock`` is the model as
transformers builds it (full logits, ``ForCausalLMLoss``); ``losskit`` is the same model after
``losskit.integrations.transformers.patch(model)`` (fused linear + cross-entropy, no logits).

Each measurement runs in a fresh process: the model and the batch are built, one step warms up
(optimizer state allocated), the resident set is read and its high-water mark reset
(``/proc/self/clear_refs``), then one step gives the peak memory above that baseline and up to
5 steps (while under 20 s) give the time (the fastest). The two variants alternate over rounds;
"time vs stock" is the median of per-round ratios. Also checks that the two losses agree on the
first step. Prints a table, writes ``benchmarks/results/bench_hf_step.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
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

#: name -> (vocab, hidden, layers, seq, batch): Llama 3's vocabulary, and Gemma 3's
CONFIGS = {
    "Llama V=128256": (128256, 512, 2, 512, 4),
    "Llama V=262144": (262144, 512, 2, 512, 4),
}
QUICK = {"Llama V=8000 (quick)": (8000, 128, 2, 128, 2)}
VARIANTS = ["stock", "losskit"]


def measure(variant: str, vocab: int, hidden: int, layers: int, seq: int, batch: int) -> dict:
    """In a fresh process: one warm-up step, then the peak memory and time of training steps."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=seq,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.train()
    if variant == "losskit":
        from losskit.integrations.transformers import patch

        patch(model)
    g = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, vocab, (batch, seq), generator=g)
    labels = input_ids.clone()
    labels[torch.rand(batch, seq, generator=g) < 0.1] = -100
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> float:
        out = model(input_ids=input_ids, labels=labels)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(out.loss)

    first_loss = step()
    before = kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    start = time.perf_counter()
    step()
    times = [time.perf_counter() - start]
    peak = (kib("VmHWM") - before) * 1024
    while len(times) < 5 and sum(times) < 20.0:
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"time_s": min(times), "times_s": times, "peak_extra_bytes": peak, "first_loss": first_loss}


def _child(variant: str, sizes: tuple[int, ...]) -> dict:
    cmd = [sys.executable, __file__, "--_child", variant, *map(str, sizes)]
    env = {**os.environ, "LOSSKIT_CHECKS": "auto", "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"benchmark {variant} {sizes} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


HEADER = ["config", "variant", "step ms", "time vs stock", "peak extra MiB", "memory vs stock", "first loss"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small vocabulary (smoke run)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--_child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        variant, *sizes = args._child
        print(json.dumps(measure(variant, *map(int, sizes))))
        return

    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    configs = QUICK if args.quick else CONFIGS
    results = []
    for name, sizes in configs.items():
        runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
        for rnd in range(args.rounds):
            for v in VARIANTS:
                runs[v].append(_child(v, sizes))
                r = runs[v][-1]
                console.print(
                    f"  {name:22s} round {rnd + 1}/{args.rounds} {v:8s} "
                    f"{r['time_s'] * 1e3:8.0f} ms {r['peak_extra_bytes'] / 2**20:8.0f} MiB"
                )
        stock_mem = statistics.median(r["peak_extra_bytes"] for r in runs["stock"])
        variants = {}
        for v in VARIANTS:
            times = [r["time_s"] for r in runs[v]]
            mem = statistics.median(r["peak_extra_bytes"] for r in runs[v])
            variants[v] = {
                "time_s": statistics.median(times),
                "times_s": times,
                "time_vs_stock": statistics.median(t / s["time_s"] for t, s in zip(times, runs["stock"])),
                "peak_extra_bytes": mem,
                "memory_vs_stock": mem / stock_mem if stock_mem else float("nan"),
                "first_loss": runs[v][0]["first_loss"],
            }
        gap = abs(variants["losskit"]["first_loss"] - variants["stock"]["first_loss"])
        if gap > 1e-4 * abs(variants["stock"]["first_loss"]):
            raise SystemExit(f"{name}: the patched model's loss differs from stock by {gap:.3g}")
        vocab, hidden, layers, seq, batch = sizes
        results.append(
            {
                "config": name,
                "vocab": vocab,
                "hidden": hidden,
                "layers": layers,
                "seq": seq,
                "batch": batch,
                "variants": variants,
            }
        )

    rows = []
    for r in results:
        for v in VARIANTS:
            s = r["variants"][v]
            rows.append(
                [
                    r["config"],
                    v,
                    f"{s['time_s'] * 1e3:.0f}",
                    f"{s['time_vs_stock']:.3f}x",
                    f"{s['peak_extra_bytes'] / 2**20:.0f}",
                    f"{s['memory_vs_stock']:.3f}x",
                    f"{s['first_loss']:.5f}",
                ]
            )
    table = Table(title=f"HF LlamaForCausalLM training step (forward+backward+AdamW), CPU, {args.rounds} rounds")
    for col in HEADER:
        table.add_column(col, justify="left" if col in ("config", "variant") else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)

    import torch
    import transformers

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "bench_hf_step" + ("_quick" if args.quick else "")
    payload = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "rounds": args.rounds,
        "results": results,
    }
    (out_dir / f"{stem}.json").write_text(json.dumps(payload, indent=2))
    md = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)] + ["| " + " | ".join(r) + " |" for r in rows]
    (out_dir / f"{stem}.md").write_text("\n".join(md) + "\n")
    console.print(f"wrote {out_dir / stem}.json and .md")


if __name__ == "__main__":
    main()
