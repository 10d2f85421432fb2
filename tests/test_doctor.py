"""losskit.doctor: every check fails on a purpose-built broken setup and passes on a correct one,
and the caller's model, optimizer and random state are untouched."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import losskit
from losskit.app.cli import main
from losskit.doctor import CHECK_NAMES


def _mlp(d_in=8, hidden=32, d_out=4, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))


def _batch(n=32, d_in=8, classes=4, seed=1):
    """Learnable labels: the argmax of a fixed linear map of the inputs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g)
    return x, (x @ torch.randn(d_in, classes, generator=g)).argmax(1)


def _statuses(report):
    return {c.name: c.status for c in report.checks}


def test_a_correct_setup_passes_every_check():
    report = losskit.doctor(_mlp(), losskit.nn.CrossEntropyLoss(), _batch(), steps=200)
    assert [c.name for c in report.checks] == list(CHECK_NAMES)
    assert set(_statuses(report).values()) == {"pass"}, str(report)
    assert report.ok
    d = report.to_dict()
    assert set(d) == {"checks"} and all(
        set(c) == {"name", "status", "measured", "expected", "advice"} for c in d["checks"]
    )
    assert report["init_loss"].expected.startswith("ln 4 = 1.386")


def test_correct_regression_and_binary_setups_pass():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=g)
    y = (x @ torch.randn(5, 1, generator=g)).squeeze(1)
    y = (y - y.mean()) / y.std()

    class Reg(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _mlp(5, 32, 1)

        def forward(self, x):
            return self.net(x).squeeze(-1)

    report = losskit.doctor(Reg(), losskit.nn.MSELoss(), (x, y), steps=200)
    assert report.ok, str(report)
    assert _statuses(report)["init_loss"] == "pass" and _statuses(report)["overfit_batch"] == "pass"

    yb = (x[:, 0] > 0).float()
    report = losskit.doctor(Reg(), losskit.nn.BCEWithLogitsLoss(), (x, yb), steps=200)
    assert report.ok, str(report)
    assert report["init_loss"].expected.startswith("ln 2")


def test_double_softmax_fails_final_layer_and_overfit():
    # with 10 classes softmax-then-cross-entropy cannot go below ln(1 + 9/e) = 0.63 ln 10
    model = nn.Sequential(*_mlp(d_out=10), nn.Softmax(dim=1))
    report = losskit.doctor(model, losskit.nn.CrossEntropyLoss(), _batch(classes=10), steps=200)
    s = _statuses(report)
    assert s["final_layer"] == "fail" and "double softmax" in report["final_layer"].advice
    assert s["overfit_batch"] != "pass"
    assert (
        losskit.doctor(_mlp(d_out=10), losskit.nn.CrossEntropyLoss(), _batch(classes=10), steps=200)[
            "overfit_batch"
        ].status
        == "pass"
    )
    assert not report.ok


def test_sigmoid_before_bce_with_logits_fails_final_layer():
    model = nn.Sequential(*_mlp(d_out=3), nn.Sigmoid())
    x, _ = _batch()
    y = (torch.rand(32, 3) < 0.5).float()
    report = losskit.doctor(model, losskit.nn.BCEWithLogitsLoss(), (x, y), steps=5)
    assert _statuses(report)["final_layer"] == "fail"


class Detached(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 32), nn.Linear(32, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)).detach())  # the bug: fc1 never learns


def test_detached_layer_fails_gradient_flow():
    report = losskit.doctor(Detached(), losskit.nn.CrossEntropyLoss(), _batch(), steps=5)
    check = report["gradient_flow"]
    assert check.status == "fail"
    assert "fc1.weight" in check.advice and "fc1.bias" in check.advice and "detached" in check.advice


def test_frozen_parameter_fails_gradient_flow():
    model = _mlp()
    model[0].weight.requires_grad_(False)  # weight frozen by mistake, bias still trains
    report = losskit.doctor(model, losskit.nn.CrossEntropyLoss(), _batch(), steps=5)
    check = report["gradient_flow"]
    assert check.status == "fail" and "partly frozen modules 0" in check.advice and "0.weight" in check.advice
    # a whole frozen backbone (fine-tuning) is only a warning
    model = _mlp()
    for p in model[0].parameters():
        p.requires_grad_(False)
    assert losskit.doctor(model, losskit.nn.CrossEntropyLoss(), _batch(), steps=5)["gradient_flow"].status == "warn"


def test_wrong_label_dtype_fails_setup_and_labels():
    x, y = _batch()
    for loss in (losskit.nn.CrossEntropyLoss(), nn.CrossEntropyLoss()):  # torch's module gets losskit's guardrails
        report = losskit.doctor(_mlp(), loss, (x, y.float()), steps=5)
        s = _statuses(report)
        assert (
            s["setup"] == "fail"
            and "float class indices" in report["setup"].advice
            and "target.long()" in report["setup"].advice
        )
        assert s["labels"] == "fail"
        assert s["init_loss"] == s["gradient_flow"] == s["overfit_batch"] == "skip"


def test_mse_on_class_ids_fails_setup():
    class One(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _mlp(d_out=1)

        def forward(self, x):
            return self.net(x).squeeze(-1)

    x, y = _batch(classes=10)
    report = losskit.doctor(One(), nn.MSELoss(), (x, y), steps=5)
    assert report["setup"].status == "fail"
    assert "regression loss but the targets are integer class labels (multiclass" in report["setup"].advice


class Mixing(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        h = self.fc(x)
        return h.t().reshape(h.shape)  # the bug: a reshape that should have been a transpose


def test_batch_mixing_reshape_fails_batch_independence():
    report = losskit.doctor(Mixing(), losskit.nn.CrossEntropyLoss(), _batch(), steps=5)
    check = report["batch_independence"]
    assert check.status == "fail" and "mixes the batch axis" in check.advice
    assert (
        losskit.doctor(_mlp(), losskit.nn.CrossEntropyLoss(), _batch(), steps=5)["batch_independence"].status == "pass"
    )


def test_batch_norm_in_training_mode_is_skipped_with_a_note():
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))
    check = losskit.doctor(model, losskit.nn.CrossEntropyLoss(), _batch(), steps=5)["batch_independence"]
    assert check.status == "skip" and "batch-norm" in check.advice


def test_bad_init_scale_fails_init_loss():
    model = _mlp()
    with torch.no_grad():
        model[2].weight.mul_(50)
    report = losskit.doctor(model, losskit.nn.CrossEntropyLoss(), _batch(), steps=5)
    check = report["init_loss"]
    assert check.status == "fail" and "init scale" in check.advice
    assert check.measured > 3 * 1.3862


def test_uncentered_regression_targets_fail_init_loss():
    x = torch.randn(64, 5)
    y = 100 + torch.randn(64)  # variance 1, mean 100: an output near 0 starts 10000x off

    class Reg(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _mlp(5, 16, 1)

        def forward(self, x):
            return self.net(x).squeeze(-1)

    check = losskit.doctor(Reg(), losskit.nn.MSELoss(), (x, y), steps=5)["init_loss"]
    assert check.status == "fail" and "standardize the targets" in check.advice


def test_labels_out_of_range_and_all_ignored():
    x, y = _batch()
    y[0] = 7  # 4 outputs
    report = losskit.doctor(_mlp(), losskit.nn.CrossEntropyLoss(), (x, y), steps=5)
    assert report["labels"].status == "fail" and "out of range" in report["labels"].measured
    assert report["setup"].status == "fail" and "out of range" in report["setup"].advice
    report = losskit.doctor(_mlp(), losskit.nn.CrossEntropyLoss(), (x, torch.full((32,), -100)), steps=5)
    assert report["labels"].status == "fail" and "ignore_index" in report["labels"].advice
    one_class = losskit.doctor(_mlp(), losskit.nn.CrossEntropyLoss(), (x, torch.zeros(32, dtype=torch.long)), steps=5)
    assert one_class["labels"].status == "warn"


def test_caller_model_optimizer_and_rng_are_untouched():
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = _batch()
    losskit.nn.CrossEntropyLoss()(model(x), y).backward()
    opt.step()  # the optimizer has state now
    params = copy.deepcopy(model.state_dict())
    grads = [p.grad.clone() for p in model.parameters()]
    opt_state = copy.deepcopy(opt.state_dict())
    rng = torch.get_rng_state()
    model.eval()
    report = losskit.doctor(model, losskit.nn.CrossEntropyLoss(), (x, y), optimizer=opt, steps=20)
    assert "SGD lr=0.05" in report["overfit_batch"].measured  # the given optimizer's class and settings
    for k, v in model.state_dict().items():
        assert torch.equal(v, params[k])
    for p, g in zip(model.parameters(), grads):
        assert torch.equal(p.grad, g)
    after = opt.state_dict()
    assert after["param_groups"] == opt_state["param_groups"]
    for k, state in opt_state["state"].items():
        assert torch.equal(after["state"][k]["momentum_buffer"], state["momentum_buffer"])
    assert torch.equal(torch.get_rng_state(), rng)
    assert not model.training  # mode untouched


def test_report_prints_as_a_table_and_bad_arguments():
    report = losskit.doctor(_mlp(), losskit.nn.CrossEntropyLoss(), _batch(), steps=5)
    text = str(report)
    for name in CHECK_NAMES:
        assert name in text
    with pytest.raises(losskit.LossInputError, match="expected a pair"):
        losskit.doctor(_mlp(), losskit.nn.CrossEntropyLoss(), _batch()[0])
    with pytest.raises(losskit.LossInputError, match="steps is 0"):
        losskit.doctor(_mlp(), losskit.nn.CrossEntropyLoss(), _batch(), steps=0)
    broken = losskit.doctor(_mlp(d_in=3), losskit.nn.CrossEntropyLoss(), _batch(), steps=5)
    assert broken["setup"].status == "fail" and "forward failed" not in broken["setup"].advice
    assert "model(batch[0]) failed" in broken["setup"].advice


def test_doctor_demo_cli(capsys):
    assert main(["doctor", "--demo"]) == 0
    out = capsys.readouterr().out
    assert (
        "side by side" in out and "broken: Softmax head, float labels" in out and "fixed: logits, int64 labels" in out
    )
    from losskit.app.doctor_demo import run_demo

    broken, fixed = run_demo().values()
    capsys.readouterr()
    assert [c.status for c in broken.checks] == ["fail", "fail", "skip", "skip", "skip", "pass", "fail"]
    assert "double softmax" in broken["final_layer"].advice and "float class indices" in broken["setup"].advice
    assert fixed.ok and [c.status for c in fixed.checks] == ["pass"] * 7
    assert main(["doctor"]) == 2
    assert "losskit doctor --demo" in capsys.readouterr().err


def test_regression_loss_on_float_class_ids_is_a_warning_and_the_summary_says_so():
    """A regression loss fed class ids stored as floats: computable, so a warning (not a pass
    with advice), and the report's summary line says there are warnings."""
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = (torch.arange(64) % 3).float().unsqueeze(1)  # class ids 0, 1, 2 as floats
    report = losskit.doctor(torch.nn.Linear(4, 1), losskit.nn.MSELoss(), (x, y), steps=5)
    assert report["setup"].status == "warn"
    assert "regression loss but the targets look like class ids" in report["setup"].advice
    expected = "problems found" if not report.ok else "ok, with warnings"
    assert report.summary == expected
    assert f"losskit doctor: {expected}" in str(report)


def test_summary_of_a_clean_report_is_ok():
    from losskit.doctor.report import Check, DoctorReport

    assert DoctorReport([Check("setup", "pass"), Check("labels", "skip")]).summary == "ok"
    assert DoctorReport([Check("setup", "pass"), Check("labels", "warn")]).summary == "ok, with warnings"
    assert DoctorReport([Check("setup", "fail"), Check("labels", "warn")]).summary == "problems found"
