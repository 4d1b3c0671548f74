"""Selection under noise: estimates from seeds, intervals, and who may replace the parent.

Pure functions. A candidate is better only when its improvement exceeds the 95 % interval of
the difference, with the seed-to-seed spread taken as the largest of the candidate's, the
parent's and the baseline's (measured once per run and fidelity), so two lucky seeds are not
enough.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

Z95 = 1.96


@dataclass(frozen=True)
class Estimate:
    """Mean, spread and count of one candidate's losses at one fidelity."""

    mean: float
    sd: float  # 0.0 with fewer than two values
    n: int


@dataclass(frozen=True)
class Comparison:
    """A candidate against its parent: negative delta is an improvement."""

    delta: float
    ci95: float
    better: bool


def estimate(values: Sequence[float]) -> Estimate | None:
    """The estimate of a list of losses, or None for no values."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    sd = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return Estimate(statistics.fmean(finite), sd, len(finite))


def compare(candidate: Estimate, parent: Estimate, noise_sd: float) -> Comparison:
    """Is the candidate better than the parent beyond the noise?"""
    # the largest spread seen: a change can make training less stable than the baseline is
    sd = max(noise_sd, candidate.sd, parent.sd)
    ci = Z95 * sd * math.sqrt(1 / candidate.n + 1 / parent.n)
    delta = candidate.mean - parent.mean
    return Comparison(delta=delta, ci95=ci, better=delta < -ci)


def promote(screened: Sequence[tuple[str, float]], fraction: float, cap: int) -> list[str]:
    """The best `fraction` of screened candidates (at least one, at most `cap`), best first."""
    ranked = sorted((loss, cid) for cid, loss in screened if math.isfinite(loss))
    keep = min(cap, max(1, math.ceil(fraction * len(ranked)))) if ranked else 0
    return [cid for _, cid in ranked[:keep]]
