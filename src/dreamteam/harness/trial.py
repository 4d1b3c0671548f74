"""One candidate's path through the harness, for one seed at one fidelity.

files ─► static checks ─► sandboxed training ─► run-contract checks
      ─► sandboxed logits (or outputs) + harness-owned score ─► TrialResult (one Status)

The LM task is scored by scoring/lm.py, a task with a harness file by scoring/rows.py.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
import stat
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np

from dreamteam.harness.checks import check_candidate
from dreamteam.harness.sandbox.launcher import Isolation, Limits, ProcessResult, run_sandboxed
from dreamteam.harness.scoring.common import EvalOutcome, Score, process_failure
from dreamteam.harness.scoring.lm import evaluate_checkpoint
from dreamteam.harness.scoring.rows import evaluate_rows
from dreamteam.records import DISK_FULL, Status, TrialResult
from dreamteam.tasks import Task
from dreamteam.tasks.data import DataPaths
from dreamteam.tasks.metric import load_metric

SELF_REPORT_GAP = 0.5  # nats: a self-reported loss this far below the harness's is flagged
# A crash with less than this free under the work dir is the disk's fault, not the
# candidate's: a trial of the built-in task writes two ~7 MB checkpoints and a data copy.
LOW_DISK_BYTES = 64 << 20


@dataclass(frozen=True)
class TrialBudget:
    """Time and memory granted to one trial (training is scaled by its iterations)."""

    seconds_per_iter: float = 1.0  # ~15x the baseline's step on a 2-core CPU: room for slow ideas
    base_seconds: float = 90.0  # interpreter + torch start-up, data, checkpoint
    eval_seconds: float = 300.0
    memory_bytes: int = 3 << 30
    threads: int = 2

    def train_limits(self, iters: int) -> Limits:
        wall = self.base_seconds + self.seconds_per_iter * iters
        return Limits(wall_seconds=wall, memory_bytes=self.memory_bytes, threads=self.threads)

    def eval_limits(self) -> Limits:
        return Limits(
            wall_seconds=self.eval_seconds, memory_bytes=self.memory_bytes, threads=self.threads
        )


def run_trial(
    task: Task,
    files: Mapping[str, str],
    data: DataPaths,
    fidelity: str,
    seed: int,
    work_dir: Path,
    budget: TrialBudget,
    isolation: Isolation,
    device: str = "cpu",
    on_output: Callable[[str], None] | None = None,
    iters: int | None = None,
    keep_checkpoint: Path | None = None,
    checked: bool = False,
) -> TrialResult:
    """Check, train and score one candidate; every failure becomes a Status, never an exception.

    `iters` overrides the fidelity's optimizer steps (e.g. `dreamteam train --iters N`);
    `keep_checkpoint` is where to copy the trained weights when the trial is ok. `checked`:
    the caller already passed the files through `check_candidate` (the local executor does,
    on its caller's thread: CPython's `ast.parse` is not safe in two threads at once).
    A trial the machine's disk ended is `crashed` with a reason starting records.DISK_FULL.
    """
    iters = task.iterations(fidelity) if iters is None else iters
    try:
        result = _trial(
            task, files, data, fidelity, seed, work_dir, budget, isolation, device, on_output,
            iters, keep_checkpoint, checked,
        )  # fmt: skip
    except OSError as exc:  # the harness's own writes: staging, scoring, keeping the weights
        if exc.errno != errno.ENOSPC:
            raise
        where = exc.filename or "its files"
        reason = f"{DISK_FULL}: the harness could not write {where}"
        return TrialResult(Status.CRASHED, reason, seed, fidelity, iters)
    return _blame_the_disk(result, work_dir)


def _blame_the_disk(result: TrialResult, work_dir: Path) -> TrialResult:
    """A crash while the disk under the trial is (nearly) full is the disk's doing: a write
    the candidate's process made (its checkpoint, say) failed for want of space, whatever
    words its exception used (torch says "file write failed")."""
    if result.status is not Status.CRASHED:
        return result
    place = work_dir
    while not place.exists() and place != place.parent:
        place = place.parent
    try:
        free = shutil.disk_usage(place).free
    except OSError:
        return result
    if free >= LOW_DISK_BYTES:
        return result
    return replace(result, reason=f"{DISK_FULL} ({free >> 20} MiB free): {result.reason}")


def _trial(
    task: Task,
    files: Mapping[str, str],
    data: DataPaths,
    fidelity: str,
    seed: int,
    work_dir: Path,
    budget: TrialBudget,
    isolation: Isolation,
    device: str,
    on_output: Callable[[str], None] | None,
    iters: int,
    keep_checkpoint: Path | None,
    checked: bool,
) -> TrialResult:
    report = None if checked else check_candidate(files, task)
    if report is not None and not report.ok:
        return TrialResult(Status.INVALID, report.reason(), seed, fidelity, iters)
    train_dir = work_dir / "train"
    if train_dir.exists():
        shutil.rmtree(train_dir)
    (train_dir / "data").mkdir(parents=True)
    for name, source in files.items():
        (train_dir / name).write_text(source, encoding="utf-8")
    for path, name in data.candidate_files():
        (train_dir / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, train_dir / "data" / name)
    config = {
        "entry_file": task.contract.entry_file,
        "entry_point": task.contract.entry_point,
        "data_dir": str(train_dir / "data"),
        "iters": iters,
        "seed": seed,
        "device": device,
    }
    ckpt = train_dir / task.contract.checkpoint
    evaluate = partial(
        _evaluate, task, dict(files), ckpt, data, work_dir / "eval", budget, isolation, device
    )
    gate = _Gate()
    with ThreadPoolExecutor(max_workers=1) as pool:
        # the scoring processes start now and import torch while the candidate trains (a
        # core is idle while the training process imports its own); they wait for the gate
        early = pool.submit(evaluate, gate, iters) if task.is_lm else None
        try:
            proc = run_sandboxed(
                "train", config, train_dir, budget.train_limits(iters), isolation,
                on_output=on_output,
            )  # fmt: skip
            return _after_training(
                task, files, proc, ckpt, seed, fidelity, iters, keep_checkpoint,
                partial(_opened, early, gate) if early else evaluate,
            )  # fmt: skip
        finally:
            gate.release(False)  # no checkpoint to score, or it was scored: end the waiters


class _Gate:
    """Opens once: to score a checkpoint (True) or to end the waiting processes (False)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._open = False

    def release(self, open_: bool) -> None:
        if not self._event.is_set():
            self._open = open_
            self._event.set()

    def __call__(self) -> bool:
        self._event.wait()
        return self._open


def _opened(early: Future[EvalOutcome], gate: _Gate) -> EvalOutcome:
    """The early-started evaluation's outcome, once the checkpoint is there to score."""
    gate.release(True)
    return early.result()


def _after_training(
    task: Task,
    files: Mapping[str, str],
    proc: ProcessResult,
    ckpt: Path,
    seed: int,
    fidelity: str,
    iters: int,
    keep_checkpoint: Path | None,
    evaluate: Callable[[], EvalOutcome],
) -> TrialResult:
    """The run-contract checks on a finished training, then the score (`evaluate()`)."""
    out = proc.report
    # what every outcome from here on carries: the training log and the child's counters
    trained = TrialResult(
        Status.INVALID,
        "",
        seed,
        fidelity,
        iters,
        log=proc.log,
        layers=proc.layers,
        steps=int(out.get("steps", 0)),
        train_seconds=float(out.get("train_seconds", proc.wall_seconds)),
    )
    if out.get("budget_exceeded"):
        return replace(trained, reason=str(out["error"]))
    if proc.timed_out or proc.returncode != 0 or "returned" not in out:
        status, reason = process_failure(proc, out.get("error", ""))
        return replace(trained, status=Status(status), reason=reason)
    problem = _contract_problem(task, out)
    if problem:
        return replace(trained, reason=problem)
    problem = _checkpoint_problem(task, ckpt)
    if problem:
        return replace(trained, reason=problem)
    outcome = evaluate()
    self_loss = _first_number(out.get("returned"))
    if outcome.score is None:
        eval_log = outcome.process.log if outcome.process else ""
        return replace(
            trained,
            status=Status(outcome.status),
            reason=outcome.reason,
            self_loss=self_loss,
            log=proc.log + "\n--- evaluation ---\n" + eval_log,
        )
    score = outcome.score
    if keep_checkpoint is not None:
        keep_checkpoint.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ckpt, keep_checkpoint)
    return replace(
        trained,
        status=Status.OK,
        val_loss=score.val_loss,
        bpb=score.bpb,
        self_loss=self_loss,
        self_loss_gap=self_loss is not None and self_loss < score.val_loss - SELF_REPORT_GAP,
        eval_seconds=score.eval_seconds,
        n_params=score.n_params,
        metrics=dict(score.metrics),
        figures=_secondary(task, score),
    )


def _secondary(task: Task, score: Score) -> dict[str, float]:
    """The figures beside the objective: bits per byte for the language model, the other
    keys of a harness file's score() else (a classifier's accuracy; never a bpb)."""
    if task.is_lm:
        return {} if score.bpb is None else {"bpb": score.bpb}
    return {k: v for k, v in score.metrics.items() if k != task.objective}


def _evaluate(
    task: Task,
    files: dict[str, str],
    ckpt: Path,
    data: DataPaths,
    work_dir: Path,
    budget: TrialBudget,
    isolation: Isolation,
    device: str,
    gate: Callable[[], bool] | None = None,
    iters: int = 0,
) -> EvalOutcome:
    """The task's harness-owned score of a trained checkpoint. With a `gate` (the LM task),
    its processes start before training ends, and their clock allows for the training too."""
    limits = budget.eval_limits()
    if task.is_lm:
        if gate is not None:
            wall = limits.wall_seconds + budget.train_limits(iters).wall_seconds
            limits = replace(limits, wall_seconds=wall)
        val = np.fromfile(data.val, dtype=np.uint16)
        return evaluate_checkpoint(
            task, files, ckpt, val, data.val_bytes(), work_dir, limits, isolation, device, gate
        )
    metric = load_metric(task)
    return evaluate_rows(task, metric, files, ckpt, data.root, work_dir, limits, isolation)


def _checkpoint_problem(task: Task, ckpt: Path) -> str:
    """Why the checkpoint cannot be scored, or ''.

    It must be a plain file: a link to a file outside the work dir (the harness's own data,
    say) would be copied into the scoring process, where the candidate's code could read it.
    """
    contract = task.contract
    try:
        info = os.lstat(ckpt)
    except OSError:
        return f"{contract.entry_point}() wrote no {contract.checkpoint}"
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        return f"{contract.checkpoint} must be a plain file written by training, not a link"
    return ""


def _first_number(values: object) -> float | None:
    if isinstance(values, list) and values and isinstance(values[0], (int, float)):
        value = float(values[0])
        return value if math.isfinite(value) else None
    return None


def _contract_problem(task: Task, out: dict) -> str:
    returned = out.get("returned") or []
    want = task.contract.returns
    if want and len(returned) != len(want):
        kinds = ", ".join(out.get("returned_types", []))
        return f"{task.contract.entry_point}() must return ({', '.join(want)}), returned ({kinds})"
    if out.get("steps", 0) == 0:
        return "training never stepped a torch.optim optimizer (the harness counts its steps)"
    batch, block = task.protected.get("batch_size"), task.protected.get("block_size")
    seen = out.get("max_batch") or [0, 0]
    if batch and block and (seen[0] > batch or seen[1] > block):
        return (
            f"trained on batches of {seen[0]}x{seen[1]} tokens, above the protected {batch}x{block}"
        )
    return ""
