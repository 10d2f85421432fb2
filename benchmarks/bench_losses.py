"""Forward+backward time and peak memory of every losskit loss against torch, side by side.

    .venv/bin/python benchmarks/bench_losses.py            # full sizes (about 25 minutes on 2 cores)
    .venv/bin/python benchmarks/bench_losses.py --quick    # small sizes, a smoke run
    .venv/bin/python benchmarks/bench_losses.py --only cross_entropy --device cuda   # on a GPU

Each (loss, provider) runs in a fresh subprocess so that peak memory is measured from a clean
heap: the process builds its inputs, resets the kernel's resident-set high-water mark
(/proc/self/clear_refs), runs forward+backward once and reads the new high-water mark; the
"extra" memory is that peak minus the memory held before the call (inputs included there).
Time is the median of several forward+backward runs after a warm-up, the providers taking
turns in one process (so machine noise hits them alike). The checks' cost is timed inside each
call (the guardrail functions against the rest of the call, see ``_checks_share``): wall time
on a shared machine swings by tens of percent between runs, that ratio does not. Providers:
``torch`` (the reference, imported from the tests), ``losskit`` (default checks: "full" on CPU)
and ``losskit-off`` (checks off). Prints a table and writes JSON (``--out``) and the table as
markdown beside it (``docs/benchmarks.md`` is regenerated from it by ``update_docs.py``).

Beside other work (``--busy 0,1,2``): the timing is repeated with one and with two busy-loop
processes running beside it (the benchmark starts them before the timing process and stops them
after), as a data-loader worker or another job would load the cores. Each level runs in
``--processes`` fresh processes; "vs torch" is the median of the per-round ratios over all of
them, "max/min" each provider's slowest round over its fastest across those processes (torch's
beside losskit's: the same rounds, so torch's says how much of losskit's is the machine), and
"process medians max/min" the slowest process's median round over the fastest one's: the
steadiness from one fresh process to the next. "ops/call" counts
the ATen operations one forward+backward dispatches (on a GPU: about the kernel launches).

On a GPU (``--device cuda``) memory is ``torch.cuda.max_memory_allocated`` above what the inputs
hold, and the busy processes load the host that launches the kernels.
"""

from __future__ import annotations

import argparse
import json
import math
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

# name -> (loss function name, builder of (input, target, kwargs) at full size, at quick size)
CONFIGS = {
    "cross_entropy 2048x32768": ("cross_entropy", "ce", (2048, 32768), (256, 4096)),
    "cross_entropy 8192x32000": ("cross_entropy", "ce", (8192, 32000), (512, 4000)),
    "cross_entropy+smoothing 8192x32000": ("cross_entropy", "ce_smooth", (8192, 32000), (512, 4000)),
    "cross_entropy seg 8x21x128x128": ("cross_entropy", "seg", (8, 21, 128, 128), (2, 21, 64, 64)),
    "cross_entropy seg 16x21x256x256": ("cross_entropy", "seg", (16, 21, 256, 256), (2, 21, 64, 64)),
    "nll_loss 8192x32000": ("nll_loss", "nll", (8192, 32000), (512, 4000)),
    "mse_loss 16M": ("mse_loss", "reg", (16 * 2**20,), (2**20,)),
    "l1_loss 16M": ("l1_loss", "reg", (16 * 2**20,), (2**20,)),
    "huber_loss 16M": ("huber_loss", "reg", (16 * 2**20,), (2**20,)),
    "smooth_l1_loss 16M": ("smooth_l1_loss", "reg", (16 * 2**20,), (2**20,)),
    "binary_cross_entropy 16M": ("binary_cross_entropy", "bce", (16 * 2**20,), (2**20,)),
    "bce_with_logits 16M": ("binary_cross_entropy_with_logits", "bcel", (16 * 2**20,), (2**20,)),
}
PROVIDERS = ["torch", "losskit", "losskit-off"]
#: timing rounds: at least --repeats, more for fast configs (up to MAX_ROUNDS, ~MIN_SECONDS)
MIN_SECONDS = 6.0
MAX_ROUNDS = 40


def setup(provider: str, config: str, quick: bool, tiny: bool = False, device: str = "cpu"):
    """Build inputs and return ``fn`` that runs forward+backward once (``tiny``: for warm-up)."""
    import torch

    import losskit
    import losskit.functional as LF
    from tests._parity import torch_reference

    name, kind, full, small = CONFIGS[config]
    shape = small if quick else full
    if tiny:
        # warm-up: small, but taking the same code paths as the measured call (element-wise
        # losses over 2^20 elements check a sample: warm that path too), so that first-touch
        # code pages of a kernel do not count as the loss's memory
        shape = (2**20 + 1,) if len(shape) == 1 and shape[0] > 2**20 else _warm_up_shape(shape)
    torch.manual_seed(0)
    kwargs = {}
    if kind in ("ce", "ce_smooth", "nll"):
        x = torch.randn(shape)
        if kind == "nll":
            x = torch.log_softmax(x, 1)
        target = torch.randint(0, shape[1], (shape[0],))
        target[::17] = -100  # some padding tokens
        if kind == "ce_smooth":
            kwargs["label_smoothing"] = 0.1
    elif kind == "seg":
        x = torch.randn(shape)
        target = torch.randint(0, shape[1], (shape[0],) + shape[2:])
    elif kind == "bce":
        x = torch.rand(shape).clamp_(0.01, 0.99)
        target = (torch.rand(shape) > 0.5).float()
    elif kind == "bcel":
        x = torch.randn(shape)
        target = (torch.rand(shape) > 0.5).float()
    else:
        x = torch.randn(shape)
        target = torch.randn(shape)
    x, target = x.to(device).requires_grad_(), target.to(device)
    loss_fn = torch_reference(name) if provider == "torch" else getattr(LF, name)
    level = "off" if provider == "losskit-off" else "auto"
    synchronize = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def fn():
        with losskit.set_checks(level):
            loss = loss_fn(x, target, **kwargs)
            loss.backward()
        x.grad = None
        synchronize()  # a GPU's time is the kernels', not the launches'

    return fn


def _warm_up_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A small shape on the measured call's path: at most 8 along each axis but the classes',
    grown (axis by axis, doubling) past the size under which losskit hands small inputs to
    torch's fused operations when the full shape is past it -- else the measured call would be
    the first to touch its own path's kernels, whose code pages then count as its memory."""
    from losskit.functional._small import SMALL_INPUT_ELEMENTS

    tiny = [min(d, 8) for d in shape]
    if len(shape) >= 2:
        tiny[1] = shape[1]
    if math.prod(shape) > SMALL_INPUT_ELEMENTS:
        while math.prod(tiny) <= SMALL_INPUT_ELEMENTS:
            axis = next(i for i, d in enumerate(tiny) if d < shape[i])
            tiny[axis] = min(shape[axis], 2 * tiny[axis])
    return tuple(tiny)


def measure_memory(provider: str, config: str, quick: bool, device: str = "cpu") -> dict:
    """Runs in a fresh subprocess: peak extra memory of the first forward+backward, and the ATen
    operations one call dispatches."""
    import torch

    setup(provider, config, quick, tiny=True, device=device)()  # load kernels and thread pools first
    fn = setup(provider, config, quick, device=device)
    cuda = device.startswith("cuda")
    if cuda:
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        before = kib("VmRSS") * 1024
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current RSS
    fn()
    peak = torch.cuda.max_memory_allocated() if cuda else kib("VmHWM") * 1024
    return {"peak_extra_bytes": peak - before, "ops_per_call": count_ops(fn)}


def count_ops(fn) -> int:
    """ATen operations dispatched by one call of ``fn`` (on a GPU, about its kernel launches)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.calls += 1
            return func(*args, **(kwargs or {}))

    with Count() as count:
        fn()
    return count.calls


def _checks_share(fn, rounds: int) -> float:
    """The checks' cost relative to the rest of the call, timed inside each call.

    Every guardrail function (all of ``losskit.checks``, through which the functional layer calls
    them) is wrapped to add its outermost elapsed
    time to a counter; per call the share is ``checks / (total - checks)``, and the result is the
    median over calls. Both parts of one call see the same machine load, so the ratio holds
    still while wall time on a shared 2-core machine swings by tens of percent between runs
    (the plain ``losskit / losskit-off`` ratio is kept in the JSON as ``checks_overhead_wall``).
    """
    import functools
    import types

    import losskit.checks as checks_package

    spent = [0.0]
    depth = [0]

    def timed(f):
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            depth[0] += 1
            start = time.perf_counter()
            try:
                return f(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    spent[0] += time.perf_counter() - start

        return wrapper

    patched = []
    # the functional layer calls every guardrail through the losskit.checks namespace
    tiny = ("level", "get_checks", "set_checks", "describe", "shape_str", "fail", "warn")  # called from checks
    for name in checks_package.__all__:
        value = getattr(checks_package, name)
        if isinstance(value, types.FunctionType) and name not in tiny:
            patched.append((checks_package, name, value))
            setattr(checks_package, name, timed(value))
    try:
        shares = []
        for _ in range(rounds):
            spent[0] = 0.0
            start = time.perf_counter()
            fn()
            total = time.perf_counter() - start
            shares.append(spent[0] / max(total - spent[0], 1e-12))
        return statistics.median(shares)
    finally:
        for module, name, value in patched:
            setattr(module, name, value)


def measure_times(
    config: str, quick: bool, repeats: int, device: str = "cpu", min_seconds: float = MIN_SECONDS
) -> dict:
    """Runs in one subprocess per config: the providers take turns, round after round, so
    machine noise hits them alike; returns each provider's median."""
    fns = {p: setup(p, config, quick, device=device) for p in PROVIDERS}
    start = time.perf_counter()
    for fn in fns.values():
        fn()  # warm-up
    warm = time.perf_counter() - start
    # fast configs get more rounds (about MIN_SECONDS of timing), since their noise is larger
    rounds = max(repeats, min(MAX_ROUNDS, math.ceil(min_seconds / max(warm, 1e-6))))
    times: dict[str, list[float]] = {p: [] for p in PROVIDERS}
    cpu: dict[str, list[float]] = {p: [] for p in PROVIDERS}
    for _ in range(rounds):
        for provider, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            times[provider].append(time.perf_counter() - start)
            cpu[provider].append(time.process_time() - start_cpu)
    out: dict = {p: {"time_s": statistics.median(t), "min_time_s": min(t), "times_s": t} for p, t in times.items()}
    # ratios within a round cancel the drift between rounds; report their median
    out["rounds"] = rounds
    out["ratios"] = [a / b for a, b in zip(times["losskit"], times["torch"])]
    out["time_ratio_vs_torch"] = statistics.median(out["ratios"])
    out["checks_overhead_wall"] = statistics.median(a / b for a, b in zip(times["losskit"], times["losskit-off"])) - 1
    for p in PROVIDERS:
        out[p]["cpu_s"] = statistics.median(cpu[p])
    out["checks_overhead"] = _checks_share(fns["losskit"], max(repeats, min(MAX_ROUNDS, rounds)))
    return out


def _child(provider: str, config: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--_child", provider, config, "--repeats", str(args.repeats)]
    cmd += ["--device", args.device, "--min-seconds", str(args.min_seconds)] + (["--quick"] if args.quick else [])
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, env={**os.environ, "LOSSKIT_CHECKS": "auto"})
    if out.returncode != 0:
        raise SystemExit(f"benchmark {config} / {provider} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


BUSY_LOOP = "while True:\n    pass"


def timed_beside_busy(config: str, args: argparse.Namespace, busy: int) -> dict:
    """The timing child run ``args.processes`` times (fresh processes) with ``busy`` busy-loop
    processes beside it; rounds pooled: medians of per-round ratios, each provider's max/min."""
    runs, pids = [], []
    for _ in range(args.processes):
        loaders = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(busy)]
        pids += [proc.pid for proc in loaders]
        try:
            time.sleep(0.2 if busy else 0.0)  # let them start spinning
            runs.append(_child("all", config, args))
        finally:
            for proc in loaders:
                proc.kill()
                proc.wait()
    out: dict = {"busy": busy, "busy_pids": pids, "processes": runs}
    for p in PROVIDERS:
        pooled = [t for run in runs for t in run[p]["times_s"]]
        medians = [statistics.median(run[p]["times_s"]) for run in runs]
        out[p] = {
            "time_s": statistics.median(pooled),
            "max_over_min": max(pooled) / min(pooled),
            # the steadiness from one fresh process to the next (the 0.05 s or 0.19 s)
            "process_medians_s": medians,
            "process_max_over_min": max(medians) / min(medians),
        }
    out["time_ratio_vs_torch"] = statistics.median(r for run in runs for r in run["ratios"])
    out["checks_overhead"] = statistics.median(run["checks_overhead"] for run in runs)
    out["checks_overhead_wall"] = statistics.median(run["checks_overhead_wall"] for run in runs)
    return out


COLUMNS = (
    "loss",
    "torch ms",
    "losskit ms",
    "checks-off ms",
    "time vs torch",
    "max/min torch / losskit",
    "process medians max/min torch / losskit",
    "1 busy: torch / losskit ms",
    "1 busy: vs torch",
    "2 busy: torch / losskit ms",
    "2 busy: vs torch",
    "checks cost (in-call / wall)",
    "ops/call torch / losskit",
    "torch extra MiB",
    "losskit extra MiB",
    "memory vs torch",
)


def _process_spread(level: dict) -> str:
    if "process_max_over_min" not in level["torch"]:  # a result written before the column existed
        return "-"
    return f"{level['torch']['process_max_over_min']:.2f}x / {level['losskit']['process_max_over_min']:.2f}x"


def table_rows(results: list[dict]) -> list[list[str]]:
    """The printed table's cells, one list per config (columns as :data:`COLUMNS`)."""
    rows = []
    for row in results:
        idle = row["busy"]["0"]
        cells = [
            row["config"],
            f"{idle['torch']['time_s'] * 1e3:.1f}",
            f"{idle['losskit']['time_s'] * 1e3:.1f}",
            f"{idle['losskit-off']['time_s'] * 1e3:.1f}",
            f"{idle['time_ratio_vs_torch']:.3f}x",
            f"{idle['torch']['max_over_min']:.2f}x / {idle['losskit']['max_over_min']:.2f}x",
            _process_spread(idle),
        ]
        for level in ("1", "2"):
            loaded = row["busy"].get(level)
            if loaded is None:
                cells += ["-", "-"]
                continue
            cells.append(f"{loaded['torch']['time_s'] * 1e3:.1f} / {loaded['losskit']['time_s'] * 1e3:.1f}")
            cells.append(f"{loaded['time_ratio_vs_torch']:.3f}x")
        cells += [
            f"{idle['checks_overhead'] * 100:+.1f}% / {idle['checks_overhead_wall'] * 100:+.1f}%",
            f"{row['torch']['ops_per_call']} / {row['losskit']['ops_per_call']}",
            f"{row['torch']['peak_extra_bytes'] / 2**20:.0f}",
            f"{row['losskit']['peak_extra_bytes'] / 2**20:.0f}",
            f"{row['memory_ratio_vs_torch']:.2f}x" if row["memory_ratio_vs_torch"] is not None else "-",
        ]
        rows.append(cells)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median)")
    parser.add_argument(
        "--min-seconds", type=float, default=MIN_SECONDS, help="more rounds for fast configs, up to this"
    )
    parser.add_argument("--only", default="", help="comma-separated substrings of config names to run")
    parser.add_argument("--busy", default="0,1,2", help="busy processes beside the timing: levels to run")
    parser.add_argument("--processes", type=int, default=2, help="fresh timing processes per busy level")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_losses.json"))
    parser.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._child:
        provider, config = args._child
        if provider == "all":
            print(json.dumps(measure_times(config, args.quick, args.repeats, args.device, args.min_seconds)))
        else:
            print(json.dumps(measure_memory(provider, config, args.quick, args.device)))
        return

    from rich.console import Console
    from rich.table import Table

    levels = sorted({0, *(int(v) for v in args.busy.split(",") if v.strip())})
    console = Console(width=200)
    wanted = [c for c in CONFIGS if not args.only or any(s in c for s in args.only.split(","))]
    results = []
    for config in wanted:
        row: dict = {"config": config, "busy": {}}
        for busy in levels:
            row["busy"][str(busy)] = timed_beside_busy(config, args, busy)
            loaded = row["busy"][str(busy)]
            console.print(
                f"  {config:38s} {busy} busy: torch {loaded['torch']['time_s'] * 1e3:9.1f} ms  losskit "
                f"{loaded['losskit']['time_s'] * 1e3:9.1f} ms  ({loaded['time_ratio_vs_torch']:.3f}x)"
            )
        for provider in PROVIDERS:
            row[provider] = _child(provider, config, args)
            console.print(f"  {config:38s} {provider:12s} {row[provider]['peak_extra_bytes'] / 2**20:9.1f} MiB extra")
        mt, ml = row["torch"]["peak_extra_bytes"], row["losskit"]["peak_extra_bytes"]
        row["memory_ratio_vs_torch"] = ml / mt if mt else None
        results.append(row)

    title = (
        f"forward+backward, float32, {args.device}, {'quick' if args.quick else 'full'} sizes, medians of per-round "
        f"ratios over {args.processes} fresh processes per level, >= {args.repeats} rounds each"
    )
    table = Table(title=title)
    for col in COLUMNS:
        table.add_column(col, justify="right" if col != "loss" else "left")
    cells = table_rows(results)
    for line in cells:
        table.add_row(*line)
    console.print(table)
    import torch

    payload = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "device": args.device if args.device != "cpu" else None,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "quick": args.quick,
        "repeats": args.repeats,
        "processes": args.processes,
        "busy_levels": levels,
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    md = [f"**{title}**", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    md += ["| " + " | ".join(line) + " |" for line in cells]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    console.print(f"wrote {out} and {out.with_suffix('.md').name}")


if __name__ == "__main__":
    main()
