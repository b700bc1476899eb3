"""The statistics of an A/B test's results: pure functions over counts and sums.

- conversion: Wilson 95 % interval (``statsmodels``' ``proportion_confint``, method wilson);
- revenue per visitor: mean with a 95 % normal interval (sample standard deviation);
- a variant against the control: the absolute lift of conversion with a 95 % Wald interval
  (unpooled standard error) and the two-sided p-value of the pooled two-proportion z-test; the
  lift of revenue per visitor with Welch's t interval and two-sided p-value.

Undefined quantities (no visitor; fewer than two visitors for a variance) are None.  When both
groups have zero variance the interval collapses to the difference and the p-value is 1 when
they are equal, else 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats
from statsmodels.stats.proportion import proportion_confint

LEVEL = 0.95
Z = float(stats.norm.ppf(0.5 + LEVEL / 2))


@dataclass(frozen=True)
class Sample:
    """One variant's per-visitor revenue: visitors, the sum and the sum of squares."""

    n: int
    total: float
    sumsq: float

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    @property
    def var(self) -> float | None:
        if self.n < 2:
            return None
        return max(0.0, (self.sumsq - self.n * self.mean**2) / (self.n - 1))


@dataclass(frozen=True)
class Lift:
    value: float
    ci: tuple[float, float] | None
    p_value: float | None


def wilson(count: int, n: int) -> tuple[float, float] | None:
    if n <= 0:
        return None
    lo, hi = proportion_confint(count, n, alpha=1 - LEVEL, method="wilson")
    return float(lo), float(hi)


def mean_ci(sample: Sample) -> tuple[float, float] | None:
    var = sample.var
    if var is None:
        return None
    half = Z * math.sqrt(var / sample.n)
    return sample.mean - half, sample.mean + half


def proportion_lift(c1: int, n1: int, c0: int, n0: int) -> Lift | None:
    """Variant (c1 of n1) minus control (c0 of n0)."""
    if n1 <= 0 or n0 <= 0:
        return None
    p1, p0 = c1 / n1, c0 / n0
    diff = p1 - p0
    se = math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    pooled = (c1 + c0) / (n1 + n0)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    ci = (diff - Z * se, diff + Z * se)
    if se0 == 0:
        return Lift(diff, ci, 1.0)  # both at 0 % or both at 100 %: no difference
    p = 2 * float(stats.norm.sf(abs(diff) / se0))
    return Lift(diff, ci, p)


def welch_lift(variant: Sample, ctl: Sample) -> Lift | None:
    """Difference of means with Welch's t interval and two-sided p-value."""
    v1, v0 = variant.var, ctl.var
    diff = variant.mean - ctl.mean
    if v1 is None or v0 is None:
        return Lift(diff, None, None) if variant.n and ctl.n else None
    a, b = v1 / variant.n, v0 / ctl.n
    se = math.sqrt(a + b)
    if se == 0:
        return Lift(diff, (diff, diff), 1.0 if diff == 0 else 0.0)
    df = (a + b) ** 2 / (a**2 / (variant.n - 1) + b**2 / (ctl.n - 1))
    t = float(stats.t.ppf(0.5 + LEVEL / 2, df))
    p = 2 * float(stats.t.sf(abs(diff) / se, df))
    return Lift(diff, (diff - t * se, diff + t * se), p)
