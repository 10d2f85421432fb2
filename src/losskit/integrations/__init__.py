"""Integrations with training frameworks: each submodule imports its framework only when used.

* :mod:`losskit.integrations.transformers` -- ``patch(model)`` makes a Hugging Face causal LM
  (or vision-language model) compute its loss with the fused linear + cross-entropy (no logits
  built); it also takes a model class, an Auto class or a ``Trainer``; ``unpatch`` restores them;
  ``token_metrics`` gives ``Trainer.evaluate`` token accuracy and perplexity without logits.
"""

from __future__ import annotations

__all__: list[str] = []
