"""Autocast policy: the cross-entropy family runs in float32 under ``torch.autocast``, as torch's.

torch lists ``cross_entropy`` and ``nll_loss`` among the ops autocast runs in float32: their
floating inputs are cast up and the loss comes back in float32 (an fp16 ``sum`` cannot
overflow to inf). losskit's own kernels follow the same rule.
"""

from __future__ import annotations

import torch

__all__ = ["float32_under_autocast"]


def float32_under_autocast(tensor: torch.Tensor, device_type: str) -> torch.Tensor:
    """``tensor`` in float32 when autocast is on for ``device_type`` and it is a float16 or
    bfloat16 tensor; otherwise ``tensor`` itself."""
    if tensor.dtype not in (torch.float16, torch.bfloat16) or not torch.amp.is_autocast_available(device_type):
        return tensor  # (no autocast at all on some devices, e.g. meta: asking would raise)
    if torch.is_autocast_enabled(device_type):
        return tensor.float()
    return tensor
