"""The held-out validation split and the split-conformal threshold ``fpr:A``."""

import math

import numpy as np
import pytest

from gonomaly.errors import GonomalyError
from gonomaly.thresholds import ThresholdRule, conformal_rank
from gonomaly.validation import ValidationSplit, validation_size


@pytest.mark.parametrize("n, fraction, expected", [
    (1000, 0.15, 150), (209, 0.15, 32), (100, 0.15, 20), (30, 0.15, 15), (3, 0.15, 1),
    (1, 0.15, 0), (1000, 0.0, 0), (10, 0.5, 5), (2, 0.5, 1),
])
def test_validation_size_rule(n, fraction, expected):
    assert validation_size(n, fraction) == expected


@pytest.mark.parametrize("n", [2, 25, 209, 1000])
def test_split_is_disjoint_complete_and_deterministic_per_seed(n):
    a, b = ValidationSplit.draw(n, 0.15, seed=3), ValidationSplit.draw(n, 0.15, seed=3)
    np.testing.assert_array_equal(a.validation, b.validation)
    assert not set(a.train) & set(a.validation)
    assert sorted(set(a.train) | set(a.validation)) == list(range(n))
    assert len(a.validation) == validation_size(n, 0.15)
    if n >= 25:
        assert not np.array_equal(a.validation, ValidationSplit.draw(n, 0.15, seed=4).validation)
    assert ValidationSplit.draw(n, 0.15, seed=-5).validation.size == len(a.validation)


@pytest.mark.parametrize("n, alpha, rank", [
    (19, 0.05, 19), (39, 0.05, 38), (99, 0.1, 90), (20, 0.05, 20), (18, 0.05, 19), (4, 0.5, 3),
])
def test_conformal_rank_by_hand(n, alpha, rank):
    # ceil((n + 1)(1 - alpha)), worked out by hand: e.g. 40 x 0.95 = 38, 21 x 0.95 = 19.95 -> 20.
    assert conformal_rank(n, alpha) == rank


def test_fpr_threshold_is_the_conformal_order_statistic():
    scores = np.random.default_rng(0).permutation(np.arange(1.0, 40.0))  # 1..39 shuffled
    calibration = ThresholdRule.parse("fpr:0.05").calibrate(scores)
    assert calibration.value == 38.0 and calibration.guaranteed and not calibration.note
    assert calibration.expected_false_alarm_rate == pytest.approx(2 / 40)


def test_fpr_too_few_images_takes_the_maximum_and_says_so(caplog):
    scores = np.arange(1.0, 19.0)  # 18 scores: fpr:0.05 needs 19
    with caplog.at_level("WARNING", logger="gonomaly"):
        calibration = ThresholdRule.parse("fpr:0.05").calibrate(scores)
    assert calibration.value == 18.0
    assert calibration.expected_false_alarm_rate == pytest.approx(1 / 19)
    assert "too few" in calibration.note and "too few" in caplog.text
    assert calibration.record()["note"] == calibration.note


@pytest.mark.parametrize("n, alpha", [(50, 0.1), (200, 0.05), (30, 0.2)])
def test_fpr_holds_on_fresh_normal_draws(n, alpha):
    """Over many calibrations, new normal scores exceed the threshold at rate <= alpha (within
    three standard errors of the pooled estimate)."""
    rng = np.random.default_rng(1)
    rule = ThresholdRule.parse(f"fpr:{alpha}")
    trials, fresh = 2000, 100
    rates = [(rng.standard_normal(fresh) > rule.fit(rng.standard_normal(n))).mean() for _ in range(trials)]
    # Exchangeability makes each rate's mean exactly (n + 1 - k) / (n + 1); rates of one
    # calibration are correlated, so the error uses the spread across calibrations.
    bound = (n + 1 - conformal_rank(n, alpha)) / (n + 1)
    assert bound <= alpha
    assert np.mean(rates) <= alpha + 3 * np.std(rates) / math.sqrt(trials)
    assert np.mean(rates) == pytest.approx(bound, abs=3 * np.std(rates) / math.sqrt(trials))


def test_threshold_rules_parse_and_refuse():
    assert str(ThresholdRule.parse("fpr")) == "fpr:0.05"
    for bad in ("fpr:0", "fpr:1", "fpr:x", "auroc:0.5"):
        with pytest.raises(GonomalyError, match="threshold"):
            ThresholdRule.parse(bad)
    other = ThresholdRule.parse("mean-std:2").calibrate(np.arange(10.0))
    assert not other.guaranteed and other.expected_false_alarm_rate == pytest.approx(0.0)
