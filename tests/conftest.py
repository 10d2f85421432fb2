"""Shared helpers for the parity tests: run losskit and torch on the same tensors, compare."""

from __future__ import annotations

import pytest
import torch

import losskit


@pytest.fixture(autouse=True)
def _default_checks():
    """Every test starts at the default check level and a fixed seed."""
    with losskit.set_checks("auto"):
        torch.manual_seed(0)
        yield


@pytest.fixture(params=["kernel", "small-input"])
def softmax_loss_path(request, monkeypatch):
    """Run a test through both CPU paths of the softmax losses (cross-entropy, focal, poly-1):
    losskit's kernels (small inputs forced into them) and, for small inputs, torch's fused
    operations (:mod:`losskit.functional._small`)."""
    from losskit.functional import _small

    if request.param == "kernel":
        monkeypatch.setattr(_small, "SMALL_INPUT_ELEMENTS", -1)
    return request.param
