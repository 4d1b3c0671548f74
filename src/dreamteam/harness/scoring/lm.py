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

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dreamteam.harness.sandbox.launcher import Isolation, Limits, ProcessResult
from dreamteam.harness.scoring.common import (
    PROBE_TOLERANCE,
    EvalOutcome,
    Score,
    process_failure,
    protected_args_problem,
)
from dreamteam.harness.scoring.nll import READS_SHARED, nll_rows
from dreamteam.harness.scoring.passes import both_passes, logits_pass, passes_may_overlap
from dreamteam.tasks import Task

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
    """Consumes one pass's logits window by window: sums the loss, keeps the probe rows."""

    def __init__(self, targets: np.ndarray, wanted: set[int], columns: np.ndarray):
        self.targets = targets
        self.wanted = wanted
        self.columns = torch.from_numpy(columns)
        self.nats = 0.0
        self.count = 0
        self.finite = True
        self.kept: dict[int, torch.Tensor] = {}
        self._private: torch.Tensor | None = None

    def add(self, first_row: int, logits: torch.Tensor) -> None:
        """Reduce the windows `logits` (rows, T, vocab), which may be memory that the child
        still writes: every figure of a window comes from one read of each of its values."""
        for j in range(logits.shape[0]):
            self._add_window(first_row + j, logits[j])

    def _add_window(self, row: int, window: torch.Tensor) -> None:
        targets = self.targets[row]
        count = int((targets >= 0).sum())
        kept = row in self.wanted
        if (kept and count) or window.dtype not in READS_SHARED:
            # one copy that both the probes' columns and the loss are taken from
            if self._private is None or self._private.shape != window.shape:
                self._private = torch.empty(window.shape, dtype=torch.float32)
            self._private.copy_(window)
            window = self._private
        if kept:  # from the copy, or the one read of these values
            self.kept[row] = window[:, self.columns].float()
        if not count:
            return
        # the cross-entropy is minus the target's log-probability (nll.py: compiled, about
        # half the time of torch's log-softmax, whose exponentials were the harness's work)
        total = float(nll_rows(window, targets).sum())
        if not math.isfinite(total):
            self.finite = False
        self.nats += total
        self.count += count


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
    gate: Callable[[], bool] | None = None,
) -> EvalOutcome:
    """Score a trained checkpoint on the whole validation split, in fresh sandboxed processes
    whose models run on `device` (the trial's); the logits come back to the CPU for the loss.

    With a `gate`, the processes start at once and import while the checkpoint is still being
    trained; `gate()` blocks until training ends and says whether there is anything to score.
    """
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

    opened: list[float] = []  # the evaluation's clock starts when the gate first opens

    def clocked_gate() -> bool:
        ready = gate is None or gate()
        opened.append(time.monotonic())
        return ready

    def run(name: str, stop: threading.Event) -> tuple[ProcessResult, dict]:
        inputs, on_chunk = passes[name]
        return logits_pass(
            task, files, checkpoint, inputs, work_dir / name, limits, isolation, on_chunk, stop,
            device, None if gate is None else clocked_gate,
        )  # fmt: skip

    (probe_process, probe_ready), (process, ready) = both_passes(run, passes_may_overlap(isolation))
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
        eval_seconds=time.monotonic() - min(opened, default=start),
        model_args=dict(ready.get("model_args", {})),
    )
    return EvalOutcome(score, "ok", "", process)
