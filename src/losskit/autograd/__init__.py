"""The ``torch.autograd.Function`` s behind the cross-entropy losses, in plain torch operations.

* :mod:`losskit.autograd.cross_entropy` -- the kernel of ``cross_entropy`` (plain and
  K-dimensional): one ``N x C`` buffer, the ``log_softmax`` that backward turns into the gradient
  in place, and a fixed number of large operations per call.
* :mod:`losskit.autograd.linear_cross_entropy` -- the fused output layer + cross-entropy that
  never holds the ``N x V`` logits (gradients during forward, in chunks of :data:`~losskit.autograd.linear_cross_entropy.CHUNK_BYTES`).

Both walk their chunks and call the row math of :mod:`losskit._core.cross_entropy`; the public
functions are :func:`losskit.functional.cross_entropy` and
:func:`losskit.functional.linear_cross_entropy`.
"""
