"""Large-vocabulary cross-entropy kernels: chunked ``autograd.Function``s in plain torch ops.

The public functions are :func:`losskit.functional.linear_cross_entropy` and
:class:`losskit.nn.LinearCrossEntropyLoss`; this package holds the algorithm.
"""
