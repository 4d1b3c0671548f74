"""What a run's own trials say about its search: do screening ranks predict confirmation ranks,
and how likely is each kept change to be real.

Reads the store through the judge and hands the numbers to the pure functions of
select/stats.py.

- Screen -> confirm: Spearman's rho between each confirmed candidate's screening loss (one
  seed at the screening fidelity) and its confirmation mean (every seed of its figure), over
  the run and per generation (the baseline counts as generation 0's pair).
- Kept changes: each generation's finalists were compared with its parent, so each is one
  comparison; a finalist that replaced the parent is a kept change, tested against the parent
  and against the baseline on the confirmation seeds (paired on the seeds both trained on),
  and the final best against the baseline on the fresh final seeds. The p-values are one-sided
  (the change lowers the loss) and adjusted by Holm over every comparison the run made, kept
  or not: the family-wise error rate holds whatever the dependence between comparisons (they
  share parents and seeds), and a run makes few enough of them that Holm's power loss is small.
  The confirmation seeds are the seeds a change was chosen on, so its p-values there flatter
  it; the final figure's, on fresh seeds, do not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dreamteam.records import CandidateKind, KeptChange, RankCorrelation, StatTest, Status
from dreamteam.select.judge import Judge
from dreamteam.select.stats import PValue, holm, improvement_p, spearman
from dreamteam.store import RunStore

MIN_PAIRS = 3  # Spearman's rho on fewer pairs says nothing
LOW_RHO = 0.5  # below this, screening ranks are a poor guide to confirmation ranks


@dataclass(frozen=True)
class _Comparison:
    candidate: str
    against: str
    fidelity: str
    p: PValue
    kept: bool
    seeds: tuple[int, ...]  # the candidate's seeds in the test (paired: those both share)


def screen_confirm(
    store: RunStore, judge: Judge, screen_fidelity: str, seed: int
) -> RankCorrelation:
    """Spearman between screening losses and confirmation means, over the run and per
    generation (rho None where there are fewer than 3 pairs)."""
    pairs: dict[int, list[tuple[float, float]]] = {}
    for c in store.candidates():
        if c.kind == CandidateKind.DUPLICATE:
            continue  # its twin's figures: counting them twice would inflate the agreement
        t = store.trial(c.id, screen_fidelity, seed)
        m = judge.measured(c.id)
        if t is None or t.status is not Status.OK or t.val_loss is None or m is None:
            continue
        pairs.setdefault(c.generation, []).append((t.val_loss, m.loss.mean))
    every = [p for g in sorted(pairs) for p in pairs[g]]
    by_generation = tuple((g, _rho(pairs[g]), len(pairs[g])) for g in sorted(pairs))
    return RankCorrelation(_rho(every), len(every), by_generation)


def _rho(pairs: Sequence[tuple[float, float]]) -> float | None:
    return spearman([a for a, _ in pairs], [b for _, b in pairs])


def is_low(rc: RankCorrelation | None) -> bool:
    """Whether screening ranks cannot be trusted to predict confirmation ranks in this run."""
    return rc is None or rc.rho is None or rc.pairs < MIN_PAIRS or rc.rho < LOW_RHO


def kept_changes(
    store: RunStore, judge: Judge, final: tuple[str, str, Sequence[int]]
) -> tuple[KeptChange, ...]:
    """Each kept change's p-values, raw and Holm-adjusted over the run's comparisons; `final`
    is (best, final fidelity, final seeds): the closing figure, tested against the baseline."""
    comparisons = _generation_comparisons(store, judge)
    best, fidelity, seeds = final
    if best != judge.baseline:
        mine, base = _at(store, best, fidelity, seeds), _at(store, judge.baseline, fidelity, seeds)
        if (c := _compared(best, judge.baseline, fidelity, mine, base, True)) is not None:
            comparisons.append(c)
    adjusted = holm([c.p.p for c in comparisons])
    return tuple(
        KeptChange(c.candidate, c.against, c.fidelity, c.p.test, c.seeds, c.p.delta, c.p.p, q)
        for c, q in zip(comparisons, adjusted, strict=True)
        if c.kept
    )


def _generation_comparisons(store: RunStore, judge: Judge) -> list[_Comparison]:
    """Every finalist against its generation's parent; a winner also against the baseline."""
    out: list[_Comparison | None] = []
    fidelity = judge.config.fidelity
    for g in store.generations():
        if g.number == 0 or not g.finished:
            continue
        parent = judge.losses(g.parent)
        for cid in g.promoted:
            kept = cid == g.best and g.best != g.parent
            mine = judge.losses(cid)
            out.append(_compared(cid, g.parent, fidelity, mine, parent, kept))
            if kept and g.parent != judge.baseline:
                base = judge.losses(judge.baseline)
                out.append(_compared(cid, judge.baseline, fidelity, mine, base, True))
    return [c for c in out if c is not None]


def _compared(
    candidate: str,
    against: str,
    fidelity: str,
    mine: dict[int, float],
    theirs: dict[int, float],
    kept: bool,
) -> _Comparison | None:
    """One comparison, or None when the seeds are too few for a test."""
    p = improvement_p(mine, theirs)
    if p is None:
        return None
    shared = set(mine) & set(theirs) if p.test is StatTest.PAIRED else set(mine)
    return _Comparison(candidate, against, fidelity, p, kept, tuple(sorted(shared)))


def _at(store: RunStore, candidate: str, fidelity: str, seeds: Sequence[int]) -> dict[int, float]:
    """Seed -> loss of the candidate's successful trials at `fidelity` on `seeds`."""
    trials = (store.trial(candidate, fidelity, s) for s in seeds)
    return {
        t.seed: t.val_loss for t in trials if t and t.status is Status.OK and t.val_loss is not None
    }


def run_evidence(
    store: RunStore, judge: Judge, screen_seed: int
) -> tuple[RankCorrelation | None, tuple[KeptChange, ...]]:
    """The stored summary's evidence once the run has one; while it runs, derived the same
    way from the trials so far (the final figure, not measured yet, left out)."""
    summary = store.summary()
    if summary is not None and summary.screen_confirm is not None:
        return summary.screen_confirm, summary.kept
    rc = screen_confirm(store, judge, judge.config.screen_fidelity, screen_seed)
    return rc, kept_changes(store, judge, (judge.baseline, "", ()))


def describe_correlation(rc: RankCorrelation | None) -> str:
    """One line: rho and its pairs, and a warning when screening ranks do not predict
    confirmation ranks here."""
    if rc is None:
        return "screen->confirm: not stored (a run from before it was measured)"
    per = ", ".join(f"gen {g} {_fmt(r)} ({n})" for g, r, n in rc.by_generation if n >= MIN_PAIRS)
    line = f"screen->confirm Spearman rho {_fmt(rc.rho)} over {rc.pairs} candidates"
    line += f" (per generation: {per})" if per else ""
    if rc.rho is None or rc.pairs < MIN_PAIRS:
        return line + ": too few pairs to say whether screening ranks predict confirmation"
    if rc.rho < LOW_RHO:
        return line + ": low, screening ranks do not predict confirmation ranks here"
    return line


def describe_rerank(ranking: Sequence[tuple[str, float]], fidelity: str, seed: int) -> str:
    """One line for --final-top: the elite's losses at the final fidelity, best first, and
    which became the claim ("" when nothing was re-ranked)."""
    if not ranking:
        return ""
    shown = ", ".join(f"{cid} {loss:.4f}" for cid, loss in ranking)
    return f"re-ranked at {fidelity} on seed {seed}: {shown}; the claim is {ranking[0][0]}"


def describe_kept(k: KeptChange) -> str:
    """One line per kept change: its delta, raw and Holm-adjusted p, test and seeds."""
    return (
        f"{k.candidate} vs {k.against} at {k.fidelity}: delta {k.delta:+.4f}, "
        f"p={k.p:.3g} (Holm {k.p_holm:.3g}; one-sided {k.test} on seeds {_span(k.seeds)})"
    )


def _span(seeds: Sequence[int]) -> str:
    return ", ".join(str(s) for s in seeds)


def _fmt(rho: float | None) -> str:
    return "n/a" if rho is None else f"{rho:+.2f}"
