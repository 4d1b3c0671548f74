"""What a run reports about itself: each generation's results.txt lines and the closing
summary, with the candidates' status counts read from the store."""

from __future__ import annotations

from dataclasses import dataclass

from dreamteam.loop.plan import seed_plan
from dreamteam.propose.watch import agent_failures
from dreamteam.records import CandidateKind, CandidateRecord, Ranking, RunSummary, Spend
from dreamteam.select.evidence import kept_changes, screen_confirm
from dreamteam.select.judge import Judge
from dreamteam.select.rules import Comparison
from dreamteam.store import RunStore


@dataclass(frozen=True)
class Figures:
    """The final measurement: the best beside the baseline on the same fresh seeds."""

    best: CandidateRecord
    loss: float
    baseline: float
    comparison: Comparison
    fidelity: str
    seeds: tuple[int, ...]
    steps: int  # optimizer steps at `fidelity`
    reranked: Ranking = ()  # --final-top: the pick's losses, best first


def results_lines(store: RunStore, generation: int, fidelity: str, seed: int) -> list[str]:
    """results.txt of a generation: persona, screening loss, training time, status."""
    lines = []
    for c in store.candidates(generation):
        t = store.trial(c.id, fidelity, seed)
        loss = f"{t.val_loss:.4f}" if t and t.val_loss is not None else "-"
        secs = f"{t.train_seconds:.1f}s" if t else "-"
        lines.append(f"{c.persona}\t{loss}\t{secs}\t{c.status or 'pending'}")
    return lines


def status_counts(store: RunStore) -> dict[str, int]:
    """How many candidates (the baseline aside) ended with each status."""
    statuses: dict[str, int] = {}
    for c in store.candidates():
        if c.kind != CandidateKind.BASELINE:
            statuses[c.status or "pending"] = statuses.get(c.status or "pending", 0) + 1
    return statuses


def closing_summary(
    store: RunStore, f: Figures, stopped: str, judge: Judge, spend: Spend
) -> RunSummary:
    """The run's summary: what its closing lines print and the report shows, with what the
    run's trials say about its own search (select/evidence.py)."""
    statuses = status_counts(store)
    finished = [g.number for g in store.generations() if g.finished]
    elite = store.elite(max(finished)) if finished else []  # as the last generation left it
    screen = seed_plan(judge.config).screen
    proposals = [c for c in store.candidates() if c.kind != CandidateKind.BASELINE]
    return RunSummary(
        f.best.id,
        f.best.persona,
        f.loss,
        f.baseline,
        f.comparison.delta,
        f.comparison.ci95,
        f.fidelity,
        f.seeds,
        sum(statuses.values()),
        statuses,
        stopped,
        tuple(elite),
        spend.tokens,
        spend.cost,
        f.comparison.better,
        agent_failures(proposals),
        f.steps,
        screen_confirm(store, judge, judge.config.screen_fidelity, screen),
        kept_changes(store, judge, (f.best.id, f.fidelity, f.seeds)),
        f.reranked,
    )
