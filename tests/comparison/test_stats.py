"""The comparison's numbers on known values: Student's t quantiles (against scipy), paired margins with their
95% interval and verdict, and the learning-rate choice."""

from __future__ import annotations

import math

import pytest

from minibert.comparison.stats import choose_learning_rate, mean_and_sd, paired_margin, t_cdf, t_quantile


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 9, 19, 30, 100])
def test_t_quantiles_match_scipy(df):
    stats = pytest.importorskip("scipy.stats")
    for p in (0.9, 0.975, 0.995):
        assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), abs=1e-8), f"t({p}, {df}) is off"
    for t in (-3.0, -0.5, 0.0, 1.2, 7.0):
        assert t_cdf(t, df) == pytest.approx(stats.t.cdf(t, df), abs=1e-12), f"P(T <= {t}) with df {df} is off"


def test_t_quantile_known_values():
    assert t_quantile(0.975, 2) == pytest.approx(4.302652730, abs=1e-8), "t(0.975, 2) from the table"
    assert t_quantile(0.975, 1) == pytest.approx(12.70620474, abs=1e-7), "t(0.975, 1) from the table"


def test_paired_margin_within_noise():
    margin = paired_margin([0.80, 0.82, 0.81], [0.78, 0.79, 0.80])
    assert margin.per_seed == pytest.approx([0.02, 0.03, 0.01]), "per-seed differences, a minus b"
    assert margin.mean == pytest.approx(0.02) and margin.sd == pytest.approx(0.01), "mean 0.02, sd 0.01"
    half = 4.302652730 * 0.01 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert (margin.low, margin.high) == pytest.approx((0.02 - half, 0.02 + half)), "the 95% t-interval"
    assert margin.verdict == "within noise", "an interval holding 0 is within noise"
    assert margin.every_seed_positive, "every difference is above 0"


def test_paired_margin_significant_and_negative():
    margin = paired_margin([0.60, 0.61, 0.62, 0.60], [0.70, 0.70, 0.71, 0.70])
    assert margin.high < 0 and margin.verdict == "significant", "an interval below 0 is a significant loss"
    assert not margin.every_seed_positive


def test_pairing_matters():
    """The same values, unpaired, would be noise; paired, each seed moves by the same 0.01."""
    margin = paired_margin([0.50, 0.70, 0.90], [0.49, 0.69, 0.89])
    assert margin.sd == pytest.approx(0.0, abs=1e-12) and margin.verdict == "significant"


def test_one_seed_has_no_interval():
    margin = paired_margin([0.7], [0.6])
    assert margin.low is None and margin.sd is None and margin.verdict == "one seed: no interval"
    assert mean_and_sd([0.7]) == (0.7, None)


def test_learning_rate_choice():
    assert choose_learning_rate({1e-4: [0.6, 0.7], 3e-4: [0.7, 0.72], 1e-3: [0.5, 0.9]}) == 3e-4, \
        "the best mean over seeds (0.71) wins, not the best single seed (0.9)"
    assert choose_learning_rate({1e-4: [0.7, 0.7], 3e-4: [0.7, 0.7]}) == 1e-4, "a tie keeps the first in the grid"
    assert choose_learning_rate({1e-4: [0.6, 0.6], 1e-3: [math.nan, 0.99]}) == 1e-4, \
        "a rate with a diverged seed (NaN) is never chosen over one that trained"
