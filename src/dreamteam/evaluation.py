"""The harness-owned score: whole-split cross-entropy, bits per byte, and integrity probes.

The sandboxed child only turns token windows into logits (runner.py, mode ``eval``); it never
sees a target as such. Here, in the harness, the logits go through log-softmax and the
cross-entropy, window by window, and probes hidden among the real windows check that the
model is a function of its weights and of the tokens up to each position:
  - causality: a window and a copy whose tokens after position t differ must agree up to t;
  - consistency: a window placed twice, in different batches, must give the same logits.
Probe rows are shuffled among the real ones with an unpredictable permutation.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from dreamteam.sandbox import Isolation, Limits, ProcessResult, run_sandboxed
from dreamteam.tasks import Task

CHUNK = 16  # windows per round trip: 16 x 64 x 50,257 fp32 logits = 206 MB per slot
N_CAUSAL_PROBES = 3
N_REPEAT_PROBES = 2
PROBE_COLUMNS = 512  # vocabulary columns compared by the probes (chosen at random)
PROBE_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Windows:
    """The rows sent to the model, and what the harness alone knows about them."""

    inputs: np.ndarray  # (rows, T) int64, shuffled
    targets: np.ndarray  # (rows, T) int64, -1 where a position is not scored
    causal: tuple[tuple[int, int, int], ...]  # (row, perturbed row, last shared position)
    repeats: tuple[tuple[int, int], ...]  # (row, duplicate row)
    columns: np.ndarray  # vocabulary columns compared by the probes


@dataclass(frozen=True)
class Score:
    """The harness's measurement of one trained candidate."""

    val_loss: float
    bpb: float
    tokens: int
    n_params: int
    eval_seconds: float
    model_args: dict[str, Any]


@dataclass(frozen=True)
class EvalOutcome:
    """A score, or the reason there is none (status name + message)."""

    score: Score | None
    status: str  # "ok" | "crashed" | "nan" | "cheating" | "timeout" | "oom" | "invalid"
    reason: str
    process: ProcessResult | None


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
    causal, repeats = [], []
    for _ in range(N_CAUSAL_PROBES):
        src = rng.randrange(real)
        t = rng.randrange(context // 4, context - 1)
        changed = inputs[src].copy()
        changed[t + 1 :] = [rng.randrange(vocab) for _ in range(context - t - 1)]
        causal.append((src, len(inputs), t))
        inputs.append(changed)
        targets.append(blank)
    for _ in range(N_REPEAT_PROBES):
        src = rng.randrange(real)
        repeats.append((src, len(inputs)))
        inputs.append(inputs[src].copy())
        targets.append(blank)
    order = list(range(len(inputs)))
    rng.shuffle(order)
    where = {old: new for new, old in enumerate(order)}
    return Windows(
        inputs=np.stack([inputs[i] for i in order]),
        targets=np.stack([targets[i] for i in order]),
        causal=tuple((where[a], where[b], t) for a, b, t in causal),
        repeats=tuple((where[a], where[b]) for a, b in repeats),
        columns=np.array(sorted(rng.sample(range(vocab), min(PROBE_COLUMNS, vocab)))),
    )


class _Reducer:
    """Consumes logits chunk by chunk: sums the loss, keeps the probe rows."""

    def __init__(self, windows: Windows):
        self.windows = windows
        self.nats = 0.0
        self.count = 0
        self.finite = True
        self.kept: dict[int, torch.Tensor] = {}
        self.wanted = {r for trio in windows.causal for r in trio[:2]}
        self.wanted |= {r for pair in windows.repeats for r in pair}
        self.scratch: torch.Tensor | None = None  # reused: fresh pages per chunk cost more

    def _logsumexp(self, flat: torch.Tensor) -> torch.Tensor:
        if self.scratch is None or self.scratch.shape[0] < flat.shape[0]:
            self.scratch = torch.empty_like(flat)
        buf = self.scratch[: flat.shape[0]]
        peak = flat.amax(dim=-1, keepdim=True)
        peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
        torch.sub(flat, peak, out=buf)
        return buf.exp_().sum(dim=-1).log_().add_(peak.squeeze(1))

    def add(self, first_row: int, logits: torch.Tensor) -> None:
        rows, context, vocab = logits.shape
        targets = torch.from_numpy(self.windows.targets[first_row : first_row + rows]).reshape(-1)
        mask = targets >= 0
        if mask.any():
            flat = logits.reshape(-1, vocab)
            # cross-entropy as logsumexp minus the target's logit: no (rows x vocab) temporary
            lse = self._logsumexp(flat)
            picked = flat.gather(1, targets.clamp(min=0)[:, None]).squeeze(1)
            losses = (lse - picked)[mask]
            total = float(losses.double().sum())
            if not math.isfinite(total):
                self.finite = False
            self.nats += total
            self.count += int(mask.sum())
        columns = torch.from_numpy(self.windows.columns)
        for r in range(first_row, first_row + rows):
            if r in self.wanted:
                self.kept[r] = logits[r - first_row][:, columns].clone()

    def probe_failures(self) -> list[str]:
        failures = []
        for row, other, t in self.windows.causal:
            a, b = self.kept[row][: t + 1], self.kept[other][: t + 1]
            if not torch.allclose(a, b, atol=PROBE_TOLERANCE, rtol=PROBE_TOLERANCE):
                failures.append(f"causality: logits at position <= {t} changed with later tokens")
        for row, other in self.windows.repeats:
            if not torch.allclose(self.kept[row], self.kept[other], atol=PROBE_TOLERANCE,
                                  rtol=PROBE_TOLERANCE):
                failures.append("consistency: the same window gave different logits in another batch")
        return failures


def _converse(windows: Windows, vocab: int, shared: torch.Tensor, reducer: _Reducer, ready: dict):
    rows, context = windows.inputs.shape
    n_chunks = math.ceil(rows / CHUNK)

    def talk(stdin: IO[bytes], results: IO[bytes]) -> None:
        first = json.loads(results.readline() or b"{}")
        ready.update(first)
        if not first.get("ready"):
            return
        stdin.write(b"0\n")
        stdin.flush()
        for i in range(n_chunks):
            reply = json.loads(results.readline() or b"{}")
            if reply.get("chunk") != i:
                ready.update(reply)
                return
            if i + 1 < n_chunks:  # the child fills the other slot while this one is reduced
                stdin.write(f"{i + 1}\n".encode())
                stdin.flush()
            n = min(CHUNK, rows - i * CHUNK)
            reducer.add(i * CHUNK, shared[i % 2, :n])
        ready["done"] = True

    return talk


def evaluate_checkpoint(
    task: Task,
    files: dict[str, str],
    checkpoint: Path,
    val: np.ndarray,
    val_bytes: int,
    work_dir: Path,
    limits: Limits,
    isolation: Isolation,
) -> EvalOutcome:
    """Score a trained checkpoint on the whole validation split, in a fresh sandboxed process."""
    start = time.monotonic()
    work_dir.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        (work_dir / name).write_text(source, encoding="utf-8")
    shutil.copyfile(checkpoint, work_dir / "ckpt.pt")
    windows = build_windows(val, task.context, task.vocab_size, random.SystemRandom())
    np.save(work_dir / "inputs.npy", windows.inputs)
    # logits travel through anonymous shared memory: no disk, no copy through a pipe
    size = 2 * CHUNK * task.context * task.vocab_size * 4
    memfd = os.memfd_create("dreamteam-logits")
    os.ftruncate(memfd, size)
    buffer = mmap.mmap(memfd, size)
    shape = (2, CHUNK, task.context, task.vocab_size)
    shared = torch.from_numpy(np.frombuffer(buffer, dtype=np.float32).reshape(shape))
    reducer = _Reducer(windows)
    ready: dict[str, Any] = {}
    config = {
        "model_file": task.contract.model_file,
        "model_class": task.contract.model_class,
        "config_class": task.contract.config_class,
        "vocab_size": task.vocab_size,
        "chunk": CHUNK,
        "logits_fd": memfd,
    }
    talk = _converse(windows, task.vocab_size, shared, reducer, ready)
    try:
        process = run_sandboxed("eval", config, work_dir, limits, isolation, converse=talk,
                                pass_fds=(memfd,))
    finally:
        del talk, shared  # release the views before the mapping closes
        buffer.close()
        os.close(memfd)
    (work_dir / "inputs.npy").unlink(missing_ok=True)
    if not ready.get("done"):
        status, reason = process_failure(process, ready.get("error", ""))
        return EvalOutcome(None, status, f"evaluation: {reason}", process)
    failures = reducer.probe_failures()
    if failures:
        return EvalOutcome(None, "cheating", "; ".join(failures), process)
    if not reducer.finite:
        return EvalOutcome(None, "nan", "the model's logits are not finite on the validation split", process)
    wrong = {k: v for k, v in task.protected.items()
             if k in ready.get("model_args", {}) and ready["model_args"][k] != v}
    if wrong:
        detail = ", ".join(f"{k}={ready['model_args'][k]!r} (must be {v!r})" for k, v in wrong.items())
        return EvalOutcome(None, "invalid", f"checkpoint model_args change protected values: {detail}", process)
    loss = reducer.nats / reducer.count
    score = Score(
        val_loss=loss,
        bpb=reducer.nats / math.log(2) / val_bytes,
        tokens=reducer.count,
        n_params=int(ready.get("n_params", 0)),
        eval_seconds=time.monotonic() - start,
        model_args=dict(ready.get("model_args", {})),
    )
    return EvalOutcome(score, "ok", "", process)


def process_failure(process: ProcessResult, error: str) -> tuple[str, str]:
    """Classify a sandboxed process that did not finish its job: (status, reason)."""
    tail = process.log.strip().splitlines()[-1:] if process.log.strip() else []
    if process.timed_out:
        return "timeout", f"killed after the {process.wall_seconds:.0f} s time limit"
    memory_words = ("MemoryError", "can't allocate memory", "bad_alloc", "Cannot allocate memory")
    if process.oom or any(w in (error + process.log[-4000:]) for w in memory_words):
        return "oom", "ran out of memory (the sandbox's memory limit)"
    if error:
        return "crashed", error
    if process.signal:
        return "crashed", f"killed by signal {process.signal}" + (f": {tail[0]}" if tail else "")
    if process.returncode != 0:
        return "crashed", f"exited with code {process.returncode}" + (f": {tail[0]}" if tail else "")
    return "crashed", "exited without reporting a result" + (f": {tail[0]}" if tail else "")
