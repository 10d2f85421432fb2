"""A fold's table features equal scikit-learn's imputer + scaler + one-hot pipeline (the
reference), to float32 rounding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from losskit.app.compare.data import Fold, encode, fold_data
from losskit.app.compare.features import Columns, fold_features
from losskit.app.data import Table


def _sklearn(frame, numeric, categorical, fit, rows):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    categories = [sorted(map(str, frame[c].dropna().unique())) for c in categorical]
    parts = [("n", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric)]
    if categorical:
        encoder = OneHotEncoder(categories=categories, handle_unknown="ignore", sparse_output=False)
        parts.append(("c", make_pipeline(SimpleImputer(strategy="most_frequent"), encoder), categorical))
    pipeline = ColumnTransformer(parts, sparse_threshold=0.0).fit(frame.iloc[fit])
    return [np.asarray(pipeline.transform(frame.iloc[r]), dtype=np.float32) for r in rows]


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(loc=3.0, scale=[1.0, 1e-3, 50.0], size=(n, 3))
    x[rng.random(x.shape) < 0.1] = np.nan
    frame = pd.DataFrame(x, columns=["a", "b", "c"])
    frame["constant"] = 7.25  # a constant column keeps scale 1
    frame["near_constant"] = 1e6 + np.where(np.arange(n) % 2, 1e-10, 0.0)
    colour = rng.choice(["red", "green", "blue"], size=n).astype(object)
    colour[rng.random(n) < 0.15] = np.nan
    frame["colour"] = colour
    # a tie between the two most frequent values: the first in sorted order fills the gaps
    tie = np.array(["y", "x"] * (n // 2), dtype=object)
    tie[:4] = np.nan
    frame["tie"] = tie
    return frame


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fold_features_equal_scikit_learns_pipeline(seed):
    frame = _frame(400, seed)
    numeric, categorical = ["a", "b", "c", "constant", "near_constant"], ["colour", "tie"]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(frame))
    fit, val, test = np.sort(order[:240]), np.sort(order[240:300]), np.sort(order[300:])
    ours = fold_features(Columns.of(frame, numeric, categorical), fit, fit, val, test)
    reference = _sklearn(frame, numeric, categorical, fit, [fit, val, test])
    for a, b in zip(ours, reference):
        assert a.dtype == np.float32 and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    assert np.all(ours[0][:, 3] == 0.0)  # the constant column: (7.25 - 7.25) / 1


def test_a_column_without_training_values_is_kept_as_zeros():
    frame = pd.DataFrame({"a": [np.nan] * 5 + [1.0, 2.0, 3.0, 4.0, 5.0], "b": np.arange(10.0)})
    fit, test = np.arange(5), np.arange(5, 10)
    fit_x, test_x = fold_features(Columns.of(frame, ["a", "b"], []), fit, fit, test)
    assert fit_x.shape == test_x.shape == (5, 2)
    assert np.all(fit_x[:, 0] == 0.0)
    np.testing.assert_allclose(test_x[:, 1], (np.arange(5, 10) - 2.0) / np.sqrt(2.0), rtol=1e-6)


def test_fold_data_reads_the_columns_once_and_standardizes_on_the_training_rows():
    frame = _frame(200, 3)
    target = pd.Series(np.arange(200) % 2, name="y")
    data = encode(Table(name="t", features=frame, target=target))
    fold = Fold(0, 0, np.arange(0, 120), np.arange(120, 160), np.arange(160, 200))
    fd = fold_data(data, fold)
    assert data.columns is not None
    reference = _sklearn(data.frame, data.numeric, data.categorical, fold.fit, [fold.fit, fold.val, fold.test])
    for ours, ref in zip((fd.x_fit, fd.x_val, fd.x_test), reference):
        assert ours.dtype == torch.float32
        np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-6, atol=1e-6)
