"""The harness-owned score: whole-split cross-entropy, bits per byte, and integrity probes.

The sandboxed child only turns token windows into logits (child.py, mode ``eval``); it never
sees a target as such. Here, in the harness, the logits go through log-softmax and the
cross-entropy, window by window, and probes check that the model is a function of its
weights and of the tokens up to each position. Two fresh processes, each in its own directory
and with its own shared memory, so that nothing passes from one to the other:
  - the scoring pass: every real window once, plus repeats (consistency across batches);
  - the probe pass: perturbed copies (causality: a copy whose tokens after position t differ
    must agree with the original up to t) and decoys (real windows again: the model must
    give the same logits in a small process as in the big one).
A model that stays in one process could remember windows, or read them all from its input
file, and then make a window and its perturbed copy agree while peeking ahead; the perturbed
copy in a process that never saw the original is what catches that. Rows are shuffled with an
unpredictable permutation.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from dreamteam.harness.sandbox.launcher import Isolation, Limits, ProcessResult, run_sandboxed
from dreamteam.harness.scoring.common import (
    PROBE_TOLERANCE,
    EvalOutcome,
    Score,
    model_config,
    process_failure,
    protected_args_problem,
    stage_model,
)
from dreamteam.tasks import Task

CHUNK = 16  # windows per round trip: 16 x 64 x 50,257 fp32 logits = 206 MB per slot
N_CAUSAL_PROBES = 24  # each checks one position: more of them catch a model that peeks rarely
N_REPEAT_PROBES = 2
N_DECOYS = 8
PROBE_COLUMNS = 512  # random vocabulary columns compared by the probes, besides the tokens


@dataclass(frozen=True)
class Windows:
    """The rows sent to the model in each pass, and what the harness alone knows about them."""

    inputs: np.ndarray  # (rows, T) int64, the scoring pass, shuffled
    targets: np.ndarray  # (rows, T) int64, -1 where a position is not scored
    probe_inputs: np.ndarray  # (probe rows, T) int64, the probe pass, shuffled
    causal: tuple[tuple[int, int, int], ...]  # (row, probe row, last shared position)
    repeats: tuple[tuple[int, int], ...]  # (row, duplicate row), both in the scoring pass
    decoys: tuple[tuple[int, int], ...]  # (row, probe row): the same window in both passes
    columns: np.ndarray  # vocabulary columns compared by the probes, sorted


def _shuffled(rows: list[np.ndarray], rng: random.Random) -> tuple[list[int], list[int]]:
    """A permutation of rows: (order: new -> old, where: old -> new)."""
    order = list(range(len(rows)))
    rng.shuffle(order)
    where = [0] * len(order)
    for new, old in enumerate(order):
        where[old] = new
    return order, where


def build_windows(val: np.ndarray, context: int, vocab: int, rng: random.Random) -> Windows:
    """Non-overlapping windows covering every prediction of the split once, plus probes."""
    tokens = val.astype(np.int64)
    n_pred = len(tokens) - 1
    n_full = n_pred // context
    inputs = [tokens[i * context : (i + 1) * context] for i in range(n_full)]
    targets = [tokens[i * context + 1 : (i + 1) * context + 1] for i in range(n_full)]
    rest = n_pred - n_full * context
    if rest:  # a last window aligned to the end scores only the predictions not yet scored
        inputs.append(tokens[n_pred - context : n_pred])
        tail = tokens[n_pred - context + 1 : n_pred + 1].copy()
        tail[: context - rest] = -1
        targets.append(tail)
    real = len(inputs)
    blank = np.full(context, -1, dtype=np.int64)
    probe_rows: list[np.ndarray] = []
    repeats, causal, decoys = [], [], []
    for _ in range(N_REPEAT_PROBES):
        src = rng.randrange(real)
        repeats.append((src, len(inputs)))
        inputs.append(inputs[src].copy())
        targets.append(blank)
    # distinct windows where the split allows: a decoy or a second copy of a causal probe's
    # window would hand the probe pass the very continuation it must not know
    wanted = N_CAUSAL_PROBES + N_DECOYS
    sources = rng.sample(range(real), min(real, wanted))
    sources += [rng.randrange(real) for _ in range(wanted - len(sources))]
    for src in sources[:N_CAUSAL_PROBES]:
        t = rng.randrange(context // 4, context - 1)
        changed = inputs[src].copy()
        while changed[t + 1] == inputs[src][t + 1]:  # position t must see a different next token
            changed[t + 1 :] = [rng.randrange(vocab) for _ in range(context - t - 1)]
        causal.append((src, len(probe_rows), t))
        probe_rows.append(changed)
    for src in sources[N_CAUSAL_PROBES:]:
        decoys.append((src, len(probe_rows)))
        probe_rows.append(inputs[src].copy())
    order, where = _shuffled(inputs, rng)
    probe_order, probe_where = _shuffled(probe_rows, rng)
    probed = (
        [inputs[i] for pair in repeats for i in pair] + probe_rows + [inputs[s] for s in sources]
    )
    columns = set(rng.sample(range(vocab), min(PROBE_COLUMNS, vocab)))
    columns |= {int(token) for row in probed for token in row}
    return Windows(
        inputs=np.stack([inputs[i] for i in order]),
        targets=np.stack([targets[i] for i in order]),
        probe_inputs=np.stack([probe_rows[i] for i in probe_order]),
        causal=tuple((where[a], probe_where[b], t) for a, b, t in causal),
        repeats=tuple((where[a], where[b]) for a, b in repeats),
        decoys=tuple((where[a], probe_where[b]) for a, b in decoys),
        columns=np.array(sorted(columns)),
    )


class _Reducer:
    """Consumes one pass's logits chunk by chunk: sums the loss, keeps the probe rows."""

    def __init__(self, targets: np.ndarray, wanted: set[int], columns: np.ndarray):
        self.targets = targets
        self.wanted = wanted
        self.columns = torch.from_numpy(columns)
        self.nats = 0.0
        self.count = 0
        self.finite = True
        self.kept: dict[int, torch.Tensor] = {}

    def add(self, first_row: int, logits: torch.Tensor) -> None:
        """Reduce one chunk. Destroys `logits` (the log-softmax is computed in place)."""
        rows, _, vocab = logits.shape
        for r in range(first_row, first_row + rows):
            if r in self.wanted:
                self.kept[r] = logits[r - first_row][:, self.columns].clone()
        targets = torch.from_numpy(self.targets[first_row : first_row + rows]).reshape(-1)
        mask = targets >= 0
        if not mask.any():
            return
        flat = logits.reshape(-1, vocab)
        # the cross-entropy is minus the target's log-probability. log_softmax in place is one
        # fused pass per row and no second buffer: ~40 % less time than max, subtract, exp and
        # sum as separate passes over the chunk (the exponentials dominate the harness's work)
        torch.log_softmax(flat, dim=-1, out=flat)
        picked = flat.gather(1, targets.clamp(min=0)[:, None]).squeeze(1)
        total = -float(picked[mask].double().sum())
        if not math.isfinite(total):
            self.finite = False
        self.nats += total
        self.count += int(mask.sum())


def bits_per_byte(nats: float, n_bytes: int) -> float:
    """Total nats over the split's tokens, as bits per byte of its UTF-8 text."""
    return nats / math.log(2) / n_bytes


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, atol=PROBE_TOLERANCE, rtol=PROBE_TOLERANCE)


def probe_failures(
    windows: Windows, main: dict[int, torch.Tensor], probe: dict[int, torch.Tensor]
) -> list[str]:
    """What the probes found, from the kept logits of the scoring and the probe pass."""
    causal = [
        t
        for row, other, t in windows.causal
        if not _close(main[row][: t + 1], probe[other][: t + 1])
    ]
    repeats = [1 for row, other in windows.repeats if not _close(main[row], main[other])]
    decoys = [1 for row, other in windows.decoys if not _close(main[row], probe[other])]
    failures = []
    if causal:
        failures.append(
            f"causality: {len(causal)} of {len(windows.causal)} windows changed their "
            f"logits at positions <= t when only tokens after t changed (t={causal[0]}"
            f"{', ...' if len(causal) > 1 else ''})"
        )
    if repeats:
        failures.append(
            f"consistency: {len(repeats)} of {len(windows.repeats)} windows gave "
            "different logits in another batch"
        )
    if decoys:
        failures.append(
            f"consistency: {len(decoys)} of {len(windows.decoys)} windows gave "
            "different logits in another process"
        )
    return failures


def _converse(
    rows: int,
    slots: torch.Tensor,
    on_chunk: Callable[[int, torch.Tensor], None],
    ready: dict[str, Any],
    stop: threading.Event,
) -> Callable[[IO[bytes], IO[bytes]], None]:
    n_chunks = math.ceil(rows / CHUNK)
    # The child may write to both slots at any time: each chunk is copied out before it is
    # read, so that the loss and the probes see the same numbers.
    private = torch.empty(slots.shape[1:], dtype=slots.dtype)

    def talk(stdin: IO[bytes], results: IO[bytes]) -> None:
        first = json.loads(results.readline() or b"{}")
        ready.update(first)
        if not first.get("ready"):
            return
        stdin.write(b"0\n")
        stdin.flush()
        for i in range(n_chunks):
            if stop.is_set():  # the other pass failed: this one's figures are not needed
                return
            reply = json.loads(results.readline() or b"{}")
            if reply.get("chunk") != i:
                ready.update(reply)
                return
            n = min(CHUNK, rows - i * CHUNK)
            private[:n].copy_(slots[i % 2, :n])
            if i + 1 < n_chunks:  # the child fills the other slot while this one is reduced
                stdin.write(f"{i + 1}\n".encode())
                stdin.flush()
            on_chunk(i * CHUNK, private[:n])
        ready["done"] = True

    return talk


def _logits_pass(
    task: Task,
    files: dict[str, str],
    checkpoint: Path,
    inputs: np.ndarray,
    work_dir: Path,
    limits: Limits,
    isolation: Isolation,
    on_chunk: Callable[[int, torch.Tensor], None],
    stop: threading.Event,
    device: str,
) -> tuple[ProcessResult, dict]:
    """One fresh sandboxed process computing the logits of `inputs`, fed to on_chunk;
    it stops early once `stop` is set."""
    stage_model(work_dir, files, checkpoint)
    np.save(work_dir / "inputs.npy", inputs)
    # logits travel through anonymous shared memory, new for each pass: no disk, no copy
    # through a pipe, and nothing a pass leaves behind for the next one
    size = 2 * CHUNK * task.context * task.vocab_size * 4
    memfd = os.memfd_create("dreamteam-logits")
    os.ftruncate(memfd, size)
    buffer = mmap.mmap(memfd, size)
    shape = (2, CHUNK, task.context, task.vocab_size)
    slots = torch.from_numpy(np.frombuffer(buffer, dtype=np.float32).reshape(shape))
    ready: dict[str, Any] = {}
    config = {
        **model_config(task),
        "vocab_size": task.vocab_size,
        "chunk": CHUNK,
        "logits_fd": memfd,
        "device": device,
    }
    talk = _converse(len(inputs), slots, on_chunk, ready, stop)
    try:
        process = run_sandboxed(
            "eval", config, work_dir, limits, isolation, converse=talk, pass_fds=(memfd,)
        )
    finally:
        del talk, slots  # release the views before the mapping closes
        buffer.close()
        os.close(memfd)
    (work_dir / "inputs.npy").unlink(missing_ok=True)
    return process, ready


def passes_may_overlap(isolation: Isolation) -> bool:
    """Whether the probe and the scoring pass may run at the same time.

    Only where they cannot reach each other while both live: each in a network namespace of
    its own (no sockets between them) and under Landlock (no files outside its own work
    dir). Elsewhere the probe pass runs first and ends before the scoring pass starts, so
    that it cannot learn from it what the original windows gave.
    """
    return isolation.namespaces and isolation.landlock > 0


def _stop_unless_done(done: Future[tuple[ProcessResult, dict]], stop: threading.Event) -> None:
    if done.exception() is not None or not done.result()[1].get("done"):
        stop.set()


def _both_passes(
    run: Callable[[str, threading.Event], tuple[ProcessResult, dict]], overlap: bool
) -> tuple[tuple[ProcessResult, dict], tuple[ProcessResult, dict]]:
    """The probe and the scoring pass: (probe, score). Overlapped, a failed probe pass stops
    the scoring pass; in turn, the short probe pass first, and a crash there saves the long one.
    """
    stop = threading.Event()
    if not overlap:
        probe = run("probe", stop)
        if not probe[1].get("done"):
            return probe, probe
        return probe, run("score", stop)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(run, "probe", stop)
        pending.add_done_callback(lambda done: _stop_unless_done(done, stop))
        score = run("score", stop)
        probe = pending.result()
    return probe, score


def evaluate_checkpoint(
    task: Task,
    files: dict[str, str],
    checkpoint: Path,
    val: np.ndarray,
    val_bytes: int,
    work_dir: Path,
    limits: Limits,
    isolation: Isolation,
    device: str = "cpu",
) -> EvalOutcome:
    """Score a trained checkpoint on the whole validation split, in fresh sandboxed processes
    whose models run on `device` (the trial's); the logits come back to the CPU for the loss."""
    start = time.monotonic()
    windows = build_windows(val, task.context, task.vocab_size, random.SystemRandom())
    probe = _Reducer(
        np.full(windows.probe_inputs.shape, -1),
        set(range(len(windows.probe_inputs))),
        windows.columns,
    )
    wanted = {r for r, _, _ in windows.causal} | {r for r, _ in windows.decoys}
    wanted |= {r for pair in windows.repeats for r in pair}
    main = _Reducer(windows.targets, wanted, windows.columns)
    passes = {
        "probe": (windows.probe_inputs, probe.add),
        "score": (windows.inputs, main.add),
    }

    def run(name: str, stop: threading.Event) -> tuple[ProcessResult, dict]:
        inputs, on_chunk = passes[name]
        return _logits_pass(
            task, files, checkpoint, inputs, work_dir / name, limits, isolation, on_chunk, stop,
            device,
        )  # fmt: skip

    (probe_process, probe_ready), (process, ready) = _both_passes(
        run, passes_may_overlap(isolation)
    )
    if not probe_ready.get("done"):  # the probe pass's failure is the cause of the other's
        process, ready = probe_process, probe_ready
    if not ready.get("done"):
        status, reason = process_failure(process, ready.get("error", ""))
        return EvalOutcome(None, status, f"evaluation: {reason}", process)
    # not finite before the probes: NaN logits also fail every comparison
    if not main.finite:
        return EvalOutcome(
            None, "nan", "the model's logits are not finite on the validation split", process
        )
    failures = probe_failures(windows, main.kept, probe.kept)
    if failures:
        return EvalOutcome(None, "cheating", "; ".join(failures), process)
    problem = protected_args_problem(task, ready.get("model_args", {}))
    if problem:
        return EvalOutcome(None, "invalid", problem, process)
    loss = main.nats / main.count
    score = Score(
        val_loss=loss,
        bpb=bits_per_byte(main.nats, val_bytes),
        tokens=main.count,
        n_params=int(ready.get("n_params", 0)),
        eval_seconds=time.monotonic() - start,
        model_args=dict(ready.get("model_args", {})),
    )
    return EvalOutcome(score, "ok", "", process)
