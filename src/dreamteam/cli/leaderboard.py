"""The leaderboard `dreamteam show` prints: ranked by what was confirmed, readable at 80 columns.

A confirmed figure (the mean over the confirmation seeds) outranks any screening figure, which
rests on one seed at a smaller fidelity; within each group the lower loss comes first.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from dreamteam.config import RunConfig
from dreamteam.records import CandidateRecord, ChangeKind, mean_figures
from dreamteam.store import RunStore

CELL = 70  # characters of a reason or summary in the table; longer ones follow it whole
WIDE = 120  # columns from which the table holds personas and reasons too


@dataclass(frozen=True)
class Row:
    """One candidate and its figures at the screening and confirmation fidelities."""

    candidate: CandidateRecord
    screen: tuple[float, ...]
    confirm: tuple[float, ...]
    figures: Mapping[str, float] = field(default_factory=dict)  # confirmed means, else screening

    @property
    def key(self) -> tuple[int, float, int]:
        if self.confirm:  # on a tie, the figure on more seeds first
            return (0, statistics.fmean(self.confirm), -len(self.confirm))
        if self.screen:
            return (1, min(self.screen), 0)
        return (2, float("inf"), 0)


def levels(config: Mapping[str, object]) -> tuple[str, str]:
    """A stored run config's screening and confirmation fidelities (defaults where unset)."""
    defaults = RunConfig()
    screen = config.get("screen_fidelity", defaults.screen_fidelity)
    return str(screen), str(config.get("fidelity", defaults.fidelity))


def ranked(store: RunStore, config: Mapping[str, object]) -> list[Row]:
    """Every candidate of the run, confirmed ones first, each group by its loss."""
    screen_at, confirm_at = levels(config)
    rows = []
    for c in store.candidates():
        trials = store.trials(c.id)
        screen = [t.val_loss for t in trials if t.fidelity == screen_at]
        confirm = [t.val_loss for t in trials if t.fidelity == confirm_at]
        confirmed = [t for t in trials if t.fidelity == confirm_at and t.val_loss]
        figures = mean_figures(confirmed or [t for t in trials if t.fidelity == screen_at])
        rows.append(Row(c, tuple(v for v in screen if v), tuple(v for v in confirm if v), figures))
    return sorted(rows, key=lambda r: r.key)


def figure_names(rows: Sequence[Row]) -> list[str]:
    """The secondary figures any row has (`accuracy`; `bpb` for a language model)."""
    return list(dict.fromkeys(name for r in rows for name in r.figures))


def table(
    rows: Sequence[Row],
    config: Mapping[str, object],
    title: str,
    wide: bool,
    figures: Sequence[str] = (),
) -> Table:
    """The leaderboard, with a column per secondary figure named in `figures`. The id column
    never wraps or shrinks; a narrow terminal drops the persona (the id names it) and the
    reasons, which `notes` then prints whole."""
    width = max((len(r.candidate.id) for r in rows), default=9)
    t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("candidate", no_wrap=True, min_width=width)
    if wide:
        t.add_column("persona", overflow="fold")
    t.add_column("status", no_wrap=True)
    screen_at, confirm_at = levels(config)
    t.add_column(f"mean@{confirm_at}", no_wrap=True)
    t.add_column(f"loss@{screen_at}", no_wrap=True)
    for name in figures:
        t.add_column(name, no_wrap=True)
    t.add_column("change" if wide else "kind", overflow="fold")
    if wide:
        t.add_column("reason / summary", overflow="fold", ratio=1)
    for r in rows:
        c = r.candidate
        cells = [
            c.id,
            c.status or "pending",
            _mean(r.confirm),
            f"{r.screen[0]:.4f}" if r.screen else "-",
            *(_figure(r.figures.get(name)) for name in figures),
            _kind(c, wide),
        ]
        if wide:
            cells.insert(1, c.persona)
            cells.append(_cut(c.reason or c.summary))
        t.add_row(*cells)
    return t


def view(
    rows: Sequence[Row], config: Mapping[str, object], title: str, console: Console
) -> tuple[Table, list[str]]:
    """The table for `console`'s width and the lines under it: each candidate's secondary
    figures when there is no room for a column per figure, then the `notes`."""
    wide = console.width >= WIDE
    figures = figure_names(rows)
    board = table(rows, config, title, wide, figures)
    # measured as if the terminal had no edge: a table measured within it always "fits"
    unbounded = console.options.update_width(10_000)
    if wide or Measurement.get(console, unbounded, board).maximum <= console.width:
        return board, notes(rows, wide)
    lines = [f"figures ({', '.join(figures)}): the confirmed mean, else the screening trial's"]
    lines += [
        f"{r.candidate.id}: " + ", ".join(f"{k} {v:.4f}" for k, v in r.figures.items())
        for r in rows
        if r.figures
    ]
    return table(rows, config, title, wide), lines + notes(rows, wide)


def notes(rows: Sequence[Row], wide: bool) -> list[str]:
    """`id: text` lines for what the table did not show whole (a reason ends with its fix)."""
    if wide:
        return [
            f"{r.candidate.id}: {r.candidate.reason}"
            for r in rows
            if len(r.candidate.reason) > CELL
        ]
    return [
        f"{r.candidate.id}: {r.candidate.reason or r.candidate.summary}"
        for r in rows
        if r.candidate.reason or r.candidate.summary
    ]


_SHORT = {ChangeKind.STRUCTURAL: "struct", ChangeKind.HYPERPARAMETER: "hyper"}


def _kind(c: CandidateRecord, wide: bool) -> str:
    """What the change moved; abbreviated on a narrow terminal."""
    if not (c.record and c.record.kind):
        return "-"
    return str(c.record.kind) if wide else _SHORT.get(c.record.kind, str(c.record.kind))


def _mean(values: Sequence[float]) -> str:
    """The confirmed mean, marked with its seed count (n=1 rests on one seed)."""
    return f"{statistics.fmean(values):.4f} (n={len(values)})" if values else "-"


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _cut(text: str) -> str:
    return text if len(text) <= CELL else text[: CELL - 1] + "…"
