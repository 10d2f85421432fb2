"""Integrations with training frameworks: each submodule imports its framework only when used.

* :mod:`losskit.integrations.transformers` -- ``patch(model)`` makes a Hugging Face causal LM
  compute its loss with the fused linear + cross-entropy (no logits built); ``unpatch(model)``
  restores it.
"""

from __future__ import annotations

__all__: list[str] = []
