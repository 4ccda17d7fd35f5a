"""The study's statistics (verl_lambda.stats) against closed forms, published quantiles and worked examples."""

import math
import statistics

import pytest

from verl_lambda import stats
from verl_lambda.study import interval

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom, as printed in statistics tables.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
    2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


@pytest.mark.parametrize("t", [-30.0, -2.5, -0.3, 0.0, 0.7, 4.0, 250.0])
def test_t_cdf_matches_the_closed_forms_of_one_and_two_degrees_of_freedom(t):
    assert stats.t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
    assert stats.t_cdf(t, 2) == pytest.approx(0.5 + t / (2.0 * math.sqrt(2.0 + t * t)), abs=1e-12)


def test_t_quantiles_match_the_published_table():
    # two-sided 95% quantiles for 1..30 degrees of freedom, to the table's 3 decimals
    for df, want in enumerate(_T975, start=1):
        assert stats.t_quantile(0.975, df) == pytest.approx(want, abs=1.5e-3), df
    assert stats.t_quantile(0.975, 4) == pytest.approx(2.776445, abs=1e-6)
    assert stats.t_quantile(0.995, 10) == pytest.approx(3.169273, abs=1e-6)
    assert stats.t_quantile(0.025, 4) == -stats.t_quantile(0.975, 4)
    assert stats.t_quantile(0.975, 1e6) == pytest.approx(1.959966, abs=1e-5)  # the normal limit
    with pytest.raises(ValueError):
        stats.t_quantile(1.0, 3)


def test_paired_p_value():
    # differences whose t statistic is the 97.5% quantile of t with 4 df have p = 0.05
    q = stats.t_quantile(0.975, 4)
    base = [-2.0, -1.0, 0.0, 1.0, 2.0]  # sd sqrt(2.5), se sqrt(0.5)
    shift = q * math.sqrt(0.5)
    assert stats.paired_p_value([d + shift for d in base]) == pytest.approx(0.05, abs=1e-9)
    assert stats.paired_p_value([d - shift for d in base]) == pytest.approx(0.05, abs=1e-9)
    assert stats.paired_p_value(base) == pytest.approx(1.0)
    assert stats.paired_p_value([3.0]) == 1.0
    assert stats.paired_p_value([0.5, 0.5, 0.5]) == 0.0 and stats.paired_p_value([0.0, 0.0]) == 1.0


def test_holm_adjusts_step_down_and_keeps_the_order():
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == [1.0, 1.0]
    assert stats.holm([]) == []
    # a family of 18: the two smallest p-values 0.008 and 0.012 become 0.144 and 0.204
    family = [0.008, 0.012] + [0.3 + 0.01 * k for k in range(16)]
    adjusted = stats.holm(family)
    assert adjusted[:2] == pytest.approx([0.144, 0.204]) and all(a >= p for a, p in zip(adjusted, family, strict=True))


def test_a_simultaneous_interval_of_a_family_of_one_is_the_ordinary_interval_and_widens_with_the_family():
    values = [0.31, 0.42, 0.29, 0.38, 0.35]
    mean, low, high = stats.simultaneous_interval(values, family=1)
    half = _T975[3] * statistics.stdev(values) / math.sqrt(5)  # the table's t(0.975, 4)
    assert mean == pytest.approx(statistics.fmean(values))
    assert (low, high) == pytest.approx((mean - half, mean + half), abs=1e-4)
    assert interval(values) == (mean, low, high)  # the study's per-arm interval
    _, _, high18 = stats.simultaneous_interval(values, family=18)
    half, half18 = high - mean, high18 - mean
    assert half18 / half == pytest.approx(stats.t_quantile(1 - 0.05 / 36, 4) / stats.t_quantile(0.975, 4))
    assert half18 > 2 * half
    assert stats.simultaneous_interval([0.4], family=3) == (0.4, 0.4, 0.4)


def test_bootstrap_bands_stay_in_range_leave_gaps_and_are_deterministic():
    series = [[0.0, 1.0, None, 0.2], [0.0, 1.0, float("nan"), 0.9], [0.1, 0.98]]
    band = stats.bootstrap_band(series, lower=0.0, upper=1.0, resamples=500, seed=3)
    assert band[2] is None  # no run has a value: a gap, not 0
    assert len(band) == 4 and band == stats.bootstrap_band(series, lower=0.0, upper=1.0, resamples=500, seed=3)
    for mean, low, high in (b for b in band if b is not None):
        assert 0.0 <= low <= mean <= high <= 1.0
    assert band[0][0] == pytest.approx(0.1 / 3) and band[3][0] == pytest.approx(0.55)
    assert band[1][2] == 1.0  # at most the largest value, inside the range
    one = stats.bootstrap_band([[0.7]])
    assert one == [(0.7, 0.7, 0.7)]
    # a correlation band never leaves [-1, 1] even for values at the edge
    corr = stats.bootstrap_band([[1.0], [0.99], [-1.0]], lower=-1.0, upper=1.0, resamples=200)
    assert -1.0 <= corr[0][1] <= corr[0][2] <= 1.0
