"""Selection under noise: estimates from seeds, intervals, and who may replace the parent.

Pure functions. A candidate is better only when its improvement exceeds the 95 % interval of
the difference, with the seed-to-seed spread taken as the largest of the candidate's, the
parent's and the baseline's (measured once per run and fidelity), so two lucky seeds are not
enough. The interval is Student's t on the seeds behind the two means (n + m - 2 degrees of
freedom, at least 1), not the normal's 1.96: a spread estimated from two or three seeds is
itself uncertain, and 1.96 would call a difference beyond the noise about twice too often.

The objective decides what "better" means: the harness's validation loss, bits per byte, the
loss plus a price per training minute, or a Pareto rule over (loss, time). The elite is the
top few confirmed candidates; a parent that an elite member beats beyond the noise gives way
to it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from dreamteam.select.stats import t95


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
    ci = t95(candidate.n + parent.n - 2) * sd * math.sqrt(1 / candidate.n + 1 / parent.n)
    delta = candidate.mean - parent.mean
    return Comparison(delta=delta, ci95=ci, better=delta < -ci)


def promote(screened: Sequence[tuple[str, float]], fraction: float, cap: int) -> list[str]:
    """The best `fraction` of screened candidates (at least one, at most `cap`), best first."""
    ranked = sorted((loss, cid) for cid, loss in screened if math.isfinite(loss))
    keep = min(cap, max(1, math.ceil(fraction * len(ranked)))) if ranked else 0
    return [cid for _, cid in ranked[:keep]]


def pareto_front(points: Sequence[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """The (seconds, loss, id) points no other point beats on both time and loss, fastest first."""
    front: list[tuple[float, float, str]] = []
    for seconds, loss, cid in sorted(points):
        if not front or loss < front[-1][1]:
            front.append((seconds, loss, cid))
    return front


# -- objectives ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Objective:
    """What selection minimises, and the knobs of the time-aware objectives."""

    name: str = "loss"  # an ObjectiveName
    time_weight: float = 0.0  # loss+time: nats charged per training minute
    time_tolerance: float = (
        0.1  # pareto: slower by up to this fraction still counts as "not slower"
    )


@dataclass(frozen=True)
class Sample:
    """One seed's measurement of a candidate."""

    loss: float
    bpb: float | None
    seconds: float  # training wall time


@dataclass(frozen=True)
class Measured:
    """A candidate at one fidelity: the objective, the loss and the training minutes."""

    value: Estimate  # what ranks and compares: the objective per seed
    loss: Estimate
    minutes: Estimate


@dataclass(frozen=True)
class Verdict:
    """A candidate against its parent under an objective: negative deltas are improvements."""

    better: bool
    delta: float  # the objective's change (pareto: the loss's)
    ci95: float
    minutes_delta: float
    minutes_ci95: float


def objective_value(objective: Objective, sample: Sample) -> float:
    """The objective of one seed; pareto ranks by loss (time enters only through `judge`)."""
    if objective.name == "bpb":
        return sample.bpb if sample.bpb is not None else math.nan
    if objective.name == "loss+time":
        # the time noise is not modelled apart: it is estimated from the seeds, because the
        # combined value's spread across seeds includes the spread of the training time
        return sample.loss + objective.time_weight * sample.seconds / 60
    return sample.loss


def measure(objective: Objective, samples: Sequence[Sample]) -> Measured | None:
    """The estimates of a candidate's seeds under an objective; None when any is unusable."""
    value = estimate([objective_value(objective, s) for s in samples])
    loss = estimate([s.loss for s in samples])
    minutes = estimate([s.seconds / 60 for s in samples])
    if value is None or loss is None or minutes is None or value.n != len(samples):
        return None
    return Measured(value, loss, minutes)


def judge(objective: Objective, candidate: Measured, parent: Measured, noise: Measured) -> Verdict:
    """Is the candidate better than the parent beyond the noise (the baseline's spread)?

    Scalar objectives compare their per-seed values. Pareto: better when the loss improves
    beyond the noise and the time is not slower beyond max(its interval, the tolerance), or
    when the loss is equal within the noise and the time is faster beyond its interval.
    """
    time = compare(candidate.minutes, parent.minutes, noise.minutes.sd)
    if objective.name != "pareto":
        value = compare(candidate.value, parent.value, noise.value.sd)
        return Verdict(value.better, value.delta, value.ci95, time.delta, time.ci95)
    loss = compare(candidate.loss, parent.loss, noise.loss.sd)
    slack = max(time.ci95, objective.time_tolerance * parent.minutes.mean)
    not_slower = time.delta <= slack
    same_loss = abs(loss.delta) <= loss.ci95
    better = (loss.better and not_slower) or (same_loss and time.better)
    return Verdict(better, loss.delta, loss.ci95, time.delta, time.ci95)


def close_call(verdict: Verdict) -> bool:
    """Not better beyond the noise, yet not worse beyond it either: the interval of the
    difference straddles the threshold, and more seeds may settle it."""
    return not verdict.better and verdict.delta <= verdict.ci95


def pick_best(
    objective: Objective,
    parent: Measured,
    finalists: Sequence[tuple[str, Measured]],
    noise: Measured,
) -> tuple[str, Verdict] | None:
    """The finalist that beats the parent by the most (objective, then time), if any does."""
    wins = [(cid, v) for cid, m in finalists if (v := judge(objective, m, parent, noise)).better]
    return min(wins, key=lambda w: (w[1].delta, w[1].minutes_delta, w[0]), default=None)


# -- the elite ----------------------------------------------------------------------------
def rank_elite(confirmed: Sequence[tuple[str, Measured]], k: int) -> list[str]:
    """The top k confirmed candidates by objective mean, then time, then id: deterministic."""
    ranked = sorted(confirmed, key=lambda c: (c[1].value.mean, c[1].minutes.mean, c[0]))
    return [cid for cid, _ in ranked[: max(0, k)]]


def rescue(
    objective: Objective,
    parent: tuple[str, Measured | None],
    elite: Sequence[tuple[str, Measured]],
    noise: Measured,
) -> str | None:
    """The elite member (in rank order) that should replace the parent, if one should.

    A parent whose measurements failed (None) gives way to the best other member; otherwise
    only a member that beats it beyond the noise does.
    """
    parent_id, measured = parent
    for cid, member in elite:
        if cid == parent_id:
            continue
        if measured is None or judge(objective, member, measured, noise).better:
            return cid
    return None
