"""``torch.nn``-style loss modules. Each ``forward`` is one call into :mod:`losskit.functional`.

Constructor arguments are torch's, without the deprecated ``size_average`` / ``reduce``.
Where torch had those deprecated slots before other arguments, the arguments after them are
keyword-only here, so a positional call that worked in torch either means the same thing or
fails loudly -- it never silently binds a value to the wrong argument. Weights are registered
as buffers, so they follow ``.to(device)`` and live in ``state_dict`` like torch's.
"""

from losskit.nn.classification import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    NLLLoss,
)
from losskit.nn.focal import FocalLoss, Poly1CrossEntropyLoss, SigmoidFocalLoss
from losskit.nn.large_vocabulary import LinearCrossEntropyLoss
from losskit.nn.regression import HuberLoss, L1Loss, MSELoss, SmoothL1Loss
from losskit.nn.segmentation import CrossEntropyDiceLoss, DiceLoss, TverskyLoss

__all__ = [
    "MSELoss",
    "L1Loss",
    "HuberLoss",
    "SmoothL1Loss",
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "NLLLoss",
    "LinearCrossEntropyLoss",
    "SigmoidFocalLoss",
    "FocalLoss",
    "Poly1CrossEntropyLoss",
    "DiceLoss",
    "TverskyLoss",
    "CrossEntropyDiceLoss",
]
