"""losskit.distributed across 2 and 3 gloo processes on loopback, against single-process torch.

All cases of one world size run in one set of spawned processes (spawning costs seconds), with
a hard deadline: a hung collective fails the test instead of stalling CI.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests import distributed_workers as workers
from tests._gloo import free_port, run_cases

DEADLINE_S = 240


def _run(world: int) -> dict[str, dict[int, str | None]]:
    return run_cases(workers, world, DEADLINE_S)[0]


@pytest.fixture(scope="module", params=[2, 3], ids=lambda w: f"world{w}")
def world_results(request):
    return request.param, _run(request.param)


@pytest.mark.parametrize("case", workers.CASES)
def test_distributed_case(world_results, case):
    world, outcome = world_results
    errors = {rank: err for rank, err in outcome[case].items() if err}
    assert not errors, "\n".join(f"rank {r} of {world}:\n{e}" for r, e in errors.items())


def test_cases_cover_the_issue():
    assert set(workers.CASES) == {
        "case_vocab_parallel_cross_entropy",
        "case_vocab_parallel_linear_cross_entropy",
        "case_mismatches_raise_on_every_rank",
        "case_ddp_gradient_accumulation_equals_one_big_batch",
        "case_vocab_parallel_head_with_global_normalization",
        "case_vocab_parallel_z_loss_and_softcap",
        "case_vocab_parallel_dtensor_and_btv_logits",
        "case_vocab_parallel_default_chunks_with_uneven_and_empty_shards",
    }


def test_single_process_helpers_and_normalizer_argument():
    import losskit
    import losskit.functional as LF
    from losskit.distributed import count_targets, global_normalizer

    a, b = torch.tensor([1, -100, 2]), torch.tensor([0, 0])
    assert float(count_targets([a, b])) == 4
    w = torch.tensor([0.5, 2.0, 3.0])
    assert float(count_targets([a, b], weight=w)) == 2.0 + 3.0 + 0.5 + 0.5
    assert float(global_normalizer([a, b])) == 4  # no process group: the local count
    logits = torch.randn(3, 3)
    torch.testing.assert_close(
        LF.cross_entropy(logits, a, normalizer=10.0), F.cross_entropy(logits, a, reduction="sum") / 10
    )
    h, W = torch.randn(3, 4), torch.randn(3, 4)
    torch.testing.assert_close(
        LF.linear_cross_entropy(h, W, a, normalizer=torch.tensor(8.0)),
        F.cross_entropy(h @ W.T, a, reduction="sum") / 8,
    )
    # the modules take it too (keyword-only, after torch's (input, target))
    torch.testing.assert_close(
        losskit.nn.CrossEntropyLoss(label_smoothing=0.1)(logits, a, normalizer=4.0),
        F.cross_entropy(logits, a, reduction="sum", label_smoothing=0.1) / 4,
    )
    head = losskit.nn.LinearCrossEntropyLoss(4, 3)
    torch.testing.assert_close(
        head(h, a, normalizer=2.0),
        F.cross_entropy(head.linear(h), a, reduction="sum") / 2,
    )
    # an all-ignored micro-batch is fine under global normalization: it contributes 0, not NaN
    assert float(LF.cross_entropy(logits, torch.full((3,), -100), normalizer=5.0)) == 0.0
    with pytest.raises(losskit.LossInputError, match="normalizer was given with reduction='sum'"):
        LF.cross_entropy(logits, a, reduction="sum", normalizer=3.0)
    with pytest.raises(losskit.LossInputError, match="normalizer is 0"):
        LF.cross_entropy(logits, a, normalizer=0)
    with pytest.raises(losskit.LossInputError, match="no counted target in the whole step"):
        global_normalizer([torch.full((2,), -100)])
    with pytest.raises(losskit.LossInputError, match="expected int64 class-id tensors"):
        count_targets([torch.rand(3)])
    with pytest.raises(losskit.LossInputError, match="torch.distributed is not initialized"):
        from losskit.distributed import vocab_parallel_cross_entropy

        vocab_parallel_cross_entropy(torch.randn(3, 4), torch.tensor([0, 1, 2]))


def test_tiny_lm_example_trains_under_torchrun():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    torchrun = Path(sys.executable).with_name("torchrun")
    out = subprocess.run(
        [
            str(torchrun),
            "--nproc_per_node",
            "2",
            "--master_port",
            str(free_port()),
            str(root / "examples" / "ddp_tiny_lm.py"),
            "--steps",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    losses = [float(line.split("loss ")[1].split()[0]) for line in out.stdout.splitlines() if line.startswith("step")]
    assert len(losses) == 3  # steps 1, 10, 20
    assert 6.0 < losses[0] < 7.0  # about ln(512) = 6.24 at the start
    assert losses[-1] < losses[0] - 1.0  # it learns
