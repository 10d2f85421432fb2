"""The gradient boosting baseline predicts from binned rows: the same numbers as scikit-learn's
own predict / predict_proba on the raw rows, for every task."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.multioutput import MultiOutputClassifier

from losskit.app.compare import baselines as base
from losskit.app.compare.data import FoldData
from losskit.tasks import Task


def _fold(task: Task, seed: int = 0) -> FoldData:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(900, 6)).astype(np.float32)
    x[:, 5] = rng.integers(0, 3, size=900)  # a few distinct values: test rows sit on thresholds
    signal = x[:, 0] + 0.5 * x[:, 1] * x[:, 5]
    if task == Task.regression:
        y = torch.tensor(signal + rng.normal(scale=0.3, size=900), dtype=torch.float32)[:, None]
    elif task == Task.binary:
        y = torch.tensor(signal + rng.normal(size=900) > 0, dtype=torch.float32)
    elif task == Task.multilabel:
        y = torch.tensor(np.stack([signal > 0, x[:, 2] > 0.3], 1), dtype=torch.float32)
    else:
        y = torch.tensor(np.digitize(signal, [-1, 0, 1]), dtype=torch.long)
    xt = torch.tensor(x)
    test = xt[600:].clone()
    test[::7, 3] = float("nan")  # missing values in rows the model never saw missing
    test[1::5, 5] = 1.0  # exactly a training value
    return FoldData(xt[:500], xt[500:600], test, y[:500], y[500:600], y[600:])


def _reference(task: Task, fold: FoldData, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x = fold.x_fit.double().numpy()
    if task == Task.regression:
        model = HistGradientBoostingRegressor(**base._HGB, random_state=seed).fit(x, fold.y_fit[:, 0].double().numpy())
        return tuple(model.predict(z.double().numpy()) for z in (fold.x_val, fold.x_test))  # type: ignore[return-value]
    if task == Task.multilabel:
        clf = MultiOutputClassifier(HistGradientBoostingClassifier(**base._HGB, random_state=seed))
        clf.fit(x, fold.y_fit.long().numpy())
        return tuple(
            np.stack([p[:, 1] for p in clf.predict_proba(z.double().numpy())], 1) for z in (fold.x_val, fold.x_test)
        )  # type: ignore[return-value]
    model = HistGradientBoostingClassifier(**base._HGB, random_state=seed).fit(x, fold.y_fit.long().numpy())
    out = [model.predict_proba(z.double().numpy()) for z in (fold.x_val, fold.x_test)]
    return tuple(p[:, 1] if task == Task.binary else p for p in out)  # type: ignore[return-value]


@pytest.mark.parametrize("task", [Task.binary, Task.multiclass, Task.regression, Task.multilabel])
def test_gradient_boosting_predicts_as_scikit_learn_does(task: Task) -> None:
    fold = _fold(task)
    val, test = base.fit_predict(
        "gradient_boosting", task, fold, seed=3, num_outputs=4 if task == Task.multiclass else 1
    )
    ref_val, ref_test = _reference(task, fold, seed=3)
    np.testing.assert_array_equal(val.numpy().reshape(ref_val.shape), ref_val)
    np.testing.assert_array_equal(test.numpy().reshape(ref_test.shape), ref_test)
    assert np.isfinite(test.numpy()).all()


def test_binned_path_is_taken() -> None:
    """The speed-up is real only if the binned path runs: raw rows never reach the trees."""
    fold = _fold(Task.binary)
    calls: list[str] = []
    original = base._predict_binned

    def spy(estimator: object) -> None:
        original(estimator)
        calls.append(type(estimator).__name__)

    try:
        base._predict_binned = spy  # type: ignore[assignment]
        base.fit_predict("gradient_boosting", Task.binary, fold, seed=0)
    finally:
        base._predict_binned = original  # type: ignore[assignment]
    assert calls == ["HistGradientBoostingClassifier"]
    model = HistGradientBoostingClassifier(**base._HGB, random_state=0).fit(
        fold.x_fit.double().numpy(), fold.y_fit.long().numpy()
    )
    base._predict_binned(model)
    seen: list[bool] = []
    for predictors in model._predictors:
        for predictor in predictors:
            for name in ("predict", "predict_binned"):
                setattr(predictor, name, _recording(getattr(predictor, name), name == "predict_binned", seen))
    model.predict_proba(fold.x_test.double().numpy())
    assert seen and all(seen)
    assert not hasattr(model, "_in_fit")  # the flag is taken down again


def _recording(method, binned: bool, seen: list[bool]):  # type: ignore[no-untyped-def]
    def call(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(binned)
        return method(*args, **kwargs)

    return call


def test_a_model_without_the_internals_keeps_its_predict() -> None:
    class Plain:
        def _raw_predict(self, x: object) -> str:
            return "own"

    plain = Plain()
    base._predict_binned(plain)
    assert plain._raw_predict(None) == "own"
