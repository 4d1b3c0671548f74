"""Tallies across candidates: the fidelity funnel, the winners' lineage, the loss-vs-time
Pareto front and the allocation table. Pure functions over candidate views and stored values;
per-persona results come from allocation.tally (one implementation for the report, `dreamteam
show` and the bandit).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from dreamteam.config import RunConfig
from dreamteam.loop.plan import BASELINE_ID
from dreamteam.propose.allocation import Attempt, Outcome
from dreamteam.records import Allocation, CandidateKind, GenerationRecord, Status
from dreamteam.report.views import CandidateView
from dreamteam.select.rules import pareto_front as pareto_front  # one front, shared with selection


@dataclass(frozen=True)
class Stage:
    """One step of the multi-fidelity funnel."""

    name: str
    count: int
    meaning: str


@dataclass(frozen=True)
class AllocationCell:
    """One persona in one generation: its slots, and how many of its proposals won."""

    slots: int
    wins: int
    floor: bool  # the slot came from the floor (or the persona was untried), not the draw


@dataclass(frozen=True)
class AllocationRow:
    """One generation of the allocation table."""

    generation: int
    policy: str
    cells: tuple[AllocationCell, ...]  # in the order of AllocationTable.personas


@dataclass(frozen=True)
class AllocationTable:
    """Generation x persona -> proposal slots (and wins), as the allocation decided them."""

    personas: tuple[str, ...]
    rows: tuple[AllocationRow, ...]


@dataclass(frozen=True)
class LineageNode:
    """A winner in the chain from the baseline, with everything proposed from it."""

    candidate: CandidateView
    generation: int
    children: tuple[CandidateView, ...]


def build_funnel(views: Sequence[CandidateView], config: RunConfig) -> list[Stage]:
    proposed = [v for v in views if v.record.kind != CandidateKind.BASELINE]
    valid = [
        v
        for v in proposed
        if v.record.kind == CandidateKind.PROPOSAL
        and v.screen
        and v.screen.status not in (Status.INVALID, Status.CHEATING)
    ]
    screened = [
        v for v in valid if v.screen and v.screen.status is Status.OK and v.screen_loss is not None
    ]
    promoted = [v for v in proposed if v.promoted]
    confirmed = [v for v in promoted if v.confirm is not None and v.confirm.n >= config.seeds]
    won = [v for v in proposed if v.won]
    return [
        Stage("proposed", len(proposed), "answers from the team, duplicates included"),
        Stage("valid", len(valid), "new code that applied cleanly and passed the checks"),
        Stage("screened", len(screened), f"trained and scored at {config.screen_fidelity}"),
        Stage("promoted", len(promoted), "top fraction sent on to confirmation"),
        Stage("confirmed", len(confirmed), f"measured at {config.fidelity} on every seed"),
        Stage("won", len(won), "replaced the parent beyond the 95 % interval"),
    ]


def trace_lineage(
    views: Sequence[CandidateView], gens: Sequence[GenerationRecord]
) -> list[LineageNode]:
    by_id = {v.id: v for v in views}

    def node(view: CandidateView, generation: int) -> LineageNode:
        children = tuple(v for v in views if v.record.parent == view.id)
        return LineageNode(view, generation, children)

    root = by_id.get(BASELINE_ID)
    chain = [node(root, 0)] if root else []
    for g in gens:
        if g.number > 0 and g.best and g.best != g.parent and g.best in by_id:
            chain.append(node(by_id[g.best], g.number))
    return chain


def allocation_table(
    allocations: Sequence[Allocation], attempts: Sequence[Attempt]
) -> AllocationTable:
    """The stored allocations as a table, with each persona's wins per generation."""
    personas = tuple(dict.fromkeys(slug for a in allocations for slug, _ in a.slots))
    wins = Counter((a.generation, a.persona) for a in attempts if a.outcome is Outcome.WIN)
    rows = tuple(
        AllocationRow(
            a.generation,
            a.policy,
            tuple(
                AllocationCell(a.count(slug), wins[(a.generation, slug)], slug in a.floor)
                for slug in personas
            ),
        )
        for a in allocations
    )
    return AllocationTable(personas, rows)
