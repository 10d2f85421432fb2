"""`losskit recommend`: bundled data sets, CSV / Parquet files, and its errors."""

from __future__ import annotations

import json

import pytest

from losskit.app.cli import main

# what `losskit recommend` must conclude for each bundled scikit-learn data set (by inspection of
# the data: digits 10 balanced classes, breast_cancer 212/357, diabetes a continuous score, ...)
EXPECTED = {
    "digits": ("multiclass", 10, "CrossEntropyLoss(reduction='mean')"),
    "iris": ("multiclass", 3, "CrossEntropyLoss(reduction='mean')"),
    "wine": ("multiclass", 3, "CrossEntropyLoss(reduction='mean')"),
    "breast_cancer": ("binary", 2, "BCEWithLogitsLoss(reduction='mean')"),
    "diabetes": ("regression", 1, "MSELoss(reduction='mean')"),
    "linnerud": ("regression", 3, "HuberLoss(reduction='mean', delta="),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_recommend_bundled_datasets_json(name, capsys):
    assert main(["recommend", "--dataset", name, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    task, classes, loss = EXPECTED[name]
    assert (result["task"], result["num_classes"]) == (task, classes)
    assert result["loss"].startswith(loss)
    assert result["reasons"] and result["reason"]


def test_recommend_prints_balance_and_reasons(capsys):
    assert main(["recommend", "--dataset", "breast_cancer"]) == 0
    out = capsys.readouterr().out
    for words in [
        "task",
        "binary",
        "class balance, largest / smallest = 1.68:1",
        "0 (malignant)",
        "212",
        "37.3%",
        "reasons",
        "no pos_weight",
    ]:
        assert words in out, words


def test_recommend_defaults_to_digits(capsys):
    assert main(["recommend"]) == 0
    assert "losskit recommend: digits (1797 samples)" in capsys.readouterr().out


def test_recommend_csv_with_string_labels_and_missing_targets(tmp_path, capsys):
    path = tmp_path / "churn.csv"
    rows = ["tenure,plan,churn"] + [
        f"{i},{'basic' if i % 2 else 'pro'},{'yes' if i % 5 == 0 else 'no'}" for i in range(100)
    ]
    rows.append("7,basic,")  # a missing target
    path.write_text("\n".join(rows) + "\n")
    before = path.read_bytes()
    assert main(["recommend", str(path), "--target", "churn", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["task"] == "binary" and result["dropped_rows"] == 1
    assert result["balance"] == [["no", 80, 0.8], ["yes", 20, 0.2]]
    assert result["loss"] == "BCEWithLogitsLoss(reduction='mean', pos_weight=[4])"
    assert path.read_bytes() == before  # the user's file is untouched


def test_recommend_parquet_and_multi_output(tmp_path, capsys):
    import pandas as pd

    frame = pd.DataFrame({"x": range(30), "a": [float(i) for i in range(30)], "b": [0.5 * i for i in range(30)]})
    frame.to_parquet(tmp_path / "t.parquet")
    assert main(["recommend", str(tmp_path / "t.parquet"), "--target", "a", "--target", "b", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_outputs"] == 2


@pytest.mark.parametrize(
    "argv,message",
    [
        (["recommend", "--dataset", "mnist"], "dataset is 'mnist'; expected one of digits"),
        (["recommend", "nope.csv", "--target", "y"], "'nope.csv' does not exist"),
        (["recommend", "{csv}"], "no target column given"),
        (["recommend", "{csv}", "--target", "Y"], "target column(s) ['Y'] not found"),
        (["recommend", "--target", "y"], "but no file was given"),
        (["recommend", "{csv}", "--dataset", "iris"], "either a data file or --dataset"),
    ],
)
def test_recommend_errors_exit_2(argv, message, tmp_path, capsys):
    csv = tmp_path / "d.csv"
    csv.write_text("x,y\n1,0\n2,1\n")
    argv = [a.replace("{csv}", str(csv)) for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
