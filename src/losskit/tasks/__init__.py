"""Choosing the loss: infer the task from the targets, weigh the classes, configure the loss.

* :class:`Task` and :func:`infer_task` -- which of regression, binary, multiclass, multilabel,
  token classification or segmentation the targets (and optionally the model output) describe,
  with the reason in one sentence.
* :func:`class_weights` and :func:`pos_weight` -- weights from label counts ("balanced" as
  scikit-learn, "effective" as Cui et al. 2019).
* :func:`loss_for` -- a configured losskit module for a task, whose ``explain()`` says why.
* :class:`LabelEncoder` -- strings or arbitrary labels to ``0..K-1`` ids and back.
"""

from losskit.tasks.choose import loss_for
from losskit.tasks.constants import (
    HUBER_K,
    IMBALANCE_RATIO_THRESHOLD,
    MANY_CLASSES,
    OUTLIER_FRACTION,
    OUTLIER_Z,
    VOCABULARY_SIZE,
)
from losskit.tasks.infer import TaskGuess, infer_task
from losskit.tasks.labels import LabelEncoder
from losskit.tasks.weights import class_weights, pos_weight
from losskit.types import Task

__all__ = [
    "Task",
    "TaskGuess",
    "LabelEncoder",
    "infer_task",
    "class_weights",
    "pos_weight",
    "loss_for",
    "IMBALANCE_RATIO_THRESHOLD",
    "MANY_CLASSES",
    "VOCABULARY_SIZE",
    "OUTLIER_Z",
    "OUTLIER_FRACTION",
    "HUBER_K",
]
