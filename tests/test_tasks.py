"""Task inference, class weights and loss_for on a table of targets, including the tricky ones."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import losskit
from losskit import Task

g = torch.Generator().manual_seed(0)


def _ids(n, k, shape=None):
    return torch.randint(0, k, shape or (n,), generator=g)


ONE_HOT = torch.nn.functional.one_hot(torch.arange(12) % 4, 4)
MULTI_HOT = (torch.rand(40, 5, generator=g) < 0.4).long()
MULTI_HOT[0] = torch.tensor([1, 1, 0, 0, 0])

# (id, target, input, expected task, expected num_classes, expected num_outputs, ambiguous, words in reason)
CASES = [
    ("float continuous", torch.randn(100, generator=g), None, Task.regression, 1, 1, False, "continuous"),
    ("float (N, 1) column", torch.randn(50, 1, generator=g), None, Task.regression, 1, 1, False, "regression"),
    ("multi-output floats", torch.randn(30, 3, generator=g), None, Task.regression, 3, 3, False, "multi-output"),
    ("float in [0, 1] but not 0/1", torch.rand(80, generator=g), None, Task.regression, 1, 1, False, "continuous"),
    ("int 0/1", torch.tensor([0, 1, 1, 0, 1]), None, Task.binary, 2, 1, False, "0/1"),
    ("bool labels", torch.tensor([True, False, True]), None, Task.binary, 2, 1, False, "0/1"),
    ("int 0/1 as (N, 1)", torch.tensor([[0], [1], [1]]), None, Task.binary, 2, 1, False, "0/1"),
    ("only zeros", torch.zeros(10, dtype=torch.long), None, Task.binary, 2, 1, True, "only one value"),
    (
        "float column of 0/1 (ambiguous)",
        torch.tensor([0.0, 1.0, 1.0, 0.0]),
        None,
        Task.binary,
        2,
        1,
        True,
        "stored as floats",
    ),
    ("-1/+1 labels", torch.tensor([-1, 1, 1, -1, 1]), None, Task.binary, 2, 1, False, "-1 -> 0, 1 -> 1"),
    ("strings, two values", ["yes", "no", "yes", "yes"], None, Task.binary, 2, 1, False, "'yes' -> 1"),
    ("strings, three values", ["cat", "dog", "bird", "cat"], None, Task.multiclass, 3, 3, False, "sorted order"),
    (
        "pandas categorical",
        pd.Series(["a", "b", "c", "a"], dtype="category"),
        None,
        Task.multiclass,
        3,
        3,
        False,
        "non-numeric",
    ),
    ("numpy int ids", np.array([0, 1, 2, 3, 2, 1]), None, Task.multiclass, 4, 4, False, "0..3"),
    ("int ids 0..9", _ids(200, 10), None, Task.multiclass, 10, 10, False, "0..9"),
    ("sparse ids 1, 5, 9", torch.tensor([1, 5, 9, 5, 1]), None, Task.multiclass, 3, 3, False, "encoder"),
    (
        "float integers 0..2 (ambiguous)",
        torch.tensor([0.0, 1.0, 2.0, 1.0]),
        None,
        Task.multiclass,
        3,
        3,
        True,
        "use target.long()",
    ),
    (
        "many integer values (counts)",
        torch.randint(0, 400, (300,), generator=g) + 7,
        None,
        Task.regression,
        1,
        1,
        True,
        "counts or measurements",
    ),
    ("many contiguous ids, enough samples", torch.arange(60).repeat(6), None, Task.multiclass, 60, 60, True, "many"),
    ("one-hot rows", ONE_HOT, None, Task.multiclass, 4, 4, False, "argmax"),
    ("multi-hot rows", MULTI_HOT, None, Task.multilabel, 5, 5, False, "several ones"),
    ("bool multi-hot", MULTI_HOT.bool(), None, Task.multilabel, 5, 5, False, "multilabel"),
    (
        "soft labels",
        torch.softmax(torch.randn(8, 3, generator=g), 1),
        None,
        Task.multiclass,
        3,
        3,
        False,
        "probabilities",
    ),
    ("(N, T) ids without input", _ids(0, 7, (4, 16)), None, Task.token_classification, 7, 7, True, "sequences"),
    (
        "(N, T) ids with (N, T, V)",
        _ids(0, 9, (4, 16)),
        torch.randn(4, 16, 9),
        Task.token_classification,
        9,
        9,
        False,
        "token classification",
    ),
    (
        "(N, T) ids with (N, V, T)",
        _ids(0, 9, (4, 16)),
        torch.randn(4, 9, 16),
        Task.token_classification,
        9,
        9,
        False,
        "token classification",
    ),
    ("(N, H, W) ids without input", _ids(0, 5, (2, 8, 8)), None, Task.segmentation, 5, 5, False, "segmentation"),
    (
        "(N, H, W) ids with (N, C, H, W)",
        _ids(0, 5, (2, 8, 8)),
        torch.randn(2, 6, 8, 8),
        Task.segmentation,
        6,
        6,
        False,
        "6-channel",
    ),
    (
        "(N, H, W) ids with channels-last",
        _ids(0, 5, (2, 8, 8)),
        torch.randn(2, 8, 8, 6),
        Task.segmentation,
        6,
        6,
        False,
        "segmentation",
    ),
    (
        "(N, H, W) with void 255",
        torch.where(torch.rand(2, 8, 8, generator=g) < 0.1, 255, _ids(0, 4, (2, 8, 8))),
        None,
        Task.segmentation,
        4,
        4,
        False,
        "ignore_index=255",
    ),
    (
        "binary masks",
        (torch.rand(2, 8, 8, generator=g) < 0.5).float(),
        None,
        Task.segmentation,
        2,
        1,
        False,
        "binary segmentation",
    ),
    ("dense float maps", torch.randn(2, 8, 8, generator=g), None, Task.regression, 1, 1, False, "dense"),
    (
        "0/1 ids with a 2-logit head",
        torch.tensor([0, 1, 1, 0]),
        torch.randn(4, 2),
        Task.multiclass,
        2,
        2,
        False,
        "2-logit head",
    ),
    ("ids with an (N, C) head", torch.tensor([0, 1, 2, 0]), torch.randn(4, 5), Task.multiclass, 5, 5, False, "5-logit"),
    ("ids with padding -100", torch.tensor([0, 2, -100, 1, 2]), None, Task.multiclass, 3, 3, False, "0..2"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_infer_task_table(case):
    _, target, input, task, num_classes, num_outputs, ambiguous, words = case
    guess = losskit.infer_task(target, input)
    assert guess.task == task, guess.reason
    assert guess.task == task.value  # members compare equal to their names
    assert (guess.num_classes, guess.num_outputs, guess.ambiguous) == (num_classes, num_outputs, ambiguous), (
        guess.reason
    )
    assert words in guess.reason
    assert "\n" not in guess.reason


LOSS_FOR_TASK = {
    Task.regression: (losskit.nn.MSELoss, losskit.nn.HuberLoss),
    Task.binary: (losskit.nn.BCEWithLogitsLoss,),
    Task.multilabel: (losskit.nn.BCEWithLogitsLoss,),
    Task.multiclass: (losskit.nn.CrossEntropyLoss,),
    Task.token_classification: (losskit.nn.CrossEntropyLoss,),
    Task.segmentation: (losskit.nn.CrossEntropyLoss,),
}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_loss_for_on_the_target_table(case):
    """The loss the task table names, configured from the same targets, with its reasons."""
    _, target, input, task, num_classes, *_ = case
    guess = losskit.infer_task(target, input)
    if task == Task.segmentation and not isinstance(target, list) and torch.as_tensor(target).max() == 255:
        loss = losskit.loss_for(guess, targets=target, ignore_index=255)
        assert loss.ignore_index == 255
    else:
        loss = losskit.loss_for(guess, targets=target)
    assert isinstance(loss, LOSS_FOR_TASK[task]), repr(loss)
    assert loss.explain().startswith(f"- task: {task.value} (inferred: ")
    weight = getattr(loss, "weight", None)
    if weight is not None:  # class weights sized to the classes the targets hold
        assert weight.numel() == num_classes


def test_infer_task_has_at_least_25_cases():
    assert len(CASES) >= 25


def test_token_layout_tells_what_the_loss_needs():
    ntv = losskit.infer_task(_ids(0, 9, (4, 16)), torch.randn(4, 16, 9))
    assert "transpose(1, 2)" in ntv.layout
    nvt = losskit.infer_task(_ids(0, 9, (4, 16)), torch.randn(4, 9, 16))
    assert "the layout cross_entropy expects" in nvt.layout
    nhwc = losskit.infer_task(_ids(0, 5, (2, 8, 8)), torch.randn(2, 8, 8, 6))
    assert "movedim(-1, 1)" in nhwc.layout


def test_encoder_from_infer_task_maps_labels():
    guess = losskit.infer_task(["yes", "no", "yes"])
    assert guess.encoder.transform(["no", "yes"]).tolist() == [0, 1]
    sparse = losskit.infer_task(torch.tensor([10, 30, 20, 30]))
    assert sparse.encoder.transform([10, 20, 30]).tolist() == [0, 1, 2]
    assert sparse.counts == (1, 1, 2)


def test_task_names_and_str():
    assert Task.binary == "binary" and str(Task.token_classification) == "token_classification"
    assert Task.parse("MultiLabel") is Task.multilabel and Task.parse(Task.binary) is Task.binary
    assert [t.value for t in Task] == [
        "regression",
        "binary",
        "multiclass",
        "multilabel",
        "token_classification",
        "segmentation",
    ]
    with pytest.raises(losskit.LossInputError, match=r"task is 'classification'; expected one of"):
        Task.parse("classification")


@pytest.mark.parametrize(
    "target,input,pattern",
    [
        (torch.tensor([]), None, r"target is empty"),
        (torch.tensor([1.0, float("nan")]), None, r"1 missing or infinite value"),
        (["a", None, "b"], None, r"missing labels"),
        (torch.tensor([0, 1, 2]), torch.randn(5, 3), r"expected the same batch size first"),
        (torch.full((4,), -100), None, r"every target equals ignore_index"),
    ],
)
def test_infer_task_errors(target, input, pattern):
    with pytest.raises(losskit.LossInputError, match=pattern):
        losskit.infer_task(target, input)


# --------------------------------------------------------------------------- weights


@pytest.mark.parametrize("counts", [[50, 50, 50], [900, 90, 10], [3, 1], [7, 1, 2, 11]])
def test_balanced_class_weights_match_scikit_learn(counts):
    from sklearn.utils.class_weight import compute_class_weight

    y = torch.cat([torch.full((c,), i) for i, c in enumerate(counts)])
    present = np.unique(y.numpy())
    reference = compute_class_weight("balanced", classes=present, y=y.numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", losskit.LossUsageWarning)
        ours = losskit.class_weights(y, num_classes=len(counts))
    torch.testing.assert_close(ours[present], torch.tensor(reference, dtype=torch.float32))


def test_effective_number_weights_by_hand():
    # Cui et al. 2019: E_n = (1 - beta^n) / (1 - beta); w = 1 / E_n normalised to sum to C.
    # beta = 0.5, counts 1 and 3: E_1 = 1, E_3 = (1 - 1/8) / (1/2) = 7/4 -> w proportional to 1, 4/7
    # normalised to sum 2: (2 / (11/7)) * (1, 4/7) = (14/11, 8/11)
    w = losskit.class_weights(torch.tensor([0, 1, 1, 1]), "effective", beta=0.5)
    torch.testing.assert_close(w, torch.tensor([14 / 11, 8 / 11]))
    # beta -> 0 gives equal weights; beta -> 1 approaches the inverse frequency
    torch.testing.assert_close(losskit.class_weights(torch.tensor([0, 1, 1, 1]), "effective", beta=0.0), torch.ones(2))
    near_inverse = losskit.class_weights(torch.tensor([0, 1, 1, 1]), "effective", beta=0.999999)
    torch.testing.assert_close(near_inverse[0] / near_inverse[1], torch.tensor(3.0), rtol=1e-4, atol=0)


def test_class_weights_options_and_errors():
    y = torch.tensor([0, 0, 1, -100])
    torch.testing.assert_close(losskit.class_weights(y), torch.tensor([0.75, 1.5]))  # -100 not counted
    torch.testing.assert_close(losskit.class_weights(y, "none"), torch.ones(2))
    torch.testing.assert_close(losskit.class_weights(["b", "a", "a"]), torch.tensor([0.75, 1.5]))
    with pytest.warns(losskit.LossUsageWarning, match=r"class\(es\) \[2\] have no samples"):
        w = losskit.class_weights(torch.tensor([0, 0, 1]), num_classes=3)
    torch.testing.assert_close(w, torch.tensor([0.5, 1.0, 1.0]))  # 3 / (3 * 2), 3 / (3 * 1); missing -> max
    with pytest.raises(losskit.LossInputError, match=r"method is 'inverse'"):
        losskit.class_weights(y, "inverse")
    with pytest.raises(losskit.LossInputError, match=r"beta is 1"):
        losskit.class_weights(y, "effective", beta=1)
    with pytest.raises(losskit.LossInputError, match=r"num_classes=2"):
        losskit.class_weights(torch.tensor([0, 3]), num_classes=2)
    with pytest.raises(losskit.LossInputError, match=r"non-integer float values"):
        losskit.class_weights(torch.tensor([0.5, 1.0]))
    with pytest.raises(losskit.LossInputError, match=r"negative ids"):
        losskit.class_weights(torch.tensor([0, -1]))


def test_pos_weight():
    torch.testing.assert_close(losskit.pos_weight(torch.tensor([0, 0, 0, 1])), torch.tensor([3.0]))
    torch.testing.assert_close(
        losskit.pos_weight(torch.tensor([[1, 0], [0, 0], [0, 1], [0, 1]]).bool()), torch.tensor([3.0, 1.0])
    )
    with pytest.warns(losskit.LossUsageWarning, match=r"label\(s\) \[1\] are never"):
        torch.testing.assert_close(losskit.pos_weight(torch.tensor([[1, 0], [0, 0]])), torch.tensor([1.0, 1.0]))
    with pytest.raises(losskit.LossInputError, match=r"values other than 0/1"):
        losskit.pos_weight(torch.tensor([0, 2]))
    with pytest.raises(losskit.LossInputError, match=r"not numeric"):
        losskit.pos_weight(["a", "b"])


# --------------------------------------------------------------------------- loss_for


def test_loss_for_binary_imbalanced_gets_pos_weight():
    y = torch.tensor([0] * 90 + [1] * 10)
    loss = losskit.loss_for("binary", targets=y)
    assert isinstance(loss, losskit.nn.BCEWithLogitsLoss)
    torch.testing.assert_close(loss.pos_weight, torch.tensor([9.0]))
    assert "9:1" in loss.explain() and "3:1 threshold" in loss.explain()
    # the configured loss is torch's BCEWithLogitsLoss with that pos_weight
    x = torch.randn(100)
    ref = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor([9.0]))(x, y.float())
    torch.testing.assert_close(loss(x, y.float()), ref)


def test_loss_for_auto_threshold():
    below = torch.tensor([0] * 29 + [1] * 10)  # 2.9:1
    at = torch.tensor([0] * 30 + [1] * 10)  # 3:1
    assert losskit.loss_for("binary", targets=below).pos_weight is None
    assert losskit.loss_for("binary", targets=at).pos_weight is not None
    assert losskit.loss_for("binary", targets=at, imbalance="none").pos_weight is None
    assert losskit.loss_for("binary", targets=below, imbalance="balanced").pos_weight is not None


def test_loss_for_multiclass_weights():
    y = torch.tensor([0] * 80 + [1] * 15 + [2] * 5)
    loss = losskit.loss_for(Task.multiclass, targets=y, label_smoothing=0.1)
    assert isinstance(loss, losskit.nn.CrossEntropyLoss)
    torch.testing.assert_close(loss.weight, torch.tensor([100 / 240, 100 / 45, 100 / 15]))
    assert loss.label_smoothing == 0.1
    effective = losskit.loss_for("multiclass", targets=y, imbalance="effective", beta=0.9)
    torch.testing.assert_close(effective.weight, losskit.class_weights(y, "effective", beta=0.9))
    assert "inverse effective number" in effective.explain()


def test_loss_for_multilabel_per_label_pos_weight():
    y = torch.zeros(100, 3)
    y[:50, 0] = 1
    y[:5, 1] = 1
    y[:20, 2] = 1
    loss = losskit.loss_for("multilabel", targets=y)
    torch.testing.assert_close(loss.pos_weight, torch.tensor([1.0, 19.0, 4.0]))


def test_loss_for_regression_mse_or_huber():
    clean = torch.randn(1000, generator=g)
    assert isinstance(losskit.loss_for("regression", targets=clean), losskit.nn.MSELoss)
    heavy = clean.clone()
    heavy[:50] = 40.0  # 5% gross outliers
    huber = losskit.loss_for("regression", targets=heavy)
    assert isinstance(huber, losskit.nn.HuberLoss)
    # delta = 1.345 * 1.4826 * MAD, computed here independently
    mad = float((heavy - heavy.median()).abs().median())
    assert huber.delta == pytest.approx(1.345 * 1.4826 * mad, rel=1e-3)
    assert "outliers" in huber.explain()
    robust = losskit.loss_for("regression", targets=clean, robust=True)
    assert isinstance(robust, losskit.nn.HuberLoss) and "robust=True" in robust.explain()


def test_loss_for_token_and_segmentation():
    tokens = torch.randint(0, 50000, (4, 64))
    lm = losskit.loss_for("token_classification", targets=tokens, num_classes=50000)
    assert isinstance(lm, losskit.nn.CrossEntropyLoss) and lm.weight is None
    assert "vocabulary-sized" in lm.explain()
    masks = torch.zeros(2, 16, 16, dtype=torch.long)
    masks[:, :2] = 1
    masks[:, -1] = 255
    seg = losskit.loss_for("segmentation", targets=masks, ignore_index=255, dice=True)
    assert isinstance(seg, losskit.nn.CrossEntropyDiceLoss)
    assert seg.ignore_index == 255 and seg.weight is not None and seg.weight.numel() == 2
    plain = losskit.loss_for("segmentation")
    assert type(plain) is losskit.nn.CrossEntropyLoss and "no targets given" in plain.explain()


def test_loss_for_auto_and_guess():
    y = ["spam"] * 10 + ["ham"] * 40
    loss = losskit.loss_for("auto", targets=y)
    assert isinstance(loss, losskit.nn.BCEWithLogitsLoss)
    torch.testing.assert_close(loss.pos_weight, torch.tensor([4.0]))  # spam (40 ham / 10 spam) is positive
    guess = losskit.infer_task(torch.tensor([0, 1, 2, 2]))
    assert isinstance(losskit.loss_for(guess, targets=torch.tensor([0, 1, 2, 2])), losskit.nn.CrossEntropyLoss)


def test_loss_for_errors():
    with pytest.raises(losskit.LossInputError, match=r"imbalance is 'yes'"):
        losskit.loss_for("binary", imbalance="yes")
    with pytest.raises(losskit.LossInputError, match=r"needs the training targets"):
        losskit.loss_for("multiclass", imbalance="balanced")
    with pytest.raises(losskit.LossInputError, match=r"task='auto' needs targets"):
        losskit.loss_for("auto")
    with pytest.raises(losskit.LossInputError, match=r"task is 'ranking'"):
        losskit.loss_for("ranking")


def test_explain_of_a_hand_made_loss():
    assert "configured by hand" in losskit.nn.MSELoss().explain()


def test_readme_choosing_the_loss_examples_run():
    """The README's examples for this section run as written, and print what the comments say."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Choosing the loss", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    for block in blocks:
        namespace: dict = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", losskit.LossUsageWarning)  # class_weights on 8 random ids may miss a class
            exec(compile(block, "README.md", "exec"), namespace)
    first = blocks[0]
    namespace = {}
    exec(compile(first, "README.md", "exec"), namespace)
    assert f"# {namespace['loss_fn']!r}" in first
    for line in namespace["loss_fn"].explain().splitlines():
        assert line[:60] in first
