"""The numbers a comparison reports: each arm's learning rate chosen on validation, the mean and spread over seeds,
and the paired margin between two arms with its 95% t-interval.

Seeds pair the arms: seed s gives both the same new head, data order and dropout, so the margin of seed s compares
two runs that differ only in the encoder's starting weights. The interval is Student's t over the per-seed
margins (n seeds, n - 1 degrees of freedom): `mean ± t(0.975, n-1) · sd / sqrt(n)`. A margin is "significant"
when that interval leaves out 0, "within noise" when it holds 0; with one seed there is no interval.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence


def mean_and_sd(values: Sequence[float]) -> tuple[float, float | None]:
    """The mean and the sample standard deviation (n - 1), None for one value."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def choose_learning_rate(validation: Mapping[float, Sequence[float]]) -> float:
    """The learning rate whose runs have the best mean validation score over seeds (every main metric of
    minibert's tasks is higher-is-better); the first in grid order on a tie. A NaN score (a correlation of
    constant predictions) counts as the worst."""
    def mean(rate: float) -> float:
        scores = validation[rate]
        value = statistics.fmean(scores)
        return -math.inf if math.isnan(value) else value
    return max(validation, key=mean)


@dataclass(frozen=True)
class Margin:
    """Arm A minus arm B, paired by seed."""
    per_seed: list[float]
    mean: float
    sd: float | None
    low: float | None  # the 95% t-interval of the mean; None with one seed
    high: float | None
    every_seed_positive: bool

    @property
    def verdict(self) -> str:
        if self.low is None:
            return "one seed: no interval"
        return "significant" if self.low > 0 or self.high < 0 else "within noise"

    def as_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}


def paired_margin(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Margin:
    """Per-seed differences a[i] - b[i], their mean, sd and `level` t-interval."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired_margin needs as many values on each side (got {len(a)} and {len(b)})")
    differences = [x - y for x, y in zip(a, b)]
    mean, sd = mean_and_sd(differences)
    low = high = None
    if sd is not None:
        half = t_quantile((1 + level) / 2, len(differences) - 1) * sd / math.sqrt(len(differences))
        low, high = mean - half, mean + half
    return Margin(differences, mean, sd, low, high, all(d > 0 for d in differences))


# -- Student's t, without scipy ----------------------------------------------------------------------------------
def t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom: 1 - I_x(df/2, 1/2) / 2 for t > 0, x = df/(df+t^2),
    I the regularised incomplete beta function."""
    tail = 0.5 * incomplete_beta(df / 2, 0.5, df / (df + t * t))
    return 1 - tail if t > 0 else tail


def t_quantile(p: float, df: int) -> float:
    """The t such that P(T <= t) = p (0.5 < p < 1), by bisection on t_cdf, to 1e-10."""
    if not 0.5 < p < 1 or df < 1:
        raise ValueError(f"t_quantile: needs 0.5 < p < 1 and df >= 1, got p={p}, df={df}")
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2
    while high - low > 1e-10:
        middle = (low + high) / 2
        low, high = (middle, high) if t_cdf(middle, df) < p else (low, middle)
    return (low + high) / 2


def incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) by its continued fraction (Numerical Recipes, 3rd ed., section 6.4), using the symmetry
    I_x(a, b) = 1 - I_{1-x}(b, a) where the fraction converges slowly."""
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(a, b, x) / a
    return 1 - front * _beta_fraction(b, a, 1 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    """Lentz's method for the continued fraction of the incomplete beta function."""
    tiny = 1e-300
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return result
