"""The statistics of ``losskit compare`` against hand-computed values and scipy."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from losskit.app.compare.stats import corrected_t_test, holm, mean_ci
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


def test_verdict_names_a_significantly_better_loss():
    folds = {
        "mse": [{"mae": v} for v in (1.00, 1.10, 0.95, 1.05, 1.02, 0.98)],
        "l1": [{"mae": v - 0.3} for v in (1.00, 1.10, 0.95, 1.05, 1.02, 0.98)],
        "huber": [
            {"mae": v - d} for v, d in zip((1.00, 1.10, 0.95, 1.05, 1.02, 0.98), (0.1, -0.1, 0.05, 0.0, -0.05, 0.02))
        ],
    }
    tests = paired_tests(folds, "mse", "mae", 0.25)
    means = {n: sum(f["mae"] for f in fs) / 6 for n, fs in folds.items()}
    rec = decide(tests, "mse", "mae", means, "2x3")
    assert rec["loss"] == "l1" and rec["significant"] and rec["versus"] == "mse" and rec["metric"] == "mae"
    assert rec["p_value"] < 0.05 and rec["text"].startswith("Use l1: its mae is 0.3 lower than mse's")
    assert not next(t for t in tests if t.loss == "huber").significant


def test_verdict_without_significance_recommends_the_plain_loss():
    folds = {"ce": [{"f1": v} for v in A], "focal": [{"f1": v} for v in B[::-1]]}
    tests = paired_tests(folds, "ce", "f1", 0.25)
    rec = decide(tests, "ce", "f1", {"ce": 0.8, "focal": 0.8}, "2x3")
    assert rec["loss"] == "ce" and not rec["significant"]
    assert rec["text"].startswith("Use ce: no significant difference on f1")


def test_a_worse_loss_is_never_recommended():
    folds = {"ce": [{"f1": v} for v in A], "bad": [{"f1": v - 0.2} for v in A]}
    tests = paired_tests(folds, "ce", "f1", 0.25)
    assert tests[0].p_value < 0.001 and not tests[0].significant
    assert decide(tests, "ce", "f1", {"ce": 0.8, "bad": 0.6}, "2x3")["loss"] == "ce"
