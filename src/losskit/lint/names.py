"""The names the rules recognise -- torch's losses (functional and module), activations, casts --
and the names a file binds, collected in one pass (:class:`Collector`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst
from libcst.metadata import PositionProvider

if TYPE_CHECKING:
    from losskit.lint.engine import Context

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
#: hand-built one-hot targets: ``torch.eye(C)[y]``, ``torch.zeros(n, C).scatter_(1, idx, 1)``
EYE = {"torch.eye", "numpy.eye"}
ZEROS = {"torch.zeros", "torch.zeros_like", "numpy.zeros", "numpy.zeros_like"}
#: functions that make a tensor of their first argument (and keep what it is)
TO_TENSOR = {
    "torch.from_numpy",
    "torch.tensor",
    "torch.as_tensor",
    "torch.Tensor",
    "torch.FloatTensor",
    "torch.autograd.Variable",
    "torch.autograd.variable.Variable",
}
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
    "astype",
    "type_as",
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


def is_one(node: cst.BaseExpression) -> bool:
    """The literal ``1`` / ``1.0``."""
    return isinstance(node, (cst.Integer, cst.Float)) and float(node.value) == 1.0


def scatters_one(call: cst.Call) -> bool:
    """``.scatter_(dim, index, 1)`` / ``.scatter(dim, index, value=1.0)``: writes the number 1."""
    positional = [a.value for a in call.args if a.keyword is None and a.star == ""]
    keywords = {a.keyword.value: a.value for a in call.args if a.keyword is not None}
    value = positional[2] if len(positional) > 2 else keywords.get("value")
    return value is not None and is_one(value)


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


def appended_last(ctx: Context, layers: cst.BaseExpression, line: int) -> cst.BaseExpression | None:
    """The last layer of a list ``layers`` as ``nn.Sequential(*layers)`` on ``line`` sees it:
    ``layers = [...]`` then ``layers.append(x)`` calls, in one function; the last append (or
    element) counts only when no loop or ``if`` that leaves out the ``Sequential`` line holds it,
    and nothing else (``extend``, ``insert``, ``+=``, a rebinding) changes the list after it."""
    if not isinstance(layers, cst.Name):
        return None
    name = layers.value
    made = [(ln, v, scope) for (scope, key), values in ctx.assignments.items() if key == name for ln, v in values]
    made = [m for m in made if m[0] < line]
    if not made:
        return None
    start, value, scope = max(made, key=lambda m: m[0])
    if not isinstance(value, cst.List):
        return None
    last: cst.BaseExpression | None = value.elements[-1].value if value.elements else None
    last_line = start
    for call, call_scope in ctx.calls:
        func = call.func
        at = ctx.pos(call)[0]
        if not (start < at < line and isinstance(func, cst.Attribute) and dotted(func.value) == name):
            continue
        if call_scope is not scope or func.attr.value != "append" or len(call.args) != 1 or at < last_line:
            return None  # layers.extend(...), layers.insert(...), or an append elsewhere
        last, last_line = call.args[0].value, at
    if any(start < ln < line for ln in ctx.rebinds.get(name, []) if ln != last_line):
        return None  # layers += [...], or rebound
    root = scope if scope is not None else ctx.module
    for node in _blocks(root):
        r = ctx.positions[node]
        if r.start.line <= last_line <= r.end.line and not r.start.line <= line <= r.end.line:
            return None  # appended in a loop or under a condition the Sequential is not in
    return last


def _blocks(root: cst.CSTNode) -> list[cst.CSTNode]:
    """The ``if``, loop and ``try`` statements of ``root`` (not of nested functions)."""
    found: list[cst.CSTNode] = []

    class _V(cst.CSTVisitor):
        def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
            return node is root

        def visit_If(self, node: cst.If) -> None:
            found.append(node)

        def visit_For(self, node: cst.For) -> None:
            found.append(node)

        def visit_While(self, node: cst.While) -> None:
            found.append(node)

        def visit_Try(self, node: cst.Try) -> None:
            found.append(node)

    root.visit(_V())
    return found


def dotted(node: cst.BaseExpression) -> str | None:
    """``self.criterion`` / ``criterion`` as a string key, or None for anything else."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute) and isinstance(node.value, cst.Name):
        return f"{node.value.value}.{node.attr.value}"
    return None


def dotted_name(node: cst.BaseExpression) -> str:
    """``torch.nn.functional`` for that attribute chain; "" for anything else."""
    if isinstance(node, cst.Attribute):
        return f"{dotted_name(node.value)}.{node.attr.value}"
    return node.value if isinstance(node, cst.Name) else ""


def target_names(target: cst.CSTNode) -> list[str]:
    """``a`` / ``self.a`` / each name of ``a, (b, c)`` / ``*rest``."""
    if isinstance(target, (cst.Tuple, cst.List)):
        return [n for e in target.elements for n in target_names(e.value)]
    if isinstance(target, cst.StarredElement):
        return target_names(target.value)
    key = dotted(target) if isinstance(target, cst.BaseExpression) else None
    return [key] if key else []


class Collector(cst.CSTVisitor):
    """One pass over the module: the names it imports and binds (assignments per scope,
    ``self.<attr>`` per class, classes, rebinds), its calls, loops and aug-assignments."""

    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.scopes: list[cst.CSTNode | None] = [None]
        #: the enclosing classes and functions, innermost last
        self.blocks: list[cst.CSTNode] = []

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.ctx.functions.append((node, self.blocks[-1] if self.blocks else None, self.scopes[-1]))
        self.scopes.append(node)
        self.blocks.append(node)

    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.scopes.pop()
        self.blocks.pop()

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.ctx.classes.setdefault(node.name.value, []).append(node)
        r = self.ctx.positions[node]
        self.ctx.class_ranges.append((r.start.line, r.end.line, node))
        self.blocks.append(node)

    def leave_ClassDef(self, node: cst.ClassDef) -> None:
        self.blocks.pop()

    def _record(self, target: cst.BaseExpression, value: cst.BaseExpression, node: cst.CSTNode) -> None:
        key = dotted(target)
        if key is None:
            return
        line = self.ctx.pos(node)[0]
        if key.startswith("self."):  # per class: the innermost class around the method
            cls = next((b for b in reversed(self.blocks) if isinstance(b, cst.ClassDef)), None)
            self.ctx.assignments.setdefault((cls, key), []).append((line, value))
            self.ctx.assignments.setdefault((None, "*" + key), []).append((line, value))
            return
        self.ctx.assignments.setdefault((self.scopes[-1], key), []).append((line, value))
        self.ctx.assignments.setdefault((None, "*" + key), []).append((line, value))
        if self.blocks and isinstance(self.blocks[-1], cst.ClassDef):  # a class attribute: self.<key> too
            self.ctx.assignments.setdefault((self.blocks[-1], "self." + key), []).append((line, value))

    def visit_Assign(self, node: cst.Assign) -> None:
        for t in node.targets:
            target, value = t.target, node.value
            if isinstance(target, (cst.Tuple, cst.List)) and isinstance(value, (cst.Tuple, cst.List)):
                if len(target.elements) == len(value.elements):  # a, b = 0, 0
                    for te, ve in zip(target.elements, value.elements, strict=True):
                        self._record(te.value, ve.value, node)
                continue
            if isinstance(target, (cst.Tuple, cst.List)):  # a, b = f(x)
                self.ctx.unpacks.append((self.ctx.pos(node)[0], target, value, self.scopes[-1]))
                continue
            self._record(target, value, node)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if node.value is not None:
            self._record(node.target, node.value, node)

    def _rebind(self, target: cst.CSTNode, node: cst.CSTNode) -> None:
        line = self.ctx.pos(node)[0]
        for name in target_names(target):
            self.ctx.rebinds.setdefault(name, []).append(line)

    def visit_Call(self, node: cst.Call) -> None:
        self.ctx.calls.append((node, self.scopes[-1]))
        func = node.func  # z.mul_(2): an in-place change of z
        if isinstance(func, cst.Attribute) and func.attr.value.endswith("_") and not func.attr.value.startswith("_"):
            self._rebind(func.value, node)

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self.ctx.aug_assigns.append((node, self.scopes[-1]))
        self._rebind(node.target, node)

    def visit_Import(self, node: cst.Import) -> None:
        for alias in node.names:
            full = dotted_name(alias.name)
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                self.ctx.imports[alias.asname.name.value] = full  # import torch.nn.functional as F
            else:
                head = full.split(".")[0]
                self.ctx.imports[head] = head  # import torch.nn binds torch

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        if node.relative or node.module is None or isinstance(node.names, cst.ImportStar):
            return
        module = dotted_name(node.module)
        for alias in node.names:
            name = dotted_name(alias.name)
            local = alias.asname.name.value if alias.asname and isinstance(alias.asname.name, cst.Name) else name
            self.ctx.imports[local] = f"{module}.{name}"

    def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
        self._rebind(node.target, node)

    def visit_WithItem(self, node: cst.WithItem) -> None:
        if node.asname is not None and isinstance(node.asname.name, cst.BaseExpression):
            self.ctx.unpacks.append((self.ctx.pos(node)[0], node.asname.name, None, self.scopes[-1]))

    def visit_AsName(self, node: cst.AsName) -> None:
        self._rebind(node.name, node)

    def visit_For(self, node: cst.For) -> None:
        self.ctx.loops.append((node, self.scopes[-1]))
        self._rebind(node.target, node)

    def visit_While(self, node: cst.While) -> None:
        self.ctx.loops.append((node, self.scopes[-1]))
