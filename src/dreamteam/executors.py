"""Where trials run. The local executor keeps `workers` sandboxed trials in flight at once.

Each trial is its own sandboxed child process, so a thread per worker is enough here: the
threads only wait on children. Threads per child are split so the workers together use each
core once.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dreamteam.data import DataPaths
from dreamteam.sandbox import Isolation
from dreamteam.tasks import Task
from dreamteam.trial import TrialBudget, TrialResult, run_trial


@dataclass(frozen=True)
class Job:
    """One trial to run: a candidate's files at a fidelity and seed."""

    candidate: str
    files: dict[str, str]
    fidelity: str
    seed: int
    keep_checkpoint: Path | None = None  # where to keep the trained weights, if anywhere


class Executor(Protocol):
    """Anything that runs trials and yields their results as they finish."""

    def run(self, jobs: Sequence[Job]) -> Iterator[tuple[Job, TrialResult]]: ...


class LocalExecutor:
    """Runs jobs on this machine, `workers` at a time; yields results as they finish."""

    def __init__(
        self,
        task: Task,
        data: DataPaths,
        isolation: Isolation,
        budget: TrialBudget,
        work_root: Path,
        workers: int = 1,
        device: str = "cpu",
    ):
        self.task, self.data, self.isolation = task, data, isolation
        self.budget, self.work_root = budget, work_root
        self.workers, self.device = max(1, workers), device

    def _run_one(self, job: Job) -> TrialResult:
        work = self.work_root / f"{job.candidate}-{job.fidelity}-{job.seed}"
        try:
            return run_trial(
                self.task,
                job.files,
                self.data,
                job.fidelity,
                job.seed,
                work,
                self.budget,
                self.isolation,
                device=self.device,
                keep_checkpoint=job.keep_checkpoint,
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def run(self, jobs: Sequence[Job]) -> Iterator[tuple[Job, TrialResult]]:
        """Run every job; yield (job, result) in the order they finish."""
        if not jobs:
            return
        if self.workers == 1:
            for job in jobs:
                yield job, self._run_one(job)
            return
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            pending: dict[Future[TrialResult], Job] = {
                pool.submit(self._run_one, j): j for j in jobs
            }
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield pending.pop(future), future.result()
