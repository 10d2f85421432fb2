"""`losskit compare` end to end: every task, the report files, the metrics.json schema,
determinism, identical candidates, warnings, the Python API, and bad input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from losskit.app.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
METRIC_KEYS = {
    "binary": {"roc_auc", "average_precision", "f1", "brier", "ece", "log_loss"},
    "multiclass": {"macro_f1", "balanced_accuracy", "accuracy", "log_loss", "ece"},
    "regression": {"mae", "rmse", "r2"},
}
FAST = ("--folds", "2", "--repeats", "1", "--max-repeats", "1", "--epochs", "2")


def _compare(tmp_path: Path, *args: str, name: str = "report") -> tuple[int, Path]:
    out = tmp_path / name
    code = main(["compare", *args, "--out", str(out)])
    return code, out


def _check_schema(payload: dict, task: str, losses: list[str], n_folds: int) -> None:
    assert {"task", "results", "baselines", "recommendation", "settings", "versions"} <= set(payload)
    assert payload["task"] == task
    assert [r["loss"] for r in payload["results"]] == losses
    keys = METRIC_KEYS.get(task)
    for r in payload["results"]:
        assert {"loss", "metrics", "history", "folds", "ci"} <= set(r)
        if keys:
            assert set(r["metrics"]) == keys and set(r["ci"]) == keys
        assert len(r["folds"]) == n_folds
        for m, v in r["metrics"].items():  # metrics are the fold means
            values = [f[m] for f in r["folds"] if f[m] is not None]
            if v is not None:
                assert v == pytest.approx(sum(values) / len(values))
                low, high = r["ci"][m]
                assert low is None or low <= v <= high
        assert len(r["history"]["train_loss"]) == len(r["history"]["val_loss"]) >= 1
    for b in payload["baselines"]:
        assert {"model", "metrics", "folds", "ci"} <= set(b) and len(b["folds"]) == n_folds
    assert [b["model"] for b in payload["baselines"]] == ["linear", "gradient_boosting"]
    rec = payload["recommendation"]
    assert {"loss", "metric", "significant", "p_value", "versus", "text", "decision", "margin"} <= set(rec)
    assert rec["loss"] in losses and rec["decision"] in ("better", "equivalent", "undecided")
    for r in payload["results"]:
        if "versus_plain" in r:
            vs = r["versus_plain"]
            assert {"decision", "margin", "ci", "level", "p_holm", "p_better", "other_metrics"} <= set(vs)
            assert vs["decision"] in ("better", "equivalent", "worse", "undecided")
    assert {"seed", "folds", "repeats", "epochs", "batch_size", "lr", "losses", "task"} <= set(payload["settings"])
    assert set(payload["versions"]) == {"python", "torch", "losskit", "scikit-learn"}


def _check_pngs(out: Path, expected: set[str]) -> None:
    import matplotlib.image

    assert {p.name for p in out.glob("*.png")} == expected
    for name in expected:
        assert (out / name).read_bytes().startswith(PNG_MAGIC)
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
            {"curves.png", "effects.png", "reliability.png"},
        ),
        (
            "breast_cancer",
            "binary",
            ["bce_with_logits", "bce_with_logits+pos_weight", "focal"],
            {"curves.png", "effects.png", "reliability.png", "roc_pr.png"},
        ),
        (
            "diabetes",
            "regression",
            ["mse", "l1", "huber", "smooth_l1"],
            {"curves.png", "effects.png", "predicted_vs_true.png"},
        ),
    ],
)
def test_compare_bundled_datasets(dataset, task, losses, pngs, tmp_path, capsys):
    code, out = _compare(tmp_path, "--dataset", dataset, *FAST)
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    payload = json.loads((out / "metrics.json").read_text())
    _check_schema(payload, task, losses, 2)
    assert payload["dataset"] == dataset
    _check_pngs(out, pngs)
    html = (out / "report.html").read_text()
    assert html.count('<img src="data:image/png;base64,') == len(pngs)
    # the verdict comes first on the page and last in the terminal
    assert html.index('id="recommendation"') < html.index("<h1>")
    assert f"verdict: {payload['recommendation']['text'][:40]}" in printed.replace("\n", " ")
    for name in losses:
        assert name in printed and name in html
    assert "gradient boosting" in printed and f"report: {out / 'report.html'}" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted([".losskit-report", "metrics.json", "report.html", *pngs])


def test_multi_output_regression_linnerud(tmp_path, capsys):
    code, out = _compare(tmp_path, "--dataset", "linnerud", *FAST, "--no-baselines")
    assert code == 0, capsys.readouterr().err
    payload = json.loads((out / "metrics.json").read_text())
    assert payload["task"] == "regression" and payload["baselines"] == []


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
    code, out = _compare(tmp_path, str(path), "--target", "tag_x", "--target", "tag_y", *FAST)
    assert code == 0, capsys.readouterr().err
    payload = json.loads((out / "metrics.json").read_text())
    _check_schema(payload, "multilabel", ["bce_with_logits", "bce_with_logits+pos_weight", "focal"], 2)
    assert {"micro_f1", "macro_f1", "macro_roc_auc", "ece", "f1[tag_x]", "f1[tag_y]"} == set(
        payload["results"][0]["metrics"]
    )
    html = (out / "report.html").read_text()
    # rows 0, 17, ..., 119 miss "a" (8 rows) and rows 0, 23, ..., 115 miss "colour" (6 rows)
    assert "missing values imputed (median for numbers, most frequent value for categories): a (8), colour (6)." in html
    assert "categorical columns one-hot encoded: colour" in html
    assert path.read_bytes() == before


def test_same_command_and_seed_gives_the_same_json(tmp_path, capsys):
    texts = []
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        code, out = _compare(tmp_path, "--dataset", "iris", *FAST, "--seed", seed, name=name)
        assert code == 0
        texts.append((out / "metrics.json").read_text())
    assert texts[0] == texts[1]
    assert texts[0] != texts[2]
    assert json.loads(texts[2])["settings"]["seed"] == 4


def test_identical_candidates_are_reported_and_not_trained_twice(tmp_path, capsys):
    code, out = _compare(tmp_path, "--dataset", "iris", *FAST)
    assert code == 0
    printed = capsys.readouterr().out
    payload = json.loads((out / "metrics.json").read_text())
    rows = {r["loss"]: r for r in payload["results"]}
    weighted = rows["cross_entropy+class_weights"]
    assert weighted["same_as"] == "cross_entropy" and "versus_plain" not in weighted
    assert weighted["folds"] == rows["cross_entropy"]["folds"]
    assert "cross_entropy+class_weights is the same model as cross_entropy here" in printed
    # every iris run of 2 epochs stops at --epochs while still learning: said in the terminal and the report
    assert any(
        "training hit --epochs 2 in 2 of 2 folds while the validation loss was still falling" in w
        for w in payload["warnings"]
    )
    assert "warning: cross_entropy: training hit --epochs 2" in printed
    assert "training hit --epochs 2" in (out / "report.html").read_text()
    # 2 test folds: no decision is possible, and the report says why
    assert any(
        "2 test folds (1x2) give 1 degrees of freedom: no decision is possible" in w for w in payload["warnings"]
    )
    assert payload["recommendation"]["text"].startswith("No verdict at this design")


def test_a_baseline_decided_better_is_a_warning(tmp_path, capsys):
    # two epochs of a small MLP lose to logistic regression on 6 test folds: decided, and said
    code, out = _compare(
        tmp_path, "--dataset", "iris", "--folds", "3", "--repeats", "2", "--max-repeats", "2", "--epochs", "2",
        "--losses", "cross_entropy",
    )  # fmt: skip
    assert code == 0
    payload = json.loads((out / "metrics.json").read_text())
    linear = payload["baselines"][0]
    assert linear["versus_recommended"]["decision"] == "better" and not linear["degenerate"]
    assert any(
        w.startswith("the logistic regression baseline beats the network (cross_entropy) on macro_f1")
        for w in payload["warnings"]
    )


def test_few_samples_per_class_warns(tmp_path, capsys):
    rows = ["x1,x2,y"] + [f"{i % 7},{(i * 3) % 11},{'rare' if i % 12 == 0 else 'common'}" for i in range(96)]
    path = tmp_path / "rare.csv"
    path.write_text("\n".join(rows) + "\n")
    code, out = _compare(tmp_path, str(path), "--target", "y", *FAST, "--no-baselines")
    assert code == 0, capsys.readouterr().err
    payload = json.loads((out / "metrics.json").read_text())
    assert any("class(es) 'rare' (8) have fewer than 5 rows per test fold" in w for w in payload["warnings"])


def test_default_run_is_digits(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["compare", *FAST, "--losses", "cross_entropy,focal", "--no-baselines"]) == 0
    payload = json.loads((tmp_path / "losskit-report" / "metrics.json").read_text())
    assert payload["dataset"] == "digits" and payload["n_rows"] == 1797
    assert payload["settings"]["losses"] == ["cross_entropy", "focal"]


def test_save_model_writes_the_recommended_state_dict(tmp_path, capsys):
    from losskit.app.compare.train import make_model

    code, out = _compare(tmp_path, "--dataset", "iris", *FAST, "--save-model", "--no-baselines")
    assert code == 0
    state = torch.load(out / "model.pt")
    model = make_model(4, 3, 0)
    model.load_state_dict(state)  # the default MLP of iris: 4 features, 3 classes


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
        (lambda t: [str(t)], "class folders"),  # a folder is image classification (class folders)
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
            lambda t: [
                _write(t, "nofeat.csv", "id,y\n" + "".join(f"row{i},{i % 2}\n" for i in range(60))),
                "--target",
                "y",
            ],
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
            "class(es) 'b' (2) have fewer rows than --folds 5",
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
        (lambda t: [_write(t, "empty.csv", ""), "--target", "y"], "is empty; expected a CSV or Parquet table"),
        (lambda t: [_write(t, "header.csv", "x,y\n"), "--target", "y"], "has 0 row(s)"),
        (
            lambda t: [
                _write(t, "inf.csv", "x,z,y\n" + "".join(f"{'inf' if i == 3 else i},{i},{i % 2}\n" for i in range(30))),
                "--target",
                "y",
            ],
            "feature column 'x' has 1 infinite value(s)",
        ),
        (
            lambda t: [
                _write(t, "nan.csv", "x,z,y\n" + "".join(f",{i},{i % 2}\n" for i in range(30))),
                "--target",
                "y",
            ],
            "feature column 'x' has no values (all missing)",
        ),
        (
            lambda t: [
                _write(t, "mixed.csv", "x,y\n" + "".join(f"{i},{i if i % 2 else 'a'}\n" for i in range(30))),
                "--target",
                "y",
            ],
            "have fewer rows than --folds 5",
        ),
        (lambda t: ["--dataset", "iris", "--metric", "mae"], "--metric 'mae' is not a multiclass metric"),
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
    assert code == 2, captured
    assert message in captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_unwritable_out_exits_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["compare", "--dataset", "iris", *FAST, "--out", str(blocker / "sub" / "report")]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("losskit compare: ")
        and err.count("\n") == 1
        and "is not a folder; expected a writable place" in err
    )
    assert blocker.read_text() == "x"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--epochs", "0"], "argument --epochs: expected a positive integer, got 0"),
        (["--folds", "0"], "argument --folds: expected an integer >= 2 (the k of k-fold), got 0"),
        (["--folds", "1"], "argument --folds: expected an integer >= 2 (the k of k-fold), got 1"),
        (["--margin", "-0.1"], "argument --margin: expected a number >= 0, got -0.1"),
        (["--margin", "tiny"], "argument --margin: expected a number >= 0, got 'tiny'"),
        (["--budget", "0"], "argument --budget: expected a positive number, got 0.0"),
        (["--max-repeats", "0"], "argument --max-repeats: expected a positive integer, got 0"),
    ],
)
def test_bad_numbers_exit_2_in_one_line(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compare", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err == f"losskit compare: {message}. Run 'losskit compare --help' for the options.\n"


def test_max_repeats_below_repeats_is_one_line_exit_2(tmp_path, capsys):
    assert (
        main(["compare", "--dataset", "iris", "--repeats", "3", "--max-repeats", "2", "--out", str(tmp_path / "r")])
        == 2
    )
    err = capsys.readouterr().err
    assert err == (
        "losskit compare: --max-repeats 2: expected an integer >= --repeats (3). Fix the option(s) and run again.\n"
    )


def test_out_folder_of_the_user_is_never_touched(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    assert main(["compare", "--dataset", "iris", *FAST, "--out", str(mine)]) == 2
    assert "is not a losskit report" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]


@pytest.mark.parametrize(
    "module,function",
    [
        ("losskit.app.compare.engines", "run_task"),
        ("losskit.app.compare.baselines", "fit_predict"),
        ("losskit.app.compare.report", "write_report"),
        ("losskit.app.compare.report", "print_summary"),
    ],
)
def test_ctrl_c_in_any_phase_exits_130_and_leaves_nothing(module, function, tmp_path, capsys, monkeypatch):
    import importlib

    out = tmp_path / "report"
    assert main(["compare", "--dataset", "iris", *FAST, "--no-baselines", "--out", str(out)]) == 0
    before = (out / "metrics.json").read_text()
    capsys.readouterr()

    def interrupted(*args, **kwargs):
        if function == "write_report":
            (args[0] / "metrics.json").write_text("{}")  # half written ...
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module(module), function, interrupted)
    fresh = tmp_path / "fresh"
    assert main(["compare", "--dataset", "iris", *FAST, "--out", str(fresh)]) == 130
    err = capsys.readouterr().err
    assert err == "losskit compare: interrupted; no report was written.\n"
    if function == "print_summary":  # the report was complete before the summary
        assert (fresh / "metrics.json").exists()
    else:
        assert not fresh.exists()
    assert (out / "metrics.json").read_text() == before  # the earlier report is untouched
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


def test_previous_report_is_replaced_and_a_failed_save_restores_it(tmp_path, capsys, monkeypatch):
    out = tmp_path / "report"
    assert main(["compare", "--dataset", "iris", *FAST, "--no-baselines", "--out", str(out)]) == 0
    first = (out / "metrics.json").read_text()
    assert main(["compare", "--dataset", "iris", *FAST, "--no-baselines", "--seed", "1", "--out", str(out)]) == 0
    second = (out / "metrics.json").read_text()
    assert second != first

    from losskit.app.compare import report

    def broken(out_dir, *args, **kwargs):
        (out_dir / "metrics.json").write_text("{}")
        raise OSError("disk full")

    monkeypatch.setattr(report, "write_report", broken)
    assert main(["compare", "--dataset", "iris", *FAST, "--no-baselines", "--out", str(out)]) == 2
    assert "disk full" in capsys.readouterr().err
    assert (out / "metrics.json").read_text() == second
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


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
    code, out = _compare(tmp_path, "--dataset", "wine", *FAST)
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
        first = page.evaluate("document.body.firstElementChild.id")
        visible = page.evaluate("document.querySelector('#results').getBoundingClientRect().height")
        browser.close()
    assert len(images) == 3  # curves, effects, reliability
    assert first == "recommendation"
    for complete, width, height, shown in images:
        assert complete and width > 200 and height > 200 and shown > 100
    assert rows == [
        "cross_entropy",
        "cross_entropy+label_smoothing",
        "cross_entropy+class_weights",
        "focal",
        "logistic regression (baseline)",
        "gradient boosting (baseline)",
    ]
    assert visible > 50
