"""Compare's default optimizer steps exactly as ``torch.optim.Adam(fused=True)`` without
importing ``torch._dynamo``; a larger table model's fits are planned in stacks of two."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from losskit.app.compare import fits
from losskit.app.compare.adam import FusedAdam, fused_supported
from losskit.app.compare.train import default_adam
from losskit.tasks import Task


def _pair(seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    ours = [torch.randn(5, 3, generator=g), torch.randn(4, generator=g), torch.randn(2, 2, 2, generator=g)]
    ours = [p.requires_grad_() for p in ours]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    return ours, theirs


@pytest.mark.parametrize("lr", [1e-3, 0.1])
def test_steps_equal_torchs_fused_adam_bit_for_bit(lr):
    ours, theirs = _pair(0)
    a, b = FusedAdam(ours, lr), torch.optim.Adam(theirs, lr=lr, fused=True)
    for step in range(25):
        for params, opt in ((ours, a), (theirs, b)):
            opt.zero_grad(set_to_none=True)
            # some steps leave a parameter without a gradient: it keeps its state untouched
            used = params if step % 3 else params[:2]
            sum((p**3 - p).sum() for p in used).backward()
            opt.step()
    for p, q in zip(ours, theirs):
        assert torch.equal(p, q)
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(a.state[p][key], b.state[q][key]), key


def test_zero_grad_without_set_to_none_zeroes_in_place():
    ours, _ = _pair(1)
    opt = FusedAdam(ours, 0.1)
    ours[0].sum().backward()
    grad = ours[0].grad
    opt.zero_grad(set_to_none=False)
    assert ours[0].grad is grad and not grad.any()
    opt.zero_grad()
    assert ours[0].grad is None


def test_default_adam_falls_back_to_torch_where_there_is_no_fused_kernel():
    floats = [torch.zeros(2, requires_grad=True)]
    assert isinstance(default_adam(floats, 1e-3), FusedAdam)
    halves = [torch.zeros(2, dtype=torch.complex64, requires_grad=True)]
    assert not fused_supported(halves)
    assert isinstance(default_adam(halves, 1e-3), torch.optim.Adam)
    with pytest.raises(ValueError, match="torch.optim.Adam"):
        FusedAdam(halves, 1e-3)


def test_a_fit_does_not_import_torch_dynamo():
    code = (
        "import sys, numpy as np\n"
        "from losskit.app.compare import compare\n"
        "rng = np.random.default_rng(0)\n"
        "x = rng.normal(size=(90, 4)); y = (x[:, 0] > 0).astype(int)\n"
        "compare(x, y, folds=3, repeats=1, max_repeats=1, epochs=3, baselines=False, jobs=1)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def _settings(d_in: int) -> fits.Settings:
    return fits.Settings(Task.multiclass, d_in, 10, 50, 64, 1e-3, 0, "cpu", None, None, ())


def test_a_larger_table_model_trains_its_folds_fits_in_stacks_of_two():
    names = ["a", "b", "c", "d", "e"]
    tasks = fits.plan(
        [0, 1], lambda k: [fits.Member(k, n) for n in names], [1200, 1200], ["f1", "f2"], _settings(64), [], [], None
    )
    assert [len(t.members) for t in tasks] == [2, 2, 1, 2, 2, 1]
    assert [t.folds for t in tasks] == [(0,)] * 3 + [(1,)] * 3
    assert [m.candidate for t in tasks for m in t.members] == names * 2
    assert all(t.batched for t in tasks)


def test_a_small_model_still_trains_all_its_folds_as_one_stack():
    tasks = fits.plan(
        [0, 1], lambda k: [fits.Member(k, n) for n in "abc"], [100, 100], ["f1", "f2"], _settings(4), [], [], None
    )
    assert len(tasks) == 1 and len(tasks[0].members) == 6


def test_a_model_whose_steps_fill_a_core_trains_each_fit_alone():
    settings = fits.Settings(Task.binary, 65, 1, 3, 512, 1e-3, 0, "cpu", None, None, ())  # 65-256-256-1
    tasks = fits.plan([0], lambda k: [fits.Member(k, n) for n in "abc"], [80_000], ["f1"], settings, [], [], None)
    assert [len(t.members) for t in tasks] == [1, 1, 1]
    assert [t.label for t in tasks] == ["f1: a", "f1: b", "f1: c"]


def _encoded(rows: int, columns: int) -> object:
    import numpy as np
    import pandas as pd

    from losskit.app.compare.data import encode
    from losskit.app.data import Table

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(rows, columns)), columns=[f"c{i}" for i in range(columns)])
    return encode(Table(name="t", features=frame, target=pd.Series(np.arange(rows) % 2, name="y")))


def test_workers_start_before_the_folds_only_for_a_clearly_big_table(monkeypatch):
    from losskit.app import workers
    from losskit.app.compare import stages

    started = []
    monkeypatch.setattr(workers, "prestart", lambda workers, baselines: started.append((workers, baselines)))
    monkeypatch.setattr(workers, "cpu_count", lambda: 2)
    monkeypatch.setattr(workers, "free_cores", lambda cores, sample=0.25: cores)
    big, small = _encoded(20_000, 50), _encoded(150, 4)
    stages.maybe_prestart(small, "local", None, "cpu", True, 3, 10, 100, True)
    assert started == []  # iris-sized: runs in this process, no workers
    stages.maybe_prestart(big, "local", 2, "cpu", True, 3, 10, 100, True)  # --jobs given: the engine starts them
    stages.maybe_prestart(big, "ray", None, "cpu", True, 3, 10, 100, True)
    stages.maybe_prestart(big, "local", None, "cpu", False, 3, 10, 100, True)  # a user's model: its own checks first
    assert started == []
    stages.maybe_prestart(big, "local", None, "cpu", True, 3, 10, 100, True)
    assert started == [(2, True)]


def test_the_command_line_starts_workers_for_a_big_bundled_table_before_reading_it(monkeypatch):
    """The default digits run (5x2 folds, 100 epochs) is clearly big: its workers start before
    torch is imported; iris, a short run, another backend, --jobs or a model of one's own: not."""
    import argparse

    from losskit.app import workers

    started = []
    monkeypatch.setattr(workers, "prestart", lambda n, baselines: started.append((n, baselines)))
    monkeypatch.setattr(workers, "cpu_count", lambda: 2)
    monkeypatch.setattr(workers, "free_cores", lambda cores, sample=0.25: cores)
    monkeypatch.setattr(workers, "_prestarted", {})

    def args(**kw):
        base = dict(data=None, images=None, model=None, jobs=None, backend="local", device="cpu", dataset=None)
        base.update(losses=None, folds=5, repeats=2, epochs=None, no_baselines=False)
        base.update(kw)
        return argparse.Namespace(**base)

    for quiet in (
        args(dataset="iris"),
        args(epochs=2),
        args(jobs=2),
        args(backend="ray"),
        args(model="m.py:make"),
        args(device="cuda"),
        args(data="table.csv"),
        args(losses="cross_entropy", folds=2, repeats=1, epochs=20),
    ):
        workers.prestart_for_command(quiet)
    assert started == []
    workers.prestart_for_command(args())
    assert started == [(2, True)]
    started.clear()
    workers.prestart_for_command(args(folds=3, no_baselines=True))  # the speed benchmark's design
    assert started == [(2, False)]


def test_the_work_estimate_does_not_import_torch():
    code = (
        "import sys; from losskit.app import workers; "
        "workers.clearly_big(64, 10, 958, 3, 6, 100); assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_big_table_starts_its_workers_before_it_is_encoded(monkeypatch):
    import numpy as np
    import pandas as pd

    from losskit.app import workers
    from losskit.app.compare import stages
    from losskit.app.data import Table

    started = []
    monkeypatch.setattr(workers, "prestart", lambda n, baselines: started.append((n, baselines)))
    monkeypatch.setattr(workers, "cpu_count", lambda: 2)
    monkeypatch.setattr(workers, "free_cores", lambda cores, sample=0.25: cores)
    monkeypatch.setattr(workers, "_prestarted", {})
    rng = np.random.default_rng(0)

    def table(rows, columns):
        frame = pd.DataFrame(rng.normal(size=(rows, columns)), columns=[f"c{i}" for i in range(columns)])
        return Table(name="t", features=frame, target=pd.Series(np.arange(rows) % 2))

    big, small = table(20_000, 50), table(150, 4)
    stages.maybe_prestart_table(small, "local", None, "cpu", True, None, 10, 100, True)
    stages.maybe_prestart_table(big, "local", None, "cpu", True, None, 10, 1, True)  # one epoch: small work
    stages.maybe_prestart_table(big, "ray", None, "cpu", True, None, 10, 100, True)
    stages.maybe_prestart_table(big, "local", 2, "cpu", True, None, 10, 100, True)
    stages.maybe_prestart_table(big, "local", None, "cpu", False, None, 10, 100, True)
    assert started == []
    stages.maybe_prestart_table(big, "local", None, "cpu", True, None, 10, 100, False)
    assert started == [(2, False)]


def test_ray_workers_import_scikit_learn_only_for_a_table_with_baselines(tmp_path):
    import argparse

    from losskit.app import workers

    def args(**kw):
        return argparse.Namespace(**{**dict(images=None, dataset=None, data=None, no_baselines=False), **kw})

    assert workers.baselines_wanted(args())  # the bundled digits table
    assert workers.baselines_wanted(args(data=str(tmp_path / "t.csv")))
    assert not workers.baselines_wanted(args(no_baselines=True))
    assert not workers.baselines_wanted(args(dataset="shapes"))  # images get no baselines
    assert not workers.baselines_wanted(args(images="imgs", masks="masks"))
    assert not workers.baselines_wanted(args(data=str(tmp_path)))  # a folder of class folders
