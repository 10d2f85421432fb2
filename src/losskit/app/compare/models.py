"""The default models of ``losskit compare`` for inputs that are not tables: a small CNN for
images ``(C, H, W)`` (classification), a small U-Net for segmentation, an MLP on the flattened
sample for any other shape. Group normalization, not batch normalization: batch norm updates
running statistics in training, so its fits could not train stacked (one batched model for
many fits, :mod:`losskit.app.compare.stacks`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from losskit.app.compare.train import make_model
from losskit.tasks import Task

__all__ = ["SmallCNN", "SmallUNet", "default_model", "describe_model", "UNET_WIDTH", "CNN_WIDTH"]

#: channels of the first stage of the default models (doubled at each downsampling)
CNN_WIDTH = 16
UNET_WIDTH = 8


def _block(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 convolution, group norm (groups of 4 channels), ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(max(1, c_out // 4), c_out), nn.ReLU())


class SmallCNN(nn.Module):
    """Image classifier: three conv blocks (``w``, ``2w``, ``4w`` channels, 2x2 max pooling
    between them), global average pooling and a linear layer to ``num_outputs`` logits. Any
    image size (8 x 8 digits up)."""

    def __init__(self, in_channels: int, num_outputs: int, width: int = CNN_WIDTH) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _block(in_channels, w), nn.MaxPool2d(2, ceil_mode=True),
            _block(w, 2 * w), nn.MaxPool2d(2, ceil_mode=True),
            _block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Linear(4 * w, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x))
        return out


class SmallUNet(nn.Module):
    """A two-level U-Net (Ronneberger et al. 2015, shrunk for CPU): one conv block at full
    resolution (``w`` channels), two at half (``2w``) and two at the bottom (``4w``), 2x2 max
    pooling down; up, a 1x1 convolution at the lower resolution, nearest upsampling, the skip
    concatenated and one conv block; a 1x1 convolution to ``num_classes`` logits per pixel. Any
    image size (upsampling matches the skip's size). The full-resolution work is kept small: it
    is most of the cost on CPU."""

    def __init__(self, in_channels: int, num_classes: int, width: int = UNET_WIDTH) -> None:
        super().__init__()
        w = width
        self.down1 = _block(in_channels, w)
        self.down2 = nn.Sequential(_block(w, 2 * w), _block(2 * w, 2 * w))
        self.bottom = nn.Sequential(_block(2 * w, 4 * w), _block(4 * w, 4 * w))
        self.up2 = nn.Conv2d(4 * w, 2 * w, 1)
        self.merge2 = _block(4 * w, 2 * w)
        self.up1 = nn.Conv2d(2 * w, w, 1)
        self.merge1 = _block(2 * w, w)
        self.out = nn.Conv2d(w, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.down1(x)
        s2 = self.down2(F.max_pool2d(s1, 2, ceil_mode=True))
        b = self.bottom(F.max_pool2d(s2, 2, ceil_mode=True))
        u2 = F.interpolate(self.up2(b), size=s2.shape[-2:], mode="nearest")
        m2 = self.merge2(torch.cat([u2, s2], dim=-3))
        u1 = F.interpolate(self.up1(m2), size=s1.shape[-2:], mode="nearest")
        out: torch.Tensor = self.out(self.merge1(torch.cat([u1, s1], dim=-3)))
        return out


def default_model(task: Task, shape: tuple[int, ...], num_outputs: int, seed: int) -> nn.Module:
    """The default model for samples of ``shape`` with seeded initial weights: a
    :class:`SmallUNet` for segmentation, a :class:`SmallCNN` for images ``(C, H, W)``, an MLP
    (:func:`losskit.app.compare.train.make_model`) on the flattened sample otherwise."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if task == Task.segmentation:
            return SmallUNet(shape[0], num_outputs)
        if len(shape) == 3:
            return SmallCNN(shape[0], num_outputs)
    d_in = 1
    for s in shape:
        d_in *= s
    mlp = make_model(d_in, num_outputs, seed)
    return nn.Sequential(nn.Flatten(), *list(mlp.children()))


def describe_model(task: Task, shape: tuple[int, ...]) -> str:
    """The default model in a few words, for the console and the report."""
    if task == Task.segmentation:
        return f"U-Net (2 levels, {UNET_WIDTH}-{2 * UNET_WIDTH}-{4 * UNET_WIDTH} channels, group norm)"
    if len(shape) == 3:
        return f"CNN ({CNN_WIDTH}-{2 * CNN_WIDTH}-{4 * CNN_WIDTH} channels, group norm)"
    return "MLP on the flattened samples"
