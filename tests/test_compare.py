"""`losskit compare` end to end: every task, the report files, determinism, and bad input."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest
import torch

from losskit.app.cli import main
from losskit.app.compare.metrics import evaluate
from losskit.app.compare.report import recommendation
from losskit.app.compare.train import TrainResult, _overfitting
from losskit.tasks import Task

CLASSIFICATION_KEYS = {"accuracy", "precision", "recall", "f1", "auroc", "ece", "log_loss"}
REGRESSION_KEYS = {"mae", "rmse", "r2"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _compare(tmp_path: Path, *args: str, name: str = "report") -> tuple[int, Path]:
    out = tmp_path / name
    code = main(["compare", *args, "--out", str(out)])
    return code, out


def _check_schema(payload: dict, task: str, losses: list[str]) -> None:
    assert set(payload) == {"task", "dataset", "n_train", "n_val", "n_test", "results", "recommendation"}
    assert payload["task"] == task
    assert [r["loss"] for r in payload["results"]] == losses
    keys = REGRESSION_KEYS if task == "regression" else CLASSIFICATION_KEYS
    for r in payload["results"]:
        assert set(r) == {"loss", "metrics", "history", "best_epoch"}
        assert set(r["metrics"]) == keys
        assert set(r["history"]) == {"train_loss", "val_loss"}
        assert len(r["history"]["train_loss"]) == len(r["history"]["val_loss"]) >= 1
        assert 1 <= r["best_epoch"] <= len(r["history"]["val_loss"])
        best = r["history"]["val_loss"][r["best_epoch"] - 1]
        assert best == min(r["history"]["val_loss"])  # the restored epoch has the lowest validation loss
    assert payload["recommendation"].startswith("Pick ")
    assert any(payload["recommendation"].startswith(f"Pick {name}:") for name in losses)


def _check_pngs(out: Path, expected: set[str]) -> None:
    import matplotlib.image

    assert {p.name for p in out.glob("*.png")} == expected
    for name in expected:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC)
        image = matplotlib.image.imread(out / name)
        assert image.shape[0] > 200 and image.shape[1] > 200
        assert image.std() > 0.01  # not a blank canvas


@pytest.mark.parametrize(
    "dataset,task,losses,pngs",
    [
        (
            "digits",
            "multiclass",
            ["cross_entropy", "cross_entropy+label_smoothing", "cross_entropy+class_weights", "focal"],
            {"curves.png", "reliability.png", "confusion_matrices.png"},
        ),
        (
            "breast_cancer",
            "binary",
            ["bce_with_logits", "bce_with_logits+pos_weight", "focal"],
            {"curves.png", "reliability.png"},
        ),
        ("diabetes", "regression", ["mse", "l1", "huber", "smooth_l1"], {"curves.png", "predicted_vs_true.png"}),
        ("linnerud", "regression", ["mse", "l1", "huber", "smooth_l1"], {"curves.png", "predicted_vs_true.png"}),
    ],
)
def test_compare_bundled_datasets(dataset, task, losses, pngs, tmp_path, capsys):
    code, out = _compare(tmp_path, "--dataset", dataset, "--epochs", "3")
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    payload = json.loads((out / "metrics.json").read_text())
    _check_schema(payload, task, losses)
    assert payload["dataset"] == dataset
    _check_pngs(out, pngs)
    html = (out / "report.html").read_text()
    assert html.count('<img src="data:image/png;base64,') == len(pngs)
    for name in losses:
        assert name in printed and name in html
    assert "winner per metric" in printed and f"report: {out / 'report.html'}" in printed


def test_compare_multilabel_csv_with_categories_missing_values_and_string_labels(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    n = 120
    x = torch.randn(n, 3, generator=g)
    colours = ["red", "green", "blue"]
    rows = ["a,b,c,colour,tag_x,tag_y"]
    for i in range(n):
        a = "" if i % 17 == 0 else f"{float(x[i, 0]):.3f}"  # missing values
        colour = "" if i % 23 == 0 else colours[i % 3]
        tag_x = int(x[i, 0] + (i % 3 == 0) > 0.3)
        tag_y = int(x[i, 1] > 0.0)
        rows.append(f"{a},{float(x[i, 1]):.3f},{float(x[i, 2]):.3f},{colour},{tag_x},{tag_y}")
    path = tmp_path / "tags.csv"
    path.write_text("\n".join(rows) + "\n")
    before = path.read_bytes()
    code, out = _compare(tmp_path, str(path), "--target", "tag_x", "--target", "tag_y", "--epochs", "3")
    assert code == 0, capsys.readouterr().err
    payload = json.loads((out / "metrics.json").read_text())
    _check_schema(payload, "multilabel", ["bce_with_logits", "bce_with_logits+pos_weight", "focal"])
    html = (out / "report.html").read_text()
    # rows 0, 17, ..., 119 miss "a" (8 rows) and rows 0, 23, ..., 115 miss "colour" (6 rows)
    assert "missing values imputed (median for numbers, most frequent value for categories): a (8), colour (6)." in html
    assert "categorical columns one-hot encoded: colour" in html
    assert path.read_bytes() == before


def test_compare_string_labels_binary(tmp_path, capsys):
    rows = ["x1,x2,label"] + [f"{i % 7},{(i * 3) % 11},{'spam' if i % 4 == 0 else 'ham'}" for i in range(80)]
    path = tmp_path / "mail.csv"
    path.write_text("\n".join(rows) + "\n")
    code, out = _compare(tmp_path, str(path), "--target", "label", "--epochs", "2", "--losses", "focal,bce_with_logits")
    assert code == 0, capsys.readouterr().err
    payload = json.loads((out / "metrics.json").read_text())
    _check_schema(payload, "binary", ["focal", "bce_with_logits"])
    assert (payload["n_train"], payload["n_val"], payload["n_test"]) == (48, 16, 16)


def test_compare_is_deterministic_with_a_seed(tmp_path, capsys):
    runs = []
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        code, out = _compare(tmp_path, "--dataset", "iris", "--epochs", "4", "--seed", seed, name=name)
        assert code == 0
        runs.append(json.loads((out / "metrics.json").read_text())["results"])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_default_run_is_digits(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "--epochs", "1", "--losses", "cross_entropy"]) == 0
    payload = json.loads((tmp_path / "losskit-report" / "metrics.json").read_text())
    assert payload["dataset"] == "digits" and payload["n_train"] + payload["n_val"] + payload["n_test"] == 1797


# --------------------------------------------------------------------------- bad input


def _write_bytes(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "make_args,message",
    [
        (lambda t: ["nope.csv", "--target", "y"], "'nope.csv' does not exist"),
        (lambda t: [str(t)], "is a folder"),
        (lambda t: [_write_bytes(t, "bin.csv", bytes(range(256)) * 8), "--target", "y"], "could not read"),
        (
            lambda t: [_write(t, "d.csv", "x,y\n" + "1,0\n" * 30), "--target", "Y"],
            "target column(s) ['Y'] not found in",
        ),
        (lambda t: [_write(t, "d.csv", "x,y\n" + "1,0\n" * 30)], "no target column given"),
        (
            lambda t: ["--dataset", "mnist"],
            "dataset is 'mnist'; expected one of digits, iris, wine, breast_cancer, diabetes, linnerud",
        ),
        (
            lambda t: [_write(t, "one.csv", "x,y\n" + "".join(f"{i},cat\n" for i in range(30))), "--target", "y"],
            "the target has one class only ('cat' in every row)",
        ),
        (
            lambda t: [_write(t, "nofeat.csv", "x,y\n" + "".join(f",{i % 2}\n" for i in range(30))), "--target", "y"],
            "no usable feature column",
        ),
        (
            lambda t: [_write(t, "small.csv", "x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(12))), "--target", "y"],
            "12 labelled rows; expected at least 20",
        ),
        (
            lambda t: [
                _write(t, "rare.csv", "x,y\n" + "".join(f"{i},{'a' if i < 28 else 'b'}\n" for i in range(30))),
                "--target",
                "y",
            ],
            "class(es) 'b' (2) have fewer than 3 rows",
        ),
        (
            lambda t: ["--dataset", "iris", "--losses", "mse"],
            "unknown for a multiclass task: mse; expected a comma-separated list from: cross_entropy",
        ),
        (
            lambda t: (
                ["--dataset", "iris", "--device", "cuda"]
                if not torch.cuda.is_available()
                else ["--dataset", "iris", "--device", "nonsense"]
            ),
            "--device",
        ),
        (
            lambda t: ["--dataset", "iris", "--task", "binary"],
            "--task binary, but the target has 3 classes; expected 2",
        ),
    ],
)
def test_bad_input_one_line_exit_2(make_args, message, tmp_path, capsys):
    args = make_args(tmp_path)
    code, out = _compare(tmp_path, *args, "--epochs", "1", name="out")
    captured = capsys.readouterr()
    assert code == 2
    assert message in captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert not out.exists()


def test_unwritable_out_exits_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["compare", "--dataset", "iris", "--epochs", "1", "--out", str(blocker / "sub" / "report")]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("losskit compare: ")
        and err.count("\n") == 1
        and "is not a folder; expected a writable place" in err
    )
    assert blocker.read_text() == "x"


def test_bad_numbers_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--epochs", "0"])
    assert exc.value.code == 2
    assert "expected a positive integer, got 0" in capsys.readouterr().err


def test_out_folder_of_the_user_is_never_touched(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    assert main(["compare", "--dataset", "iris", "--epochs", "1", "--out", str(mine)]) == 2
    assert "is not a losskit report" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]


def test_previous_report_is_replaced_and_a_failed_run_leaves_no_report(tmp_path, capsys, monkeypatch):
    out = tmp_path / "report"
    assert main(["compare", "--dataset", "iris", "--epochs", "1", "--out", str(out)]) == 0
    first = (out / "metrics.json").read_text()
    assert main(["compare", "--dataset", "iris", "--epochs", "2", "--out", str(out)]) == 0
    assert (out / "metrics.json").read_text() != first

    from losskit.app.compare import report

    def broken(out_dir, *args, **kwargs):
        (out_dir / "metrics.json").write_text("{}")  # half written ...
        raise OSError("disk full")

    monkeypatch.setattr(report, "write_report", broken)
    fresh = tmp_path / "fresh"
    with pytest.raises(OSError, match="disk full"):
        from losskit.app.compare import run_compare
        from losskit.app.data import load_dataset

        run_compare(load_dataset("iris"), epochs=1, out=fresh, progress=False)
    assert not fresh.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


# --------------------------------------------------------------------------- units


def test_metrics_match_scikit_learn():
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        log_loss,
        mean_absolute_error,
        precision_score,
        r2_score,
        recall_score,
        roc_auc_score,
    )

    g = torch.Generator().manual_seed(1)
    logits = torch.randn(200, 4, generator=g) * 2
    y = torch.randint(0, 4, (200,), generator=g)
    m = evaluate(Task.multiclass, logits, y, 4).metrics
    probs = torch.softmax(logits.double(), 1).numpy()
    pred = probs.argmax(1)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-6)
    assert m["precision"] == pytest.approx(precision_score(y, pred, average="macro"), abs=1e-6)
    assert m["recall"] == pytest.approx(recall_score(y, pred, average="macro"), abs=1e-6)
    assert m["f1"] == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-6)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", average="macro"), abs=1e-4)
    assert m["log_loss"] == pytest.approx(log_loss(y, probs), abs=1e-6)
    # ECE by hand: 15 equal bins of the top probability, |accuracy - confidence| weighted by bin share
    conf, hit = probs.max(1), (pred == y.numpy())
    bins = [(conf > i / 15) & (conf <= (i + 1) / 15) for i in range(15)]
    ece = sum(b.mean() * abs(hit[b].mean() - conf[b].mean()) for b in bins if b.any())
    assert m["ece"] == pytest.approx(ece, abs=1e-5)

    z = torch.randn(100, 1, generator=g)
    t = (torch.rand(100, generator=g) < torch.sigmoid(z[:, 0])).float()
    mb = evaluate(Task.binary, z, t, 1).metrics
    p = torch.sigmoid(z[:, 0]).double().numpy()
    assert mb["auroc"] == pytest.approx(roc_auc_score(t, p), abs=1e-5)
    assert mb["f1"] == pytest.approx(f1_score(t, p > 0.5, average="macro"), abs=1e-6)

    pred_std, true_std = torch.randn(50, 1, generator=g), torch.randn(50, 1, generator=g)
    mean, std = torch.tensor([10.0]), torch.tensor([3.0])
    mr = evaluate(Task.regression, pred_std, true_std, 1, mean, std).metrics
    pred_u, true_u = (pred_std * 3 + 10).numpy(), (true_std * 3 + 10).numpy()
    assert mr["mae"] == pytest.approx(mean_absolute_error(true_u, pred_u), rel=1e-5)
    assert mr["rmse"] == pytest.approx(math.sqrt(((pred_u - true_u) ** 2).mean()), rel=1e-5)
    assert mr["r2"] == pytest.approx(r2_score(true_u, pred_u), rel=1e-4)


def test_overfitting_flag():
    rising = TrainResult("x", train_loss=[1.0, 0.5, 0.3, 0.2, 0.1], val_loss=[1.0, 0.6, 0.7, 0.8, 0.9], best_epoch=2)
    assert _overfitting(rising) == "validation loss rose 50% after epoch 2 (to epoch 5) while training loss fell 80%"
    flat = TrainResult("x", train_loss=[1.0, 0.5, 0.4], val_loss=[1.0, 0.6, 0.61], best_epoch=2)
    assert _overfitting(flat) is None  # a 2% rise is noise
    both_rise = TrainResult("x", train_loss=[1.0, 0.5, 0.9], val_loss=[1.0, 0.6, 0.9], best_epoch=2)
    assert _overfitting(both_rise) is None  # training loss rose too: not overfitting


def _ev(**metrics):
    from losskit.app.compare.metrics import Evaluation

    return Evaluation({k: float(v) for k, v in metrics.items()}, torch.zeros(1), torch.zeros(1))


def test_recommendation_rules():
    base = dict(accuracy=0.9, precision=0.9, recall=0.9, auroc=0.95, log_loss=0.3)
    runs = {n: TrainResult(n, [1.0], [1.0], 1) for n in ("a", "b", "c")}
    clear = {
        "a": _ev(f1=0.90, ece=0.01, **base),
        "b": _ev(f1=0.95, ece=0.10, **base),
        "c": _ev(f1=0.80, ece=0.02, **base),
    }
    assert recommendation(Task.multiclass, clear, runs).startswith("Pick b: best test macro F1 (0.95; next 0.9, a)")
    tie = {
        "a": _ev(f1=0.951, ece=0.01, **base),
        "b": _ev(f1=0.953, ece=0.10, **base),
        "c": _ev(f1=0.80, ece=0.001, **base),
    }
    text = recommendation(Task.multiclass, tie, runs)
    assert text.startswith(
        "Pick a: its test macro F1 (0.951) is within 0.005 of the best (0.953), as is b; of those it is the best calibrated (ECE 0.01"
    )
    runs["a"].overfitting = "validation loss rose"
    assert recommendation(Task.multiclass, tie, runs).startswith("Pick b:")  # the overfitting one loses the tie
    reg = {"a": _ev(mae=2.0, rmse=3.0, r2=0.5), "b": _ev(mae=1.5, rmse=3.001, r2=0.5)}
    runs = {n: TrainResult(n, [1.0], [1.0], 1) for n in reg}
    assert recommendation(Task.regression, reg, runs).startswith(
        "Pick b: its test RMSE (3.001) is within 0.005 of the best (3), as is a; of those it is the lowest MAE (1.5"
    )
    reg["a"].metrics["mae"] = 1.0
    assert recommendation(Task.regression, reg, runs).startswith(
        "Pick a: best test RMSE (3), with b within 0.005; of those it is the lowest MAE (1;"
    )


# --------------------------------------------------------------------------- the page in a browser


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    _chromium() is None and not os.environ.get("LOSSKIT_REQUIRE_BROWSER"),
    reason="Debian's chromium is not installed (.ci/run installs it and sets LOSSKIT_REQUIRE_BROWSER=1)",
)
def test_report_renders_in_headless_chromium(tmp_path, capsys):
    from playwright.sync_api import sync_playwright

    assert _chromium(), "LOSSKIT_REQUIRE_BROWSER is set but chromium is not installed: apt-get install chromium"
    code, out = _compare(tmp_path, "--dataset", "wine", "--epochs", "3")
    assert code == 0
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=_chromium(),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto((out / "report.html").as_uri())
        page.wait_for_load_state("load")
        images = page.evaluate(
            "Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width])"
        )
        rows = page.evaluate(
            "Array.from(document.querySelectorAll('#results tbody tr')).map(r => r.querySelector('th').textContent)"
        )
        visible = page.evaluate("document.querySelector('#results').getBoundingClientRect().height")
        browser.close()
    assert len(images) == 3  # curves, reliability, confusion matrices
    for complete, width, height, shown in images:
        assert complete and width > 200 and height > 200 and shown > 100
    assert rows == ["cross_entropy", "cross_entropy+label_smoothing", "cross_entropy+class_weights", "focal"]
    assert visible > 50
