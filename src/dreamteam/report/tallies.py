"""Tallies across candidates: per-persona results, the fidelity funnel, the winners' lineage
and the loss-vs-time Pareto front. Pure functions over candidate views.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dreamteam.config import RunConfig
from dreamteam.report.views import CandidateView
from dreamteam.search import BASELINE_ID
from dreamteam.types import Status


@dataclass(frozen=True)
class PersonaStats:
    """How one persona did over the run."""

    persona: str
    mode: str
    proposals: int
    duplicates: int
    wins: int
    mean_delta: float | None  # mean screening-loss change vs parent: negative is better
    n_delta: int
    failures: dict[str, int]  # status -> count, for every status but ok
    reasons: tuple[str, ...]  # distinct failure reasons, shortened

    @property
    def win_rate(self) -> float:
        return self.wins / self.proposals if self.proposals else 0.0

    @property
    def failure_rate(self) -> float:
        return sum(self.failures.values()) / self.proposals if self.proposals else 0.0


@dataclass(frozen=True)
class Stage:
    """One step of the multi-fidelity funnel."""

    name: str
    count: int
    meaning: str


@dataclass(frozen=True)
class LineageNode:
    """A winner in the chain from the baseline, with everything proposed from it."""

    candidate: CandidateView
    generation: int
    children: tuple[CandidateView, ...]


def pareto_front(points: Sequence[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """The (seconds, loss, id) points no other point beats on both time and loss, fastest first."""
    front: list[tuple[float, float, str]] = []
    for seconds, loss, cid in sorted(points):
        if not front or loss < front[-1][1]:
            front.append((seconds, loss, cid))
    return front


def tally_personas(views: Sequence[CandidateView]) -> list[PersonaStats]:
    groups: dict[str, list[CandidateView]] = {}
    for v in views:
        if v.record.kind != "baseline":
            groups.setdefault(v.record.persona, []).append(v)
    stats = []
    for persona, group in groups.items():
        deltas = [v.delta for v in group if v.delta is not None]
        failed = [v for v in group if v.status not in (Status.OK, "pending")]
        reasons = dict.fromkeys(
            v.record.reason.splitlines()[0][:120] for v in failed if v.record.reason
        )
        stats.append(
            PersonaStats(
                persona=persona,
                mode=group[0].record.mode,
                proposals=len(group),
                duplicates=sum(1 for v in group if v.record.kind == "duplicate"),
                wins=sum(1 for v in group if v.won),
                mean_delta=statistics.fmean(deltas) if deltas else None,
                n_delta=len(deltas),
                failures=dict(Counter(v.status for v in failed).most_common()),
                reasons=tuple(reasons),
            )
        )
    big = float("inf")
    stats.sort(key=lambda s: (-s.wins, s.mean_delta if s.mean_delta is not None else big))
    return stats


def build_funnel(views: Sequence[CandidateView], config: RunConfig) -> list[Stage]:
    proposed = [v for v in views if v.record.kind != "baseline"]
    valid = [
        v
        for v in proposed
        if v.record.kind == "proposal"
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
    views: Sequence[CandidateView], gens: Sequence[dict[str, Any]]
) -> list[LineageNode]:
    by_id = {v.id: v for v in views}

    def node(view: CandidateView, generation: int) -> LineageNode:
        children = tuple(v for v in views if v.record.parent == view.id)
        return LineageNode(view, generation, children)

    root = by_id.get(BASELINE_ID)
    chain = [node(root, 0)] if root else []
    for g in gens:
        if g["number"] > 0 and g["best"] and g["best"] != g["parent"] and g["best"] in by_id:
            chain.append(node(by_id[g["best"]], g["number"]))
    return chain
