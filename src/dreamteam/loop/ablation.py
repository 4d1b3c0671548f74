"""Ablation of a winner, the measuring half: the winner, the baseline and the winner without
each part trained on the same seeds; each part's contribution = loss(without it) − loss(winner)
with a 95 % interval; then the simplest recipe within the noise (every part whose removal costs
nothing beyond the noise dropped together) trained and compared. Stored as `<run>/ablation.json`
(one entry per ablated candidate, written atomically) for the report and later reading."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

from dreamteam.errors import StoreError
from dreamteam.harness.checks import check_candidate
from dreamteam.loop.ablate import NotSeparable, Part, revert, split_parts
from dreamteam.records import TrialResult
from dreamteam.select.rules import compare, estimate
from dreamteam.store.faults import os_fault
from dreamteam.tasks import Task

FILE = "ablation.json"
Train = Callable[[Mapping[str, str]], list[TrialResult]]


class PartStatus(StrEnum):
    MEASURED = "measured"
    NOT_SEPARABLE = "not separable"
    FAILED = "failed"  # a seed did not train


@dataclass(frozen=True)
class Delta:
    """One loss against another: negative is better for the first."""

    delta: float
    ci95: float


@dataclass(frozen=True)
class PartResult:
    label: str
    status: PartStatus
    reason: str = ""
    losses: tuple[float, ...] = ()
    contribution: Delta | None = None  # loss(without it) - loss(winner)


@dataclass(frozen=True)
class Recipe:
    """The winner without the parts that cost nothing beyond the noise."""

    dropped: tuple[str, ...]
    losses: tuple[float, ...]
    vs_winner: Delta | None
    vs_baseline: Delta | None
    reason: str = ""


@dataclass(frozen=True)
class Ablation:
    candidate: str
    fidelity: str
    seeds: tuple[int, ...]
    winner: tuple[float, ...]
    baseline: tuple[float, ...]
    parts: tuple[PartResult, ...]
    recipe: Recipe | None
    carries: str  # the part whose removal costs the most ("" when none measured)


def _losses(results: Sequence[TrialResult]) -> tuple[tuple[float, ...], str]:
    """The losses of trials, and the first failure's reason ("" when all trained)."""
    bad = next((r for r in results if not r.ok or r.val_loss is None), None)
    reason = f"seed {bad.seed}: {bad.status} {bad.reason}".strip() if bad else ""
    return tuple(r.val_loss if r.val_loss is not None else math.nan for r in results), reason


def _delta(a: Sequence[float], b: Sequence[float], noise_sd: float) -> Delta | None:
    ea, eb = estimate(a), estimate(b)
    if ea is None or eb is None:
        return None
    c = compare(ea, eb, noise_sd)
    return Delta(c.delta, c.ci95)


def ablate(
    task: Task,
    baseline: Mapping[str, str],
    winner: Mapping[str, str],
    train: Train,
    *,
    candidate: str,
    fidelity: str,
    seeds: Sequence[int],
    on_part: Callable[[PartResult], None] = lambda p: None,
) -> Ablation:
    """Measure each part of `winner`'s change; `train` runs one file set on the seeds."""
    parts = split_parts(baseline, winner)
    win, why = _losses(train(winner))
    base, why_base = _losses(train(baseline))
    if why or why_base:
        raise StoreError(
            f"cannot ablate: {'the winner' if why else 'the baseline'} failed ({why or why_base})"
        )
    noise = estimate(base)
    noise_sd = noise.sd if noise else 0.0
    results = []
    for part in parts:
        result = _measure_part(task, baseline, winner, parts, part, train, win, noise_sd)
        on_part(result)
        results.append(result)
    measured = [r for r in results if r.contribution is not None]
    top = max(measured, key=lambda r: r.contribution.delta if r.contribution else 0, default=None)
    recipe = _recipe(task, baseline, winner, parts, results, train, (win, base), noise_sd)
    return Ablation(
        candidate,
        fidelity,
        tuple(seeds),
        win,
        base,
        tuple(results),
        recipe,
        top.label if top else "",
    )


def _measure_part(
    task: Task,
    baseline: Mapping[str, str],
    winner: Mapping[str, str],
    parts: Sequence[Part],
    part: Part,
    train: Train,
    win: Sequence[float],
    noise_sd: float,
) -> PartResult:
    try:
        variant = revert(baseline, winner, parts, [part])
    except NotSeparable as exc:
        return PartResult(part.label, PartStatus.NOT_SEPARABLE, str(exc))
    report = check_candidate(variant, task)
    if not report.ok:
        return PartResult(part.label, PartStatus.NOT_SEPARABLE, report.reason())
    losses, reason = _losses(train(variant))
    if reason:
        return PartResult(part.label, PartStatus.FAILED, reason, losses)
    return PartResult(part.label, PartStatus.MEASURED, "", losses, _delta(losses, win, noise_sd))


def _recipe(
    task: Task,
    baseline: Mapping[str, str],
    winner: Mapping[str, str],
    parts: Sequence[Part],
    results: Sequence[PartResult],
    train: Train,
    known: tuple[tuple[float, ...], tuple[float, ...]],
    noise_sd: float,
) -> Recipe | None:
    """Drop together every part whose removal is not worse beyond the noise; train that."""
    free = [
        p
        for p, r in zip(parts, results, strict=True)
        if r.contribution and r.contribution.delta <= r.contribution.ci95
    ]
    if not free:
        return None
    win, base = known
    dropped = tuple(p.label for p in free)
    try:
        files = revert(baseline, winner, parts, free)
    except NotSeparable as exc:
        return Recipe(dropped, (), None, None, str(exc))
    report = check_candidate(files, task)
    if not report.ok:
        return Recipe(dropped, (), None, None, report.reason())
    losses, reason = _losses(train(files))
    if reason:
        return Recipe(dropped, losses, None, None, reason)
    return Recipe(dropped, losses, _delta(losses, win, noise_sd), _delta(losses, base, noise_sd))


def save(run_dir: Path, ablation: Ablation) -> Path:
    """Add (or replace) this candidate's ablation in `<run>/ablation.json`, atomically."""
    path = run_dir / FILE
    entries = load(run_dir)
    entries[ablation.candidate] = asdict(ablation)
    tmp = path.with_suffix(".json.tmp")
    try:
        tmp.write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)  # a reader never sees half a file
    except OSError as exc:
        raise os_fault(run_dir, exc) from exc
    return path


def load(run_dir: Path) -> dict[str, dict[str, object]]:
    """The run's stored ablations by candidate id ({} when there are none)."""
    path = run_dir / FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path} is unreadable ({exc}): delete it and ablate again") from exc
    return data if isinstance(data, dict) else {}
