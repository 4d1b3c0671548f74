"""Selection under noise: only improvements beyond the interval count."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from dreamteam.selection import Estimate, compare, estimate, promote


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
    assert result.better and math.isclose(result.ci95, 1.96 * 0.04, rel_tol=1e-9)


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
