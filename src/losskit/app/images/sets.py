"""The two kinds of image data compare trains on: labelled images and images with class masks."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["ImageSet", "SegmentationSet"]


@dataclass
class ImageSet:
    """Images with one class each (image classification).

    Attributes:
        x: ``(N, C, H, W)`` float32 pixels in ``[0, 1]`` (``C`` is 1 for grayscale, 3 for RGB).
        y: ``(N,)`` int64 class ids ``0 .. K-1``, indices into ``class_names``.
        class_names: the ``K`` class names (sorted folder names, or the demo's labels).
        files: one entry per image: its path, or ``"digits[12]"`` for a generated demo.
        notes: what the reader changed and why (modes converted, images resized), for the report.
        name: the data set's name shown in the report (folder or demo name).
    """

    x: torch.Tensor
    y: torch.Tensor
    class_names: list[str]
    files: list[str]
    notes: list[str] = field(default_factory=list)
    name: str = "images"

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class SegmentationSet:
    """Images with a class id per pixel (semantic segmentation).

    Attributes:
        x: ``(N, C, H, W)`` float32 pixels in ``[0, 1]``.
        masks: ``(N, H, W)`` int64 class ids ``0 .. K-1``, or ``ignore_index`` where a pixel is
            not scored (object borders in VOC, unlabelled areas).
        class_names: the ``K`` class names (``"background"``, ``"class 1"``, ... or ``classes.txt``).
        ignore_index: the id of ignored pixels (255 as in VOC and Cityscapes).
        files: one entry per image: its path, or ``"shapes[12]"`` for a generated demo.
        notes: what the reader changed and why, for the report.
        name: the data set's name shown in the report.
    """

    x: torch.Tensor
    masks: torch.Tensor
    class_names: list[str]
    ignore_index: int = 255
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    name: str = "segmentation"

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
