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
