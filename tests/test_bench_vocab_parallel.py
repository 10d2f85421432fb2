"""Smoke test of benchmarks/bench_vocab_parallel.py: a quick run on 2 gloo ranks (about 45 s on a
busy 2-core machine) writes JSON of the documented structure, every method's loss equals the
all-gather reference, and the bytes are those of the algorithms."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_vocab_parallel.py"
METHODS = ["gather", "loss_parallel", "losskit", "losskit-dtensor"]
N, V_PER_RANK = 512, 32768  # --quick


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "vp.json"
    cmd = [sys.executable, str(SCRIPT), "--quick", "--worlds", "2", "--rounds", "1", "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.with_suffix(".md").read_text().count("| 2 | 65536 |") == len(METHODS)
    return json.loads(out.read_text()), done.stdout


def test_structure(quick_run: tuple[dict, str]) -> None:
    data, stdout = quick_run
    assert "loss_parallel" in stdout and "counter check" in stdout
    (res,) = data["results"]
    assert (res["world"], res["N"], res["V"], res["rounds"]) == (2, N, 2 * V_PER_RANK, 1)
    assert list(res["methods"]) == METHODS
    for name, m in res["methods"].items():
        assert "error" not in m, (name, m)
        assert m["seconds"] > 0 and len(m["seconds_per_round"]) == 1
        assert len(m["peak_bytes_per_rank"]) == 2
        # every method returns the (N, V_r) float32 gradient of the logits
        assert m["peak_bytes"] >= 0.9 * res["grad_bytes"], (name, m["peak_bytes"])
    assert res["methods"]["gather"]["time_vs_gather"] == 1.0


def test_losses_equal_the_reference(quick_run: tuple[dict, str]) -> None:
    methods = quick_run[0]["results"][0]["methods"]
    reference = methods["gather"]["loss"]
    # uniform-ish random logits: the loss is near ln V
    assert abs(reference - math.log(2 * V_PER_RANK)) < 1.0
    for name in METHODS:
        assert methods[name]["agrees_with_gather"], name
        assert methods[name]["loss"] == pytest.approx(reference, rel=1e-5), name
    assert methods["losskit"]["loss"] == pytest.approx(methods["loss_parallel"]["loss"], rel=1e-5)


def test_bytes(quick_run: tuple[dict, str]) -> None:
    res = quick_run[0]["results"][0]
    methods, shard = res["methods"], N * V_PER_RANK * 4
    assert methods["gather"]["payload_bytes"] == shard == methods["gather"]["sent_bytes"]
    # the dispatch-mode counter sees DTensor's own all-gather as exactly gather's bytes
    for check in res["counter_check"]:
        assert check["payload_bytes"] == shard
        assert check["calls"] == {"_c10d_functional.all_gather_into_tensor": 1}
    # loss_parallel: three all-reduces of N float32 (max, sum of exp, target logit), seen
    # only through the dispatch mode
    assert methods["loss_parallel"]["calls"] == {"_c10d_functional.all_reduce": 3}
    assert methods["loss_parallel"]["payload_bytes"] == 3 * N * 4
    # losskit: all-reduces of N (max) and 2N (sums), plus a small agreement all-gather
    assert methods["losskit"]["calls"] == {"dist.all_gather": 1, "dist.all_reduce": 2}
    assert 3 * N * 4 < methods["losskit"]["payload_bytes"] < 3 * N * 4 + 1024
    assert methods["losskit-dtensor"]["payload_bytes"] == methods["losskit"]["payload_bytes"]
