"""The harness's compiled cross-entropy kernel against a float64 log-softmax."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dreamteam.harness.scoring.lm import _Reducer
from dreamteam.harness.scoring.nll import nll_rows


def _reference(logits: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """-log softmax in float64 (exact for fp32 inputs), 0 where a target is negative."""
    logp = torch.log_softmax(logits.double(), dim=-1)
    picked = -logp.gather(1, targets.clamp(min=0)[:, None]).squeeze(1)
    return torch.where(targets >= 0, picked, 0.0).numpy()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("scale", "shift"), [(1.0, 0.0), (4.0, -3.0), (30.0, 1000.0), (200.0, 0.0)]
)
def test_it_matches_a_float64_log_softmax(dtype: torch.dtype, scale: float, shift: float) -> None:
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(40, 5003, generator=gen) * scale + shift).to(dtype)
    targets = torch.randint(0, 5003, (40,), generator=gen)
    targets[[3, 17]] = -1  # positions scored elsewhere
    got = nll_rows(logits, targets.numpy())
    want = _reference(logits.float(), targets)
    assert got[3] == 0.0 and got[17] == 0.0
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=2e-6)


def test_a_vocabulary_row_of_the_lm_task_sums_to_within_fp32_rounding() -> None:
    # 50,257 exponentials a row: the blocked sum keeps the loss exact well below 1e-4
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(8, 50257, generator=gen) * 3
    targets = torch.randint(0, 50257, (8,), generator=gen)
    got = nll_rows(logits, targets.numpy())
    np.testing.assert_allclose(got, _reference(logits, targets), rtol=0, atol=1e-6)


def test_non_finite_rows_are_nan_and_an_impossible_target_is_infinite() -> None:
    logits = torch.zeros(8, 10)
    targets = torch.full((8,), 2)
    logits[0, 5] = float("nan")
    logits[1, 5] = -float("nan")  # a NaN with its sign bit set orders below -inf
    logits[2, 7] = float("inf")
    logits[3] = float("-inf")  # nothing is possible
    logits[4, 9] = float("-inf")  # a masked token is fine
    logits[5, 2] = float("-inf")  # the target itself is impossible: infinitely surprising
    logits[6, 2] = float("nan")  # the target's own value
    got = nll_rows(logits, targets.numpy())
    assert all(math.isnan(v) for v in got[[0, 1, 2, 3, 6]])
    assert got[4] == pytest.approx(math.log(9))
    assert got[5] == math.inf
    assert got[7] == pytest.approx(math.log(10))
    # torch agrees on which figures are not finite
    want = _reference(logits, targets)
    assert (np.isfinite(got) == np.isfinite(want)).all()


def test_it_refuses_what_it_cannot_read() -> None:
    targets = np.zeros(2, dtype=np.int64)
    for bad in (
        torch.zeros(2, 4, dtype=torch.float16),
        torch.zeros(2, 4, 2),
        torch.zeros(4, 2).t(),
    ):
        with pytest.raises(ValueError, match="fp32 or bf16"):
            nll_rows(bad, targets)


_BIG = float(np.float32(1e30))  # exactly representable in fp32
_FINITE = st.floats(
    width=32, allow_nan=False, allow_infinity=False, min_value=-_BIG, max_value=_BIG
)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_finite_logits_give_the_float64_figure(data: st.DataObject) -> None:
    vocab = data.draw(st.integers(1, 40))
    n = data.draw(st.integers(1, 4))
    rows = data.draw(
        st.lists(st.lists(_FINITE, min_size=vocab, max_size=vocab), min_size=n, max_size=n)
    )
    targets = torch.tensor(data.draw(st.lists(st.integers(-1, vocab - 1), min_size=n, max_size=n)))
    logits = torch.tensor(rows, dtype=torch.float32)
    got = nll_rows(logits, targets.numpy())
    np.testing.assert_allclose(got, _reference(logits, targets), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_the_reducer_gives_the_same_loss_whatever_dtype_the_logits_travel_in(
    dtype: torch.dtype,
) -> None:
    # bf16 and fp32 are read in place, fp16 through a private fp32 copy: one figure for all
    gen = torch.Generator().manual_seed(2)
    logits = (torch.randn(3, 16, 300, generator=gen) * 5).to(dtype)
    targets = torch.randint(0, 300, (3, 16), generator=gen)
    reducer = _Reducer(targets.numpy(), {1}, np.arange(0, 300, 9))
    reducer.add(0, logits)
    want = _reference(logits.float().reshape(-1, 300), targets.reshape(-1)).sum()
    assert reducer.count == 48
    assert reducer.nats == pytest.approx(want, rel=1e-7)
    assert torch.equal(reducer.kept[1], logits[1].float()[:, torch.arange(0, 300, 9)])
