"""The math, once: cross-entropy row math and reductions. Torch only; no checks, no messages.

Every public loss reaches this package through :mod:`losskit.functional` (after the
guardrails of :mod:`losskit.checks`) or through the autograd Functions of
:mod:`losskit.autograd`; nothing here validates its inputs.
"""
