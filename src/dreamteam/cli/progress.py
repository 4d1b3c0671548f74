"""Progress of `dreamteam run`: a live panel on a terminal, plain lines anywhere else.

    Search ─► Event ─► Progress ─► LivePanel (terminal) | lines (pipes, CI, --plain) | nothing (--quiet)

Both views read the same `Tally` of events. The contract's closing lines (`best:`, `report:`)
are printed by the command after the display has stopped, so they are the same either way.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from types import TracebackType

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from dreamteam.agents.budget import Limits
from dreamteam.loop.plan import BASELINE_ID
from dreamteam.records import Event, Spend

RECENT_LINES = 6  # lines of the event log kept under the live panel


@dataclass
class Tally:
    """What the events so far add up to."""

    generations: int  # the run's planned number
    generation: int = 0
    training: dict[str, str] = field(default_factory=dict)  # candidate -> fidelity and seed
    proposals: Counter[str] = field(default_factory=Counter)
    trials: Counter[str] = field(default_factory=Counter)
    best: tuple[str, str, float | None] | None = None  # id, persona, loss at confirmation
    baseline: float | None = None
    spend: Spend | None = None
    # agent calls in flight: candidate -> (when the call started, its latest retry or "")
    calls: dict[str, tuple[float, str]] = field(default_factory=dict)

    def add(self, event: Event, now: float | None = None) -> None:
        """Fold one event in (`now`: its `time.monotonic()`, for calls' elapsed times)."""
        self.spend = event.spend or self.spend
        if event.kind in _CALL_KINDS:
            self._call(event, time.monotonic() if now is None else now)
        elif event.kind == "start":
            self.generation = event.generation
        elif event.kind == "proposed":
            self.proposals[event.detail.split(":", 1)[0]] += 1
        elif event.kind == "started":
            self.training[event.candidate] = event.detail
        elif event.kind == "trial":
            self.training.pop(event.candidate, None)
            self.trials[event.detail.rsplit(": ", 1)[-1]] += 1
        elif event.kind in ("best", "rescue"):
            self.best = (event.candidate, event.persona, event.loss)
            if event.candidate == BASELINE_ID and event.loss is not None:
                self.baseline = event.loss

    def _call(self, event: Event, now: float) -> None:
        if event.kind == "asking":
            self.calls[event.candidate] = (now, "")
        elif event.kind == "retry":
            started = self.calls.get(event.candidate, (now, ""))[0]
            self.calls[event.candidate] = (started, event.detail)
        else:
            self.calls.pop(event.candidate, None)


_CALL_KINDS = frozenset({"asking", "retry", "answered", "failed"})


def _who(event: Event) -> str:
    return f"{event.candidate} ({event.persona})" if event.persona else event.candidate


def event_line(event: Event) -> str | None:
    """The plain line for an event (rich markup), or None for events shown only live."""
    detail = escape(event.detail)
    if event.kind == "start":
        return f"[bold]generation {event.generation}/{detail.removeprefix('of ')}[/bold]"
    if event.kind == "proposed":
        return f"  proposed {event.candidate} ({event.persona}): {detail}"
    if event.kind in ("asking", "answered"):
        return f"  [dim]{event.kind} {escape(_who(event))}: {detail}[/dim]"
    if event.kind == "retry":
        return f"  [yellow]retry[/yellow] {escape(_who(event))} {detail}"
    if event.kind == "agents":
        return f"[yellow]agents:[/yellow] {detail}"
    if event.kind == "report":
        return f"[yellow]report:[/yellow] {detail}"
    if event.kind == "trial":
        loss = f" val_loss={event.loss:.4f}" if event.loss is not None else ""
        return f"  [dim]trial {event.candidate} {detail}{loss}[/dim]"
    if event.kind == "generation":
        return f"[bold]generation done:[/bold] {detail}"
    if event.kind == "rescue":
        return f"[bold]elite:[/bold] {detail}"
    return None


def _counts(counter: Counter[str]) -> str:
    return " · ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "–"


def _clock(minutes: float) -> str:
    seconds = int(minutes * 60)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def budget_left(spend: Spend | None, limits: Limits, minutes: float) -> str:
    """What is left of each budget that is set, e.g. `4.2 min · 1,200 tokens · $0.35`."""
    parts = []
    if limits.minutes:
        parts.append(f"{max(0.0, limits.minutes - minutes):.1f} min")
    if limits.tokens:
        used = spend.tokens if spend else 0
        parts.append(f"{max(0, limits.tokens - used):,} tokens")
    if limits.cost:
        used_cost = spend.cost if spend else 0.0
        parts.append(f"${max(0.0, limits.cost - used_cost):.2f}")
    return " · ".join(parts) + " left" if parts else "no budget set"


def _in_flight(calls: dict[str, tuple[float, str]], now: float) -> str:
    """Each agent call under way with its elapsed time, and its latest retry if any."""
    shown = []
    for cid, (started, retry) in calls.items():
        shown.append(f"{cid} {now - started:.0f}s" + (f" (retry {retry})" if retry else ""))
    return ", ".join(shown) or "–"


def render(
    tally: Tally, limits: Limits, minutes: float, recent: list[str], now: float | None = None
) -> RenderableType:
    """The live panel: where the run is, what trains, what agents are asked, how it stands,
    what is left."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    where = f"{tally.generation}/{tally.generations}" if tally.generation else "baseline"
    grid.add_row("generation", f"{where}   elapsed {_clock(minutes)}")
    training = ", ".join(f"{c} ({d})" for c, d in tally.training.items()) or "–"
    grid.add_row("training", escape(training))
    now = time.monotonic() if now is None else now
    grid.add_row("agents", Text(_in_flight(tally.calls, now), overflow="ellipsis", no_wrap=True))
    grid.add_row("proposals", _counts(tally.proposals))
    grid.add_row("trials", _counts(tally.trials))
    if tally.best is not None:
        cid, persona, loss = tally.best
        shown = f"{cid} ({persona})"
        if loss is not None:
            shown += f"  val_loss {loss:.4f}"
            if tally.baseline is not None and cid != BASELINE_ID:
                shown += f"  delta {loss - tally.baseline:+.4f} vs baseline"
        grid.add_row("best", escape(shown))
    spend = tally.spend
    used = f"{spend.tokens:,} tokens · ${spend.cost:.2f}" if spend else "–"
    grid.add_row("budget", f"{used} used · {budget_left(spend, limits, minutes)}")
    lines = [Text.from_markup(line, overflow="ellipsis") for line in recent]
    for line in lines:
        line.no_wrap = True  # one row per event: the panel keeps its height
    return Group(grid, *lines)


class Progress:
    """The display of one run: call it with each Event; use it as a context manager.

    `mode` is "live" (a redrawn panel: needs a terminal), "plain" (one line per event) or
    "quiet" (nothing). `choose_mode` picks it from the console and the command's flags.
    """

    def __init__(self, console: Console, mode: str, generations: int, limits: Limits):
        self.console, self.mode, self.limits = console, mode, limits
        self.tally = Tally(generations)
        self.recent: deque[str] = deque(maxlen=RECENT_LINES)
        self.started = time.monotonic()
        self._live: Live | None = None
        self._lock = threading.Lock()  # agent calls report from their own threads

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.tally.add(event)
            line = event_line(event)
            if line is None or self.mode == "quiet":
                return
            if self.mode == "plain":
                self.console.print(line)
            else:
                self.recent.append(line)

    def _render(self) -> RenderableType:
        minutes = (time.monotonic() - self.started) / 60
        with self._lock:
            return render(self.tally, self.limits, minutes, list(self.recent))

    def __enter__(self) -> Progress:
        if self.mode == "live":
            # get_renderable: redrawn on every refresh, so the clock moves between events
            self._live = Live(console=self.console, get_renderable=self._render)
            self._live.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def choose_mode(console: Console, plain: bool, quiet: bool) -> str:
    """quiet beats plain; a live panel only where a terminal shows it."""
    if quiet:
        return "quiet"
    if plain or not console.is_terminal or console.is_dumb_terminal:
        return "plain"
    return "live"
