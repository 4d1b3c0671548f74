"""The harness-owned score of a task with a harness file: inputs out, outputs back, metric here.

The sandboxed child (child.py, mode ``outputs``) gets the evaluation inputs and nothing else:
it rebuilds the candidate's model from its checkpoint and writes one output row per input row
to a file in its own work dir. Here, in the harness, the task's ``score(outputs, targets)``
turns them into figures; the targets never leave this process. Two fresh processes:
  - the scoring pass: every evaluation row once, in a secret order, plus repeats (copies of
    some rows placed in other batches): a row's output must not depend on its batch-mates;
  - the probe pass: a few rows again, in a small process and in small batches: a row's output
    must not depend on what else the process saw (a model that reads its whole input file,
    normalises by batch statistics, or remembers rows across calls gives itself away).
Outputs that are not finite make the status ``nan``.
"""

from __future__ import annotations

import os
import random
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
from dreamteam.tasks.metric import TaskMetric, finite, scored

N_REPEATS = 16  # rows sent twice in the scoring pass, each copy in another batch
N_PROBES = 32  # rows sent again in the probe pass
PROBE_BATCH = 7  # small and odd: the probe pass's batches look nothing like the scoring pass's
MAX_OUTPUT_BYTES = 1 << 30  # an outputs file larger than this is refused unread


@dataclass(frozen=True)
class RowPlan:
    """The rows each pass sends (as indices into the evaluation split), and its probes."""

    order: np.ndarray  # scoring pass: the source row of each row sent
    positions: np.ndarray  # scoring pass: where each source row was sent (first copy)
    probe: np.ndarray  # probe pass: the source row of each row sent
    repeats: tuple[tuple[int, int], ...]  # (position, position) of one source, other batches
    batch: int


def plan_rows(n: int, batch: int, rng: random.Random) -> RowPlan:
    """Every row once in a shuffled order, plus repeats in other batches, plus probe rows."""
    total = n + N_REPEATS
    # a repeat in the original's own batch proves nothing: with one batch, no repeats
    copies = set(rng.sample(range(total), N_REPEATS)) if total > batch else set()
    total = n + len(copies)
    originals = list(range(n))
    rng.shuffle(originals)
    filled = iter(originals)
    order = [-1 if pos in copies else next(filled) for pos in range(total)]
    where = {src: pos for pos, src in enumerate(order) if src >= 0}
    repeats = []
    for pos in sorted(copies):
        src = rng.randrange(n)
        while where[src] // batch == pos // batch:  # expected < 2 draws: batches are many
            src = rng.randrange(n)
        order[pos] = src
        repeats.append((where[src], pos))
    probe = rng.sample(range(n), min(N_PROBES, n))
    positions = np.array([where[src] for src in range(n)])
    return RowPlan(np.array(order), positions, np.array(probe), tuple(repeats), batch)


def _read_outputs(work_dir: Path, rows: int) -> np.ndarray:
    """The child's outputs file, refused unless it is a plain file holding one row per input.

    Opened without following links: the file is the candidate's, and a link to the
    harness's own data must not be read as its answer.
    """
    path = work_dir / "outputs.npy"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise ValueError(f"no readable outputs file ({exc.strerror})") from exc
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_OUTPUT_BYTES:
            raise ValueError("the outputs file is not a regular file of a sane size")
        try:
            outputs = np.load(f, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise ValueError(f"the outputs file cannot be read: {exc}") from exc
    if not isinstance(outputs, np.ndarray) or outputs.dtype != np.float32 or len(outputs) != rows:
        raise ValueError(f"the outputs file must hold {rows} float32 rows")
    return outputs


@dataclass(frozen=True)
class _Pass:
    """One pass's process, and its outputs or why there are none."""

    process: ProcessResult
    outputs: np.ndarray | None
    error: str = ""  # the child's description of its exception
    unreadable: str = ""  # the child finished, but its outputs file is not acceptable

    def failure(self) -> tuple[str, str]:
        """(status, reason) of a pass without outputs."""
        if self.unreadable:
            return "invalid", f"evaluation: {self.unreadable}"
        status, reason = process_failure(self.process, self.error)
        return status, f"evaluation: {reason}"


def _outputs_pass(
    task: Task,
    files: dict[str, str],
    checkpoint: Path,
    inputs: np.ndarray,
    batch: int,
    work_dir: Path,
    limits: Limits,
    isolation: Isolation,
) -> _Pass:
    """One fresh sandboxed process turning `inputs` into outputs, `batch` rows at a time."""
    stage_model(work_dir, files, checkpoint)
    np.save(work_dir / "inputs.npy", inputs)
    config = {**model_config(task), "batch": batch}
    process = run_sandboxed("outputs", config, work_dir, limits, isolation)
    if not process.report.get("done"):
        return _Pass(process, None, error=str(process.report.get("error", "")))
    try:
        return _Pass(process, _read_outputs(work_dir, len(inputs)))
    except ValueError as exc:
        return _Pass(process, None, unreadable=str(exc))


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.allclose(a, b, atol=PROBE_TOLERANCE, rtol=PROBE_TOLERANCE))


def row_failures(plan: RowPlan, main: np.ndarray, probe: np.ndarray) -> list[str]:
    """What the row-independence probes found, from both passes' outputs."""
    batched = sum(1 for a, b in plan.repeats if not _close(main[a], main[b]))
    fresh = sum(
        1 for i, src in enumerate(plan.probe) if not _close(main[plan.positions[src]], probe[i])
    )
    failures = []
    if batched:
        failures.append(
            f"row independence: {batched} of {len(plan.repeats)} rows gave different outputs "
            "in another batch (outputs may not depend on the other rows of a batch)"
        )
    if fresh:
        failures.append(
            f"row independence: {fresh} of {len(plan.probe)} rows gave different outputs "
            "in another process"
        )
    return failures


def evaluate_rows(
    task: Task,
    metric: TaskMetric,
    files: dict[str, str],
    checkpoint: Path,
    data_dir: Path,
    work_dir: Path,
    limits: Limits,
    isolation: Isolation,
) -> EvalOutcome:
    """Score a trained checkpoint with the task's own metric, in fresh sandboxed processes."""
    start = time.monotonic()
    inputs, targets = metric.eval_split(data_dir)
    plan = plan_rows(len(inputs), task.eval_batch, random.SystemRandom())

    def run(rows: np.ndarray, batch: int, name: str) -> _Pass:
        return _outputs_pass(
            task, files, checkpoint, inputs[rows], batch, work_dir / name, limits, isolation
        )

    # the probe pass first: it is short, and a crash there saves the long pass
    done = run(plan.probe, PROBE_BATCH, "probe")
    probe = done.outputs
    if probe is not None:
        done = run(plan.order, plan.batch, "score")
    main, process = done.outputs, done.process
    if main is None or probe is None:
        status, reason = done.failure()
        return EvalOutcome(None, status, reason, process)
    # not finite before the probes: NaN outputs also fail every comparison
    if not (np.isfinite(main).all() and np.isfinite(probe).all()):
        return EvalOutcome(None, "nan", "the model's outputs are not finite", process)
    if main.shape[1:] != probe.shape[1:]:
        shapes = f"{probe.shape[1:]} and {main.shape[1:]}"
        return EvalOutcome(
            None, "cheating", f"outputs per row differ across processes: {shapes}", process
        )
    failures = row_failures(plan, main, probe)
    if failures:
        return EvalOutcome(None, "cheating", "; ".join(failures), process)
    model_args = dict(process.report.get("model_args", {}))
    problem = protected_args_problem(task, model_args)
    if problem:
        return EvalOutcome(None, "invalid", problem, process)
    try:
        figures = scored(metric, task.objective, main[plan.positions], targets)
    except ValueError as exc:
        return EvalOutcome(None, "invalid", str(exc), process)
    if not finite(figures):
        return EvalOutcome(None, "nan", f"the task's score() is not finite: {figures}", process)
    score = Score(
        val_loss=figures[task.objective],
        bpb=None,
        tokens=len(inputs),
        n_params=int(process.report.get("n_params", 0)),
        eval_seconds=time.monotonic() - start,
        model_args=model_args,
        metrics=figures,
    )
    return EvalOutcome(score, "ok", "", process)
