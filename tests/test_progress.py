"""The progress display of `dreamteam run`: plain lines off a terminal, a live panel on one."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from dreamteam.agents.budget import Limits
from dreamteam.cli.progress import Progress, Tally, budget_left, choose_mode, render
from dreamteam.loop.search import BASELINE_ID, Event
from dreamteam.records import Spend
from test_search_elite import LR_UP, _search


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=120, highlight=False), out


def test_a_pipe_gets_plain_lines_and_a_terminal_the_live_panel() -> None:
    pipe, _ = _console(False)
    tty, _ = _console(True)
    assert choose_mode(pipe, plain=False, quiet=False) == "plain"
    assert choose_mode(tty, plain=False, quiet=False) == "live"
    assert choose_mode(tty, plain=True, quiet=False) == "plain"
    assert choose_mode(tty, plain=True, quiet=True) == "quiet"


def test_plain_lines_follow_a_run(tmp_path: Path) -> None:
    console, out = _console(False)
    search, _, _ = _search(tmp_path, {"archimedes": [LR_UP]}, generations=1)
    progress = Progress(console, "plain", 1, Limits())
    search._show = progress
    with progress:
        summary = search.run()
    lines = out.getvalue().splitlines()
    assert "generation 1/1" in lines
    assert "  proposed g1-archimedes (archimedes): valid" in lines
    assert any(
        line.startswith("  trial g1-archimedes smoke seed 1337: ok val_loss=") for line in lines
    )
    done = f"generation done: {summary.best} replaces {BASELINE_ID}"
    assert any(line.startswith(done) for line in lines)
    assert progress.tally.best is not None and progress.tally.best[0] == summary.best
    assert progress.tally.baseline is not None and progress.tally.training == {}


def test_quiet_prints_nothing(tmp_path: Path) -> None:
    console, out = _console(False)
    search, _, _ = _search(tmp_path, {"archimedes": [LR_UP]}, generations=1)
    search._show = Progress(console, "quiet", 1, Limits())
    search.run()
    assert out.getvalue() == ""


def test_the_panel_shows_generation_training_best_and_budget() -> None:
    tally = Tally(generations=3)
    spend = Spend(tokens=1_500, cost=0.25, minutes=2.0)
    for event in (
        Event("best", BASELINE_ID, "baseline", loss=6.0, spend=spend),
        Event("start", generation=2),
        Event("proposed", "g2-aristotle", "aristotle", "valid"),
        Event("proposed", "g2-archimedes", "archimedes", "invalid"),
        Event("started", "g2-aristotle", detail="smoke seed 1337"),
        Event("best", "g1-archimedes", "archimedes", loss=5.75, generation=1),
    ):
        tally.add(event)
    console, out = _console(False)
    limits = Limits(minutes=10, tokens=5_000, cost=1.0)
    console.print(render(tally, limits, 2.5, ["  proposed g2-aristotle (aristotle): valid"]))
    text = out.getvalue()
    for part in (
        "generation  2/3   elapsed 0:02:30",
        "training    g2-aristotle (smoke seed 1337)",
        "invalid 1 · valid 1",
        "g1-archimedes (archimedes)  val_loss 5.7500  delta -0.2500 vs baseline",
        "1,500 tokens · $0.25 used · 7.5 min · 3,500 tokens · $0.75 left",
        "proposed g2-aristotle",
    ):
        assert part in text, text


def test_budget_left_names_only_the_budgets_set() -> None:
    assert budget_left(None, Limits(), 3.0) == "no budget set"
    assert budget_left(Spend(10, 0.0, 0.0), Limits(tokens=100), 3.0) == "90 tokens left"


def test_the_live_panel_starts_and_stops_on_a_terminal() -> None:
    console, out = _console(True)
    progress = Progress(console, "live", 2, Limits())
    with progress:
        progress(Event("start", generation=1))
        progress(Event("proposed", "g1-a", "a", "valid"))
    assert "generation" in out.getvalue() and progress._live is None
