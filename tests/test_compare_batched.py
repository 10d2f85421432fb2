"""`losskit compare`'s stacked fits: many fits of one architecture trained as one model must
give what training each alone gives (the reference is `train_candidate`, the one-by-one loop
compare used before stacking): same epochs, early stopping, weights, scores. Models that cannot
be stacked are named and train one by one."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import losskit
from losskit.app.compare import candidates as cand
from losskit.app.compare import compare
from losskit.app.compare.batched import (
    GroupData,
    StackedMLP,
    StackedModule,
    batch_reason,
    stack_models,
    stacked_optimizer,
    train_stacked,
)
from losskit.app.compare.data import encode, fold_data, make_folds
from losskit.app.compare.run import to_table
from losskit.app.compare.train import make_model, predict, train_candidate
from losskit.tasks import Task

CPU = torch.device("cpu")


def _folds(name: str, folds: int = 3, repeats: int = 2):
    from losskit.app.data import load_dataset

    data = encode(load_dataset(name))
    splits = make_folds(data, folds, repeats, 0)
    return data, [fold_data(data, s) for s in splits]


def _both_ways(data, fds, make, optimizer=None, epochs=30, batch_size=16, names=None, lr=1e-3):
    """Every (fold, candidate) trained one by one and all of them as one stack."""
    names = names or cand.parse_losses(data.task, None)
    d_out = data.num_outputs
    alone, models, folds_of, losses, labels = {}, [], [], [], []
    for k, fd in enumerate(fds):
        initial = make(k)
        for n in names:
            loss = cand.build(data.task, n, fd.y_fit, d_out)
            alone[(k, n)] = train_candidate(
                n, data.task, fd, initial, copy.deepcopy(loss), epochs=epochs, batch_size=batch_size, lr=lr,
                seed=k, device=CPU, optimizer=optimizer,
            )  # fmt: skip
            models.append(copy.deepcopy(initial))
            folds_of.append(k)
            losses.append(loss)
            labels.append(n)
    stack = stack_models(models)
    group = GroupData.of([(fd.x_fit, fd.y_fit, fd.x_val, fd.y_val) for fd in fds])
    together = train_stacked(
        stack, group, folds_of, losses, labels, task=data.task, epochs=epochs, batch_size=batch_size,
        order_seeds=list(range(len(fds))), make_optimizer=stacked_optimizer(optimizer, models[0], stack, lr),
        device=CPU,
    )  # fmt: skip
    return stack, alone, list(zip(folds_of, labels, together))


def _assert_same(data, fds, make, alone, together, weights_rtol=2e-3):
    stopped = 0
    for k, name, run in together:
        ref = alone[(k, name)]
        assert len(run.val_loss) == len(ref.val_loss), (k, name)  # the same early stop
        assert run.best_epoch == ref.best_epoch and run.stopped_early == ref.stopped_early
        assert run.hit_max_epochs == ref.hit_max_epochs
        # float32 rounding differs (batched vs single matrix products) and grows slowly with the
        # epochs; the decisions (epochs run, best epoch) are the same
        np.testing.assert_allclose(run.val_loss, ref.val_loss, rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(run.train_loss, ref.train_loss, rtol=1e-3, atol=1e-5)
        assert run.state.keys() == ref.state.keys()
        for key in ref.state:  # a few Adam steps on near-zero gradients differ in sign: compare norms
            gap = float((run.state[key] - ref.state[key]).norm() / ref.state[key].norm().clamp_min(1e-12))
            assert gap < weights_rtol, (k, name, key, gap)
        net_a, net_b = make(k), make(k)
        net_a.load_state_dict(ref.state)
        net_b.load_state_dict(run.state)
        a = predict(data.task, net_a, fds[k].x_test, fds[k])
        b = predict(data.task, net_b, fds[k].x_test, fds[k])
        torch.testing.assert_close(b, a, atol=5e-3, rtol=1e-3)
        if data.task == losskit.Task.multiclass:
            assert float((a.argmax(1) == b.argmax(1)).double().mean()) >= 0.99
        stopped += run.stopped_early
    return stopped


@pytest.mark.parametrize("dataset", ["wine", "iris", "diabetes"])
def test_default_mlp_stacked_over_folds_matches_one_by_one(dataset):
    # wine and iris: 6 folds of unequal sizes (ragged last batches) x 4 and 3 candidates in one
    # stack, shared and per-member losses (class weights differ per fold), early stopping
    # drops members from the stack as they stop; diabetes: the regression candidates
    data, fds = _folds(dataset)
    d_in, d_out = fds[0].x_fit.shape[1], data.num_outputs
    make = lambda k: make_model(d_in, d_out, k)  # noqa: E731
    stack, alone, together = _both_ways(data, fds, make, epochs=60)
    assert isinstance(stack, StackedMLP)
    stopped = _assert_same(data, fds, make, alone, together)
    assert stopped > 0 and len({len(run.val_loss) for _, _, run in together}) > 1  # members left at different epochs


class _SkipNet(nn.Module):
    """Not an nn.Sequential: stacked with torch.func (vmap over functional_call)."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(d_in, 16)
        self.out = nn.Linear(16, d_out)
        self.skip = nn.Linear(d_in, d_out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.hidden(x))) + self.skip(x)


def test_users_model_and_optimizer_stacked_with_vmap_match_one_by_one():
    data, fds = _folds("wine", folds=2, repeats=1)
    d_in, d_out = fds[0].x_fit.shape[1], data.num_outputs

    def make(k):
        torch.manual_seed(k)
        return _SkipNet(d_in, d_out)

    # parameter groups of the user's optimizer are mapped to the stacked parameters by name
    def sgd(params):
        params = list(params)
        return torch.optim.SGD(
            [{"params": params[:2], "lr": 0.05}, {"params": params[2:], "weight_decay": 1e-3}], lr=0.02, momentum=0.9
        )

    stack, alone, together = _both_ways(data, fds, make, optimizer=sgd, epochs=25)
    assert isinstance(stack, StackedModule)
    _assert_same(data, fds, make, alone, together)


def test_models_that_cannot_be_stacked_are_named():
    x = torch.randn(4, 6)
    mlp = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    assert batch_reason(mlp, x, None) is None
    assert batch_reason(_SkipNet(6, 2), x, lambda p: torch.optim.AdamW(p, lr=1e-3)) is None
    bn = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    assert "batch norm (1) updates running statistics" in batch_reason(bn, x, None)
    dropout = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.2), nn.Linear(8, 2))
    assert batch_reason(dropout, x, None) is None  # stacked: each member draws its own masks
    assert "LBFGS is not element-wise" in batch_reason(mlp, x, lambda p: torch.optim.LBFGS(p))

    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(6, 2), nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x) if x.sum() > 0 else self.b(x)  # control flow on a value

    assert "torch.func.vmap cannot run it" in batch_reason(Branchy(), x, None)


def test_compare_with_a_model_that_cannot_be_stacked_says_so_and_still_decides():
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)

    def make(d_in, d_out):
        return nn.Sequential(nn.Linear(d_in, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, d_out))

    result = compare(x[:240], y[:240], model=make, folds=2, repeats=1, max_repeats=1, epochs=3, baselines=False, jobs=1)
    notes = " ".join(result.payload["notes"])
    assert "your model trains one fit at a time (not stacked): batch norm (1) updates running statistics" in notes
    assert result.run.execution["batched"] is False
    assert {r["loss"] for r in result.payload["results"]} == {"bce_with_logits", "focal"} | (
        {"bce_with_logits+pos_weight"} if "bce_with_logits+pos_weight" in str(result.payload) else set()
    )


def test_random_layers_give_the_same_numbers_whatever_ran_before():
    # stacked fits draw their random numbers from their task's own seed: the report does not
    # depend on what ran before in the same process
    from sklearn.datasets import load_wine

    x, y = load_wine(return_X_y=True)

    def make(d_in, d_out):
        return nn.Sequential(nn.Linear(d_in, 16), nn.Dropout(0.3), nn.ReLU(), nn.Linear(16, d_out))

    kwargs = dict(model=make, folds=2, repeats=1, max_repeats=1, epochs=4, baselines=False, jobs=1)
    first = compare(x, y, **kwargs)
    torch.rand(1000)  # move the global generator
    second = compare(x, y, **kwargs)
    assert first.payload["results"] == second.payload["results"]
    assert first.run.execution["batched"] is True


def test_to_table_accepts_what_compare_documents():
    table = to_table(np.zeros((30, 2)), np.arange(30) % 2)
    assert table.features.shape == (30, 2)


@pytest.mark.parametrize("shape", [(16,), (4, 5, 6)], ids=["rows", "segmentation"])
def test_class_weighted_members_share_one_call_and_equal_torch(shape):
    # three members whose cross-entropy differs only in the class weights fitted on their folds
    # are one unweighted call; each member's loss and gradient must still be torch's weighted mean
    from losskit.app.compare.batched import _Losses

    torch.manual_seed(0)
    classes = 4
    weights = [torch.tensor([1.0, 2.0, 0.5, 3.0]), torch.tensor([0.2, 1.0, 1.0, 4.0]), torch.rand(classes) + 0.1]
    modules = [losskit.nn.CrossEntropyLoss(weight=w, ignore_index=255) for w in weights]
    modules.append(losskit.nn.CrossEntropyLoss(label_smoothing=0.1, ignore_index=255))  # not of the family
    n, rest = shape[0], shape[1:]
    out = torch.randn(len(modules), n, classes, *rest, requires_grad=True)
    y = torch.randint(0, classes, (len(modules), n, *rest))
    if rest:
        y[:, 0, 0, :2] = 255  # ignored pixels
    losses = _Losses(Task.multiclass, modules)
    got = losses(out, y, [n] * len(modules))
    assert len(losses.families) == 1 and losses.families[0][0] == [0, 1, 2]
    (grad,) = torch.autograd.grad(got.sum(), out)
    ref_out = out.detach().clone().requires_grad_(True)
    refs = [torch.nn.CrossEntropyLoss(weight=w, ignore_index=255)(ref_out[m], y[m]) for m, w in enumerate(weights)] + [
        torch.nn.CrossEntropyLoss(label_smoothing=0.1, ignore_index=255)(ref_out[3], y[3])
    ]
    expected = torch.stack(refs)
    (ref_grad,) = torch.autograd.grad(expected.sum(), ref_out)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-6)
    # a member leaving the stack keeps the others' weights in line
    losses.select([1, 2, 3])
    again = losses(out[1:], y[1:], [n] * 3)
    torch.testing.assert_close(again, expected[1:].detach(), rtol=1e-5, atol=1e-6)
