"""`losskit.compare(...)` from Python: data forms, a user's model / optimizer / loss module, the
result object; and the verdicts that must come out: a truly better loss found, no difference
not invented."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import losskit
from losskit.app.compare import CompareResult, compare


def _heavy_tailed_regression(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A linear target with Cauchy label noise (Student t, 1 degree of freedom): the mean of the
    noise does not exist, so a squared loss chases outliers and absolute losses win on MAE."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    y = x @ np.array([1.0, -2.0, 0.5, 0.0, 1.5]) + 0.5 * rng.standard_t(1, size=n)
    return x, y


def test_heavy_tailed_noise_l1_or_huber_is_decided_better_than_mse_on_mae():
    x, y = _heavy_tailed_regression()
    result = compare(x, y, losses=["mse", "l1", "huber"], folds=5, repeats=2, max_repeats=2, epochs=60, baselines=False)
    rec = result.recommendation
    assert rec["metric"] == "mae" and rec["versus"] == "mse"
    assert rec["loss"] in ("l1", "huber") and rec["decision"] == "better" and rec["significant"] is True
    assert rec["p_value"] < 0.05 and rec["difference"] < 0 and rec["ci"][1] < 0  # lower MAE, interval below 0
    table = result.table()
    assert table.loc[rec["loss"], "mae"] < table.loc["mse", "mae"]
    assert bool(table.loc[rec["loss"], "recommended"]) and table.loc[rec["loss"], "p_holm"] == pytest.approx(
        rec["p_value"]
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_difference_recommends_the_plain_loss_across_seeds(seed):
    # labels independent of the features: every loss is at chance, so none may be called better
    rng = np.random.default_rng(100 + seed)
    x, y = rng.normal(size=(200, 4)), rng.integers(0, 2, 200)
    result = compare(x, y, folds=5, repeats=2, max_repeats=2, epochs=20, seed=seed, baselines=False)
    rec = result.recommendation
    assert rec["loss"] == "bce_with_logits" and rec["significant"] is False
    assert rec["decision"] in ("equivalent", "undecided")
    assert all(r["versus_plain"]["decision"] in ("equivalent", "undecided") for r in result.payload["results"][1:])
    assert "no significant difference" not in rec["text"]


def test_data_forms_give_the_same_comparison():
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    x, y = frame.drop(columns="target").to_numpy(), frame["target"].to_numpy()
    kwargs = dict(losses=["cross_entropy", "focal"], folds=2, repeats=1, max_repeats=1, epochs=2, baselines=False)
    from_arrays = compare(x, y, **kwargs)
    from_tensors = compare(torch.tensor(x), torch.tensor(y), **kwargs)
    from_pair = compare((x, y), **kwargs)
    from_frame = compare(frame, "target", **kwargs)
    dataset = torch.utils.data.TensorDataset(torch.tensor(x), torch.tensor(y))
    from_dataset = compare(dataset, **kwargs)
    folds = [r.payload["results"][0]["folds"] for r in (from_arrays, from_tensors, from_pair, from_frame, from_dataset)]
    for other in folds[1:]:
        for a, b in zip(folds[0], other):
            assert a == pytest.approx(b)
    assert losskit.compare is compare


def test_own_model_optimizer_and_loss_module(tmp_path):
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    calls = []

    def make(d_in: int, d_out: int) -> nn.Module:
        calls.append((d_in, d_out))
        return nn.Sequential(nn.Linear(d_in, 8), nn.ReLU(), nn.Linear(8, d_out))

    result = compare(
        x[:200],
        y[:200],
        model=make,
        optimizer=lambda params: torch.optim.SGD(params, lr=0.05),
        losses=["bce_with_logits", nn.BCEWithLogitsLoss()],
        folds=2,
        repeats=1,
        max_repeats=1,
        epochs=3,
        baselines=False,
        save_model=True,
    )
    assert isinstance(result, CompareResult)
    assert calls and calls[0] == (30, 1)
    names = [r["loss"] for r in result.payload["results"]]
    assert names == ["bce_with_logits", "BCEWithLogitsLoss"]
    # the same initial model, batches and math: torch's module and losskit's plain loss agree
    a, b = (r["folds"] for r in result.payload["results"])
    for fa, fb in zip(a, b):
        assert fa["roc_auc"] == pytest.approx(fb["roc_auc"], abs=1e-6)
    assert result.payload["settings"]["model"] == "custom" and result.payload["settings"]["optimizer"] == "custom"
    out = result.save(tmp_path / "rep")
    assert json.loads((out / "metrics.json").read_text()) == result.payload
    state = torch.load(out / "model.pt")
    make(30, 1).load_state_dict(state)


def test_bad_api_input_is_a_loss_input_error():
    with pytest.raises(losskit.LossInputError, match="target is missing"):
        compare(__import__("pandas").DataFrame({"a": [1, 2]}))
    with pytest.raises(losskit.LossInputError, match=r"--folds 1: expected an integer >= 2"):
        compare(np.zeros((30, 2)), np.arange(30) % 2, folds=1)
    with pytest.raises(losskit.LossInputError, match="same N"):
        compare(np.zeros((30, 2)), np.arange(20) % 2)


def test_default_batch_size_grows_with_the_table():
    from losskit.app.compare.run import default_batch_size

    # 64 up to 200 steps an epoch; then the power of two at or above rows / 200, capped at 4096
    assert [default_batch_size(n) for n in (100, 12_800, 12_801, 128_000, 10**7)] == [64, 64, 128, 1024, 4096]


def test_the_design_grows_while_undecided_and_a_decided_candidate_trains_no_more():
    # group-sequential: at the first look (2 x 5 folds) l1 is already decided better than mse on
    # this heavy-tailed target, the others not yet; the next repeat trains mse and the undecided
    # ones only, and l1 keeps the decision (and the folds) of its first look
    x, y = _heavy_tailed_regression()
    losses = ["mse", "l1", "smooth_l1", "huber"]
    result = compare(x, y, losses=losses, folds=5, repeats=2, max_repeats=4, epochs=30, baselines=False)
    settings = result.payload["settings"]
    assert settings["initial_repeats"] == 2 and settings["repeats"] > 2
    entries = {e["loss"]: e for e in result.payload["results"]}
    grown = settings["repeats"] * 5
    assert len(entries["mse"]["folds"]) == grown
    assert len(entries["l1"]["folds"]) == 10 and entries["l1"]["versus_plain"]["decision"] == "better"
    assert any(len(entries[n]["folds"]) == grown for n in ("smooth_l1", "huber"))
    # l1's reported difference is over its own 10 folds, paired with mse's first 10
    by_hand = np.mean([a["mae"] - b["mae"] for a, b in zip(entries["l1"]["folds"], entries["mse"]["folds"][:10])])
    assert entries["l1"]["versus_plain"]["difference"] == pytest.approx(by_hand)
