"""The statistics of ``losskit compare`` against hand-computed values and scipy."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from losskit.app.compare.stats import Posterior, corrected_t_test, correlated_t, holm, mean_ci, repeats_to_decide
from losskit.app.compare.verdict import decide, paired_tests

# a hand-made table of fold scores: six test folds of 5-fold CV (n_test / n_train = 1 / 4)
A = [0.80, 0.82, 0.79, 0.85, 0.81, 0.83]
B = [0.78, 0.80, 0.78, 0.82, 0.80, 0.80]


def test_corrected_t_test_hand_computed():
    # d = A - B = [.02, .02, .01, .03, .01, .03]: mean .02, sample variance (4 * 1e-4) / 5 = 8e-5;
    # corrected variance of the mean (1/6 + 1/4) * 8e-5 = 1/3 * 1e-4, so se = 1e-2 / sqrt(3) and
    # t = .02 * sqrt(3) / .01 = 2 sqrt(3) with 5 degrees of freedom
    c = corrected_t_test(A, B, 0.25)
    assert c.difference == pytest.approx(0.02)
    assert c.t == pytest.approx(2 * math.sqrt(3))
    assert c.p_value == pytest.approx(2 * stats.t.sf(2 * math.sqrt(3), 5))
    half = stats.t.ppf(0.975, 5) * 0.01 / math.sqrt(3)
    assert c.ci == pytest.approx((0.02 - half, 0.02 + half))
    assert corrected_t_test(B, A, 0.25).t == pytest.approx(-2 * math.sqrt(3))


def test_corrected_t_test_without_correction_is_scipys_paired_t_test():
    c = corrected_t_test(A, B, 0.0)
    ref = stats.ttest_rel(A, B)
    assert c.t == pytest.approx(ref.statistic)
    assert c.p_value == pytest.approx(ref.pvalue)


def test_correction_makes_the_test_more_conservative():
    assert corrected_t_test(A, B, 0.25).p_value > corrected_t_test(A, B, 0.0).p_value


def test_identical_scores_are_no_difference():
    c = corrected_t_test(A, A, 0.25)
    assert (c.difference, c.t, c.p_value) == (0.0, 0.0, 1.0)


def test_holm_known_values():
    # sorted: .005 * 4 = .02, .01 * 3 = .03, .03 * 2 = .06, .04 * 1 = .04 -> raised to .06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([0.2]) == pytest.approx([0.2])
    got = holm([math.nan, 0.01])
    assert math.isnan(got[0]) and got[1] == pytest.approx(0.01)


def test_mean_ci_against_scipy():
    values = [1.0, 2.0, 3.0, 4.0]
    low, high = mean_ci(values, 0.0)
    ref = stats.t.interval(0.95, 3, loc=2.5, scale=stats.sem(values))
    assert (low, high) == pytest.approx(ref)
    # the correction widens it by sqrt((1/J + r) / (1/J)) = sqrt(1 + J r)
    low_c, high_c = mean_ci(values, 0.25)
    assert (high_c - low_c) == pytest.approx((high - low) * math.sqrt(2.0))


MAE = (1.00, 1.10, 0.95, 1.05, 1.02, 0.98)


def test_verdict_names_a_better_loss():
    folds = {
        "mse": [{"mae": v} for v in MAE],
        "l1": [{"mae": v - 0.3} for v in MAE],
        "huber": [{"mae": v - d} for v, d in zip(MAE, (0.1, -0.1, 0.05, 0.0, -0.05, 0.02))],
    }
    tests = paired_tests(folds, "mse", "mae", 0.25, margin=0.01, folds_per_repeat=3)
    means = {n: sum(f["mae"] for f in fs) / 6 for n, fs in folds.items()}
    rec = decide(tests, "mse", "mae", means, "2x3", margin=0.01, folds_per_repeat=3)
    assert rec["loss"] == "l1" and rec["decision"] == "better" and rec["significant"]
    assert rec["versus"] == "mse" and rec["metric"] == "mae" and rec["margin"] == 0.01
    # every fold lower by exactly 0.3: no spread, p = 0, the interval is the point
    assert rec["p_value"] == 0.0 and rec["ci"] == [pytest.approx(-0.3), pytest.approx(-0.3)]
    assert rec["text"].startswith(
        "Use l1: better than mse on mae by 0.3 (0.7167 vs 1.017; difference -0.300 [-0.300, -0.300]"
    )
    huber = next(t for t in tests if t.loss == "huber")
    assert huber.decision == "undecided" and not huber.significant


def test_verdict_that_cannot_tell_says_undecided_never_no_difference():
    folds = {"ce": [{"f1": v} for v in A], "focal": [{"f1": v} for v in B[::-1]]}
    tests = paired_tests(folds, "ce", "f1", 0.25, margin=0.01, folds_per_repeat=3)
    rec = decide(tests, "ce", "f1", {"ce": 0.8, "focal": 0.8}, "2x3", margin=0.01, folds_per_repeat=3)
    assert rec["loss"] == "ce" and rec["decision"] == "undecided" and not rec["significant"]
    assert rec["text"].startswith("Undecided: the data cannot tell focal (")
    assert "from ce yet on f1" in rec["text"] and "Keep ce until then." in rec["text"]
    assert "no significant difference" not in rec["text"]


def test_a_worse_loss_is_called_worse_and_never_recommended():
    folds = {"ce": [{"f1": v} for v in A], "bad": [{"f1": v - 0.2 + 0.001 * i} for i, v in enumerate(A)]}
    tests = paired_tests(folds, "ce", "f1", 0.25, margin=0.01)
    assert tests[0].p_value < 0.001 and tests[0].decision == "worse" and not tests[0].significant
    rec = decide(tests, "ce", "f1", {"ce": 0.8, "bad": 0.6}, "2x3", margin=0.01)
    assert rec["loss"] == "ce" and rec["decision"] == "better"
    assert rec["text"].startswith("Use ce: every other candidate is worse on f1. bad is worse (-0.198 [")


def test_posterior_is_students_t_with_the_corrected_scale():
    # Benavoli et al. (2017): t_{J-1}(mean d, sqrt((1/J + rho/(1-rho)) s^2)); here d = A - B as above
    d = [a - b for a, b in zip(A, B)]
    post = correlated_t(d, 0.25)
    scale = math.sqrt((1 / 6 + 0.25) * 8e-5)
    assert (post.mean, post.scale, post.df) == (pytest.approx(0.02), pytest.approx(scale), 5)
    assert post.above(0.0) == pytest.approx(stats.t.sf(-0.02 / scale, 5))
    assert post.between(-0.01, 0.01) == pytest.approx(stats.t.cdf(-0.01 / scale, 5) - stats.t.cdf(-0.03 / scale, 5))
    assert post.interval(0.9) == pytest.approx(stats.t.interval(0.9, 5, loc=0.02, scale=scale))
    assert post.p_value() == pytest.approx(corrected_t_test(A, B, 0.25).p_value)


def _candidate_table(shifts, noise):
    """Six folds of a plain loss and one candidate per shift (the candidate's fold differences
    are ``shift + noise``)."""
    base = [0.9, 0.91, 0.89, 0.92, 0.9, 0.88]
    folds = {"plain": [{"m": v} for v in base]}
    for name, shift in shifts.items():
        folds[name] = [{"m": v + shift + e} for v, e in zip(base, noise)]
    return folds


def test_holm_steps_decide_and_each_interval_is_the_one_that_decided():
    noise = [0.004, -0.004, 0.002, -0.002, 0.003, -0.003]  # mean 0, sd 0.0033
    folds = _candidate_table({"big": 0.03, "medium": 0.012, "none": 0.0}, noise)
    tests = {t.loss: t for t in paired_tests(folds, "plain", "m", 0.25, margin=0.02)}
    # p-values sorted: big < medium < none; Holm compares them with .05/3, .05/2, .05/1
    big, medium, none = tests["big"], tests["medium"], tests["none"]
    assert big.p_value < 0.05 / 3 and medium.p_value < 0.05 / 2 and none.p_value > 0.05
    assert (big.level, medium.level, none.level) == pytest.approx((1 - 0.05 / 3, 1 - 0.05 / 2, 1 - 0.05))
    assert big.decision == medium.decision == "better"
    # "none" is not different from 0, and its interval at its level lies within the ±0.02 margin
    assert none.ci[0] > -0.02 and none.ci[1] < 0.02 and none.decision == "equivalent"
    for t in tests.values():  # the interval excludes 0 exactly when the candidate is better or worse
        post = correlated_t([f["m"] - p["m"] for f, p in zip(folds[t.loss], folds["plain"])], 0.25)
        assert t.ci == pytest.approx(post.interval(t.level))
        assert (t.ci[0] > 0 or t.ci[1] < 0) == (t.decision in ("better", "worse"))
    assert [t.p_holm for t in tests.values()] == pytest.approx(holm([t.p_value for t in tests.values()]))


def test_a_small_consistent_gain_is_better_not_equivalent():
    # +0.005 on every fold (with a little noise): inside the ±0.01 margin, but its interval
    # excludes 0, so it is better (and the verdict says it is smaller than the margin)
    noise = [0.0005, -0.0005, 0.0003, -0.0003, 0.0002, -0.0002]
    folds = _candidate_table({"ls": 0.005}, noise)
    (t,) = paired_tests(folds, "plain", "m", 0.25, margin=0.01)
    assert t.ci[0] > 0 and t.ci[1] < 0.01 and t.decision == "better"
    rec = decide([t], "plain", "m", {"plain": 0.9, "ls": 0.905}, "2x3", margin=0.01)
    assert "smaller than the ±0.01 margin of practical equivalence" in rec["text"]


def test_fewer_than_five_degrees_of_freedom_decide_nothing():
    folds = {"ce": [{"f1": v} for v in A[:4]], "ls": [{"f1": v + 0.05} for v in A[:4]]}
    (t,) = paired_tests(folds, "ce", "f1", 0.25, margin=0.01)
    assert t.p_value == 0.0 and t.decision == "undecided"
    rec = decide([t], "ce", "f1", {"ce": 0.8, "ls": 0.85}, "2x2", margin=0.01)
    assert rec["decision"] == "undecided" and rec["loss"] == "ce"
    assert rec["text"].startswith("No verdict at this design: 4 test folds (2x2) give 3 degrees of freedom")


def test_forecast_of_the_repeats_that_would_decide():
    # mean 0.012, sd 0.01, rho 0.25, 10 folds now, 5 a repeat: the 95% half-width
    # t_{J-1} * sqrt(1/J + 0.25) * 0.01 is 0.0121 at J = 15 (t_14 = 2.145) and 0.0115 at J = 20
    # (t_19 = 2.093): under 0.012 after 2 more repeats
    post = Posterior(0.012, math.sqrt((1 / 10 + 0.25) * 1e-4), 9, 0.01)
    assert repeats_to_decide(post, 0.95, 0.0, 0.25, 5) == 2
    # a difference of 0.001 with that noise: the correction's floor (t * sqrt(0.25) * sd) is
    # never under it, however many repeats
    assert repeats_to_decide(Posterior(0.001, 0.006, 9, 0.01), 0.95, 0.0, 0.25, 5) is None


def test_a_trade_off_between_main_metrics_is_named():
    # class weights on an imbalanced target: balanced accuracy up (undecided: noisy), macro-F1
    # down on every fold (decided worse); and a second data set where balanced accuracy is decided
    noisy = [0.09, -0.03, 0.12, -0.02, 0.1, 0.0]  # mean +0.043, crosses 0
    sure = [0.06, 0.05, 0.07, 0.05, 0.06, 0.05]
    worse_f1 = [-0.03, -0.04, -0.03, -0.035, -0.03, -0.04]
    for gains, decision in ((noisy, "undecided"), (sure, "better")):
        folds = {
            "ce": [{"bacc": 0.7, "f1": 0.8} for _ in range(6)],
            "cw": [{"bacc": 0.7 + g, "f1": 0.8 + w} for g, w in zip(gains, worse_f1)],
        }
        tests = paired_tests(folds, "ce", "bacc", 0.25, margin=0.01, folds_per_repeat=3)
        others = {"f1": paired_tests(folds, "ce", "f1", 0.25, margin=0.01, folds_per_repeat=3)}
        assert tests[0].decision == decision and others["f1"][0].decision == "worse"
        means = {"ce": 0.7, "cw": 0.7 + sum(gains) / 6}
        text = decide(tests, "ce", "bacc", means, "2x3", margin=0.01, folds_per_repeat=3, others=others)["text"]
        if decision == "better":
            assert text.startswith("Use cw: better than ce on bacc")
            assert "But on f1 it is worse (-0.034 [" in text and "the two metrics disagree" in text
        else:
            assert text.startswith("Undecided: the data cannot tell cw (")
            assert "On f1, cw is decided worse (-0.034 [" in text
            assert "a likely trade-off (better on bacc, not decided yet, worse on f1)" in text


@pytest.mark.parametrize("seed", range(3))
def test_calibration_error_is_torchmetrics(seed):
    import torch
    import torchmetrics.functional.classification as C

    from losskit.app.compare.metrics import calibration_error

    g = torch.Generator().manual_seed(seed)
    p = torch.rand(500, generator=g)
    p[:5] = torch.tensor([0.0, 1.0, 1.0, 0.5, 1 / 15])  # the edges: 0, exactly 1, a bin boundary
    y = (torch.rand(500, generator=g) < p).long()
    ref = C.binary_calibration_error(p, y, n_bins=15, norm="l1")
    assert calibration_error(p, y) == pytest.approx(float(ref), abs=1e-6)
    probs = torch.softmax(3 * torch.randn(400, 7, generator=g), 1)
    t = torch.randint(0, 7, (400,), generator=g)
    ref = C.multiclass_calibration_error(probs, t, 7, n_bins=15, norm="l1")
    conf, hit = probs.max(1)[0], (probs.argmax(1) == t).float()
    assert calibration_error(conf, hit) == pytest.approx(float(ref), abs=1e-6)
