"""What both scorers share: the outcome records, staging the model for the child, the
checks on a checkpoint's model arguments, and how a failed child is described."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dreamteam.harness.sandbox.launcher import ProcessResult
from dreamteam.tasks import Task

# of the probed windows themselves (a model that peeks raises the logit of the next token)
PROBE_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Score:
    """The harness's measurement of one trained candidate."""

    val_loss: float  # the task's objective: nats per token for the LM task
    bpb: float | None  # bits per byte (LM task only)
    tokens: int  # predictions (LM task) or rows scored
    n_params: int
    eval_seconds: float
    model_args: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)  # every figure of a task's score()


@dataclass(frozen=True)
class EvalOutcome:
    """A score, or the reason there is none (status name + message)."""

    score: Score | None
    status: str  # "ok" | "crashed" | "nan" | "cheating" | "timeout" | "oom" | "invalid"
    reason: str
    process: ProcessResult | None


def stage_model(work_dir: Path, files: Mapping[str, str], checkpoint: Path) -> None:
    """A scoring process's directory: the candidate's files and its weights, nothing else."""
    work_dir.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        (work_dir / name).write_text(source, encoding="utf-8")
    shutil.copyfile(checkpoint, work_dir / "ckpt.pt")


def model_config(task: Task) -> dict[str, Any]:
    """What the sandboxed child needs to rebuild the candidate's model from its checkpoint."""
    return {
        "model_file": task.contract.model_file,
        "model_class": task.contract.model_class,
        "config_class": task.contract.config_class,
    }


def protected_args_problem(task: Task, model_args: Mapping[str, Any]) -> str:
    """Why the checkpoint's model_args break the task's protected constants, or ''."""
    wrong = {k: v for k, v in task.protected.items() if k in model_args and model_args[k] != v}
    if not wrong:
        return ""
    detail = ", ".join(f"{k}={model_args[k]!r} (must be {v!r})" for k, v in wrong.items())
    return f"checkpoint model_args change protected values: {detail}"


def process_failure(process: ProcessResult, error: str) -> tuple[str, str]:
    """Classify a sandboxed process that did not finish its job: (status, reason).

    Evidence is what the harness observed (its timer, the memory cgroup's OOM count) and the
    runner's description of the exception; the candidate's own output is not, since a
    candidate can print "MemoryError" to pass a crash off as an OOM.
    """
    # the last line of output, cut short: the reason is stored and shown on one line
    tail = [line[:300] for line in process.log.strip().splitlines()[-1:]]
    if process.timed_out:
        return "timeout", f"killed after the {process.wall_seconds:.0f} s time limit"
    memory_words = ("MemoryError", "can't allocate memory", "bad_alloc", "Cannot allocate memory")
    if process.oom or any(w in error for w in memory_words):
        return "oom", "ran out of memory (the sandbox's memory limit)"
    if error:
        return "crashed", error
    if process.signal:
        return "crashed", f"killed by signal {process.signal}" + (f": {tail[0]}" if tail else "")
    if process.returncode != 0:
        return "crashed", f"exited with code {process.returncode}" + (
            f": {tail[0]}" if tail else ""
        )
    return "crashed", "exited without reporting a result" + (f": {tail[0]}" if tail else "")
