"""The report's statistics: the screen->confirm rank correlation, each kept change's p-values,
and the ablation of the run's candidates (`<run>/ablation.json`) as typed rows.

Nothing is computed here that the run did not store or that select/evidence.py does not
derive; an ablation entry of the wrong shape is shown as missing rather than guessed at.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dreamteam.config import RunConfig
from dreamteam.loop.ablation import load
from dreamteam.loop.plan import BASELINE_ID, seed_plan
from dreamteam.records import KeptChange, RankCorrelation
from dreamteam.select.evidence import describe_correlation, describe_rerank, is_low, run_evidence
from dreamteam.select.judge import Judge
from dreamteam.store import RunStore


@dataclass(frozen=True)
class AblationRow:
    """One part of a winner's change: what removing it costs (positive: the part helps)."""

    label: str
    status: str
    contribution: float | None
    ci95: float | None
    reason: str


@dataclass(frozen=True)
class AblationView:
    """One ablated candidate, as `dreamteam ablate` stored it."""

    candidate: str
    fidelity: str
    seeds: tuple[int, ...]
    rows: tuple[AblationRow, ...]
    carries: str
    dropped: tuple[str, ...]  # the simplest recipe within the noise leaves these out
    recipe_vs_winner: tuple[float, float] | None  # (delta, ci95)
    recipe_vs_baseline: tuple[float, float] | None


@dataclass(frozen=True)
class Statistics:
    """What the report's statistics section shows."""

    correlation: RankCorrelation | None
    correlation_line: str
    correlation_low: bool
    kept: tuple[KeptChange, ...]
    ablations: tuple[AblationView, ...]
    rerank_line: str = ""  # --final-top: the elite re-ranked at the final fidelity

    def kept_for(self, candidate: str) -> tuple[KeptChange, ...]:
        """The candidate's kept-change tests (for the lineage)."""
        return tuple(k for k in self.kept if k.candidate == candidate)


def gather_statistics(store: RunStore, config: RunConfig) -> Statistics:
    """The run's statistics, from its summary when stored, else from its trials so far."""
    plan = seed_plan(config)
    judge = Judge(store, config, BASELINE_ID, plan.confirm, plan.recheck, plan.extra)
    rc, kept = run_evidence(store, judge, plan.screen)
    summary = store.summary()
    rerank = describe_rerank(summary.reranked, summary.fidelity, plan.screen) if summary else ""
    line = describe_correlation(rc)
    return Statistics(rc, line, is_low(rc), kept, ablations(store.run_dir), rerank)


def ablations(run_dir: Path) -> tuple[AblationView, ...]:
    """The run's stored ablations, each read field by field (a malformed entry is skipped)."""
    views = []
    for entry in load(run_dir).values():
        try:
            views.append(_view(entry))
        except (KeyError, TypeError, ValueError):
            continue
    return tuple(views)


def _view(entry: Mapping[str, object]) -> AblationView:
    parts = entry["parts"]
    recipe = entry.get("recipe")
    if not isinstance(parts, list) or not (recipe is None or isinstance(recipe, dict)):
        raise TypeError("ablation entry of the wrong shape")
    rows = tuple(_row(p) for p in parts)
    seeds = entry["seeds"]
    if not isinstance(seeds, list):
        raise TypeError("seeds")
    return AblationView(
        str(entry["candidate"]),
        str(entry["fidelity"]),
        tuple(int(s) for s in seeds),
        rows,
        str(entry.get("carries", "")),
        tuple(str(d) for d in recipe.get("dropped", ())) if recipe else (),
        _delta(recipe.get("vs_winner")) if recipe else None,
        _delta(recipe.get("vs_baseline")) if recipe else None,
    )


def _row(part: Mapping[str, object]) -> AblationRow:
    d = _delta(part.get("contribution"))
    return AblationRow(
        str(part["label"]),
        str(part["status"]),
        d[0] if d else None,
        d[1] if d else None,
        str(part.get("reason", "")),
    )


def _delta(value: object) -> tuple[float, float] | None:
    if not isinstance(value, dict):
        return None
    return float(value["delta"]), float(value["ci95"])
