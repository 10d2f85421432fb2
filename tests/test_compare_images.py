"""`losskit compare` on image classification: samples of any shape through the documented API
(a TensorDataset of digits as 1 x 8 x 8 images with a CNN factory, tensors with the default
CNN, a Dataset read lazily), the same numbers in worker processes, and the command line on a
generated folder of PNG class folders (a subprocess, as a user runs it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import losskit
from losskit.app.images import digits_images

TINY = ["--folds", "2", "--repeats", "1", "--max-repeats", "1", "--epochs", "2"]
FAST = {"folds": 2, "repeats": 1, "max_repeats": 1, "epochs": 2}


def _digits(n: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    data = digits_images()
    return data.x[:n], data.y[:n]


def _losskit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "160", "PYTHONPATH": ""}
    return subprocess.run(
        [sys.executable, "-m", "losskit", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


class TinyCNN(nn.Module):
    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3, padding=1)
        self.head = nn.Linear(4 * 8 * 8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).flatten(1))


def test_a_tensor_dataset_of_images_with_a_cnn_factory():
    x, y = _digits()
    calls: list[tuple[int, int]] = []

    def factory(channels: int, classes: int) -> nn.Module:
        calls.append((channels, classes))
        return TinyCNN(channels, classes)

    design = {**FAST, "epochs": 5}
    result = losskit.compare(torch.utils.data.TensorDataset(x, y), model=factory, jobs=1, lr=1e-2, **design)
    p = result.payload
    assert p["task"] == "multiclass" and p["n_rows"] == 300
    assert p["settings"]["model"] == "custom" and p["settings"]["sample_shape"] == [1, 8, 8]
    assert set(calls) == {(1, 10)}
    assert result.run.execution["batched"] is True  # a conv net stacks
    assert p["results"][0]["metrics"]["macro_f1"] > 0.2  # it learned something (chance: 0.1)


@pytest.mark.filterwarnings("error::UserWarning")  # no "non-writable array" from what Ray hands back
def test_image_tensors_get_the_default_cnn_and_workers_give_the_same_numbers():
    x, y = _digits(200)
    here = losskit.compare(x, y, losses="cross_entropy,focal", jobs=1, **FAST)
    assert here.payload["settings"]["model"] == "cnn"
    there = losskit.compare(x, y, losses="cross_entropy,focal", jobs=2, **FAST)
    assert there.run.execution["workers"] == 2
    assert json.dumps(here.payload["results"]) == json.dumps(there.payload["results"])
    # and on a local Ray instance (2 CPUs, loopback), the images in its object store
    on_ray = losskit.compare(x, y, losses="cross_entropy,focal", backend="ray", **FAST)
    assert on_ray.run.execution["backend"] == "ray"
    assert json.dumps(here.payload["results"]) == json.dumps(on_ray.payload["results"])


class LazyDigits(torch.utils.data.Dataset):
    """Digits read one sample at a time; records how many samples are alive at each read."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.targets = x.numpy(), y
        self.alive: weakref.WeakSet[torch.Tensor] = weakref.WeakSet()
        self.most_alive = 0
        self.reads = 0

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.reads += 1
        sample = torch.tensor(self.x[i])  # a fresh tensor per read, as a file decoder gives
        self.alive.add(sample)
        self.most_alive = max(self.most_alive, len(self.alive))
        return sample, self.targets[i]


class BatchNormCNN(TinyCNN):
    def __init__(self, channels: int, classes: int) -> None:
        super().__init__(channels, classes)
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.norm(x))


def test_a_lazy_dataset_is_read_batch_by_batch_and_gives_the_in_memory_numbers():
    x, y = _digits(400)
    lazy = LazyDigits(x, y)
    result = losskit.compare(lazy, model=BatchNormCNN, batch_size=16, losses="cross_entropy,focal", **FAST)
    assert lazy.reads > len(lazy)  # read during training, never gathered up front
    # never more samples in memory than a scoring pass reads at a time (64), far from a fold (200)
    assert lazy.most_alive <= 64 + 16
    assert any("read batch by batch" in n for n in result.payload["notes"])
    # a model with batch norm trains one fit at a time in memory too: the very same numbers
    again = losskit.compare(x, y, model=BatchNormCNN, batch_size=16, losses="cross_entropy,focal", jobs=1, **FAST)
    assert json.dumps(result.payload["results"]) == json.dumps(again.payload["results"])


def test_a_sample_shape_the_default_models_do_not_know_trains_an_mlp_on_the_flattened_samples():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 4, 5, generator=g)  # e.g. sequences (length 4, 5 features)
    y = (x[:, :, 0].sum(1) > 0).long()
    result = losskit.compare(x, y, jobs=1, **FAST)
    assert result.payload["task"] == "binary" and result.payload["settings"]["sample_shape"] == [4, 5]


# --------------------------------------------------------------------------- the command line


def _write_class_folders(root: Path, per_class: int = 14) -> Path:
    from PIL import Image

    data = digits_images()
    top = root / "digits"
    for digit in (0, 1, 7):
        folder = top / f"digit{digit}"
        folder.mkdir(parents=True)
        picks = (data.y == digit).nonzero().flatten()[:per_class]
        for j, i in enumerate(picks.tolist()):
            pixels = (data.x[i, 0].numpy() * 255).round().astype(np.uint8)
            Image.fromarray(pixels, "L").save(folder / f"{j}.png")
    return top


def test_cli_on_class_folders_with_a_model_of_your_own(tmp_path):
    top = _write_class_folders(tmp_path)
    (tmp_path / "mynets.py").write_text(
        "from torch import nn\n\n"
        "def small(channels, classes):\n"
        "    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, classes))\n"
    )
    out = tmp_path / "report"
    done = _losskit("compare", str(top), "--model", "mynets:small", *TINY, "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    payload = json.loads((out / "metrics.json").read_text())
    assert payload["task"] == "multiclass" and payload["n_rows"] == 42
    assert payload["settings"]["model"] == "custom"
    assert (out / "confusion.png").stat().st_size > 0
    assert "confusion.png" in (out / "report.html").read_text() or "Confusion" in (out / "report.html").read_text()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("mynets", "expected MODULE:FUNCTION"),
        ("nosuchmodule:f", "cannot be imported"),
        ("mynets:nope", "has no 'nope'"),
    ],
)
def test_cli_bad_model_spec_is_one_line(tmp_path, monkeypatch, capsys, spec, message):
    from losskit.app.cli import main

    (tmp_path / "mynets.py").write_text("def small(c, k):\n    return None\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "mynets", raising=False)
    out = tmp_path / "never"
    assert main(["compare", "--dataset", "digits-images", "--model", spec, *TINY, "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and spec in lines[0], lines
    assert not out.exists()


def test_cli_bad_image_folders_name_the_file(tmp_path):
    top = _write_class_folders(tmp_path, per_class=8)
    (top / "digit7" / "3.png").write_bytes((top / "digit7" / "3.png").read_bytes()[:40])  # truncated
    out = tmp_path / "never"
    done = _losskit("compare", str(top), *TINY, "--out", str(out), cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "3.png" in lines[0], done.stderr
    assert not out.exists()
    (top / "digit7" / "3.png").unlink()
    for f in (top / "digit1").iterdir():
        f.unlink()
    done = _losskit("compare", str(top), *TINY, "--out", str(out), cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "digit1" in lines[0], done.stderr
    assert not out.exists()
