"""Many models of one architecture as one *stacked* model: every parameter gets a leading member
axis and one batched forward serves all members. :class:`StackedMLP` for ``nn.Sequential`` of
``nn.Linear``, element-wise activations and dropout (one ``baddbmm`` per layer);
:class:`StackedModule` for any other model (``torch.func.stack_module_state`` +
``functional_call`` + ``vmap``); :func:`batch_reason` says why a model or optimizer cannot be
stacked. :mod:`losskit.app.compare.batched` trains stacks."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["ELEMENTWISE_OPTIMIZERS", "Stack", "StackedMLP", "StackedModule", "batch_reason", "stack_models"]

#: optimizers that update every parameter element from its own gradient and state only, so one
#: optimizer over stacked parameters is one optimizer per member
ELEMENTWISE_OPTIMIZERS: tuple[type[torch.optim.Optimizer], ...] = (
    torch.optim.SGD,
    torch.optim.Adam,
    torch.optim.AdamW,
    torch.optim.Adamax,
    torch.optim.NAdam,
    torch.optim.RAdam,
    torch.optim.RMSprop,
    torch.optim.Adagrad,
    torch.optim.Adadelta,
    torch.optim.ASGD,
    torch.optim.Rprop,
)

#: layers applied element by element (their module works on any shape); dropout draws its mask
#: for the whole stack, so every member gets its own random numbers
_ELEMENTWISE_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.Dropout,
    nn.AlphaDropout,
    nn.ReLU,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.ELU,
    nn.Softplus,
    nn.Mish,
    nn.Identity,
)


class StackedMLP:
    """``nn.Sequential`` MLPs (``nn.Linear`` and element-wise activations) as one model of
    batched matrix products: layer ``i`` holds ``W_i`` of shape ``(M, in, out)`` (the transposed
    ``nn.Linear.weight`` of each member) and ``b_i`` of shape ``(M, 1, out)``."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        first = models[0]
        self.layers: list[nn.Module | int] = []  # an activation module, or the index of a linear layer
        self.keys: list[tuple[str, bool]] = []  # per parameter: the member's state-dict key, transposed
        tensors: list[torch.Tensor] = []
        for key, module in first.named_children():
            if isinstance(module, nn.Linear):
                self.layers.append(len(tensors) // 2)
                linears = [_linear(m, key) for m in models]
                weights = torch.stack([lin.weight.detach().t() for lin in linears])
                # a Linear without bias gets zeros (kept at zero: no gradient)
                biases = torch.stack([_bias(lin) for lin in linears]).unsqueeze(1)
                tensors += [weights, biases]
                self.keys += [(f"{key}.weight", True), (f"{key}.bias", False)]
            else:
                self.layers.append(module)
        self.has_bias = [dict(first.named_children())[k.rsplit(".", 1)[0]].bias is not None for k, _ in self.keys[1::2]]
        self.params = [t.contiguous().requires_grad_(True) for t in tensors]
        for i, has in enumerate(self.has_bias):
            if not has:
                self.params[2 * i + 1].requires_grad_(False)

    @property
    def members(self) -> int:
        return int(self.params[0].shape[0])

    def trainable(self) -> list[torch.Tensor]:
        return [p for p in self.params if p.requires_grad]

    def train(self, mode: bool = True) -> None:
        for layer in self.layers:
            if isinstance(layer, nn.Module):
                layer.train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` of shape ``(M, B, in)`` to ``(M, B, out)``."""
        h = x
        for layer in self.layers:
            if isinstance(layer, int):
                h = torch.baddbmm(self.params[2 * layer + 1], h, self.params[2 * layer])
            else:
                h = layer(h)
        return h

    def select(self, keep: torch.Tensor) -> None:
        self.params = [p.detach()[keep].requires_grad_(p.requires_grad) for p in self.params]

    def state_of(self, tensors: Sequence[torch.Tensor], m: int) -> dict[str, torch.Tensor]:
        """Member ``m``'s weights in the ``nn.Sequential`` state-dict format."""
        state = {}
        for (key, transposed), t, keep in zip(self.keys, tensors, _interleave(self.has_bias)):
            if not keep:
                continue
            value = t[m].detach()
            state[key] = (value.t() if transposed else value.squeeze(0)).contiguous().clone()
        return state


def _linear(model: nn.Module, key: str) -> nn.Linear:
    module = dict(model.named_children())[key]
    if not isinstance(module, nn.Linear):
        raise TypeError(f"layer {key} of a stacked MLP is {type(module).__name__}, not nn.Linear")
    return module


def _bias(linear: nn.Linear) -> torch.Tensor:
    return linear.bias.detach() if linear.bias is not None else torch.zeros(linear.out_features)


def _interleave(has_bias: list[bool]) -> list[bool]:
    out = []
    for has in has_bias:
        out += [True, has]
    return out


class StackedModule:
    """Any model as a stacked one: ``torch.func.stack_module_state`` gives each parameter and
    buffer a member axis, ``vmap`` over ``functional_call`` runs them all at once."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        from torch.func import stack_module_state

        self.base = copy.deepcopy(models[0]).to("meta")
        params, buffers = stack_module_state(list(models))
        self.names = list(params)
        frozen = {n for n, p in models[0].named_parameters() if not p.requires_grad}
        self.params = [params[n].detach().requires_grad_(n not in frozen) for n in self.names]
        self.buffers = buffers

    @property
    def members(self) -> int:
        return int(self.params[0].shape[0])

    def trainable(self) -> list[torch.Tensor]:
        return [p for p in self.params if p.requires_grad]

    def train(self, mode: bool = True) -> None:
        self.base.train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torch.func import functional_call, vmap

        def one(params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], xm: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = functional_call(self.base, (params, buffers), (xm,))
            return out

        batched = vmap(one, in_dims=(0, 0, 0), randomness="different")
        out: torch.Tensor = batched(dict(zip(self.names, self.params)), self.buffers, x)
        return out

    def select(self, keep: torch.Tensor) -> None:
        self.params = [p.detach()[keep].requires_grad_(p.requires_grad) for p in self.params]
        self.buffers = {k: v[keep] for k, v in self.buffers.items()}

    def state_of(self, tensors: Sequence[torch.Tensor], m: int) -> dict[str, torch.Tensor]:
        state = {n: t[m].detach().clone() for n, t in zip(self.names, tensors)}
        state.update({k: v[m].clone() for k, v in self.buffers.items()})
        return state


Stack = StackedMLP | StackedModule


def _is_mlp(model: nn.Module) -> bool:
    children = list(model.children())
    return (
        type(model) is nn.Sequential
        and any(isinstance(c, nn.Linear) for c in children)
        and all(type(c) is nn.Linear or type(c) in _ELEMENTWISE_ACTIVATIONS for c in children)
    )


def stack_models(models: Sequence[nn.Module]) -> Stack:
    """A :class:`StackedMLP` when the models are plain MLPs, else a :class:`StackedModule`."""
    return StackedMLP(models) if _is_mlp(models[0]) else StackedModule(models)


def batch_reason(
    model: nn.Module,
    sample: torch.Tensor,
    optimizer: Callable[..., torch.optim.Optimizer] | None,
) -> str | None:
    """Why ``model`` (with ``optimizer``) cannot train stacked, or ``None`` when it can.

    Checks: no batch norm in training mode (its running statistics are updated in place), the
    optimizer (called on a throwaway copy) is one of :data:`ELEMENTWISE_OPTIMIZERS`, and a stacked
    forward and backward on ``sample`` (a few rows) runs (no data-dependent control flow) and, in
    evaluation mode, gives each member's own output. Random layers (dropout) are stacked too:
    their numbers are drawn for the whole stack, each member its own.
    """
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats:
            return f"batch norm ({name or 'the model'}) updates running statistics in training"
    if optimizer is not None:
        twin = copy.deepcopy(model)
        probe = optimizer(twin.parameters())
        if type(probe) not in ELEMENTWISE_OPTIMIZERS:
            return f"the optimizer {type(probe).__name__} is not element-wise (not one of torch's SGD, Adam, ...)"
        own = {id(p) for p in twin.parameters()}
        if any(id(p) not in own for g in probe.param_groups for p in g["params"]):
            return "the optimizer holds parameters that are not the model's"
    if _is_mlp(model):
        return None
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p in twin.parameters():
            p.mul_(0.5)
    try:
        stack = StackedModule([model, twin])
        x = torch.stack([sample, sample])
        stack.train(True)
        torch.autograd.backward(stack.forward(x).float().square().mean())
        stack.train(False)
        with torch.no_grad():
            out = stack.forward(x)
            model.train(False)
            twin.train(False)
            expected = torch.stack([model(sample), twin(sample)])
            model.train(True)
        if out.shape != expected.shape or not torch.allclose(out.detach(), expected, rtol=1e-4, atol=1e-5):
            return "a stacked forward pass does not give each model's own output"
    except Exception as exc:  # vmap refuses: random ops, data-dependent control flow, in-place buffers ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"torch.func.vmap cannot run it ({type(exc).__name__}: {first[:160]})"
    return None
