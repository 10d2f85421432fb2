"""Compare's default optimizer: torch's fused Adam kernel, stepped without ``torch.optim``'s
machinery.

``torch.optim.Optimizer`` wraps ``add_param_group``, ``step`` and friends in
``torch._disable_dynamo``, which imports ``torch._dynamo`` on the first call: 1.3 s of CPU in
every worker process and in every command-line run, for nothing compare uses. :class:`FusedAdam`
calls the same kernel (``torch._fused_adam_``) on the same state (``step``, ``exp_avg``,
``exp_avg_sq`` per parameter, ``step`` a float32 scalar tensor), so its steps are bit for bit
those of ``torch.optim.Adam(params, lr, fused=True)`` (tested), and ``state`` /
``param_groups`` have the shapes code written for torch's optimizers reads.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["FusedAdam", "fused_supported"]

#: device types with a fused Adam kernel in every torch this package supports
_FUSED_DEVICES = ("cpu", "cuda")


def fused_supported(params: list[torch.Tensor]) -> bool:
    """Whether :class:`FusedAdam` can step ``params``: floating point, on a CPU or CUDA device."""
    return bool(params) and all(p.is_floating_point() and p.device.type in _FUSED_DEVICES for p in params)


class FusedAdam:
    """Adam (Kingma & Ba 2015, torch's defaults: betas (0.9, 0.999), eps 1e-8, no weight decay)
    with torch's fused kernel::

        m_t = b1 m_{t-1} + (1 - b1) g_t;  v_t = b2 v_{t-1} + (1 - b2) g_t^2
        p_t = p_{t-1} - lr / (1 - b1^t) * m_t / (sqrt(v_t / (1 - b2^t)) + eps)

    torch equivalent: ``torch.optim.Adam(params, lr=lr, fused=True)`` (same values, bit for bit).

    Example:
        >>> w = torch.zeros(3, requires_grad=True)
        >>> opt = FusedAdam([w], lr=0.1)
        >>> w.sum().backward(); opt.step()
        >>> w.detach()
        tensor([-0.1000, -0.1000, -0.1000])
    """

    def __init__(
        self, params: Iterable[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ) -> None:
        params = list(params)
        if not fused_supported(params):
            raise ValueError("FusedAdam takes floating-point parameters on a CPU or CUDA device; use torch.optim.Adam.")
        self.param_groups: list[dict[str, Any]] = [{"params": params, "lr": lr, "betas": betas, "eps": eps}]
        self.state: defaultdict[torch.Tensor, dict[str, Any]] = defaultdict(dict)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            by_device: dict[tuple[torch.device, torch.dtype], list[list[torch.Tensor]]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0, dtype=torch.float32, device=p.device)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                lists = by_device.setdefault((p.device, p.dtype), [[], [], [], [], []])
                for into, value in zip(lists, (p, p.grad, state["exp_avg"], state["exp_avg_sq"], state["step"])):
                    into.append(value)
            beta1, beta2 = group["betas"]
            for params, grads, exp_avgs, exp_avg_sqs, steps in by_device.values():
                torch._foreach_add_(steps, 1)
                torch._fused_adam_(
                    params,
                    grads,
                    exp_avgs,
                    exp_avg_sqs,
                    [],
                    steps,
                    amsgrad=False,
                    lr=group["lr"],
                    beta1=beta1,
                    beta2=beta2,
                    weight_decay=0.0,
                    eps=group["eps"],
                    maximize=False,
                    grad_scale=None,
                    found_inf=None,
                )
