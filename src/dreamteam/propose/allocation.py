"""Who proposes how often: each persona's record from the store, and the proposal slots of a
generation (uniform, or a Thompson-sampling bandit with a floor).

    store ─► attempts() ─► one Attempt per proposal, with its Outcome against its parent
          ├► tally() ─► PersonaStats per persona or per mode (report, `dreamteam show`)
          ├► repair_rescue() ─► how many failed candidates a repair turn saved
          └► allocate() ─► Allocation: slots per persona (stored per generation)

An attempt's outcome is the bandit's reward, "beat its parent beyond the noise", decided as
the search's `_select` decides it: against the generation's parent, by the same judge
(select/judge.py's Judge, under the run's objective, with the baseline's spread as the noise):
- WIN: confirmed, and better than its parent beyond the noise;
- LOSS: confirmed without beating the parent; or it failed, duplicated an earlier candidate,
  or did not beat its parent at screening (so it could not be promoted);
- OPEN: better than its parent at screening but not promoted (the cap), or not measured yet.
  Its result is unknown; counting it either way would bias its persona's arm, and screening
  (one seed, a short run) is too noisy to stand in for a confirmation, so it is left out.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from dreamteam.records import Allocation, CandidateKind, ChangeKind, Status

if TYPE_CHECKING:
    from dreamteam.config import RunConfig
    from dreamteam.personas import Persona
    from dreamteam.records import CandidateRecord
    from dreamteam.select.judge import Judge
    from dreamteam.store import RunStore


class Outcome(StrEnum):
    """A proposal against its parent (see the module docstring)."""

    WIN = "win"
    LOSS = "loss"
    OPEN = "open"


@dataclass(frozen=True)
class Attempt:
    """One turn of a persona: what it produced and how that ended."""

    candidate: str
    generation: int
    persona: str
    mode: str
    kind: str  # proposal | repair | duplicate (| crossover, from no persona of the team)
    status: str  # "" while pending
    reason: str
    delta: float | None  # screening loss minus its generation parent's: negative is better
    outcome: Outcome
    replaced: bool  # became its generation's best
    change: ChangeKind | None = None  # structural or hyperparameter (None: no record)


@dataclass(frozen=True)
class PersonaStats:
    """How one persona (or one mode, with `persona` = the mode) did over a run."""

    persona: str
    mode: str
    proposals: int
    duplicates: int
    wins: int  # beat the parent beyond the noise
    losses: int
    replaced: int  # became a generation's best
    mean_delta: float | None  # mean screening-loss change vs the generation's parent
    n_delta: int
    failures: dict[str, int]  # status -> count, for every status but ok
    reasons: tuple[str, ...]  # distinct failure reasons, shortened
    structural: int = 0  # proposals whose change record is structural
    labelled: int = 0  # proposals with a change record (structural or hyperparameter)

    @property
    def structural_share(self) -> float | None:
        """The share of labelled proposals that changed code, not only hyperparameters."""
        return self.structural / self.labelled if self.labelled else None

    @property
    def win_rate(self) -> float:
        return self.wins / self.proposals if self.proposals else 0.0

    @property
    def failure_rate(self) -> float:
        return sum(self.failures.values()) / self.proposals if self.proposals else 0.0


@dataclass(frozen=True)
class RepairRescue:
    """Failed candidates that got a repair turn, and how many of those a repair saved."""

    repaired: int
    rescued: int

    @property
    def fraction(self) -> float | None:
        return self.rescued / self.repaired if self.repaired else None


# -- outcomes ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Yardstick:
    """What outcomes are judged by: the screening trial, and the search's own judge."""

    screen_fidelity: str
    screen_seed: int
    judge: Judge


def _screen_losses(store: RunStore, yard: Yardstick) -> dict[str, float]:
    return {
        t.candidate: t.val_loss
        for t in store.trials()
        if t.fidelity == yard.screen_fidelity
        and t.seed == yard.screen_seed
        and t.status is Status.OK
        and t.val_loss is not None
    }


def _outcome(c: CandidateRecord, base: str, delta: float | None, judge: Judge) -> Outcome:
    if c.kind == CandidateKind.DUPLICATE or c.status not in ("", Status.OK):
        return Outcome.LOSS
    if judge.measured(c.id) is not None and judge.measured(base) is not None:
        return Outcome.WIN if judge.select(base, [c.id]) is not None else Outcome.LOSS
    if delta is not None and delta >= 0:
        return Outcome.LOSS  # no better than its parent at screening: never a finalist
    return Outcome.OPEN


def attempts(store: RunStore, yard: Yardstick) -> list[Attempt]:
    """Every proposal of the run (baseline excluded) with its outcome, in the order made.

    A candidate is measured against its generation's parent, as selection measures it (a
    repair's stored parent is the failed candidate; a chain's, the previous link)."""
    screen = _screen_losses(store, yard)
    gens = store.generations()
    parents = {g.number: g.parent for g in gens}
    replaced = {g.best for g in gens if g.number > 0 and g.best != g.parent}
    out = []
    for c in store.candidates():
        if c.kind == CandidateKind.BASELINE:
            continue
        base = parents.get(c.generation) or c.parent or ""
        mine, theirs = screen.get(c.id), screen.get(base)
        delta = mine - theirs if mine is not None and theirs is not None else None
        out.append(
            Attempt(
                c.id,
                c.generation,
                c.persona,
                c.mode,
                c.kind,
                c.status,
                c.reason,
                delta,
                _outcome(c, base, delta, yard.judge),
                c.id in replaced,
                c.record.kind if c.record else None,
            )
        )
    return out


# -- tallies ----------------------------------------------------------------------------------------
def _stats(name: str, mode: str, group: Sequence[Attempt]) -> PersonaStats:
    deltas = [a.delta for a in group if a.delta is not None]
    failed = [a for a in group if a.status not in ("", Status.OK)]
    reasons = dict.fromkeys(a.reason.splitlines()[0][:120] for a in failed if a.reason)
    return PersonaStats(
        persona=name,
        mode=mode,
        proposals=len(group),
        duplicates=sum(1 for a in group if a.kind == CandidateKind.DUPLICATE),
        wins=sum(1 for a in group if a.outcome is Outcome.WIN),
        losses=sum(1 for a in group if a.outcome is Outcome.LOSS),
        replaced=sum(1 for a in group if a.replaced),
        mean_delta=statistics.fmean(deltas) if deltas else None,
        n_delta=len(deltas),
        failures=dict(Counter(a.status for a in failed).most_common()),
        reasons=tuple(reasons),
        structural=sum(1 for a in group if a.change is ChangeKind.STRUCTURAL),
        labelled=sum(1 for a in group if a.change is not None),
    )


def tally(items: Sequence[Attempt], by: str = "persona") -> list[PersonaStats]:
    """Stats per persona (`by="persona"`) or per mode (`by="mode"`), best first: most wins,
    then the lowest mean screening delta."""
    groups: dict[str, list[Attempt]] = {}
    for a in items:
        groups.setdefault(a.persona if by == "persona" else a.mode, []).append(a)
    stats = [_stats(name, group[0].mode, group) for name, group in groups.items()]
    big = float("inf")
    stats.sort(key=lambda s: (-s.wins, s.mean_delta if s.mean_delta is not None else big))
    return stats


def reserved_for_structure(position: int, share: float) -> bool:
    """Whether a generation's slot at ``position`` (0-based, in slot order) is reserved for a
    structural change: any first n slots hold ceil(n * share) reserved ones, spread evenly."""
    # the tolerance keeps 0.1 * 10 from ceiling to 2
    return math.ceil((position + 1) * share - 1e-9) > math.ceil(position * share - 1e-9)


def repair_rescue(records: Sequence[CandidateRecord]) -> RepairRescue:
    """Of the failed candidates that got a repair turn, those whose repairs ended ok.

    A repair of a repair (with --repair 2 or more) counts for the original failure."""
    children: dict[str, list[CandidateRecord]] = {}
    for c in records:
        if c.kind == CandidateKind.REPAIR and c.parent:
            children.setdefault(c.parent, []).append(c)

    def saved(cid: str) -> bool:
        return any(r.status == Status.OK or saved(r.id) for r in children.get(cid, ()))

    roots = [c for c in records if c.kind != CandidateKind.REPAIR and c.id in children]
    return RepairRescue(len(roots), sum(1 for c in roots if saved(c.id)))


# -- allocation -------------------------------------------------------------------------------------
def _in_order(team: Sequence[Persona], counts: Mapping[str, int]) -> list[Persona]:
    """The team's personas, each repeated for its slots, in team order."""
    distinct = list({p.slug: p for p in team}.values())
    return [p for p in distinct for _ in range(counts.get(p.slug, 0))]


def uniform(team: Sequence[Persona], generation: int) -> Allocation:
    """Every member of the team proposes once (a persona named twice, twice)."""
    counts = Counter(p.slug for p in team)
    return Allocation(generation, "uniform", tuple(counts.items()))


def bandit(
    team: Sequence[Persona],
    generation: int,
    history: Sequence[Attempt],
    earlier: Sequence[Allocation],
    seed: int,
    floor_every: int,
) -> Allocation:
    """Thompson sampling over the team's `len(team)` slots.

    Each persona is an arm with a Beta(1 + wins, 1 + losses) posterior over "beats its parent
    beyond the noise". First the floor: a persona with no judged attempt yet, or without a slot
    in the last `floor_every - 1` generations, gets one. Every other slot goes to the persona
    with the highest draw from its posterior, drawn afresh per slot. The draws come from a
    generator seeded by (seed, generation), so a rerun or a resumed run allocates the same.
    """
    slugs = list(dict.fromkeys(p.slug for p in team))
    wins = Counter(a.persona for a in history if a.outcome is Outcome.WIN)
    losses = Counter(a.persona for a in history if a.outcome is Outcome.LOSS)
    last = dict.fromkeys(slugs, 0)  # the last generation each persona had a slot in
    for alloc in earlier:
        for slug, n in alloc.slots:
            if n and slug in last and alloc.generation < generation:
                last[slug] = max(last[slug], alloc.generation)
    untried = [s for s in slugs if wins[s] + losses[s] == 0]
    overdue = [s for s in slugs if generation - last[s] >= floor_every and s not in untried]
    floor = (untried + overdue)[: len(team)]
    counts = Counter(floor)
    rng = random.Random(f"allocation:{seed}:{generation}")
    for _ in range(len(team) - len(floor)):
        draws = {s: rng.betavariate(1 + wins[s], 1 + losses[s]) for s in slugs}
        counts[max(slugs, key=lambda s: (draws[s], -slugs.index(s)))] += 1
    return Allocation(
        generation,
        "bandit",
        tuple((s, counts[s]) for s in slugs),
        tuple((s, wins[s], losses[s]) for s in slugs),
        tuple(floor),
    )


def allocate(
    store: RunStore,
    config: RunConfig,
    team: Sequence[Persona],
    generation: int,
    yard: Yardstick,
) -> list[Persona]:
    """The personas that propose in `generation`, one entry per slot, in team order.

    A stored allocation is reused as it stands (resume); a new one is stored before use.
    """
    stored = store.allocation(generation)
    if stored is None:
        if config.allocation == "bandit":
            history = [a for a in attempts(store, yard) if a.generation < generation]
            earlier = store.allocations()
            stored = bandit(
                team, generation, history, earlier, config.seed, config.allocation_floor
            )
        else:
            stored = uniform(team, generation)
        store.set_allocation(stored)
    if stored.policy == "uniform":
        return list(team)  # exactly the team, in its order (a persona named twice, twice)
    return _in_order(team, dict(stored.slots))
