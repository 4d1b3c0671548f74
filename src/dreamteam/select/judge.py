"""Where each confirmed candidate stands: its measurements under the run's objective, the
elite, and the pair a crossover joins.

The search asks; this module reads the store and hands the numbers to the pure rules in
select/rules.py. A candidate's figure uses every confirmation seed (all must have trained) and,
once it has been a parent, its recheck seed too.

Why the recheck: a parent won its place on the confirmation seeds, so those seeds flatter it
(it was chosen for looking good on them). Before it leads a second generation it trains on
one seed it was never chosen on, and the elite is judged against that fresh figure alone; a
member that beats it beyond the noise takes over. So a lucky pair of seeds cannot keep a
fluke in charge for long.
"""

from __future__ import annotations

from collections.abc import Sequence

from dreamteam.config import RunConfig
from dreamteam.records import CandidateKind, CandidateRecord, Status
from dreamteam.select.rules import (
    Measured,
    Objective,
    Sample,
    Verdict,
    judge,
    measure,
    pick_best,
    rank_elite,
    rescue,
)
from dreamteam.store import RunStore


def objective_of(config: RunConfig) -> Objective:
    """The selection objective a run config asks for."""
    return Objective(config.objective, config.time_weight, config.time_tolerance)


class Judge:
    """Reads the store's confirmation trials and judges candidates under the objective."""

    def __init__(
        self,
        store: RunStore,
        config: RunConfig,
        baseline: str,
        confirm_seeds: Sequence[int],
        recheck_seed: int,
        extra_seeds: Sequence[int] = (),
    ):
        self.store, self.config = store, config
        self.objective = objective_of(config)
        self.baseline, self.confirm_seeds = baseline, tuple(confirm_seeds)
        self.recheck_seed, self.extra_seeds = recheck_seed, tuple(extra_seeds)

    def _sample(self, candidate: str, seed: int) -> Sample | None:
        t = self.store.trial(candidate, self.config.fidelity, seed)
        if t is None or t.status is not Status.OK or t.val_loss is None:
            return None
        return Sample(t.val_loss, t.bpb, t.train_seconds)

    def measured(self, candidate: str, *, recheck: bool = True) -> Measured | None:
        """The candidate's estimates over its confirmation seeds and the extra seeds of a
        close call it trained on; None unless every seed it has trained on succeeded."""
        samples = [self._sample(candidate, s) for s in self.confirm_seeds]
        samples += [self._sample(candidate, s) for s in self.trained(candidate, self.extra_seeds)]
        if recheck and self.store.trial(candidate, self.config.fidelity, self.recheck_seed):
            samples.append(self._sample(candidate, self.recheck_seed))
        if any(s is None for s in samples):
            return None
        return measure(self.objective, [s for s in samples if s is not None])

    def trained(self, candidate: str, seeds: Sequence[int]) -> list[int]:
        """Those of `seeds` the candidate has a trial on at the confirmation fidelity."""
        fidelity = self.config.fidelity
        return [s for s in seeds if self.store.trial(candidate, fidelity, s) is not None]

    def losses(self, candidate: str) -> dict[int, float]:
        """Seed -> loss of every trial the candidate's figure rests on ({} when unmeasured)."""
        if self.measured(candidate) is None:
            return {}
        seeds = [*self.confirm_seeds, *self.extra_seeds, self.recheck_seed]
        return {
            s: x.loss for s in self.trained(candidate, seeds) if (x := self._sample(candidate, s))
        }

    def verdict(self, parent: str, candidate: str) -> Verdict | None:
        """The candidate against the parent under the objective; None when either (or the
        noise) is unmeasured."""
        noise, current, mine = self.noise(), self.measured(parent), self.measured(candidate)
        if noise is None or current is None or mine is None:
            return None
        return judge(self.objective, mine, current, noise)

    def fresh(self, candidate: str) -> Measured | None:
        """The candidate on seeds it was not chosen on: its recheck seed (the baseline was
        never chosen, so its confirmation seeds); None when that trial failed."""
        if candidate == self.baseline:
            return self.measured(candidate, recheck=False)
        sample = self._sample(candidate, self.recheck_seed)
        return measure(self.objective, [sample]) if sample is not None else None

    def noise(self) -> Measured | None:
        """The baseline on its confirmation seeds: the spread every comparison starts from."""
        return self.measured(self.baseline, recheck=False)

    def select(self, parent: str, finalists: Sequence[str]) -> tuple[str, Verdict] | None:
        """The finalist that replaces the parent beyond the noise, if any."""
        noise, current = self.noise(), self.measured(parent)
        if noise is None or current is None:
            return None
        scored = [(cid, m) for cid in finalists if (m := self.measured(cid)) is not None]
        return pick_best(self.objective, current, scored, noise)

    def elite(self) -> list[str]:
        """The top `elite` confirmed candidates of the run so far, best first."""
        confirmed = [
            (c.id, m)
            for c in self.store.candidates()
            if c.kind != CandidateKind.DUPLICATE
            and c.status == str(Status.OK)
            and (m := self.measured(c.id)) is not None
        ]
        return rank_elite(confirmed, self.config.elite)

    def rescue(self, parent: str, members: Sequence[str]) -> str | None:
        """The elite member that beats the parent's fresh figure beyond the noise, if any."""
        noise = self.noise()
        if noise is None:
            return None
        elite = [(cid, m) for cid in members if (m := self.measured(cid)) is not None]
        return rescue(self.objective, (parent, self.fresh(parent)), elite, noise)

    def crossover_pair(
        self, members: Sequence[str]
    ) -> tuple[CandidateRecord, CandidateRecord, CandidateRecord] | None:
        """(first, second, second's parent): the best member, and the next one with other code
        whose change from its own parent can be carried over."""
        records = [c for cid in members if (c := self.store.candidate(cid)) is not None]
        if len(records) < 2:
            return None
        first = records[0]
        for second in records[1:]:
            origin = self.store.candidate(second.parent or "")
            if origin is not None and second.code_hash != first.code_hash:
                return first, second, origin
        return None
