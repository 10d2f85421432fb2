"""The names the rules recognise: torch's losses (functional and module), activations, casts."""

from __future__ import annotations

import libcst as cst

#: loss name -> qualified names of its functional form and its module class
LOSSES = {
    "cross_entropy": ("CrossEntropyLoss",),
    "nll_loss": ("NLLLoss",),
    "binary_cross_entropy": ("BCELoss",),
    "binary_cross_entropy_with_logits": ("BCEWithLogitsLoss",),
    "mse_loss": ("MSELoss",),
    "l1_loss": ("L1Loss",),
    "smooth_l1_loss": ("SmoothL1Loss",),
    "huber_loss": ("HuberLoss",),
    "kl_div": ("KLDivLoss",),
    "poisson_nll_loss": ("PoissonNLLLoss",),
    "margin_ranking_loss": ("MarginRankingLoss",),
    "hinge_embedding_loss": ("HingeEmbeddingLoss",),
    "multilabel_margin_loss": ("MultiLabelMarginLoss",),
    "soft_margin_loss": ("SoftMarginLoss",),
    "multilabel_soft_margin_loss": ("MultiLabelSoftMarginLoss",),
    "cosine_embedding_loss": ("CosineEmbeddingLoss",),
    "multi_margin_loss": ("MultiMarginLoss",),
}
_FUNCTIONAL_PREFIXES = ("torch.nn.functional.", "losskit.functional.")
_CLASS_PREFIXES = ("torch.nn.", "torch.nn.modules.loss.", "losskit.nn.")
FUNCTIONAL = {p + name: name for p in _FUNCTIONAL_PREFIXES for name in LOSSES}
CLASSES = {p + cls: name for p in _CLASS_PREFIXES for name, classes in LOSSES.items() for cls in classes}

SOFTMAX = {"torch.softmax", "torch.nn.functional.softmax", "torch.special.softmax"}
LOG_SOFTMAX = {"torch.log_softmax", "torch.nn.functional.log_softmax", "torch.special.log_softmax"}
SIGMOID = {"torch.sigmoid", "torch.nn.functional.sigmoid", "torch.special.expit"}
ONE_HOT = {"torch.nn.functional.one_hot"}
ACTIVATION_CLASSES = {
    "torch.nn.Softmax": "softmax",
    "torch.nn.Softmax2d": "softmax",
    "torch.nn.LogSoftmax": "log_softmax",
    "torch.nn.Sigmoid": "sigmoid",
}
SEQUENTIAL = {"torch.nn.Sequential"}
#: methods that keep what a value is (casts and reshapes)
TRANSPARENT = {
    "float",
    "double",
    "half",
    "bfloat16",
    "to",
    "type",
    "contiguous",
    "view",
    "reshape",
    "squeeze",
    "unsqueeze",
    "flatten",
    "permute",
    "transpose",
    "clone",
    "detach",
    "cpu",
    "cuda",
    "long",
    "int",
}
FLOAT_CASTS = {"float", "double", "half", "bfloat16"}
FLOAT_DTYPES = {
    "torch.float",
    "torch.float32",
    "torch.float64",
    "torch.double",
    "torch.half",
    "torch.float16",
    "torch.bfloat16",
}

MODULE_MOVES = {"to", "cuda", "cpu", "float", "double", "half", "bfloat16", "train", "eval", "requires_grad_"}
WRAPPERS = {"torch.nn.DataParallel", "torch.nn.parallel.DataParallel", "torch.nn.parallel.DistributedDataParallel"}


def last_layer(arg: cst.BaseExpression) -> cst.BaseExpression:
    """The last layer of ``nn.Sequential(a, b, c)``'s last argument, or of
    ``nn.Sequential(OrderedDict([("fc", ...), ("softmax", nn.Softmax(1))]))``."""
    if isinstance(arg, cst.Call) and arg.args and isinstance(arg.func, (cst.Name, cst.Attribute)):
        name = arg.func.value if isinstance(arg.func, cst.Name) else arg.func.attr.value
        items = arg.args[0].value
        if name == "OrderedDict" and isinstance(items, (cst.List, cst.Tuple)) and items.elements:
            pair = items.elements[-1].value
            if isinstance(pair, cst.Tuple) and len(pair.elements) == 2:
                return pair.elements[1].value
    return arg
