"""select/stats.py: rank correlation, one-sided t-tests and Holm's correction, against values
worked out by hand and with properties that must hold for any input."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dreamteam.records import StatTest
from dreamteam.select.rules import Verdict, close_call
from dreamteam.select.stats import (
    holm,
    improvement_p,
    incomplete_beta,
    paired_p,
    ranks,
    spearman,
    t95,
    t_below,
    t_quantile,
    welch_p,
)

losses = st.floats(min_value=-10, max_value=10, allow_nan=False)
levels = st.integers(-40, 40).map(lambda k: k / 4)  # ties likely, transforms keep them apart


def test_ranks_share_the_average_over_ties() -> None:
    assert ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]


def test_spearman_by_hand() -> None:
    # ranks x 1 2 3 4 5, y 2 1 4 3 5: sum d^2 = 4, rho = 1 - 6*4 / (5*24) = 0.8
    assert spearman([1, 2, 3, 4, 5], [20, 10, 40, 30, 50]) == pytest.approx(0.8)
    # with ties: x ranks 1.5 1.5 3 4, y ranks 1 2 3 4 -> Pearson of ranks = 0.9486833
    assert spearman([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(3 / math.sqrt(10))
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_spearman_says_nothing_on_too_few_pairs_or_a_constant_side() -> None:
    assert spearman([1, 2], [1, 2]) is None
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    with pytest.raises(ValueError):
        spearman([1, 2, 3], [1, 2])


@given(st.lists(st.tuples(levels, levels), min_size=3, max_size=30))
def test_spearman_is_bounded_symmetric_and_rank_only(pairs: list[tuple[float, float]]) -> None:
    xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
    rho = spearman(xs, ys)
    if rho is None:
        return
    assert -1.0 <= rho <= 1.0
    assert spearman(ys, xs) == pytest.approx(rho)
    # a monotone transform of one side changes no rank
    assert spearman([math.exp(x / 4) for x in xs], ys) == pytest.approx(rho)
    assert spearman([-x for x in xs], ys) == pytest.approx(-rho)


def test_the_t_tail_matches_closed_forms() -> None:
    # df=1 is the Cauchy distribution: P(T <= -1) = 1/4
    assert t_below(-1.0, 1) == pytest.approx(0.25)
    # df=2: P(T <= t) = 1/2 + t / (2 sqrt(t^2 + 2))
    for t in (-3.0, -0.5, 0.0, 2.0):
        assert t_below(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(t * t + 2)))
    # large df approaches the normal: P(Z <= -1.96) = 0.025
    assert t_below(-1.96, 10_000) == pytest.approx(0.025, abs=2e-4)
    assert incomplete_beta(2.0, 3.0, 0.4) == pytest.approx(0.5248)  # P(Binomial(4, 0.4) >= 2)


def test_t95_matches_the_tables_and_tends_to_the_normal() -> None:
    # two-sided 95 % quantiles of Student's t (standard tables)
    for df, value in ((1, 12.706), (2, 4.303), (4, 2.776), (8, 2.306), (30, 2.042)):
        assert t95(df) == pytest.approx(value, abs=1e-3)
    assert t95(0) == t95(1)  # fewer than one degree of freedom is read as one
    assert t95(1e6) == pytest.approx(1.960, abs=1e-3)
    assert t_quantile(0.5, 3) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)


def test_paired_p_by_hand() -> None:
    # differences -0.1, -0.2, -0.3: mean -0.2, sd 0.1, se 0.1/sqrt(3), t = -2*sqrt(3), df 2
    a = {1: 5.0, 2: 5.0, 3: 5.0}
    b = {1: 5.1, 2: 5.2, 3: 5.3}
    t = -2 * math.sqrt(3)
    got = paired_p(a, b)
    assert got is not None and got.test is StatTest.PAIRED and got.n == 3
    assert got.p == pytest.approx(0.5 + t / (2 * math.sqrt(t * t + 2)))
    assert paired_p({1: 5.0}, {1: 5.1, 2: 5.2}) is None  # one shared seed says nothing


def test_welch_p_by_hand_and_falls_back_when_seeds_differ() -> None:
    # a 4,5 and b 5,6: va = vb = 0.5/2, se = sqrt(0.5), t = -1/sqrt(0.5) = -sqrt(2), df = 2
    got = welch_p([4.0, 5.0], [5.0, 6.0])
    assert got is not None and got.test is StatTest.WELCH
    t = -math.sqrt(2)
    assert got.p == pytest.approx(0.5 + t / (2 * math.sqrt(t * t + 2)))
    mixed = improvement_p({1: 4.0, 2: 5.0}, {3: 5.0, 4: 6.0})  # no seed in common
    assert mixed is not None and mixed.test is StatTest.WELCH and mixed.p == pytest.approx(got.p)
    assert welch_p([4.0], [5.0, 6.0]) is None


def test_scipy_agrees_where_it_is_installed() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    a, b = [5.1, 5.3, 5.0, 5.25], [5.4, 5.35, 5.6, 5.2]
    want = scipy_stats.ttest_ind(a, b, equal_var=False, alternative="less").pvalue
    assert welch_p(a, b).p == pytest.approx(want, rel=1e-9)  # type: ignore[union-attr]
    want = scipy_stats.ttest_rel(a, b, alternative="less").pvalue
    assert paired_p(dict(enumerate(a)), dict(enumerate(b))).p == pytest.approx(want, rel=1e-9)  # type: ignore[union-attr]
    xs, ys = [1, 3, 2, 2, 5, 4], [2, 1, 2, 3, 6, 4]
    assert spearman(xs, ys) == pytest.approx(scipy_stats.spearmanr(xs, ys).statistic)


@given(st.lists(losses, min_size=2, max_size=12), st.floats(min_value=0.01, max_value=3))
def test_a_lower_sample_gets_a_smaller_p(values: list[float], shift: float) -> None:
    base = dict(enumerate(values))
    lower = {s: v - shift for s, v in base.items()}
    jitter = {s: v + 0.001 * (s % 2) for s, v in base.items()}
    p_low, p_same = improvement_p(lower, jitter), improvement_p(jitter, jitter)
    assert p_low is not None and p_same is not None
    assert 0.0 <= p_low.p <= 1.0
    assert p_low.p <= p_same.p


@given(st.lists(st.floats(min_value=0, max_value=1), max_size=20))
def test_holm_never_lowers_a_p_keeps_the_order_and_caps_at_one(ps: list[float]) -> None:
    adjusted = holm(ps)
    assert len(adjusted) == len(ps)
    assert all(p <= q <= 1.0 for p, q in zip(ps, adjusted, strict=True))
    for i in range(len(ps)):
        for j in range(len(ps)):
            if ps[i] < ps[j]:
                assert adjusted[i] <= adjusted[j]


def test_holm_by_hand() -> None:
    # sorted 0.01, 0.03, 0.04: 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> kept at 0.06
    assert holm([0.04, 0.01, 0.03]) == pytest.approx([0.06, 0.03, 0.06])
    assert holm([]) == []


@given(
    st.floats(min_value=-1, max_value=1),
    st.floats(min_value=0, max_value=1),
)
def test_a_close_call_is_neither_a_win_nor_a_clear_loss(delta: float, ci: float) -> None:
    verdict = Verdict(delta < -ci, delta, ci, 0.0, 0.0)
    assert close_call(verdict) == (-ci <= delta <= ci)
    assert not (close_call(verdict) and verdict.better)
