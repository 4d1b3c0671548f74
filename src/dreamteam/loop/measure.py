"""Measuring candidates for the loop: every missing (candidate, seed) trial run, each stored
the moment it finishes, and estimates read back from the store."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from dreamteam.config import RunConfig
from dreamteam.execute.jobs import Executor, Job
from dreamteam.records import CandidateRecord, Event, Status, TrialResult
from dreamteam.select.rules import Estimate, estimate
from dreamteam.store import RunStore


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

    def measure(
        self,
        candidates: Iterable[CandidateRecord],
        fidelity: str,
        seeds: Sequence[int],
        settled: Callable[[], bool] = lambda: True,
    ) -> None:
        """Run every missing (candidate, seed) trial at `fidelity`; store each as it finishes.

        `candidates` may still be arriving (proposals being answered): each one's trials start
        as soon as it arrives, but results wait in memory until `settled()` says every
        proposal of the batch is recorded, so none is recorded against a store the sequential
        loop would not have shown it.
        """
        # the weights of each candidate's first confirmation are kept, for `dreamteam sample`
        keep = fidelity == self.config.fidelity
        by_id: dict[str, CandidateRecord] = {}
        held: list[tuple[Job, TrialResult]] = []

        def jobs() -> Iterator[Job]:
            for c in candidates:
                by_id[c.id] = c
                for seed in seeds:
                    if self.store.trial(c.id, fidelity, seed) is None:
                        kept = keep and seed == seeds[0]
                        ckpt = self.store.candidate_dir(c) / "ckpt.pt" if kept else None
                        yield Job(c.id, dict(c.files), fidelity, seed, ckpt)

        for finished in self.executor.run(_announced(jobs(), self.emit)):
            held.append(finished)
            while held and settled():
                job, result = held.pop(0)
                self._store(by_id[job.candidate], fidelity, job, result)
        for job, result in held:
            self._store(by_id[job.candidate], fidelity, job, result)

    def _store(self, c: CandidateRecord, fidelity: str, job: Job, result: TrialResult) -> None:
        """One finished trial into the store, with the candidate's outcome and log."""
        self.store.add_trial(job.candidate, result)
        screening = fidelity == self.config.screen_fidelity
        if not c.status or result.status is not Status.OK or screening:
            self.store.set_outcome(c.id, str(result.status), result.reason)
        if screening:
            self.store.write_log(c, result.log)
        self.emit(
            Event(
                "trial",
                c.id,
                c.persona,
                f"{fidelity} seed {job.seed}: {result.status}",
                result.val_loss,
            )
        )

    def estimate(self, candidate: str, fidelity: str, seeds: Sequence[int]) -> Estimate | None:
        losses = []
        for seed in seeds:
            t = self.store.trial(candidate, fidelity, seed)
            if t is None or t.status is not Status.OK or t.val_loss is None:
                return None
            losses.append(t.val_loss)
        return estimate(losses)

    def write_results(self, generation: int, screen_seed: int) -> None:
        """The generation's results.txt: persona, screening loss, time, status per line."""
        lines = []
        for c in self.store.candidates(generation):
            t = self.store.trial(c.id, self.config.screen_fidelity, screen_seed)
            loss = f"{t.val_loss:.4f}" if t and t.val_loss is not None else "-"
            secs = f"{t.train_seconds:.1f}s" if t else "-"
            lines.append(f"{c.persona}\t{loss}\t{secs}\t{c.status or 'pending'}")
        self.store.write_results(generation, lines)


def _announced(jobs: Iterable[Job], emit: Callable[[Event], None]) -> Iterator[Job]:
    """The jobs, each announced as the executor takes it, so a display shows what trains."""
    for job in jobs:
        emit(Event("started", job.candidate, detail=f"{job.fidelity} seed {job.seed}"))
        yield job
