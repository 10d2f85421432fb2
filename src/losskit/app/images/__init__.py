"""Image data for ``losskit compare``: folders of image files read with Pillow, and bundled demos.

- :func:`read_class_folders`: one sub-folder per class (image classification) -> :class:`ImageSet`
- :func:`read_segmentation_folders`: images beside PNG class masks -> :class:`SegmentationSet`
- :func:`digits_images`, :func:`shapes`: offline demo data of each kind

Pillow, numpy and scikit-learn load when a function runs (``import losskit`` loads none of them).
The readers never write anything.
"""

from __future__ import annotations

from losskit.app.images.decode import IMAGE_SUFFIXES
from losskit.app.images.demos import SHAPES_CLASSES, digits_images, shapes
from losskit.app.images.folders import read_class_folders, read_segmentation_folders
from losskit.app.images.sets import ImageSet, SegmentationSet

__all__ = [
    "ImageSet",
    "SegmentationSet",
    "read_class_folders",
    "read_segmentation_folders",
    "digits_images",
    "shapes",
    "SHAPES_CLASSES",
    "IMAGE_SUFFIXES",
]
