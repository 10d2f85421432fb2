"""Losses over ``torch.distributed``: vocabulary-parallel cross-entropy and globally correct
normalization for data parallelism with gradient accumulation.

* :func:`vocab_parallel_cross_entropy` -- logits sharded by class across ranks; only per-row
  statistics are communicated.
* :func:`vocab_parallel_linear_cross_entropy` -- the fused, chunked output layer + loss with the
  layer's rows sharded.
* :func:`global_normalizer` / :func:`count_targets` -- the ``normalizer=`` that makes DDP +
  gradient accumulation equal to one big batch's mean.

Works with any backend (gloo on CPU, NCCL on GPUs).
"""

from losskit.distributed.normalization import count_targets, global_normalizer
from losskit.distributed.vocab_parallel import (
    vocab_parallel_cross_entropy,
    vocab_parallel_linear_cross_entropy,
)

__all__ = [
    "vocab_parallel_cross_entropy",
    "vocab_parallel_linear_cross_entropy",
    "global_normalizer",
    "count_targets",
]
