"""Many fits of one model architecture trained as one stacked model.

``losskit compare`` trains the same architecture once per candidate loss and fold. Small models
spend most of their time in per-operation overhead, so the fits of a group train together:
every parameter gets a leading *member* axis, one batched forward / backward / optimizer step
serves all members, and each member keeps

* its own data (its fold's rows) and batch order (its fold's generator, as one-by-one training),
* its own loss module (a loss without fitted options is evaluated once for all the members that
  share it, with ``reduction="none"``; the rest one call per member),
* its own optimizer state (the optimizer works element by element, so a stacked parameter is
  many independent ones),
* its own early stopping: a member whose validation loss stopped improving leaves the stack
  (its parameters and optimizer state are dropped, its best weights kept).

Two stacks (in :mod:`losskit.app.compare.stacks`, re-exported here): :class:`StackedMLP` for ``nn.Sequential`` of ``nn.Linear``, element-wise
activations and dropout (the default model; one ``baddbmm`` per layer) and
:class:`StackedModule` for any other model (``torch.func.stack_module_state`` +
``functional_call`` + ``vmap``). :func:`batch_reason` says why a model or optimizer cannot be
stacked (batch norm in training mode, data-dependent control flow, an optimizer that is not
element-wise); those fits train one by one (:func:`losskit.app.compare.train.train_candidate`).

The arithmetic is that of one-by-one training, so results agree within float tolerance
(``tests/test_compare_batched.py`` trains both ways). Random layers draw their numbers for the
whole stack (each member its own, seeded by the task): the same in any process, but not the
draws of a one-by-one run.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from losskit.app.compare.stacks import (
    ELEMENTWISE_OPTIMIZERS,
    Stack,
    StackedMLP,
    StackedModule,
    batch_reason,
    stack_models,
)
from losskit.app.compare.train import (
    OVERFIT_RISE,
    PATIENCE,
    TrainResult,
    _overfitting,
    default_adam,
    eval_rows,
    outputs_for_loss,
)
from losskit.tasks import Task

__all__ = [
    "ELEMENTWISE_OPTIMIZERS",
    "StackedMLP",
    "StackedModule",
    "GroupData",
    "batch_reason",
    "stack_models",
    "train_stacked",
    "OVERFIT_RISE",
]


def stacked_optimizer(
    optimizer: Callable[..., torch.optim.Optimizer] | None,
    member: nn.Module,
    stack: Stack,
    lr: float,
) -> Callable[[Stack], torch.optim.Optimizer]:
    """A function building the optimizer of a stack: Adam at ``lr`` (:func:`default_adam`, as one-by-one
    training), or the user's factory's optimizer class with its parameter groups and options,
    mapped from one member's parameters to the stacked ones."""
    if optimizer is None:
        return lambda s: default_adam(s.trainable(), lr)
    twin = copy.deepcopy(member)
    probe = optimizer(twin.parameters())
    names = {id(p): n for n, p in twin.named_parameters()}
    groups = [
        ({k: v for k, v in g.items() if k != "params"}, [names[id(p)] for p in g["params"]]) for g in probe.param_groups
    ]
    kind: Any = type(probe)

    def build(s: Stack) -> torch.optim.Optimizer:
        by_name = _stack_parameters_by_name(s)
        made: torch.optim.Optimizer = kind(
            [{**options, "params": [by_name[n] for n in keys]} for options, keys in groups]
        )
        return made

    return build


def _stack_parameters_by_name(stack: Stack) -> dict[str, torch.Tensor]:
    if isinstance(stack, StackedModule):
        return dict(zip(stack.names, stack.params))
    return {key: p for (key, _), p in zip(stack.keys, stack.params)}


def _carry_state(old: torch.optim.Optimizer, new: torch.optim.Optimizer, keep: torch.Tensor, members: int) -> None:
    """Move the optimizer state of the kept members into the rebuilt optimizer."""
    olds = [p for g in old.param_groups for p in g["params"]]
    news = [p for g in new.param_groups for p in g["params"]]
    for o, n in zip(olds, news):
        state = old.state.get(o)
        if not state:
            continue
        new.state[n] = {
            k: (
                v[keep].clone()
                if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape == o.shape and v.shape[0] == members
                else (v.clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v))
            )
            for k, v in state.items()
        }


@dataclass
class GroupData:
    """The training and validation rows of the folds of one group, padded to the longest fold:
    ``x_fit`` of shape ``(F, n_max, ...)``; ``n_fit[f]`` rows of fold ``f`` are real."""

    x_fit: torch.Tensor
    y_fit: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    n_fit: list[int]
    n_val: list[int]

    @staticmethod
    def of(folds: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]) -> GroupData:
        """From ``(x_fit, y_fit, x_val, y_val)`` per fold."""

        def pad(ts: list[torch.Tensor]) -> torch.Tensor:
            longest = max(len(t) for t in ts)
            out = ts[0].new_zeros((len(ts), longest, *ts[0].shape[1:]))
            for i, t in enumerate(ts):
                out[i, : len(t)] = t
            return out

        return GroupData(
            pad([f[0] for f in folds]),
            pad([f[1] for f in folds]),
            pad([f[2] for f in folds]),
            pad([f[3] for f in folds]),
            [len(f[0]) for f in folds],
            [len(f[2]) for f in folds],
        )


class _Losses:
    """The members' losses, evaluated in as few calls as the modules allow: members whose loss
    modules are identical, take ``reduction="mean"`` and whose mean is the mean of the
    ``reduction="none"`` values (checked on the first batch) share one call. Members whose
    modules differ only in their class ``weight`` (class weights fitted on each fold's targets)
    share one unweighted ``reduction="none"`` call too, each member's loss then the weighted mean
    ``sum_i w[y_i] l_i / sum_i w[y_i]`` (torch's definition for cross-entropy without label
    smoothing; checked against each member's own module on the first batch, else one call each)."""

    def __init__(self, task: Task, modules: Sequence[nn.Module]) -> None:
        self.task = task
        self.modules = list(modules)
        self.groups: list[list[int]] = []
        self.none: dict[int, nn.Module] = {}  # group index -> the module with reduction="none"
        # families of members whose modules differ only in ``weight``: (member indices, the unweighted
        # reduction="none" module, the class weights of each group)
        self.families: list[tuple[list[int], nn.Module, torch.Tensor]] = []
        self.checked = False
        for i, module in enumerate(self.modules):
            for g in self.groups:
                if _same_loss(self.modules[g[0]], module):
                    g.append(i)
                    break
            else:
                self.groups.append([i])

    def _check(self, out: torch.Tensor, y: torch.Tensor) -> None:
        self.checked = True
        for gi, g in enumerate(self.groups):
            module = self.modules[g[0]]
            if len(g) < 2 or getattr(module, "reduction", None) != "mean":
                continue
            if self.task == Task.segmentation:
                # a mean over the pixels that are not ignored is not the mean of the unreduced
                # loss (ignored pixels count 0 there): one call per member
                continue
            twin = copy.copy(module)
            try:
                setattr(twin, "reduction", "none")  # noqa: B010 - a module attribute, not a tensor
                with torch.no_grad():
                    a = outputs_for_loss(self.task, out[g[0]].detach())
                    mean = module(a, y[g[0]])
                    none = twin(a, y[g[0]])
                rows_first = none.dim() >= 1 and none.shape[0] == a.shape[0]
                if rows_first and torch.allclose(none.float().mean(), mean.float(), rtol=1e-5, atol=1e-7):
                    self.none[gi] = twin
            except Exception:  # a loss that cannot reduce "none": one call per member
                continue

        self._weighted_families(out, y)

    def _weighted_families(self, out: torch.Tensor, y: torch.Tensor) -> None:
        if y.is_floating_point() or y.is_complex():
            return
        by_options: dict[int, list[int]] = {}
        for gi, g in enumerate(self.groups):
            module = self.modules[g[0]]
            weight = getattr(module, "weight", None)
            if not (isinstance(weight, torch.Tensor) and weight.dim() == 1) or gi in self.none:
                continue
            if getattr(module, "reduction", None) != "mean" or getattr(module, "label_smoothing", 0.0):
                continue
            for first, members in by_options.items():
                if _same_loss(self.modules[self.groups[first][0]], module, but="weight"):
                    members.append(gi)
                    break
            else:
                by_options[gi] = [gi]
        for family in by_options.values():
            members = [m for gi in family for m in self.groups[gi]]
            if len(members) < 2:
                continue
            twin = copy.deepcopy(self.modules[members[0]])
            try:
                setattr(twin, "weight", None)  # noqa: B010 - drops the buffer of this copy only
                setattr(twin, "reduction", "none")  # noqa: B010 - a module attribute, not a tensor
                weights = torch.stack([_weight_of(self.modules[m]) for m in members])
                with torch.no_grad():
                    for j, m in enumerate(members):
                        own = self.modules[m](outputs_for_loss(self.task, out[m].detach()), y[m])
                        shared = self._weighted(twin, weights[j : j + 1], out[m : m + 1].detach(), y[m : m + 1])[0]
                        if not torch.allclose(shared.float(), own.float(), rtol=1e-5, atol=1e-7):
                            break
                    else:
                        self.families.append((members, twin, weights))
            except Exception:  # a module whose weight cannot be dropped: one call per member
                continue

    def _weighted(self, twin: nn.Module, weights: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Weighted means of the members ``out[j]`` / ``y[j]`` with class weights ``weights[j]``."""
        k = out.shape[0]
        flat = twin(outputs_for_loss(self.task, out.reshape(-1, *out.shape[2:])), y.reshape(-1, *y.shape[2:]))
        flat = flat.reshape(k, -1)
        ignore = getattr(twin, "ignore_index", -100)
        target = y.reshape(k, -1)
        valid = target != ignore
        w = weights.to(flat.dtype).gather(1, torch.where(valid, target, 0)) * valid
        mean: torch.Tensor = (flat * w).sum(1) / w.sum(1)
        return mean

    def select(self, keep: list[int]) -> None:
        where = {old: new for new, old in enumerate(keep)}
        self.modules = [self.modules[i] for i in keep]
        groups: list[list[int]] = []
        none: dict[int, nn.Module] = {}
        for gi, g in enumerate(self.groups):
            kept = [where[i] for i in g if i in where]
            if kept:
                if gi in self.none:
                    none[len(groups)] = self.none[gi]
                groups.append(kept)
        families = []
        for members, twin, weights in self.families:
            rows = [j for j, m in enumerate(members) if m in where]
            if rows:
                families.append(([where[members[j]] for j in rows], twin, weights[rows]))
        self.groups, self.none, self.families = groups, none, families

    def _families(
        self, out: torch.Tensor, y: torch.Tensor, sizes: list[int], values: list[torch.Tensor | None]
    ) -> set[int]:
        """The losses of the weighted families' members into ``values``; those members."""
        done: set[int] = set()
        for members, twin, weights in self.families:
            done.update(members)
            by_size: dict[int, list[int]] = {}
            for j, m in enumerate(members):
                by_size.setdefault(sizes[m], []).append(j)
            for size, js in by_size.items():
                index = torch.tensor([members[j] for j in js])
                per = self._weighted(twin, weights[js], out[index, :size], y[index, :size])
                for j, v in zip(js, per):
                    values[members[j]] = v
        return done

    def __call__(self, out: torch.Tensor, y: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        """One loss per member: ``out[m, :sizes[m]]`` against ``y[m, :sizes[m]]``."""
        if not self.checked:
            self._check(out, y)
        values: list[torch.Tensor | None] = [None] * len(self.modules)
        in_family = self._families(out, y, sizes, values)
        for gi, g in enumerate(self.groups):
            if g[0] in in_family:
                continue
            twin = self.none.get(gi)
            if twin is not None:
                by_size: dict[int, list[int]] = {}
                for m in g:
                    by_size.setdefault(sizes[m], []).append(m)
                for size, ms in by_size.items():
                    index = torch.tensor(ms)
                    o = out[index, :size]
                    t = y[index, :size]
                    flat = twin(outputs_for_loss(self.task, o.reshape(-1, *o.shape[2:])), t.reshape(-1, *t.shape[2:]))
                    per = flat.reshape(len(ms), -1).mean(1)
                    for j, m in enumerate(ms):
                        values[m] = per[j]
            else:
                for m in g:
                    values[m] = self.modules[m](outputs_for_loss(self.task, out[m, : sizes[m]]), y[m, : sizes[m]])
        return torch.stack([v for v in values if v is not None])


def _weight_of(module: nn.Module) -> torch.Tensor:
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{type(module).__name__} has no class weight tensor")
    return weight


def _same_loss(a: nn.Module, b: nn.Module, but: str | None = None) -> bool:
    """``a`` and ``b`` compute the same loss (the same type, buffers and options; the buffer or
    option ``but`` aside)."""
    if type(a) is not type(b):
        return False
    sa, sb = a.state_dict(), b.state_dict()
    if but is not None:
        sa, sb = ({k: v for k, v in d.items() if k != but} for d in (sa, sb))
    if sa.keys() != sb.keys() or not all(torch.equal(sa[k], sb[k]) for k in sa):
        return False

    def options(m: nn.Module) -> dict[str, Any]:
        return {
            k: v
            for k, v in vars(m).items()
            if not k.startswith("_") and k not in ("training", but) and not isinstance(v, torch.Tensor)
        }

    try:
        return bool(options(a) == options(b))
    except Exception:  # options that do not compare
        return False


def train_stacked(
    stack: Stack,
    data: GroupData,
    member_folds: Sequence[int],
    losses: Sequence[nn.Module],
    names: Sequence[str],
    *,
    task: Task,
    epochs: int,
    batch_size: int,
    order_seeds: Sequence[int],
    make_optimizer: Callable[[Stack], torch.optim.Optimizer],
    device: torch.device,
    on_epoch: Callable[[], None] | None = None,
) -> list[TrainResult]:
    """Train every member of ``stack`` (member ``m`` on fold ``member_folds[m]`` of ``data`` with
    loss ``losses[m]``) as :func:`~losskit.app.compare.train.train_candidate` trains one model:
    the same batch order (fold ``f``'s generator seeded with ``order_seeds[f]``), loss, optimizer
    steps and early stopping. Returns one result per member, best weights in ``state``."""
    steps = {math.ceil(n / batch_size) for n in data.n_fit}
    if len(steps) != 1:
        raise ValueError(f"train_stacked: the folds of a group need the same steps per epoch, got {sorted(steps)}")
    n_steps = steps.pop()
    x_fit, y_fit = data.x_fit.to(device), data.y_fit.to(device)
    x_val, y_val = data.x_val.to(device), data.y_val.to(device)
    generators = [torch.Generator().manual_seed(s) for s in order_seeds]
    total = len(member_folds)
    alive = list(range(total))  # the original member of each row of the stack
    fold_of = torch.tensor(list(member_folds), device=device)
    loss_of = _Losses(task, [loss.to(device) for loss in losses])
    results = [TrainResult(n) for n in names]
    best_loss = [math.inf] * total
    best = [p.detach().clone() for p in stack.params]
    done_state: dict[int, dict[str, torch.Tensor]] = {}
    opt = make_optimizer(stack)
    n_fit = torch.tensor(data.n_fit, dtype=torch.float64)
    n_val = torch.tensor(data.n_val, dtype=torch.float64)
    for epoch in range(1, epochs + 1):
        stack.train(True)
        orders = [torch.randperm(n, generator=g).to(device) for n, g in zip(data.n_fit, generators)]
        running = torch.zeros(len(alive), dtype=torch.float64, device=device)
        for s in range(n_steps):
            rows = [o[s * batch_size : (s + 1) * batch_size] for o in orders]
            sizes_f = [len(r) for r in rows]
            widest = max(sizes_f)
            index = torch.stack([torch.nn.functional.pad(r, (0, widest - len(r))) for r in rows])
            member_rows = index[fold_of]
            xb = x_fit[fold_of.unsqueeze(1), member_rows]
            yb = y_fit[fold_of.unsqueeze(1), member_rows]
            sizes = [sizes_f[f] for f in fold_of.tolist()]
            values = loss_of(stack.forward(xb), yb, sizes)
            opt.zero_grad(set_to_none=True)
            torch.autograd.backward(values.sum())
            opt.step()
            running += values.detach().double() * torch.tensor(sizes, dtype=torch.float64, device=device)
        train_loss = (running.cpu() / n_fit[fold_of.cpu()]).tolist()
        val_loss = _validation_loss(stack, loss_of, task, x_val, y_val, fold_of, data.n_val, n_val)
        if on_epoch is not None:
            on_epoch()
        improved_rows, stopped_rows = [], []
        for row, m in enumerate(alive):
            r = results[m]
            r.train_loss.append(train_loss[row])
            val = val_loss[row]
            r.val_loss.append(val)
            prior = best_loss[m]
            improved = val < prior - 1e-7 * abs(prior) if math.isfinite(prior) else val < prior
            if improved:
                best_loss[m] = val
                r.best_epoch = epoch
                improved_rows.append(row)
            if not math.isfinite(val) and not math.isfinite(train_loss[row]):
                stopped_rows.append(row)
            elif epoch - r.best_epoch >= PATIENCE:
                r.stopped_early = True
                stopped_rows.append(row)
        if improved_rows:
            where = torch.tensor(improved_rows, device=device)
            for b, p in zip(best, stack.params):
                b[where] = p.detach()[where]
        for row in stopped_rows:
            done_state[alive[row]] = _final_state(stack, best, row, results[alive[row]])
        if stopped_rows:
            keep_rows = [row for row in range(len(alive)) if row not in stopped_rows]
            if not keep_rows:
                break
            keep = torch.tensor(keep_rows, device=device)
            old, old_members = opt, len(alive)
            stack.select(keep)
            best = [b[keep] for b in best]
            fold_of = fold_of[keep]
            loss_of.select(keep_rows)
            alive = [alive[row] for row in keep_rows]
            opt = make_optimizer(stack)
            _carry_state(old, opt, keep, old_members)
    for row, m in enumerate(alive):
        if m not in done_state:
            done_state[m] = _final_state(stack, best, row, results[m])
    for m, r in enumerate(results):
        r.state = done_state[m]
        r.hit_max_epochs = not r.stopped_early and len(r.val_loss) == epochs
        r.overfitting = _overfitting(r)
    return results


def _final_state(stack: Stack, best: list[torch.Tensor], row: int, result: TrainResult) -> dict[str, torch.Tensor]:
    if result.best_epoch == 0:  # never a finite validation loss: the last weights
        result.best_epoch = len(result.val_loss)
        return {k: v.cpu() for k, v in stack.state_of(stack.params, row).items()}
    return {k: v.cpu() for k, v in stack.state_of(best, row).items()}


def _validation_loss(
    stack: Stack,
    loss_of: _Losses,
    task: Task,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    fold_of: torch.Tensor,
    n_val_f: list[int],
    n_val: torch.Tensor,
) -> list[float]:
    """Each member's mean loss over its fold's validation rows (:func:`eval_rows` at a time)."""
    stack.train(False)
    folds = fold_of.tolist()
    totals = torch.zeros(len(folds), dtype=torch.float64)
    longest = max(n_val_f)
    with torch.no_grad():
        step = eval_rows(x_val.shape[2:], len(fold_of))
        for start in range(0, longest, step):
            width = min(step, longest - start)
            sizes = [max(0, min(width, n_val_f[f] - start)) for f in folds]
            if not any(sizes):
                break
            xv = x_val[fold_of, start : start + width]
            yv = y_val[fold_of, start : start + width]
            out = stack.forward(xv)
            live = [m for m, s in enumerate(sizes) if s > 0]
            if len(live) == len(sizes):
                values = loss_of(out, yv, sizes)
                totals += values.double().cpu() * torch.tensor(sizes, dtype=torch.float64)
            else:  # a shorter fold ran out of rows: score the others one by one
                for m in live:
                    v = loss_of.modules[m](outputs_for_loss(task, out[m, : sizes[m]]), yv[m, : sizes[m]])
                    totals[m] += float(v) * sizes[m]
    means = totals / n_val[torch.tensor(folds)]
    return means.tolist()
