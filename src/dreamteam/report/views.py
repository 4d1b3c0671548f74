"""Each candidate with its trials, screening loss, confirmation estimate and training curve.

Read from the store once; the rest of the report works on these views.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dreamteam.config import RunConfig
from dreamteam.loop.plan import BASE_SEED
from dreamteam.records import (
    CandidateRecord,
    GenerationRecord,
    Status,
    TrialRecord,
    mean_figures,
)
from dreamteam.select.rules import Estimate, estimate
from dreamteam.store import RunStore

LOG_TAIL_LINES = 25
_CURVE_LINE = re.compile(
    r"^iter\s+(\d+):\s+loss\s+([-+0-9.eE]+|nan|inf)(?:\s+vloss\s+([-+0-9.eE]+|nan|inf))?",
    re.M,
)


@dataclass(frozen=True)
class Curve:
    """A training curve parsed from `iter N: loss X vloss Y` lines of a trial log."""

    iters: tuple[int, ...] = ()
    loss: tuple[float, ...] = ()
    vloss: tuple[float | None, ...] = ()


@dataclass(frozen=True)
class CandidateView:
    """One candidate with its measurements, as the report shows it."""

    record: CandidateRecord
    trials: tuple[TrialRecord, ...]
    screen: TrialRecord | None  # the screening trial (one seed)
    confirm: Estimate | None  # OK trials at the confirmation fidelity
    delta: float | None  # screening loss minus the parent's: negative is better
    promoted: bool
    won: bool  # became a generation's best
    curve: Curve
    log_tail: str
    figures: Mapping[str, float] = field(default_factory=dict)  # confirmed means, else screening

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def screen_loss(self) -> float | None:
        return self.screen.val_loss if self.screen else None

    @property
    def status(self) -> str:
        return self.record.status or "pending"


def parse_curve(log: str) -> Curve:
    """The `iter N: loss X vloss Y` points of a training log, in order."""
    points = [
        (int(m[1]), float(m[2]), float(m[3]) if m[3] else None) for m in _CURVE_LINE.finditer(log)
    ]
    if not points:
        return Curve()
    iters, loss, vloss = zip(*points, strict=True)
    return Curve(iters, loss, vloss)


def by_seed(view: CandidateView, fidelity: str) -> dict[int, float]:
    """seed -> loss of the candidate's OK trials at one fidelity."""
    return {
        t.seed: t.val_loss
        for t in view.trials
        if t.fidelity == fidelity and t.status is Status.OK and t.val_loss is not None
    }


def _tail(log: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(log.rstrip().splitlines()[-lines:])


def collect_candidates(
    store: RunStore, config: RunConfig, gens: Sequence[GenerationRecord]
) -> list[CandidateView]:
    promoted = {cid for g in gens for cid in g.promoted}
    won = {g.best for g in gens if g.number > 0 and g.best and g.best != g.parent}
    records = store.candidates()
    trials = {c.id: tuple(store.trials(c.id)) for c in records}

    def screening(cid: str) -> TrialRecord | None:
        at_screen = [t for t in trials.get(cid, ()) if t.fidelity == config.screen_fidelity]
        return next(
            (t for t in at_screen if t.seed == BASE_SEED), at_screen[0] if at_screen else None
        )

    views = []
    for c in records:
        screen = screening(c.id)
        parent = screening(c.parent) if c.parent else None
        confirmed = [
            t
            for t in trials[c.id]
            if t.fidelity == config.fidelity
            and t is not screen  # the screening trial, when both fidelities coincide
            and t.status is Status.OK
            and t.val_loss is not None
        ]
        confirm = [t.val_loss for t in confirmed if t.val_loss is not None]
        delta = (
            screen.val_loss - parent.val_loss
            if screen and parent and screen.val_loss is not None and parent.val_loss is not None
            else None
        )
        log = store.trial_log(c.id)
        views.append(
            CandidateView(
                c,
                trials[c.id],
                screen,
                estimate(confirm),
                delta,
                c.id in promoted,
                c.id in won,
                parse_curve(log),
                _tail(log),
                mean_figures(confirmed or ([screen] if screen else [])),
            )
        )
    return views
