"""Where trials run: a pool of sandboxed children on this machine, or Ray tasks on a cluster.

    jobs (a list, or proposals still arriving) ─► executor ─► (job, result) as each finishes

Every executor runs the same `run_trial`: the same static checks, sandbox and harness-owned
score. Jobs may arrive over time (the search hands over each proposal's trial as soon as its
LLM answer is recorded); an executor pulls them on the caller's thread, one at a time, when
it has room, so the code producing them may use the store. Ray lives in executors_ray.py and
is imported only when asked for.
"""

from __future__ import annotations

import queue
import shutil
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from dreamteam.checks import check_candidate
from dreamteam.data import DataPaths
from dreamteam.device import select_device, worker_devices
from dreamteam.sandbox import Isolation
from dreamteam.tasks import Task
from dreamteam.trial import TrialBudget, TrialResult, run_trial
from dreamteam.types import Status

if TYPE_CHECKING:
    from dreamteam.executors_ray import RayExecutor

EXECUTORS = ("local", "ray")


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

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, TrialResult]]: ...


class JobFeed:
    """Jobs pulled on demand from an iterable whose items may still be arriving."""

    def __init__(self, jobs: Iterable[Job]):
        self._jobs = iter(jobs)
        self.exhausted = False

    def take(self, n: int) -> list[Job]:
        """Up to `n` more jobs; fewer only once the iterable has ended."""
        taken: list[Job] = []
        while len(taken) < n and not self.exhausted:
            job = next(self._jobs, None)
            if job is None:
                self.exhausted = True
            else:
                taken.append(job)
        return taken


class LocalExecutor:
    """Runs jobs on this machine, `workers` at a time; yields results as they finish.

    Each trial is its own sandboxed child process, so a thread per worker is enough: the
    threads only wait on children. The static checks run on the caller's thread before a job
    is handed to one (CPython's `ast.parse` is not safe in two threads at once, gh-106905, and
    the caller parses code too). The budget's threads per child are split so the workers
    together use each core once; with `device="cuda"` each worker slot has its own GPU.
    """

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
        # a worker takes a device for the length of one trial and gives it back
        self._devices: queue.SimpleQueue[str] = queue.SimpleQueue()
        for slot in worker_devices(device, self.workers):
            self._devices.put(slot)

    def _run_one(self, job: Job) -> TrialResult:
        work = self.work_root / f"{job.candidate}-{job.fidelity}-{job.seed}"
        device = self._devices.get()
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
                device=device,
                keep_checkpoint=job.keep_checkpoint,
                checked=True,  # by `run`, on the caller's thread
            )
        finally:
            self._devices.put(device)
            shutil.rmtree(work, ignore_errors=True)

    def _rejected(self, job: Job) -> TrialResult | None:
        """The job's result when its files fail the static checks, else None."""
        report = check_candidate(job.files, self.task)
        if report.ok:
            return None
        iters = self.task.iterations(job.fidelity)
        return TrialResult(Status.INVALID, report.reason(), job.seed, job.fidelity, iters)

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, TrialResult]]:
        """Run every job, pulling the next whenever a worker is free; yield (job, result)
        in the order they finish."""
        feed = JobFeed(jobs)
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            pending: dict[Future[TrialResult], Job] = {}
            while pending or not feed.exhausted:
                for job in feed.take(self.workers - len(pending)):
                    rejected = self._rejected(job)
                    if rejected is not None:  # it never takes a worker
                        yield job, rejected
                    else:
                        pending[pool.submit(self._run_one, job)] = job
                if not pending:
                    continue
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield pending.pop(future), future.result()

    def close(self) -> None:
        """Nothing to release: the pool lives only while `run` does."""


def make_executor(
    kind: str,
    task: Task,
    data: DataPaths,
    isolation: Isolation,
    budget: TrialBudget,
    work_root: Path,
    workers: int = 1,
    device: str = "cpu",
    address: str = "",
) -> LocalExecutor | RayExecutor:
    """The executor a run asked for: `local`, or `ray` (attached to `address`, or a local
    Ray instance sized to `workers` when the address is empty).

    `device` is as asked (`auto`, `cpu`, `cuda`, `mps`): the local executor checks it against
    this machine, the Ray executor against the cluster's GPUs.
    """
    if kind == "ray":
        from dreamteam.executors_ray import RayExecutor

        return RayExecutor(task, data, budget, workers=workers, device=device, address=address)
    where = select_device(device)
    return LocalExecutor(task, data, isolation, budget, work_root, workers=workers, device=where)
