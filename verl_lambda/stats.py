"""The statistics of the multi-seed study: paired tests with a multiple-comparison correction, and bands that stay
inside what a metric can be.

Pure Python (no SciPy): Student's t distribution from the regularized incomplete beta function, Holm's step-down
adjustment of a family of p-values, Bonferroni-simultaneous t-intervals for the same family, and percentile
bootstrap bands of a per-step mean over seeds, clipped to the metric's range, with gaps (None) where a value is
undefined (e.g. a correlation when every length in a group is equal).

Layer 2 (foundations).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence


def _incomplete_beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (modified Lentz), for x < (a + 1) / (a + b + 2) where it converges fast."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < eps:
            break
    return result


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _incomplete_beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _incomplete_beta_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * regularized_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (bisection on ``t_cdf``; exact to about 1e-10)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2.0
    for _ in range(200):
        middle = (low + high) / 2.0
        low, high = (middle, high) if t_cdf(middle, df) < p else (low, middle)
        if high - low < 1e-12 * max(1.0, high):
            break
    return (low + high) / 2.0


def paired_p_value(differences: Sequence[float]) -> float:
    """Two-sided p-value of the paired t-test that the mean of ``differences`` (one per seed) is 0.

    1 for fewer than two differences; 0 when all are equal and non-zero (no spread, a certain sign)."""
    n = len(differences)
    if n < 2:
        return 1.0
    mean = sum(differences) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1))
    if sd == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    return 2.0 * (1.0 - t_cdf(abs(mean) / (sd / math.sqrt(n)), n - 1))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: the family's p-values, each made valid for the whole family (family-wise error
    rate), in the input's order. Sorted ascending, the k-th smallest (from 0) is multiplied by m - k, and each is
    at least its predecessor's adjusted value; capped at 1."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def simultaneous_interval(values: Sequence[float], family: int, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``values`` and its Bonferroni-simultaneous t-interval: each of ``family`` intervals at level
    ``1 - (1 - level) / family``, so that all of them hold together with probability at least ``level``. The
    interval is the mean itself for a single value."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, mean, mean
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(1.0 - (1.0 - level) / (2.0 * family), n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def bootstrap_band(
    series: Sequence[Sequence[float | None]],
    lower: float = -math.inf,
    upper: float = math.inf,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> list[tuple[float, float, float] | None]:
    """Per step, the mean over runs of ``series`` (one sequence per seed) and its percentile bootstrap band.

    A None or NaN value (undefined at that step) is left out of its step; a step where no run has a value is None,
    drawn as a gap. The mean and the band are clipped to [``lower``, ``upper``], the metric's possible range (the
    bootstrap mean of values inside it stays inside it; the clip only guards against rounding). Deterministic for a
    given ``seed``.
    """
    rng = random.Random(seed)
    steps = max((len(s) for s in series), default=0)
    band: list[tuple[float, float, float] | None] = []
    for step in range(steps):
        values = [s[step] for s in series if step < len(s) and s[step] is not None and not math.isnan(s[step])]
        if not values:
            band.append(None)
            continue
        mean = sum(values) / len(values)
        means = sorted(sum(rng.choices(values, k=len(values))) / len(values) for _ in range(resamples))
        tail = (1.0 - level) / 2.0
        low, high = means[int(tail * (resamples - 1))], means[math.ceil((1.0 - tail) * (resamples - 1))]

        def clip(x: float) -> float:
            return min(max(x, lower), upper)

        band.append((clip(mean), clip(low), clip(high)))
    return band
