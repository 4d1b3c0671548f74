"""Measuring candidates for the loop: every missing (candidate, seed) trial run, each stored
the moment it finishes, and estimates read back from the store.

Why a trial is stored at once but its outcome later. A trial's row is keyed by (candidate,
fidelity, seed) and holds only what that training measured, so storing it the moment it
finishes makes the store's rows independent of timing, and a `kill -9` loses no finished
trial. What a trial does to its *candidate* (status and reason, which its duplicates share
and later proposals' records read) is applied afterwards, in a fixed order: candidates in the
order they arrived, each one's seeds in order, and only once `settled()` says every proposal
of the batch is recorded. So the candidates' rows are the same whatever order trials finish
in (two failing seeds leave the later seed's reason, never the later-finishing one's), and a
resumed run applies the outcomes of trials stored before the kill exactly as the first run
would have.

A trial the disk was too full to run (records.DISK_FULL) is stored, changes no candidate,
and stops the run once the trials in flight are in; on resume it runs again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from dreamteam.config import RunConfig
from dreamteam.execute.jobs import Executor, Job
from dreamteam.records import CandidateRecord, Event, Status, TrialRecord
from dreamteam.report.live import LiveReport
from dreamteam.select.rules import Estimate, estimate
from dreamteam.store import RunStore
from dreamteam.store.faults import disk_full


class Trials:
    """Runs a run's trials through its executor and keeps every result in its store."""

    def __init__(
        self,
        config: RunConfig,
        store: RunStore,
        executor: Executor,
        emit: Callable[[Event], None],
    ):
        self.config, self.store, self.executor, self.emit = config, store, executor, emit
        # the run's report.html, rebuilt as trials land, for every way a run is started
        self.live = LiveReport(store, lambda text: emit(Event("report", detail=text)))

    def measure(
        self,
        candidates: Iterable[CandidateRecord],
        fidelity: str,
        seeds: Sequence[int],
        settled: Callable[[], bool] = lambda: True,
        keep: bool = True,
    ) -> None:
        """Run every missing (candidate, seed) trial at `fidelity`, storing each as it ends.

        `candidates` may still be arriving (proposals being answered): each one's trials start
        as soon as it arrives. Outcomes follow in arrival order once `settled()` (see above).
        Raises DiskFullError after the trials in flight when the disk ran out under one.
        `keep=False`: keep no weights (a close call's extra seed must not replace them).
        """
        # the weights of each candidate's first confirmation are kept, for `dreamteam sample`
        keep = keep and fidelity == self.config.fidelity
        order: list[tuple[CandidateRecord, int]] = []  # outcomes to apply, in this order
        persona: dict[str, str] = {}
        full = False

        def jobs() -> Iterator[Job]:
            for c in candidates:
                for seed in seeds:
                    if full:
                        return  # the disk is full: start nothing more
                    order.append((c, seed))
                    persona[c.id] = c.persona
                    if self._missing(c.id, fidelity, seed):
                        kept = keep and seed == seeds[0]
                        ckpt = self.store.candidate_dir(c) / "ckpt.pt" if kept else None
                        yield Job(c.id, dict(c.files), fidelity, seed, ckpt)

        applied = 0
        for job, result in self.executor.run(_announced(jobs(), self.emit)):
            self.store.add_trial(job.candidate, result)  # at once: a kill loses no finished trial
            full = full or result.disk_full
            detail = f"{fidelity} seed {job.seed}: {result.status}"
            self.emit(
                Event("trial", job.candidate, persona[job.candidate], detail, result.val_loss)
            )
            if settled():
                applied = self._apply(order, applied, fidelity)
            self.live.trial_stored()
        if full:
            raise disk_full(self.store.run_dir)
        self._apply(order, applied, fidelity)

    def _missing(self, candidate: str, fidelity: str, seed: int) -> bool:
        """No finished trial is stored (one the disk cut short does not count)."""
        t = self.store.trial(candidate, fidelity, seed)
        return t is None or t.disk_full

    def _apply(self, order: list[tuple[CandidateRecord, int]], start: int, fidelity: str) -> int:
        """Apply the outcomes of `order[start:]` up to the first trial not finished yet;
        returns how many of `order` are applied."""
        while start < len(order):
            c, seed = order[start]
            t = self.store.trial(c.id, fidelity, seed)
            if t is None or t.disk_full:
                break
            self._outcome(c, t)
            start += 1
        return start

    def _outcome(self, c: CandidateRecord, t: TrialRecord) -> None:
        """What one finished trial does to its candidate: its status (a screening trial sets
        it; any failure does), and at screening its log in the run tree."""
        screening = t.fidelity == self.config.screen_fidelity
        if not c.status or t.status is not Status.OK or screening:
            self.store.set_outcome(c.id, str(t.status), t.reason)
        if screening:
            self.store.write_log(c, self.store.trial_log(c.id, t.fidelity, t.seed))

    def estimate(self, candidate: str, fidelity: str, seeds: Sequence[int]) -> Estimate | None:
        losses = []
        for seed in seeds:
            t = self.store.trial(candidate, fidelity, seed)
            if t is None or t.status is not Status.OK or t.val_loss is None:
                return None
            losses.append(t.val_loss)
        return estimate(losses)


def _announced(jobs: Iterable[Job], emit: Callable[[Event], None]) -> Iterator[Job]:
    """The jobs, each announced as the executor takes it, so a display shows what trains."""
    for job in jobs:
        emit(Event("started", job.candidate, detail=f"{job.fidelity} seed {job.seed}"))
        yield job
