"""``losskit compare`` at the speed of the hardware: today's code beside the previous commit's
serial loop, in the same run, in fresh processes, alternating.

    .venv/bin/python benchmarks/bench_compare_speed.py                  # everything (about 25 min)
    .venv/bin/python benchmarks/bench_compare_speed.py --cases digits,wine,iris --rounds 3
    .venv/bin/python benchmarks/bench_compare_speed.py --quick          # a smoke run (tests)

Cases (the targets of the speed issue):

* ``digits`` -- ``losskit compare --folds 3 --repeats 2 --epochs 100 --no-baselines`` (and
  ``--max-repeats 2`` for today's code: the same fixed design): the command's wall time
  (imports, report and all): the previous commit; ``--jobs 1`` (stacked fits, this process); the
  default (every core); ``--backend ray`` (a local Ray instance, its start included); and the
  previous commit and the default with one busy process beside them (a user's machine is never
  idle).
* ``wine``, ``iris`` -- the same settings through ``losskit.compare`` in one warmed-up process:
  the median of 3 calls after a first one (imports and the report aside).
* ``big`` -- ``benchmarks/bench_compare.py``'s table (200,000 rows x 50 columns, 2 x 2 folds, 3
  epochs, baselines on): wall time, and the peak resident memory of the main process and of the
  largest worker process.

The previous commit (``--previous``, default the last one before stacked fits and workers) is
extracted with ``git archive`` into a temporary folder and put first on ``PYTHONPATH``; each
round runs every variant once in a fresh process, and ratios are taken per round. Prints a table
and writes ``benchmarks/results/bench_compare_speed.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the last commit of ``losskit compare``'s serial, one-fit-at-a-time loop
PREVIOUS = "cf865f3"
DIGITS = ["--folds", "3", "--repeats", "2", "--epochs", "100", "--no-baselines"]

WARM = """
import inspect, json, statistics, sys, time
from losskit.app.compare import compare
from sklearn.datasets import load_iris, load_wine
x, y = {"wine": load_wine, "iris": load_iris}[sys.argv[1]](return_X_y=True)
kwargs = dict(folds=3, repeats=2, epochs=int(sys.argv[2]), baselines=False)
if "max_repeats" in inspect.signature(compare).parameters:
    kwargs["max_repeats"] = 2  # today's design: no repeats added
compare(x, y, **kwargs)  # warm up: imports, first-call costs, worker processes
times = []
for _ in range(int(sys.argv[3])):
    start = time.perf_counter()
    compare(x, y, **kwargs)
    times.append(time.perf_counter() - start)
print(json.dumps(times))
"""

BIG = """
import json, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
import bench_compare
# bench_compare puts this checkout's src first on the path: take that entry out, so that the
# version being timed (PYTHONPATH for the previous commit, the installed package for today's)
# is the one imported
sys.path.remove(str(bench_compare.ROOT / "src"))
assert "losskit" not in sys.modules
from losskit.app.compare.run import compare_table
from losskit.app.data import load_file
with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "big.csv"
    bench_compare.make_csv(path, int(sys.argv[1]), 50)
    table = load_file(path, "target")
import inspect
fixed = {"max_repeats": 2} if "max_repeats" in inspect.signature(compare_table).parameters else {}
start = time.perf_counter()
compare_table(table, folds=2, repeats=2, epochs=int(sys.argv[2]), **fixed)
print(json.dumps(time.perf_counter() - start))
"""


def _extract(ref: str, where: Path) -> Path:
    archive = where / "previous.tar"
    with archive.open("wb") as fh:
        subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], stdout=fh, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(where, filter="data")
    return where / "src"


def _env(previous_src: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if previous_src is not None:
        env["PYTHONPATH"] = str(previous_src)
    return env


class _Peak:
    """The peak resident memory of a process and of its largest descendant, sampled."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.main = 0
        self.worker = 0

    def sample(self) -> None:
        import psutil

        try:
            self.main = max(self.main, self.proc.memory_info().rss)
            for child in self.proc.children(recursive=True):
                try:
                    self.worker = max(self.worker, child.memory_info().rss)
                except psutil.Error:
                    continue
        except psutil.Error:
            return


def _timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str, _Peak]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = _Peak(proc.pid)
    while proc.poll() is None:
        peak.sample()
        time.sleep(0.1)
    out, err = proc.communicate()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    return seconds, out, peak


def _busy() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="digits,wine,iris,big", help="comma-separated: digits, wine, iris, big")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the digits case (default 3)")
    parser.add_argument("--previous", default=PREVIOUS, help=f"the git ref to compare with (default {PREVIOUS})")
    parser.add_argument("--big-rounds", type=int, default=3, help="rounds of the big case (default 3)")
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the big case (default 200,000)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny settings, one round")
    parser.add_argument("--no-ray", action="store_true", help="leave out the Ray variant")
    parser.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    epochs = "3" if args.quick else "100"
    rounds = 1 if args.quick else args.rounds
    digits = ["--folds", "2", "--repeats", "1", "--epochs", epochs, "--no-baselines"] if args.quick else DIGITS
    rows = 3000 if args.quick else args.rows
    try:
        import ray  # noqa: F401

        with_ray = not args.no_ray
    except ModuleNotFoundError:
        with_ray = False

    record: dict = {"previous": args.previous, "rounds": rounds, "cases": {}}
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        previous_src = _extract(args.previous, work)
        old, new = _env(previous_src), _env(None)
        losskit = [sys.executable, "-m", "losskit", "compare"]

        if "digits" in cases:
            fixed = ["--max-repeats", digits[digits.index("--repeats") + 1]]  # today's design: no repeats added
            variants = {
                "previous commit": (old, []),
                "--jobs 1": (new, ["--jobs", "1", *fixed]),
                "default (all cores)": (new, fixed),
            }
            if with_ray:
                variants["--backend ray"] = (new, ["--backend", "ray", *fixed])
            variants["previous commit, 1 busy process beside"] = (old, [])
            variants["default, 1 busy process beside"] = (new, fixed)
            times: dict[str, list[float]] = {name: [] for name in variants}
            for r in range(rounds):
                for name, (env, extra) in variants.items():
                    busy = _busy() if "busy" in name else None
                    try:
                        seconds, _, _ = _timed([*losskit, *digits, *extra, "--out", str(work / f"d{r}")], env, work)
                    finally:
                        if busy is not None:
                            busy.kill()
                            busy.wait()
                    times[name].append(seconds)
                    print(f"digits round {r + 1}: {name}: {seconds:.1f} s", file=sys.stderr)
            record["cases"]["digits"] = dict(times)
            for name, t in times.items():
                base = times["previous commit, 1 busy process beside" if "busy" in name else "previous commit"]
                ratio = statistics.median(a / b for a, b in zip(t, base))
                lines.append(("digits (CLI, 3x2 folds, 100 epochs)", name, statistics.median(t), ratio, "", ""))

        for dataset in ("wine", "iris"):
            if dataset not in cases:
                continue
            calls = "1" if args.quick else "3"
            results = {}
            for name, env in (("previous commit", old), ("now (default)", new)):
                _, out, _ = _timed([sys.executable, "-c", WARM, dataset, epochs, calls], env, work)
                results[name] = json.loads(out.strip().splitlines()[-1])
                print(f"{dataset}: {name}: {results[name]}", file=sys.stderr)
            record["cases"][dataset] = results
            base_t = statistics.median(results["previous commit"])
            for name, t in results.items():
                lines.append(
                    (f"{dataset} (warmed-up API)", name, statistics.median(t), statistics.median(t) / base_t, "", "")
                )

        if "big" in cases:
            big_epochs = "1" if args.quick else "3"
            big_rounds = 1 if args.quick else args.big_rounds
            bench_dir = str(ROOT / "benchmarks")
            runs: dict[str, list[dict]] = {"previous commit": [], "now (default)": []}
            for r in range(big_rounds):  # alternating: the machine's drift falls on both alike
                for name, env in (("previous commit", old), ("now (default)", new)):
                    seconds, out, peak = _timed(
                        [sys.executable, "-c", BIG, str(rows), big_epochs, bench_dir], env, work
                    )
                    res = {"seconds": seconds, "compare_seconds": json.loads(out.strip().splitlines()[-1])}
                    res["peak_main_mb"] = peak.main / 2**20
                    res["peak_worker_mb"] = peak.worker / 2**20
                    runs[name].append(res)
                    print(f"big round {r + 1}: {name}: {res}", file=sys.stderr)
            record["cases"]["big"] = runs
            base = [res["compare_seconds"] for res in runs["previous commit"]]
            for name, results in runs.items():
                t = [res["compare_seconds"] for res in results]
                lines.append(
                    (
                        f"{rows:,} x 50 table (2x2 folds, {big_epochs} epochs)",
                        name,
                        statistics.median(t),
                        statistics.median(a / b for a, b in zip(t, base)),
                        f"{max(res['peak_main_mb'] for res in results):.0f}",
                        f"{max(res['peak_worker_mb'] for res in results):.0f}"
                        if any(res["peak_worker_mb"] for res in results)
                        else "-",
                    )
                )

    import torch

    record["machine"] = {"cpus": os.cpu_count(), "torch": torch.__version__}
    header = "| case | variant | seconds (median) | vs previous commit | peak MB main | peak MB largest worker |"
    table = [header, "| --- | --- | ---: | ---: | ---: | ---: |"]
    table += [f"| {c} | {v} | {s:.1f} | {r:.2f}x | {m} | {w} |" for c, v, s, r, m, w in lines]
    text = "\n".join(table) + "\n"
    print(text)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "bench_compare_speed" + ("_quick" if args.quick else "")
    (out_dir / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    (out_dir / f"{stem}.md").write_text(text)


if __name__ == "__main__":
    main()
