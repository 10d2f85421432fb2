"""The benchmarks run as a user runs them (smoke sizes), and docs/benchmarks.md is regenerated from
their results. The numbers themselves are not asserted here: timing belongs to the benchmarks."""

from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(script: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_linear_cross_entropy_benchmark_smoke(tmp_path):
    out = _run(
        "bench_linear_cross_entropy.py",
        "--quick",
        "--rounds",
        "1",
        "--only",
        "N=2048 D=512 V=32768",  # float32 (an exact name: not the bf16 twin)
        "--providers",
        "losskit,liger",
        "--out-dir",
        str(tmp_path),
    )
    data = json.loads((tmp_path / "bench_linear_cross_entropy_quick.json").read_text())
    (result,) = data["results"]
    providers = result["providers"]
    assert set(providers) == {"floor", "torch", "liger", "losskit"}
    assert "CUDA" in providers["liger"]["skipped"]  # no GPU here: said so, not silently dropped
    lk = providers["losskit"]
    # float32: one chunk of logits (all N/4 = 512 rows here) against eager's logits and their
    # gradient (2 x 64 MiB): the fused kernel's memory above the returned gradients is lower
    assert lk["above_grads_bytes"] < providers["torch"]["above_grads_bytes"]
    assert "losskit" in out.stdout and "time / floor" in out.stdout
    table = (tmp_path / "bench_linear_cross_entropy_quick.md").read_text()
    assert table.startswith("| config | provider |") and "| losskit |" in table


def test_fused_floor_benchmark_smoke(tmp_path):
    out = _run("bench_fused_floor.py", "--quick", "--out-dir", str(tmp_path))
    (result,) = json.loads((tmp_path / "bench_fused_floor_quick.json").read_text())["results"]
    assert len(result["ratios"]) == result["rounds"] and result["ratio"] > 0
    assert "losskit / floor" in out.stdout


def test_hf_step_benchmark_smoke(tmp_path):
    pytest.importorskip("transformers")
    out = _run("bench_hf_step.py", "--quick", "--rounds", "1", "--out-dir", str(tmp_path))
    data = json.loads((tmp_path / "bench_hf_step_quick.json").read_text())
    (result,) = data["results"]
    stock, patched = result["variants"]["stock"], result["variants"]["losskit"]
    # the benchmark refuses to report when the patched loss differs; the first losses agree
    assert abs(stock["first_loss"] - patched["first_loss"]) <= 1e-4 * abs(stock["first_loss"])
    assert "time vs stock" in out.stdout


#: bench_losses.py at smoke size: small inputs, one fresh process per level, few rounds
_SMOKE = ("--quick", "--processes", "1", "--repeats", "2", "--min-seconds", "0.2")


def test_losses_benchmark_smoke_with_busy_processes(tmp_path):
    """One config, idle and beside one busy process: the table names the busy columns, the JSON
    holds every round of each level, and the busy processes the benchmark started are gone."""
    out = _run(
        "bench_losses.py",
        *_SMOKE,
        "--only",
        "cross_entropy 2048x32768",
        "--busy",
        "0,1",
        "--out",
        str(tmp_path / "bench_losses.json"),
    )
    (row,) = json.loads((tmp_path / "bench_losses.json").read_text())["results"]
    assert set(row["busy"]) == {"0", "1"}
    for level in row["busy"].values():
        (run,) = level["processes"]
        assert len(run["ratios"]) == run["rounds"] >= 2 and level["losskit"]["max_over_min"] >= 1
        assert level["losskit"]["process_medians_s"] == [statistics.median(run["losskit"]["times_s"])]
        assert level["losskit"]["process_max_over_min"] == 1.0  # one process: its median over itself
    assert row["losskit"]["ops_per_call"] > 0 and row["torch"]["ops_per_call"] > 0
    assert "1 busy: torch" in out.stdout
    table = (tmp_path / "bench_losses.md").read_text()
    assert "| 1 busy: vs torch |" in table and "| cross_entropy 2048x32768 |" in table
    assert "| process medians max/min torch / losskit |" in table
    assert "| - | - |" in table  # the level not run (2 busy) says so
    (pid,) = row["busy"]["1"]["busy_pids"]
    cmdline = Path(f"/proc/{pid}/cmdline")
    assert not cmdline.exists() or b"while True" not in cmdline.read_bytes()  # stopped


def test_small_losses_benchmark_smoke(tmp_path):
    """Every compare candidate at both sizes, beside its torch code; a table and JSON."""
    out = _run("bench_small_losses.py", "--quick", "--out", str(tmp_path / "bench_small_losses.json"))
    data = json.loads((tmp_path / "bench_small_losses.json").read_text())
    names = {r["loss"] for r in data["results"]}
    assert {"multiclass: focal", "multiclass: cross_entropy+class_weights", "regression: huber"} <= names
    assert all(r["ratio"] > 0 and r["losskit_max_over_min"] >= 1 for r in data["results"])
    assert len(data["results"]) == 2 * len(names)  # two sizes each
    assert "vs torch" in out.stdout
    assert "| multiclass: cross_entropy | 64x10 |" in (tmp_path / "bench_small_losses.md").read_text()


def test_gpu_benchmark_runs_on_cpu_as_a_smoke_check(tmp_path):
    out = _run(
        "bench_cross_entropy_gpu.py",
        "--device",
        "cpu",
        *_SMOKE,
        "--only",
        "seg 8x21",
        "--busy",
        "0",
        "--out",
        str(tmp_path / "gpu.json"),
    )
    (row,) = json.loads((tmp_path / "gpu.json").read_text())["results"]
    assert row["config"] == "cross_entropy seg 8x21x128x128" and "wrote" in out.stdout
    assert "| time vs torch |" in (tmp_path / "gpu.md").read_text()


def test_update_docs_fills_the_marked_tables(tmp_path, monkeypatch):
    update = _load("update_docs")
    results = tmp_path / "results"
    results.mkdir()
    (results / "bench_x.md").write_text("| a | b |\n|---|---|\n| 1 | 2 |\n")
    (results / "bench_x.json").write_text(json.dumps({"machine": {"cpus": 2, "torch": "2.13.0"}, "rounds": 3}))
    monkeypatch.setattr(update, "RESULTS", results)
    page = "intro\n<!-- results: bench_x -->\nold table\n<!-- end results -->\n<!-- results: bench_y -->\nkept\n<!-- end results -->\n"
    new, missing = update.render(page)
    assert missing == ["bench_y"]
    assert "old table" not in new and "| 1 | 2 |" in new and "kept" in new
    assert "2 CPUs, torch 2.13.0, 3 rounds" in new
    assert update.render(new)[0] == new  # regenerating again changes nothing


def test_the_benchmarks_page_marks_its_generated_tables():
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    for name in (
        "bench_losses",
        "bench_linear_cross_entropy",
        "bench_fused_floor",
        "bench_hf_step",
        "bench_vocab_parallel",
        "bench_small_losses",
    ):
        assert f"<!-- results: {name} -->" in page, name
