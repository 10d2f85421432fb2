"""The loss registry: complete, true to the code, and every torch twin matched on a sample input."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
import torch

import losskit
import losskit.functional as LF
from losskit import registry
from losskit.app.compare import candidates as compare_candidates
from losskit.types import Task

SPECS = {spec.name: spec for spec in registry.LOSSES}


#: exports of losskit.functional that are per-token outputs, not losses
NOT_LOSSES = {"linear_log_probs", "TokenLogProbs"}


def test_every_exported_loss_is_registered_once():
    functionals = [s.functional for s in registry.LOSSES if s.functional]
    modules = [s.module for s in registry.LOSSES]
    assert sorted(functionals) == sorted(set(LF.__all__) - NOT_LOSSES)
    assert sorted(modules) == sorted(losskit.nn.__all__)
    assert len(set(modules)) == len(modules)
    assert len(SPECS) == len(registry.LOSSES)


@pytest.mark.parametrize("name", list(SPECS))
def test_options_are_real_arguments(name):
    spec = SPECS[name]
    module_params = set(inspect.signature(spec.module_class.__init__).parameters)
    if spec.module_class.__name__ == "TverskyLoss":  # passes Dice's options through **kwargs
        module_params |= set(inspect.signature(losskit.nn.DiceLoss.__init__).parameters)
    if spec.functional is not None:
        fn_params = set(inspect.signature(spec.functional_fn).parameters)
        missing = [o for o in spec.options if o not in fn_params]
        assert not missing, f"{name}: options {missing} are not arguments of losskit.functional.{spec.functional}"
    forward_params = set(inspect.signature(spec.module_class.forward).parameters)
    missing = [o for o in spec.options if o not in module_params | forward_params and o not in spec.module_lacks]
    assert not [o for o in spec.module_lacks if o in module_params], f"{name}: module_lacks is stale"
    assert not missing, f"{name}: options {missing} are not arguments of losskit.nn.{spec.module}"


def _sample(kind: str, g: torch.Generator):
    """A legitimate (input, target) of the kind the loss expects, float64."""
    if kind == "values":
        return [
            torch.randn(6, 3, generator=g, dtype=torch.float64),
            torch.randn(6, 3, generator=g, dtype=torch.float64),
        ]
    if kind == "probs":
        x = torch.rand(6, 3, generator=g, dtype=torch.float64) * 0.9 + 0.05
        return [x, torch.randint(0, 2, (6, 3), generator=g).double()]
    if kind == "binary_logits":
        return [
            torch.randn(40, 3, generator=g, dtype=torch.float64) * 3,
            torch.randint(0, 2, (40, 3), generator=g).double(),
        ]
    if kind == "logits":
        return [torch.randn(6, 5, generator=g, dtype=torch.float64) * 3, torch.randint(0, 5, (6,), generator=g)]
    if kind == "log_probs":
        return [
            torch.log_softmax(torch.randn(6, 5, generator=g, dtype=torch.float64) * 3, 1),
            torch.randint(0, 5, (6,), generator=g),
        ]
    if kind == "hidden":
        h, w = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64)
        return [h, w, torch.randint(0, 5, (6,), generator=g)]
    raise AssertionError(kind)


WITH_TORCH = [name for name, spec in SPECS.items() if spec.torch_function]


def test_the_losses_torch_has_are_the_ones_with_a_twin():
    assert set(WITH_TORCH) == {
        "mse_loss",
        "l1_loss",
        "huber_loss",
        "smooth_l1_loss",
        "binary_cross_entropy",
        "binary_cross_entropy_with_logits",
        "cross_entropy",
        "nll_loss",
        "linear_cross_entropy",
    }


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("name", WITH_TORCH)
def test_registered_twin_matches_torch(name, reduction):
    spec = SPECS[name]
    torch_fn = spec.resolve_torch()
    assert callable(torch_fn) and getattr(torch.nn, spec.torch_module.rsplit(".", 1)[1]) is not None
    g = torch.Generator().manual_seed(sum(map(ord, name)))
    args = _sample(spec.input, g)
    ours_in = [a.clone().requires_grad_(a.is_floating_point()) for a in args]
    ref_in = [a.clone().requires_grad_(a.is_floating_point()) for a in args]
    ours = spec.functional_fn(*ours_in, reduction=reduction)
    ref = torch_fn(*ref_in, reduction=reduction)
    torch.testing.assert_close(ours, ref)
    upstream = torch.randn(ref.shape, generator=g, dtype=ref.dtype)
    ours.backward(upstream)
    ref.backward(upstream)
    for a, b in zip(ours_in, ref_in):
        if a.requires_grad:
            torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("task", list(Task))
def test_the_task_table_is_what_loss_for_returns(task):
    expected = registry.get(registry.TASK_DEFAULTS[task]).module
    assert type(losskit.loss_for(task)).__name__ == expected
    assert task in registry.get(registry.TASK_DEFAULTS[task]).tasks


def test_robust_regression_and_dice_read_the_registry():
    y = torch.randn(200)
    assert (
        type(losskit.loss_for("regression", targets=y, robust=True)).__name__
        == registry.get(registry.ROBUST_REGRESSION).module
    )
    assert (
        type(losskit.loss_for("segmentation", dice=True)).__name__
        == registry.get(registry.SEGMENTATION_WITH_DICE).module
    )


@pytest.mark.parametrize("task", registry.COMPARE_TASKS)
def test_every_candidate_builds_its_registered_module(task):
    y = {
        Task.regression: torch.randn(50),
        Task.binary: (torch.arange(50) % 3 == 0).float(),
        Task.multilabel: (torch.arange(100).reshape(50, 2) % 3 == 0).float(),
        Task.multiclass: torch.arange(50) % 4,
        # masks: the same 50 class ids as 5 images of 10 pixels, plus 3 ignored pixels (255)
        Task.segmentation: torch.cat([torch.arange(50) % 4, torch.full((3,), 255)]).reshape(1, 53),
    }[task]
    k = {Task.regression: 1, Task.binary: 1, Task.multilabel: 2, Task.multiclass: 4, Task.segmentation: 4}[task]
    for name, candidate in registry.candidates_for(task).items():
        module = compare_candidates.build(task, name, y, k, ignore_index=255)
        if task == Task.segmentation:
            assert module.ignore_index == 255, name
        assert type(module).__name__ == candidate.spec.module, name
        for option, value in candidate.options.items():
            assert getattr(module, option) == value, (name, option)
        if "weight" in candidate.fitted:
            # balanced weights n / (C n_c): classes 0,1 have 13 samples, 2,3 have 12 -> 50 / (4 * 13), 50 / 48
            torch.testing.assert_close(module.weight, torch.tensor([50 / 52, 50 / 52, 50 / 48, 50 / 48]))
        if "pos_weight" in candidate.fitted:
            # 17 positives of 50 in each label column -> negatives / positives = 33 / 17
            torch.testing.assert_close(module.pos_weight, torch.full((k,), 33 / 17))
    assert set(registry.default_candidates(task)) <= set(registry.candidates_for(task))


def test_the_command_line_offers_the_registry_choices():
    out = subprocess.run(
        [sys.executable, "-m", "losskit", "compare", "--help"], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    flat = " ".join(out.split())
    assert "{auto,regression,binary,multiclass,multilabel,segmentation}" in flat
    for task in registry.COMPARE_TASKS:
        for name in registry.candidates_for(task):
            assert name in flat


def test_unknown_name_is_a_clear_error():
    with pytest.raises(losskit.LossInputError, match="no loss named 'dice'; expected one of mse_loss, l1_loss"):
        registry.get("dice")


def test_markdown_table_has_one_row_per_loss():
    rows = registry.markdown_table().strip().splitlines()
    assert len(rows) == 2 + len(registry.LOSSES)
    assert "| `cross_entropy` | `CrossEntropyLoss` | logits |" in rows[2 + list(SPECS).index("cross_entropy")]
