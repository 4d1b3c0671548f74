"""The harness-owned score: windows, the streaming cross-entropy, the probes, bits per byte."""

from __future__ import annotations

import io
import json
import math
import random
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dreamteam.harness.sandbox import logits_wire
from dreamteam.harness.sandbox.limits import Isolation, Limits, ProcessResult
from dreamteam.harness.scoring import lm, passes
from dreamteam.harness.scoring.lm import (
    N_CAUSAL_PROBES,
    N_DECOYS,
    N_REPEAT_PROBES,
    Windows,
    _Reducer,
    bits_per_byte,
    build_windows,
    probe_failures,
)
from dreamteam.harness.scoring.passes import both_passes, passes_may_overlap
from dreamteam.tasks import load_task

CONTEXT, VOCAB = 8, 1000


def _windows(n_tokens: int, seed: int = 0) -> Windows:
    val = np.arange(n_tokens, dtype=np.uint16)  # token i at offset i: a row says where it is from
    return build_windows(val, CONTEXT, VOCAB + n_tokens, random.Random(seed))


@pytest.mark.parametrize("n_tokens", [CONTEXT * 50 + 1, CONTEXT * 50 + 6, CONTEXT * 41])
def test_windows_cover_every_prediction_exactly_once(n_tokens: int) -> None:
    w = _windows(n_tokens)
    scored = []
    for row, targets in zip(w.inputs, w.targets, strict=True):
        for p in np.flatnonzero(targets >= 0):
            assert targets[p] == row[p] + 1  # the next token of the split
            scored.append(int(targets[p]))
    assert sorted(scored) == list(range(1, n_tokens))


def test_probes_are_placed_where_the_harness_says() -> None:
    w = _windows(CONTEXT * 40 + 1)
    assert len(w.causal) == N_CAUSAL_PROBES and len(w.decoys) == N_DECOYS
    assert len(w.repeats) == N_REPEAT_PROBES
    assert len(w.probe_inputs) == N_CAUSAL_PROBES + N_DECOYS
    for row, other, t in w.causal:
        assert CONTEXT // 4 <= t < CONTEXT - 1
        assert (w.probe_inputs[other][: t + 1] == w.inputs[row][: t + 1]).all()
        assert w.probe_inputs[other][t + 1] != w.inputs[row][t + 1]
    for row, other in w.repeats:
        assert (w.inputs[row] == w.inputs[other]).all() and (w.targets[other] < 0).all()
    for row, other in w.decoys:
        assert (w.probe_inputs[other] == w.inputs[row]).all()
    # distinct windows: no decoy hands the probe pass a causal probe's continuation
    sources = [row for row, _, _ in w.causal] + [row for row, _ in w.decoys]
    assert len(set(sources)) == len(sources)
    # the probed windows' own tokens are among the compared columns
    assert set(w.probe_inputs.ravel().tolist()) <= set(w.columns.tolist())


def test_windows_are_shuffled_unpredictably() -> None:
    first, second = _windows(CONTEXT * 40 + 1, seed=1), _windows(CONTEXT * 40 + 1, seed=2)
    assert not np.array_equal(first.inputs, second.inputs)


def test_reducer_gives_the_exact_cross_entropy() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, CONTEXT, 50, generator=gen) * 4
    targets = torch.randint(0, 50, (3, CONTEXT), generator=gen)
    targets[1, :5] = -1  # positions scored elsewhere
    reducer = _Reducer(targets.numpy(), {0, 2}, np.arange(0, 50, 7))
    reducer.add(0, logits[:2].clone())
    reducer.add(2, logits[2:].clone())
    want = F.cross_entropy(
        logits.reshape(-1, 50), targets.reshape(-1), ignore_index=-1, reduction="sum"
    )
    assert reducer.count == 3 * CONTEXT - 5
    assert reducer.nats == pytest.approx(float(want), rel=1e-6)
    assert reducer.finite
    assert torch.equal(reducer.kept[2], logits[2][:, torch.arange(0, 50, 7)])


@pytest.mark.parametrize("scale", [1.0, 30.0, 200.0])
def test_reducer_matches_a_float64_cross_entropy_at_any_logit_scale(scale: float) -> None:
    # large logits overflow a naive exp; the in-place log-softmax must stay exact
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(4, CONTEXT, 5003, generator=gen) * scale + 1000.0
    targets = torch.randint(0, 5003, (4, CONTEXT), generator=gen)
    reducer = _Reducer(targets.numpy(), set(), np.arange(3))
    reducer.add(0, logits.clone())
    want = F.cross_entropy(logits.double().reshape(-1, 5003), targets.reshape(-1), reduction="sum")
    assert reducer.count == 4 * CONTEXT
    assert reducer.nats / reducer.count == pytest.approx(float(want) / reducer.count, abs=1e-4)


def test_reducer_flags_non_finite_logits() -> None:
    logits = torch.zeros(1, CONTEXT, 10)
    logits[0, 3, 4] = float("nan")
    reducer = _Reducer(np.ones((1, CONTEXT), dtype=np.int64), set(), np.arange(3))
    reducer.add(0, logits)
    assert not reducer.finite


def test_bits_per_byte() -> None:
    # a uniform model over 256 byte-tokens, one token per byte: exactly 8 bits per byte
    assert bits_per_byte(1000 * math.log(256), 1000) == pytest.approx(8.0)
    assert bits_per_byte(math.log(2) * 3, 6) == pytest.approx(0.5)


# --- running the two passes -----------------------------------------------------------------------


class _FakePasses:
    """Stands in for the two sandboxed passes: records what ran and what saw `stop`."""

    def __init__(self, probe_done: bool):
        self.probe_done = probe_done
        self.started: list[str] = []
        self.stopped: list[str] = []

    def __call__(self, name: str, stop: threading.Event) -> tuple[object, dict]:
        self.started.append(name)
        if name == "probe":
            return name, {"done": self.probe_done}
        # the scoring pass is long: it ends early once the probe pass has failed
        if stop.wait(timeout=5):
            self.stopped.append(name)
            return name, {}
        return name, {"done": True}


@pytest.mark.parametrize("overlap", [False, True])
def test_both_passes_run_and_return_probe_then_score(overlap: bool) -> None:
    passes = _FakePasses(probe_done=True)
    (probe, probe_ready), (score, ready) = both_passes(passes, overlap)  # type: ignore[arg-type]
    assert (probe, score) == ("probe", "score")
    assert probe_ready["done"] and ready["done"]
    assert sorted(passes.started) == ["probe", "score"] and not passes.stopped


def test_a_failed_probe_pass_stops_the_overlapped_scoring_pass() -> None:
    passes = _FakePasses(probe_done=False)
    (_, probe_ready), _ = both_passes(passes, overlap=True)  # type: ignore[arg-type]
    assert not probe_ready.get("done")
    assert passes.stopped == ["score"]


def test_a_failed_probe_pass_saves_the_sequential_scoring_pass() -> None:
    passes = _FakePasses(probe_done=False)
    both_passes(passes, overlap=False)  # type: ignore[arg-type]
    assert passes.started == ["probe"]


def test_passes_overlap_only_behind_namespaces_and_landlock() -> None:
    assert passes_may_overlap(Isolation(namespaces=True, cgroup=False, landlock=3, root=True))
    assert not passes_may_overlap(Isolation(namespaces=False, cgroup=True, landlock=3, root=True))
    assert not passes_may_overlap(Isolation(namespaces=True, cgroup=True, landlock=0, root=True))


# --- the probes against simulated models ---------------------------------------------------------

Model = Callable[[np.ndarray], torch.Tensor]  # one window (T,) -> logits (T, V)


_EMBED = torch.randn(VOCAB * 2, 16, generator=torch.Generator().manual_seed(0))
_HEAD = torch.randn(VOCAB * 2, 16, generator=torch.Generator().manual_seed(1))


def _causal_model(row: np.ndarray) -> torch.Tensor:
    h = _EMBED[torch.from_numpy(row.astype(np.int64))].cumsum(0)  # position t: tokens <= t
    return h @ _HEAD.T


def _peeking_model(row: np.ndarray) -> torch.Tensor:
    logits = _causal_model(row).clone()
    nxt = np.append(row[1:], row[-1]).astype(np.int64)
    logits[torch.arange(len(row)), torch.from_numpy(nxt)] += 30.0  # position t sees token t+1
    return logits


class _MemoModel:
    """Peeks, and replays what it returned before for a prefix it has seen: one process's state."""

    def __init__(self) -> None:
        self.seen: dict[bytes, torch.Tensor] = {}

    def __call__(self, row: np.ndarray) -> torch.Tensor:
        logits = _peeking_model(row)
        for t in range(len(row)):
            key = row[: t + 1].tobytes()
            logits[t] = self.seen.setdefault(key, logits[t].clone())
        return logits


def _kept(model: Model, rows: np.ndarray, columns: np.ndarray) -> dict[int, torch.Tensor]:
    return {i: model(row)[:, torch.from_numpy(columns)] for i, row in enumerate(rows)}


def _failures(main: Model, probe: Model) -> list[str]:
    w = _windows(CONTEXT * 40 + 1)
    return probe_failures(
        w, _kept(main, w.inputs, w.columns), _kept(probe, w.probe_inputs, w.columns)
    )


def test_an_honest_causal_model_passes() -> None:
    assert _failures(_causal_model, _causal_model) == []


def test_a_peeking_model_is_caught() -> None:
    failures = _failures(_peeking_model, _peeking_model)
    assert any(f.startswith(f"causality: {N_CAUSAL_PROBES} of {N_CAUSAL_PROBES}") for f in failures)


def test_a_model_that_remembers_prefixes_is_caught_by_the_fresh_probe_process() -> None:
    # in one process its perturbed copies would agree with their originals; the probe pass
    # runs in a process that never saw the originals
    failures = _failures(_MemoModel(), _MemoModel())
    assert any(f.startswith("causality") for f in failures)


def test_a_model_that_behaves_in_small_processes_is_caught_by_decoys() -> None:
    failures = _failures(_peeking_model, _causal_model)
    assert any("another process" in f for f in failures)


def test_a_model_that_depends_on_the_batch_is_caught_by_repeats() -> None:
    w = _windows(CONTEXT * 40 + 1)
    main = _kept(_causal_model, w.inputs, w.columns)
    for _, other in w.repeats:
        main[other] = main[other] + 0.5  # the same window, other logits in another batch
    failures = probe_failures(w, main, _kept(_causal_model, w.probe_inputs, w.columns))
    assert failures == [
        f"consistency: {N_REPEAT_PROBES} of {N_REPEAT_PROBES} windows gave "
        "different logits in another batch"
    ]


def test_the_sandboxed_passes_run_on_the_trials_device(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # the device is the harness's choice, passed to both passes, never fixed in the child
    seen: list[tuple[str, object]] = []

    def fake_run(mode: str, config: dict, *args: object, **kwargs: object) -> ProcessResult:
        seen.append((mode, config["device"]))
        return ProcessResult(returncode=1, timed_out=False, oom=False, wall_seconds=0.0, log="",
                             log_bytes=0)  # fmt: skip

    monkeypatch.setattr(passes, "run_sandboxed", fake_run)
    (tmp_path / "ckpt.pt").write_bytes(b"")
    task = load_task("shakespeare")
    val = np.arange(64 * 40 + 1, dtype=np.uint16)
    alone = Isolation(namespaces=False, cgroup=False, landlock=0, root=False)
    outcome = lm.evaluate_checkpoint(
        task, {}, tmp_path / "ckpt.pt", val, 100, tmp_path / "eval", Limits(), alone, "cuda:1"
    )
    assert outcome.status == "crashed"
    assert seen == [("eval", "cuda:1")]  # sequential here: the failed probe pass ends it


def _conversation(replies: list[dict], memory: torch.Tensor, rows: int) -> tuple[dict, list]:
    """Drive the harness's side of a logits pass against scripted child replies."""
    chunks: list[tuple[int, torch.Tensor]] = []
    ready: dict = {}
    lines = b"".join(json.dumps(r).encode() + b"\n" for r in replies)
    talk = passes._converse(
        rows, memory, (passes.CHUNK, 3, 5),
        lambda first, block: chunks.append((first, block.clone())), ready, threading.Event(),
    )  # fmt: skip
    talk(io.BytesIO(), io.BytesIO(lines))
    return ready, chunks


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_logits_arrive_exactly_in_the_dtype_the_child_names(dtype: torch.dtype) -> None:
    # two-byte logits travel as they are: the harness reads the very values the model gave
    rows = passes.CHUNK + 2
    memory = torch.zeros(logits_wire.slots_bytes(passes.CHUNK, 3, 5), dtype=torch.uint8)
    wire = logits_wire.wire_of(dtype)
    values = (torch.randn(rows, 3, 5) * 7).to(dtype)
    for index, start in enumerate((0, passes.CHUNK)):  # chunk 0 in slot 0, chunk 1 in slot 1
        part = values[start : start + passes.CHUNK]
        logits_wire.slot(memory, index, wire, (passes.CHUNK, 3, 5))[: len(part)].copy_(part)
    replies = [{"ready": True}, {"chunk": 0, "dtype": wire}, {"chunk": 1, "dtype": wire}]
    ready, chunks = _conversation(replies, memory, rows)
    assert ready.get("done")
    assert [first for first, _ in chunks] == [0, passes.CHUNK]  # a chunk at a time, its rows
    got = torch.cat([block for _, block in chunks])
    assert got.dtype == wire.torch_dtype() and torch.equal(got.float(), values.float())


def test_a_chunk_in_an_unknown_dtype_fails_the_pass_with_its_name() -> None:
    memory = torch.zeros(logits_wire.slots_bytes(passes.CHUNK, 3, 5), dtype=torch.uint8)
    ready, chunks = _conversation([{"ready": True}, {"chunk": 0, "dtype": "int8"}], memory, 4)
    assert not ready.get("done") and not chunks
    assert "unknown logits dtype 'int8'" in ready["error"]


def test_other_dtypes_travel_as_fp32() -> None:
    assert [logits_wire.wire_of(d) for d in (torch.float64, torch.float32, torch.int64)] == [
        "fp32",
        "fp32",
        "fp32",
    ]
