"""Selection under noise: only improvements beyond the interval count."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from dreamteam.select.rules import Estimate, compare, estimate, promote


def test_estimate_of_losses() -> None:
    e = estimate([5.0, 5.2])
    assert e is not None and math.isclose(e.mean, 5.1) and e.n == 2
    assert math.isclose(e.sd, 0.1414213, rel_tol=1e-5)
    assert estimate([]) is None


def test_small_gain_inside_the_noise_is_not_better() -> None:
    parent, cand = Estimate(5.10, 0.04, 2), Estimate(5.08, 0.04, 2)
    result = compare(cand, parent, noise_sd=0.04)
    assert not result.better and result.delta < 0


def test_large_gain_beyond_the_noise_is_better() -> None:
    result = compare(Estimate(4.80, 0.03, 2), Estimate(5.10, 0.04, 2), noise_sd=0.04)
    # 2 + 2 seeds: Student t at 2 degrees of freedom (4.303), not the normal 1.96
    assert result.better and math.isclose(result.ci95, 4.302653 * 0.04, rel_tol=1e-6)


@given(
    st.lists(st.tuples(st.text(min_size=1, max_size=4), st.floats(0, 20)), max_size=30),
    st.floats(0.01, 1.0),
    st.integers(1, 5),
)
def test_promote_keeps_the_best_within_the_cap(screened, fraction, cap) -> None:
    chosen = promote(screened, fraction, cap)
    assert len(chosen) <= cap
    if screened:
        assert len(chosen) >= 1
        best = min(loss for _, loss in screened)
        assert dict((c, loss) for c, loss in screened)[chosen[0]] == best or any(
            loss == best for c, loss in screened if c == chosen[0]
        )


# -- objectives, the elite ------------------------------------------------------------------
from dreamteam.select.rules import (  # noqa: E402
    Measured,
    Objective,
    Sample,
    judge,
    measure,
    objective_value,
    pareto_front,
    pick_best,
    rank_elite,
    rescue,
)

LOSS, PARETO = Objective("loss"), Objective("pareto", time_tolerance=0.1)


def _m(loss: float, minutes: float, sd: float = 0.01, n: int = 2) -> Measured:
    """A measurement with the given means: loss spread `sd`, time spread 1 %."""
    est = Estimate(loss, sd, n)
    return Measured(est, est, Estimate(minutes, minutes * 0.01, n))


NOISE = _m(5.0, 1.0)


def test_objective_values_per_seed() -> None:
    s = Sample(loss=5.0, bpb=2.0, seconds=120.0)
    assert objective_value(Objective("loss"), s) == 5.0
    assert objective_value(Objective("bpb"), s) == 2.0
    assert objective_value(Objective("loss+time", time_weight=0.1), s) == 5.0 + 0.1 * 2
    assert objective_value(PARETO, s) == 5.0  # pareto ranks by loss


def test_measure_needs_every_seed_usable() -> None:
    ok = measure(Objective("bpb"), [Sample(5.0, 2.0, 60), Sample(5.1, 2.1, 66)])
    assert ok is not None and math.isclose(ok.minutes.mean, 1.05) and ok.value.n == 2
    assert measure(Objective("bpb"), [Sample(5.0, 2.0, 60), Sample(5.1, None, 60)]) is None


def test_loss_plus_time_charges_for_slower_training() -> None:
    obj = Objective("loss+time", time_weight=0.5)
    fast = measure(obj, [Sample(5.00, None, 60), Sample(5.01, None, 60)])
    slow = measure(obj, [Sample(4.95, None, 180), Sample(4.96, None, 180)])
    assert fast is not None and slow is not None
    # 0.05 nats better but two minutes slower at 0.5 nats a minute: worse overall
    assert not judge(obj, slow, fast, fast).better
    assert judge(obj, fast, slow, fast).better
    on_loss = [measure(LOSS, [Sample(v, None, t)] * 2) for v, t in ((4.95, 180), (5.0, 60))]
    assert on_loss[0] and on_loss[1] and judge(LOSS, *on_loss, NOISE).better  # loss alone: wins


def test_pareto_better_loss_and_not_slower_wins() -> None:
    assert judge(PARETO, _m(4.8, 1.05), _m(5.0, 1.0), NOISE).better  # 5 % slower: tolerated


def test_pareto_better_loss_but_much_slower_loses() -> None:
    assert not judge(PARETO, _m(4.8, 1.5), _m(5.0, 1.0), NOISE).better


def test_pareto_same_loss_and_faster_wins() -> None:
    v = judge(PARETO, _m(5.005, 0.6), _m(5.0, 1.0), NOISE)
    assert v.better and v.minutes_delta < -v.minutes_ci95


def test_pareto_same_loss_same_time_is_not_better() -> None:
    assert not judge(PARETO, _m(4.995, 0.999), _m(5.0, 1.0), NOISE).better


_means = st.floats(3.0, 7.0)
_minutes = st.floats(0.1, 10.0)


@given(_means, _minutes, _means, _minutes, st.sampled_from(["loss", "loss+time", "pareto"]))
def test_two_candidates_are_never_better_than_each_other(la, ta, lb, tb, name) -> None:
    obj = Objective(name, time_weight=0.1)
    a, b = _m(la, ta), _m(lb, tb)
    assert not (judge(obj, a, b, NOISE).better and judge(obj, b, a, NOISE).better)


@given(_means, _minutes, st.sampled_from(["loss", "bpb", "loss+time", "pareto"]))
def test_a_candidate_is_never_better_than_itself(loss, minutes, name) -> None:
    m = _m(loss, minutes)
    assert not judge(Objective(name, time_weight=0.1), m, m, NOISE).better


def test_pick_best_takes_the_largest_improvement() -> None:
    parent = _m(5.0, 1.0)
    finalists = [("a", _m(4.9, 1.0)), ("b", _m(4.7, 1.0)), ("c", _m(4.99, 1.0))]
    picked = pick_best(LOSS, parent, finalists, NOISE)
    assert picked is not None and picked[0] == "b"
    assert pick_best(LOSS, parent, [("c", _m(4.99, 1.0))], NOISE) is None


@given(st.lists(st.tuples(_means, _minutes), max_size=12), st.integers(0, 5))
def test_the_elite_is_the_best_k_in_order(points, k) -> None:
    confirmed = [(f"c{i}", _m(loss, minutes)) for i, (loss, minutes) in enumerate(points)]
    elite = rank_elite(confirmed, k)
    assert len(elite) == min(k, len(points))
    by_id = dict(confirmed)
    means = [by_id[c].value.mean for c in elite]
    assert means == sorted(means)
    outside = [m.value.mean for c, m in confirmed if c not in elite]
    assert not elite or not outside or max(means) <= min(outside)
    assert rank_elite(list(reversed(confirmed)), k) == elite  # the order given does not matter


def test_rescue_only_beyond_the_noise() -> None:
    elite = [("fluke", _m(4.8, 1.0)), ("proven", _m(5.0, 1.0))]
    assert rescue(LOSS, ("fluke", _m(5.2, 1.0, sd=0.0, n=1)), elite, NOISE) == "proven"
    assert rescue(LOSS, ("fluke", _m(5.01, 1.0, sd=0.0, n=1)), elite, NOISE) is None
    assert rescue(LOSS, ("fluke", None), elite, NOISE) == "proven"  # its recheck failed
    assert rescue(LOSS, ("proven", None), [("proven", _m(5.0, 1.0))], NOISE) is None


def test_pareto_front_keeps_what_nothing_beats_on_both() -> None:
    points = [(2.0, 5.0, "a"), (1.0, 5.5, "b"), (3.0, 4.0, "c"), (2.5, 5.2, "d")]
    assert [cid for _, _, cid in pareto_front(points)] == ["b", "a", "c"]
