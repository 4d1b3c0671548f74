"""What the report shows, gathered from the store into plain values. No HTML, no plots.

    RunStore ─► gather() ─► ReportData (overview, headline, candidates, personas and modes,
                                        allocation, repair rescue, funnel, lineage,
                                        generations, steering, statistics)

Every number is read from the store or computed here from what it holds; best-vs-baseline
reuses select/rules.py so it matches the `best:` line of `dreamteam run`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dreamteam.config import RunConfig, config_from_dict
from dreamteam.errors import StoreError
from dreamteam.loop.plan import BASELINE_ID, seed_plan
from dreamteam.propose.allocation import (
    PersonaStats,
    RepairRescue,
    Yardstick,
    attempts,
    repair_rescue,
    tally,
)
from dreamteam.records import (
    CandidateKind,
    GenerationRecord,
    RunInfo,
    RunSummary,
    SeedPlan,
    SteeringVersion,
)
from dreamteam.report.evidence import Statistics, gather_statistics
from dreamteam.report.tallies import (
    AllocationTable,
    LineageNode,
    Stage,
    allocation_table,
    build_funnel,
    trace_lineage,
)
from dreamteam.report.views import (
    CandidateView,
    by_seed,
    collect_candidates,
)
from dreamteam.select.judge import Judge
from dreamteam.select.rules import Comparison, Estimate, compare, estimate
from dreamteam.store import RunStore


@dataclass(frozen=True)
class Overview:
    """The run at a glance: what ran, with whom, on what budget, at what cost."""

    run_id: str
    task: str
    status: str
    created: float
    finished: float | None
    wall_seconds: float | None
    config: RunConfig
    team: tuple[tuple[str, str], ...]  # (persona, mode) in order of first proposal
    models: tuple[str, ...]  # models that answered, as the agents reported them
    iters: dict[str, int]  # fidelity -> training iterations, from the trials
    seeds: SeedPlan
    tokens_in: int
    tokens_out: int
    cost: float
    agent_seconds: float
    compute_seconds: float  # training + evaluation, summed over trials
    isolation: tuple[str, ...]
    statuses: dict[str, int]
    generations_done: int


@dataclass(frozen=True)
class Headline:
    """The final best against the baseline at the fidelity the claim holds at."""

    fidelity: str
    steps: int | None  # optimizer steps of that fidelity, when a trial there says
    best: CandidateView
    baseline: CandidateView
    seeds: tuple[int, ...]
    best_losses: tuple[float, ...]
    baseline_losses: tuple[float, ...]
    best_est: Estimate | None
    baseline_est: Estimate | None
    comparison: Comparison | None  # None when the baseline is still the best


@dataclass(frozen=True)
class ReportData:
    """Everything the page shows."""

    overview: Overview
    headline: Headline
    candidates: tuple[CandidateView, ...]
    personas: tuple[PersonaStats, ...]
    modes: tuple[PersonaStats, ...]  # the same tallies per persona mode
    allocation: AllocationTable
    rescue: RepairRescue
    funnel: tuple[Stage, ...]
    lineage: tuple[LineageNode, ...]
    generations: tuple[GenerationRecord, ...]
    steering: tuple[SteeringVersion, ...]
    statistics: Statistics  # rank correlation, kept changes' p-values, ablations
    figures: tuple[str, ...] = ()  # the secondary figures any trial has: a column each

    def get(self, candidate_id: str | None) -> CandidateView | None:
        return next((c for c in self.candidates if c.id == candidate_id), None)


def _overview(
    info: RunInfo,
    config: RunConfig,
    views: Sequence[CandidateView],
    gens: Sequence[GenerationRecord],
) -> Overview:
    proposals = [v for v in views if v.record.kind != CandidateKind.BASELINE]
    team: dict[str, str] = {}
    for v in proposals:
        team.setdefault(v.record.persona, v.record.mode)
    trials = [t for v in views for t in v.trials]
    iters: dict[str, int] = {}
    for t in trials:
        iters.setdefault(t.fidelity, t.iters)
    finished = info.finished
    last = max((g.finished or 0.0 for g in gens), default=0.0)
    end = finished or last or None
    return Overview(
        run_id=info.id,
        task=info.task,
        status=info.status,
        created=info.created,
        finished=finished,
        wall_seconds=end - info.created if end else None,
        config=config,
        team=tuple(team.items()),
        models=tuple(sorted({v.record.model for v in proposals if v.record.model})),
        iters=iters,
        seeds=seed_plan(config),
        tokens_in=sum(v.record.tokens_in for v in views),
        tokens_out=sum(v.record.tokens_out for v in views),
        cost=sum(v.record.cost for v in views),
        agent_seconds=sum(v.record.latency for v in views),
        compute_seconds=sum(t.train_seconds + t.eval_seconds for t in trials),
        isolation=tuple(info.isolation),
        statuses=dict(Counter(v.status for v in proposals).most_common()),
        generations_done=sum(1 for g in gens if g.number > 0 and g.finished),
    )


def _headline(
    views: Sequence[CandidateView],
    gens: Sequence[GenerationRecord],
    config: RunConfig,
    summary: RunSummary | None,
) -> Headline:
    """Best against baseline: the run's stored summary once it has one (the figures the CLI
    printed), else derived from the store the same way while the run is still going."""
    by_id = {v.id: v for v in views}
    baseline = by_id.get(BASELINE_ID, views[0])
    stored = summary is not None and summary.best in by_id
    fidelity = summary.fidelity if summary is not None and stored else config.fidelity
    base = by_seed(baseline, fidelity)
    if summary is not None and stored:
        best = by_id[summary.best]
        seeds = tuple(s for s in summary.seeds if s in base)
    else:
        best, seeds = _derived_best(by_id, baseline, base, gens, config)
    best_losses = tuple(by_seed(best, fidelity)[s] for s in seeds)
    base_losses = tuple(base[s] for s in seeds)
    best_est, base_est = estimate(best_losses), estimate(base_losses)
    comparison = None
    if best is not baseline and summary is not None and stored:
        comparison = Comparison(summary.delta, summary.ci95, summary.better)
    elif best is not baseline and best_est and base_est:
        noise = estimate([base[s] for s in seed_plan(config).confirm if s in base])
        comparison = compare(best_est, base_est, noise.sd if noise else 0.0)
    steps = next((t.iters for t in baseline.trials if t.fidelity == fidelity), None)
    return Headline(
        fidelity,
        steps,
        best,
        baseline,
        seeds,
        best_losses,
        base_losses,
        best_est,
        base_est,
        comparison,
    )


def _derived_best(
    by_id: Mapping[str, CandidateView],
    baseline: CandidateView,
    base: Mapping[int, float],
    gens: Sequence[GenerationRecord],
    config: RunConfig,
) -> tuple[CandidateView, tuple[int, ...]]:
    """The last generation's best, and the seeds it and the baseline (`base`: its losses by
    seed at the confirmation fidelity) share, for a run that has not finished yet."""
    finished = [g for g in gens if g.best]
    best = by_id.get(finished[-1].best, baseline) if finished else baseline
    plan = seed_plan(config)
    if best is baseline:
        return best, tuple(s for s in plan.confirm if s in base)
    mine = by_seed(best, config.fidelity)
    fresh = tuple(s for s in plan.final if s in mine and s in base)
    # the final figure is on fresh seeds; a run stopped before them falls back to every
    # confirmation seed both share
    shared = (set(mine) & set(base)) - {plan.screen}
    return best, fresh if len(fresh) == len(plan.final) else tuple(sorted(shared))


def gather(store: RunStore) -> ReportData:
    """Read the whole run from the store and derive what the report shows."""
    info = store.run_info()
    config = config_from_dict(info.config)
    gens = store.generations()
    views = collect_candidates(store, config, gens)
    if not views:
        raise StoreError(f"{store.run_dir} has no candidates yet: report once the run has started")
    plan = seed_plan(config)
    judge = Judge(store, config, BASELINE_ID, plan.confirm, plan.recheck)
    tried = attempts(store, Yardstick(config.screen_fidelity, plan.screen, judge))
    return ReportData(
        overview=_overview(info, config, views, gens),
        headline=_headline(views, gens, config, store.summary()),
        candidates=tuple(views),
        personas=tuple(tally(tried)),
        modes=tuple(tally(tried, by="mode")),
        allocation=allocation_table(store.allocations(), tried),
        rescue=repair_rescue([v.record for v in views]),
        funnel=tuple(build_funnel(views, config)),
        lineage=tuple(trace_lineage(views, gens)),
        generations=tuple(gens),
        steering=tuple(store.steering()),
        statistics=gather_statistics(store, config),
        figures=tuple(dict.fromkeys(k for v in views for t in v.trials for k in t.figures)),
    )
