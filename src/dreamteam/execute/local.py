"""Trials on this machine: a pool of sandboxed children, results yielded as each finishes.

Every executor runs the same `run_trial`: the same static checks, sandbox and harness-owned
score. Jobs are pulled on the caller's thread, one at a time, when a worker has room, so the
code producing them may use the store.
"""

from __future__ import annotations

import queue
import shutil
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path

from dreamteam.execute.devices import worker_devices
from dreamteam.execute.jobs import Job, JobFeed
from dreamteam.harness.checks import check_candidate
from dreamteam.harness.sandbox.forks import ForkServer
from dreamteam.harness.sandbox.limits import Isolation, StartMethod
from dreamteam.harness.trial import TrialBudget, run_trial
from dreamteam.records import Status, TrialResult
from dreamteam.tasks import Task
from dreamteam.tasks.data import DataPaths


class LocalExecutor:
    """Runs jobs on this machine, `workers` at a time; yields results as they finish.

    Each trial is its own sandboxed child process, so a thread per worker is enough: the
    threads only wait on children. The static checks run on the caller's thread before a job
    is handed to one (CPython's `ast.parse` is not safe in two threads at once, gh-106905, and
    the caller parses code too). The budget's threads per child are split so the workers
    together use each core once; with `device="cuda"` each worker slot has its own GPU.
    With `start` FORK (the default) the executor owns a template process that stages are
    forked from (sandbox/forks.py), started on first use and ended by `close`.
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
        start: StartMethod = StartMethod.FORK,
    ):
        self._forks = None
        if start is StartMethod.FORK and isolation.forks is None:
            self._forks = ForkServer(isolation, budget.threads)
            isolation = replace(isolation, forks=self._forks)
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
        """End the template stages are forked from, if this executor started one (the pool
        lives only while `run` does)."""
        if self._forks is not None:
            self._forks.close()
