"""Statistics across a search: rank correlation, one-sided t-tests and the Holm correction.

Pure functions on lists of losses; no scipy (not a dependency): the Student t tail comes from
the regularised incomplete beta function, evaluated by its continued fraction.

- `spearman`: rank correlation with tied values given their average rank (Pearson on ranks).
- `paired_p` / `welch_p`: the one-sided p-value that `a` is lower than `b` (a kept change
  claims an improvement, a direction: the two-sided value is twice this when below 1/2).
  Paired when both were trained on the same seeds (the seed's shared data order and init
  cancel in the difference); Welch's unequal-variance test otherwise.
- `t95`: the interval's multiplier for a spread estimated from few seeds.
- `holm`: p-values adjusted for the number of comparisons (family-wise error, any dependence).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dreamteam.records import StatTest

_TINY = 1e-300
_EPS = 1e-14


@dataclass(frozen=True)
class PValue:
    """A one-sided p-value, the test that gave it, the number of seeds (pairs) behind it and
    the mean difference it tested (negative: the first is lower)."""

    p: float
    test: StatTest
    n: int
    delta: float


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing the average of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            out[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return out


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rho of paired values; None with fewer than 3 pairs or a constant side."""
    if len(xs) != len(ys):
        raise ValueError("spearman needs pairs: the two lists differ in length")
    if len(xs) < 3:
        return None
    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 500):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + num / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):  # the fraction converges fast on this side
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def t_below(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p for Student's t with `df` degrees of freedom (bisection on
    `t_below`, to about 1e-7: fast enough for the few intervals a generation draws)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be strictly between 0 and 1, not {p}")
    lo, hi = -1.0, 1.0
    while t_below(lo, df) > p:
        lo *= 2.0
    while t_below(hi, df) < p:
        hi *= 2.0
    while hi - lo > 1e-10:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_below(mid, df) < p else (lo, mid)
    return 0.5 * (lo + hi)


def t95(df: float) -> float:
    """The two-sided 95 % multiplier of a standard error estimated with `df` degrees of
    freedom: 12.71 at 1, 4.30 at 2, 2.78 at 4, 1.96 in the limit."""
    return t_quantile(0.975, max(df, 1.0))


def _directional(mean: float, se: float, df: float) -> float:
    """P(T <= mean / se): small when the mean is below zero by many standard errors."""
    if se == 0.0:  # no spread at all: the sign alone decides
        return 0.0 if mean < 0 else 1.0
    return t_below(mean / se, df)


def paired_p(a: Mapping[int, float], b: Mapping[int, float]) -> PValue | None:
    """One-sided paired t-test that `a` is lower than `b` on the seeds both hold (seed ->
    loss); None with fewer than 2 shared seeds."""
    shared = sorted(set(a) & set(b))
    if len(shared) < 2:
        return None
    diffs = [a[s] - b[s] for s in shared]
    se = statistics.stdev(diffs) / math.sqrt(len(diffs))
    mean = statistics.fmean(diffs)
    return PValue(_directional(mean, se, len(diffs) - 1), StatTest.PAIRED, len(diffs), mean)


def welch_p(a: Sequence[float], b: Sequence[float]) -> PValue | None:
    """One-sided Welch t-test that `a`'s mean is lower than `b`'s; None with fewer than 2
    values on a side."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    mean, n = statistics.fmean(a) - statistics.fmean(b), min(len(a), len(b))
    if se == 0.0:
        return PValue(_directional(mean, 0.0, 1.0), StatTest.WELCH, n, mean)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return PValue(_directional(mean, se, df), StatTest.WELCH, n, mean)


def improvement_p(a: Mapping[int, float], b: Mapping[int, float]) -> PValue | None:
    """The p-value that `a` (seed -> loss) is lower than `b`: paired on their shared seeds
    when at least 2 are shared, else Welch on all of each."""
    return paired_p(a, b) or welch_p(list(a.values()), list(b.values()))


def holm(ps: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of `ps`, in their order: the smallest p is multiplied by
    the number of comparisons m, the next by m - 1, ..., each at least the one before."""
    m = len(ps)
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda k: ps[k])):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        adjusted[i] = running
    return adjusted
