"""Read a causal LM's stock ``forward`` and say what the fused loss must do to equal it.

transformers' causal LMs and vision-language models share one shape of ``forward``: run the base
model (some pass it ``labels=labels`` too), slice the hidden states (``logits_to_keep``),
``logits = self.lm_head(hidden_states)`` (Mllama's text model adds ``.float()``), maybe transform the
logits (Granite divides them by ``config.logits_scaling``, Cohere multiplies them by
``logit_scale``, Gemma 2 soft-caps them), then ``loss = self.loss_function(logits, labels, ...)``,
and for mixtures of experts add ``router_aux_loss_coef * aux_loss``. :func:`read_forward` parses
the source of the class's ``forward`` and matches what stands between ``lm_head`` and the loss
against those known templates. Anything else it does not recognise -- another transform of the
logits, ``labels`` used elsewhere, a loss changed afterwards -- is refused with the source line,
so a patched model never computes something different from the stock one.

The templates below are Python source; ``ATTR`` stands for any attribute chain of ``self``
(``self.config.logits_scaling``, ``self.logit_scale``), read from the model at call time.
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from losskit.errors import LossInputError

__all__ = ["ForwardPlan", "read_forward"]

#: placeholder of the templates: an attribute chain of ``self``
_ATTR = "ATTR"

#: what may stand between ``logits = self.lm_head(...)`` and the loss: name -> statements
_TRANSFORMS = {
    "none": "",
    "divide": "logits = logits / ATTR",
    "multiply": "logits = logits * ATTR",
    "softcap": """
if ATTR is not None:
    logits = logits / ATTR
    logits = torch.tanh(logits)
    logits = logits * ATTR
""",
}
_LOSS_NONE = "loss = None"
_LOSS_BLOCKS = (
    """
if labels is not None:
    loss = self.loss_function(logits=logits, labels=labels, vocab_size=ATTR, **kwargs)
""",
    """
if labels is not None:
    loss = self.loss_function(logits, labels, ATTR, **kwargs)
""",
    """
if labels is not None:
    loss = self.loss_function(logits, labels, vocab_size=ATTR, **kwargs)
""",
)
#: a mixture of experts' auxiliary loss, added only with labels (Mixtral)
_AUX_ADD = """
if labels is not None:
    loss += ATTR * aux_loss.to(loss.device)
"""


@dataclass(frozen=True)
class ForwardPlan:
    """What a class's stock ``forward`` does around the loss, as read from its source.

    ``logit_scale`` / ``softcap`` / ``aux_coef`` are attribute chains of the model (``None`` when
    the forward has no such step): the logits are multiplied by (or, with ``divide_by_scale``,
    divided by) ``logit_scale``, then soft-capped at ``softcap``; ``aux_coef`` multiplies the
    router's ``aux_loss`` added to the loss. ``labels_to`` is the submodule (e.g. ``("model",)``)
    the forward hands ``labels=labels`` before the output layer (Gemma 3's vision-language
    model), or ``None``. ``positional`` names the parameters that may be passed by position, in
    order; ``output`` is the class of the returned output, when the source names one.
    """

    owner: str
    signature: inspect.Signature
    var_keyword: str
    logit_scale: tuple[str, ...] | None = None
    divide_by_scale: bool = False
    softcap: tuple[str, ...] | None = None
    vocab_size: tuple[str, ...] = ("config", "vocab_size")
    aux_coef: tuple[str, ...] | None = None
    labels_to: tuple[str, ...] | None = None
    positional: tuple[str, ...] = ()
    output: type | None = None

    @property
    def family_steps(self) -> str:
        """The per-family steps in words, e.g. ``"logits / config.logits_scaling"``."""
        steps = []
        if self.logit_scale is not None:
            steps.append(f"logits {'/' if self.divide_by_scale else '*'} {'.'.join(self.logit_scale)}")
        if self.softcap is not None:
            steps.append(f"soft-cap at {'.'.join(self.softcap)}")
        if self.aux_coef is not None:
            steps.append(f"+ {'.'.join(self.aux_coef)} * aux_loss")
        return ", ".join(steps) or "none"

    def labels_position(self) -> int | None:
        """Index of ``labels`` among the positional parameters (None: keyword-only)."""
        return self.positional.index("labels") if "labels" in self.positional else None


def attribute(model: object, chain: Sequence[str]) -> Any:
    """``model.<chain[0]>.<chain[1]>...``."""
    value = model
    for name in chain:
        value = getattr(value, name)
    return value


def _statements(source: str) -> list[ast.stmt]:
    return ast.parse(textwrap.dedent(source)).body


def _chain(node: ast.AST) -> tuple[str, ...] | None:
    """``self.a.b`` -> ``("a", "b")``; anything else -> None."""
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id == "self" and names:
        return tuple(reversed(names))
    return None


def _match(template: object, node: object, found: dict[str, tuple[str, ...]]) -> bool:
    """Whether ``node`` has the template's structure; ``ATTR`` binds one attribute chain of self."""
    if isinstance(template, ast.Name) and template.id == _ATTR:
        chain = _chain(node) if isinstance(node, ast.AST) else None
        return chain is not None and found.setdefault(_ATTR, chain) == chain
    if isinstance(template, list):
        return (
            isinstance(node, list)
            and len(template) == len(node)
            and all(_match(t, n, found) for t, n in zip(template, node))
        )
    if isinstance(template, ast.AST):
        if type(template) is not type(node):
            return False
        return all(_match(getattr(template, f), getattr(node, f, None), found) for f in template._fields)
    return bool(template == node)


def _match_all(template: str, nodes: Sequence[ast.stmt]) -> tuple[bool, tuple[str, ...] | None]:
    """Whether ``nodes`` match ``template``, and the chain bound to ``ATTR`` (None without one)."""
    found: dict[str, tuple[str, ...]] = {}
    if not _match(_statements(template), list(nodes), found):
        return False, None
    return True, found.get(_ATTR)


def _names(node: ast.AST, name: str) -> list[ast.Name]:
    return [n for n in ast.walk(node) if isinstance(n, ast.Name) and n.id == name]


def _labels_keyword_call(statement: ast.stmt) -> tuple[str, ...] | None:
    """``x = self.<chain>(..., labels=labels, ...)`` with ``labels`` used nowhere else: the chain."""
    if not (isinstance(statement, (ast.Assign, ast.AnnAssign)) and isinstance(statement.value, ast.Call)):
        return None
    call = statement.value
    chain = _chain(call.func)
    passed = [k for k in call.keywords if k.arg == "labels"]
    if (
        chain is None
        or len(passed) != 1
        or not (isinstance(passed[0].value, ast.Name) and passed[0].value.id == "labels")
    ):
        return None
    return chain if len(_names(statement, "labels")) == 1 else None


def _calls_lm_head(node: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Call) and _chain(n.func) == ("lm_head",) for n in ast.walk(node) if isinstance(n, ast.Call)
    )


def _refuse(owner: str, problem: str, node: ast.AST | None = None) -> LossInputError:
    where = f" (`{ast.unparse(node).splitlines()[0]}`)" if node is not None else ""
    return LossInputError(
        f"patch: model's forward ({owner}) {problem}{where}; expected the stock causal-LM forward that "
        "losskit reads (run the base model, logits = self.lm_head(hidden_states), an optional logit "
        "scale or soft-cap, loss = self.loss_function(logits, labels, ...)). losskit cannot reproduce "
        "this model's loss exactly, so it does not patch it; use the stock model."
    )


@functools.lru_cache(maxsize=64)
def read_forward(forward: Callable[..., Any]) -> ForwardPlan:
    """Parse the stock ``forward`` (a class attribute) into a :class:`ForwardPlan`.

    Raises:
        LossInputError: the source is unavailable or differs from every known template.
    """
    raw = inspect.unwrap(forward)
    owner = getattr(raw, "__qualname__", repr(raw)).rsplit(".", 1)[0]
    try:
        source = inspect.getsource(raw)
    except (OSError, TypeError) as exc:
        raise _refuse(owner, f"has no readable source ({exc})") from None
    tree = ast.parse(textwrap.dedent(source)).body[0]
    if not isinstance(tree, ast.FunctionDef):
        raise _refuse(owner, "is not a plain function")
    signature = inspect.signature(raw)
    parameters = list(signature.parameters.values())[1:]  # without self
    var_keyword = [p.name for p in parameters if p.kind is inspect.Parameter.VAR_KEYWORD]
    if "labels" not in signature.parameters or var_keyword != ["kwargs"]:
        raise _refuse(owner, "does not take `labels` and `**kwargs`")
    if not any(_chain_or_name(d) == "can_return_tuple" for d in tree.decorator_list):
        raise _refuse(owner, "is not decorated with @can_return_tuple")

    body = tree.body[1:] if ast.get_docstring(tree) is not None else tree.body
    heads = [i for i, s in enumerate(body) if _calls_lm_head(s)]
    if len(heads) != 1 or not _match_all("logits = self.lm_head(hidden)", [_with_hidden_name(body[heads[0]])])[0]:
        raise _refuse(owner, "does not call `logits = self.lm_head(...)` exactly once")
    head = heads[0]
    labels_to: tuple[str, ...] | None = None
    for statement in body[:head]:
        if not _names(statement, "labels"):
            continue
        chain = _labels_keyword_call(statement)
        if chain is None or labels_to is not None:  # only handed on, once, to a submodule
            raise _refuse(owner, "uses `labels` before the output layer", statement)
        labels_to = chain

    transform: list[ast.stmt] = []
    loss_block: ast.stmt | None = None
    vocab_size: tuple[str, ...] | None = None
    rest: list[ast.stmt] = []
    for statement in body[head + 1 :]:
        if loss_block is not None:
            rest.append(statement)
        elif _match_all(_LOSS_NONE, [statement])[0]:
            continue
        else:
            for template in _LOSS_BLOCKS:
                matched, chain = _match_all(template, [statement])
                if matched:
                    loss_block, vocab_size = statement, chain
                    break
            else:
                transform.append(statement)
    if loss_block is None or vocab_size is None:
        raise _refuse(owner, "does not compute `loss = self.loss_function(logits, labels, ...)` after lm_head")

    steps: dict[str, Any] = {}
    for name, template in _TRANSFORMS.items():
        matched, chain = _match_all(template, transform)
        if matched:
            if name in ("divide", "multiply"):
                steps.update(logit_scale=chain, divide_by_scale=name == "divide")
            elif name == "softcap":
                steps.update(softcap=chain)
            break
    else:
        raise _refuse(owner, "transforms the logits in a way losskit does not know", transform[0])

    steps.update(aux_coef=_read_aux(owner, rest))
    returned = next(s for s in rest if isinstance(s, ast.Return)).value
    output_name = returned.func.id if isinstance(returned, ast.Call) and isinstance(returned.func, ast.Name) else None
    output = getattr(raw, "__globals__", {}).get(output_name) if output_name else None
    positional_kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return ForwardPlan(
        owner=owner,
        signature=signature.replace(parameters=parameters),
        var_keyword="kwargs",
        vocab_size=vocab_size,
        labels_to=labels_to,
        positional=tuple(p.name for p in parameters if p.kind in positional_kinds),
        output=output if isinstance(output, type) else None,
        **steps,
    )


def _chain_or_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _with_hidden_name(statement: ast.stmt) -> ast.stmt:
    """``logits = self.lm_head(<any argument>)`` (or ``...(<argument>).float()``: the loss upcasts
    the logits anyway) with the argument renamed ``hidden``, for matching."""
    if not isinstance(statement, ast.Assign):
        return statement
    value = statement.value
    if (  # .float(): the stock loss computes in float32 either way
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Attribute)
        and value.func.attr == "float"
        and not value.args
        and not value.keywords
    ):
        value = value.func.value
    if isinstance(value, ast.Call) and len(value.args) == 1 and not value.keywords:
        copy = ast.Assign(
            targets=statement.targets,
            value=ast.Call(func=value.func, args=[ast.Name(id="hidden", ctx=ast.Load())], keywords=[]),
            type_comment=None,
        )
        return copy
    return statement


def _walk_except(node: ast.AST, skip: set[int]) -> list[ast.AST]:
    """``ast.walk`` without the subtrees whose ``id`` is in ``skip``."""
    out: list[ast.AST] = []
    todo = [node]
    while todo:
        current = todo.pop()
        if id(current) in skip:
            continue
        out.append(current)
        todo.extend(ast.iter_child_nodes(current))
    return out


def _read_aux(owner: str, rest: list[ast.stmt]) -> tuple[str, ...] | None:
    """The router auxiliary loss's coefficient (Mixtral), from the statements after the loss.

    Accepted only in the Mixtral shape: ``if output_router_logits:`` whose body first sets
    ``aux_loss`` and ends with ``if labels is not None: loss += coef * aux_loss.to(...)``, and an
    output that carries ``aux_loss=aux_loss``. So ``loss + coef * output.aux_loss`` (when the
    output's ``aux_loss`` is set) is what the stock forward adds.
    """
    returns = [s for s in rest if isinstance(s, ast.Return)]
    if len(returns) != 1 or not isinstance(returns[0].value, ast.Call):
        raise _refuse(owner, "does not end in one `return <Output>(loss=loss, logits=logits, ...)`")
    keywords = {k.arg: k.value for k in returns[0].value.keywords}
    for key in ("loss", "logits"):
        value = keywords.get(key)
        if not (isinstance(value, ast.Name) and value.id == key):
            raise _refuse(owner, f"does not return `{key}={key}`", returns[0])
    coefs: list[tuple[str, ...]] = []
    accounted: set[int] = {id(returns[0])}
    for statement in rest:
        for node in ast.walk(statement):
            if not (isinstance(node, ast.If) and _names(node.test, "output_router_logits") and node.body):
                continue
            first, last = node.body[0], node.body[-1]
            matched, chain = _match_all(_AUX_ADD, [last])
            sets_aux = isinstance(first, ast.Assign) and [ast.unparse(t) for t in first.targets] == ["aux_loss"]
            if matched and chain is not None and sets_aux:
                coefs.append(chain)
                accounted.add(id(last))
    for statement in rest:
        for node in _walk_except(statement, accounted):
            if isinstance(node, ast.Name) and node.id in ("labels", "loss", "logits"):
                raise _refuse(owner, "uses labels, loss or logits after the loss is computed", statement)
    if len(coefs) > 1:
        raise _refuse(owner, "adds an auxiliary loss more than once")
    if coefs and ast.unparse(keywords.get("aux_loss", ast.Constant(None))) != "aux_loss":
        raise _refuse(owner, "adds an auxiliary loss it does not return as `aux_loss`", returns[0])
    return coefs[0] if coefs else None
