"""What executors take and give: jobs in, (job, result) pairs out, as each trial finishes.

Jobs may arrive over time (the search hands over each proposal's trial as soon as its LLM
answer is recorded); an executor pulls them through a `JobFeed` when it has room.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dreamteam.records import TrialResult


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
