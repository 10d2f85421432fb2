"""``losskit lint`` on a generated tree the size of diffusers: ~2,100 files, ~1 M lines.

    .venv/bin/python benchmarks/bench_lint.py              # the full tree, -j 1 and -j 2
    .venv/bin/python benchmarks/bench_lint.py --quick      # a tenth of it

The tree is generated (seeded, so every run lints the same bytes) with the mix of a model
repository: 70 % model files (attention blocks with softmax, resnet blocks, schedulers with
``math.log``), 15 % pipelines, 10 % tests (half the test classes call ``F.mse_loss``), 5 %
training scripts (one training function -- losses, ``backward``, ``zero_grad``, some with the
LK110 / LK111 / LK108 mistakes -- among helpers, as in diffusers' ``examples/``). Runs, each timed once end to end (walk, read,
``ast`` pre-filter, libcst on the files that need it, rules):

* ``-j 1`` and ``-j 2`` -- the command as shipped (wall-clock and CPU seconds: the machine is
  shared, and the CPU time is what an idle machine would need);
* ``libcst on every file`` -- the pre-filter switched off (every file parsed whole by libcst),
  on a sample of the files, its time scaled to the whole tree by lines.

Writes ``benchmarks/results/bench_lint.json`` and prints a table. Target: the full tree in
<= 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from losskit.lint import engine, lint_paths  # noqa: E402
from losskit.lint.prefilter import relevant_source, text_could_match  # noqa: E402
from losskit.lint.rules import RULES  # noqa: E402

HEADER = '''# Copyright 2026 The Generated Authors.
"""{doc}"""

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
'''

ATTENTION = '''

class Attention{i}(nn.Module):
    """Multi-head attention block {i}."""

    def __init__(self, dim: int, heads: int = 8, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout))
        self.norm = nn.LayerNorm(dim)

    def reshape_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        x = x.reshape(batch, length, self.heads, dim // self.heads)
        return x.permute(0, 2, 1, 3).reshape(batch * self.heads, length, dim // self.heads)

    def forward(self, hidden: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        context = hidden if context is None else context
        q = self.reshape_heads(self.to_q(self.norm(hidden)))
        k = self.reshape_heads(self.to_k(context))
        v = self.reshape_heads(self.to_v(context))
        scores = torch.baddbmm(
            torch.empty(q.shape[0], q.shape[1], k.shape[1], dtype=q.dtype, device=q.device),
            q,
            k.transpose(-1, -2),
            beta=0,
            alpha=self.scale,
        )
        probs = F.softmax(scores, dim=-1)
        out = torch.bmm(probs, v)
        batch = hidden.shape[0]
        out = out.reshape(batch, self.heads, -1, out.shape[-1]).permute(0, 2, 1, 3).reshape(batch, -1, self.heads * out.shape[-1])
        return self.to_out(out) + hidden
'''

RESNET = """

class ResnetBlock{i}(nn.Module):
    def __init__(self, channels: int, groups: int = 32, eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, channels, eps=eps)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, channels, eps=eps)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.time_emb = nn.Linear(4 * channels, channels)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (x + h) / math.sqrt(2.0)
"""

SCHEDULER = """

def betas_for_alpha_bar_{i}(steps: int, max_beta: float = 0.999) -> torch.Tensor:
    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = []
    for s in range(steps):
        t1, t2 = s / steps, (s + 1) / steps
        betas.append(min(1 - alpha_bar(t2) / alpha_bar(t1), max_beta))
    log_snr = [math.log(b) for b in betas]
    return torch.tensor(betas, dtype=torch.float32) + 0 * torch.tensor(log_snr)
"""

PIPELINE = """

class Pipeline{i}:
    def __init__(self, unet, scheduler, vae):
        self.unet, self.scheduler, self.vae = unet, scheduler, vae

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor, steps: int = 50, guidance: float = 7.5) -> Tuple[torch.Tensor]:
        self.scheduler.set_timesteps(steps)
        for t in self.scheduler.timesteps:
            model_input = torch.cat([latents] * 2)
            noise = self.unet(model_input, t)
            uncond, cond = noise.chunk(2)
            noise = uncond + guidance * (cond - uncond)
            latents = self.scheduler.step(noise, t, latents)
        image = self.vae.decode(latents / 0.18215)
        return ((image / 2 + 0.5).clamp(0, 1),)
"""

TEST = """

class ModelTest{i}:
    def test_forward_{i}(self):
        torch.manual_seed({i})
        model = nn.Linear(8, 8)
        x = torch.randn(2, 8)
        expected = model(x)
        assert torch.allclose(model(x), expected, atol=1e-5)

    def test_loss_{i}(self):
        pred, target = torch.randn(4, 3), torch.randn(4, 3)
        assert F.mse_loss(pred, target) >= 0
"""

TRAIN = """

def train_{i}(args, unet, noise_scheduler, loader, accelerator):
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.learning_rate)
    criterion = nn.MSELoss(size_average={size_average})
    total_loss = 0.0
    for epoch in range(args.epochs):
        for step, batch in enumerate(loader):
            latents = batch["latents"]
            noise = torch.randn_like(latents)
            timesteps = torch.randint(0, 1000, (latents.shape[0],), device=latents.device)
            noisy = noise_scheduler.add_noise(latents, noise, timesteps)
            model_pred = unet(noisy, timesteps)
            loss = F.mse_loss(model_pred.float(), noise.float(), reduction="mean") + 0 * criterion(model_pred, noise)
            accelerator.backward(loss)
            optimizer.step()
            {zero}
            total_loss += loss{item}
    print(total_loss / len(loader))
"""


def _file(rng: random.Random, kind: str, index: int, target_lines: int) -> str:
    parts = [HEADER.format(doc=f"generated {kind} module {index}")]
    i = 0
    while sum(p.count("\n") for p in parts) < target_lines:
        if kind == "model":
            block = rng.choice([ATTENTION, RESNET, RESNET, SCHEDULER if rng.random() < 0.3 else RESNET])
        elif kind == "pipeline":
            block = rng.choice([PIPELINE, RESNET])
        elif kind == "test":
            block = TEST if rng.random() < 0.5 else TEST.split("    def test_loss_", maxsplit=1)[0]
        else:  # a training script: one training function among helpers, like diffusers' examples
            block = TRAIN if i == 0 else rng.choice([RESNET, PIPELINE, SCHEDULER])
        parts.append(
            block.format(
                i=i,
                size_average="False" if rng.random() < 0.1 else "None",
                zero="optimizer.zero_grad()" if rng.random() < 0.8 else "pass",
                item=".item()" if rng.random() < 0.8 else "",
            )
        )
        i += 1
    return "".join(parts)


def generate(root: Path, files: int, lines: int, seed: int = 0) -> tuple[int, int]:
    """``files`` files of about ``lines`` lines in total, in package folders of 30 files."""
    rng = random.Random(seed)
    per_file = lines // files
    kinds = ["model"] * 70 + ["pipeline"] * 15 + ["test"] * 10 + ["train"] * 5
    total = 0
    for n in range(files):
        kind = rng.choice(kinds)
        folder = root / f"pkg_{n // 30:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        text = _file(rng, kind, n, int(per_file * rng.uniform(0.4, 1.6)))
        (folder / f"{kind}_{n:04d}.py").write_text(text)
        total += text.count("\n")
    return files, total


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the -j workers)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def _timed(fn):  # type: ignore[no-untyped-def]
    start, cpu = time.perf_counter(), _cpu()
    out = fn()
    return out, time.perf_counter() - start, _cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the tree")
    parser.add_argument("--sample", type=int, default=60, help="files linted without the pre-filter (default 60)")
    args = parser.parse_args()
    files, lines = (210, 100_000) if args.quick else (2_100, 1_000_000)
    with tempfile.TemporaryDirectory(prefix="bench_lint_") as tmp:
        root = Path(tmp)
        files, lines = generate(root, files, lines)
        paths = sorted(root.rglob("*.py"))
        codes = [r.code for r in RULES]
        need = sum(
            text_could_match(src, codes) and relevant_source(src, ast.parse(src), codes) is not None
            for src in (p.read_text() for p in paths)
        )
        rows = []
        for jobs in (1, 2):
            result, seconds, cpu = _timed(lambda jobs=jobs: lint_paths([str(root)], jobs=jobs))
            rows.append(
                {
                    "run": f"losskit lint -j {jobs}",
                    "files": result.files,
                    "lines": lines,
                    "libcst_files": need,
                    "findings": len(result.findings),
                    "seconds": round(seconds, 2),
                    "cpu_seconds": round(cpu, 2),
                }
            )
        sample = paths[:: max(1, len(paths) // args.sample)][: args.sample]
        sample_lines = sum(p.read_text().count("\n") for p in sample)
        with (
            mock.patch.object(engine, "relevant_source", lambda source, tree, codes: source),
            mock.patch.object(engine, "text_could_match", lambda source, codes: True),
        ):
            result, seconds, cpu = _timed(lambda: lint_paths([str(p) for p in sample], jobs=1))
        rows.append(
            {
                "run": f"libcst on every file -j 1 ({len(sample)}-file sample, scaled)",
                "files": files,
                "lines": lines,
                "libcst_files": files,
                "findings": None,
                "seconds": round(seconds * lines / sample_lines, 1),
                "cpu_seconds": round(cpu * lines / sample_lines, 1),
            }
        )
    print(f"{'run':<58} {'files':>6} {'lines':>9} {'libcst':>7} {'findings':>8} {'seconds':>8} {'cpu s':>8}")
    for r in rows:
        found = "-" if r["findings"] is None else r["findings"]
        print(
            f"{r['run']:<58} {r['files']:>6} {r['lines']:>9} {r['libcst_files']:>7} {found:>8} {r['seconds']:>8}"
            f" {r['cpu_seconds']:>8}"
        )
    out = ROOT / "benchmarks" / "results" / "bench_lint.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]  # the machine is shared: say how busy it was
    print(f"load average (1 min) at the end: {load:.1f} on {os.cpu_count()} CPUs")
    out.write_text(json.dumps({"quick": args.quick, "load_average": load, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
