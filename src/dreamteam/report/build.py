"""Render a run into one self-contained HTML file: inline CSS, inline JS, inline SVG plots.

    RunStore ─► data.gather ─► plots (matplotlib SVG) + diffs (pygments) ─► report.html.j2

The page loads nothing from anywhere: it can be mailed, archived or opened offline.
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from dreamteam.report import plots
from dreamteam.report.data import ReportData, gather
from dreamteam.report.diffs import RenderedDiff, highlight_css, render_diff
from dreamteam.report.tallies import pareto_front
from dreamteam.report.views import CandidateView
from dreamteam.store import RunStore
from dreamteam.store.faults import os_fault

REFRESH_SECONDS = 15  # how often a live page reloads itself: a rebuild is rarer than that
# A live page not rewritten for this long (or 3x the longest trial so far, if longer: no page
# is written while a long trial runs) says its run may have stopped; a killed run cannot.
STALE_SECONDS = 900


# -- template filters ---------------------------------------------------------------------------
def _num(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _signed(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:+.{digits}f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def _when(stamp: float | None) -> str:
    return "–" if not stamp else time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(stamp))


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dreamteam.report", "templates"),
        autoescape=True,  # every string from the store (answers, logs, reasons) is escaped
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(num=_num, signed=_signed, duration=_duration, when=_when)
    env.filters["colour"] = plots.colour
    return env


# -- assembling ---------------------------------------------------------------------------------
def _incumbents(data: ReportData) -> list[tuple[int, float]]:
    """(generation, screening loss of that generation's best): the best-so-far line."""
    line = []
    for g in data.generations:
        best = data.get(g.best)
        if best is not None and best.screen_loss is not None:
            line.append((g.number, best.screen_loss))
    return line


def _curve_inputs(data: ReportData) -> dict[str, plots.CurveKey]:
    """id -> (curve, mode, parent's curve) for every candidate whose log has a curve."""
    inputs = {}
    for c in data.candidates:
        if c.curve.iters:
            parent = data.get(c.record.parent)
            inputs[c.id] = (c.curve, c.record.mode, parent.curve if parent else None)
    return inputs


def _section_order(data: ReportData) -> list[CandidateView]:
    """Candidates by generation, best screening loss first, failures last."""
    return sorted(
        data.candidates,
        key=lambda c: (c.record.generation, c.screen_loss is None, c.screen_loss or 0.0),
    )


def _leaderboard(data: ReportData) -> list[CandidateView]:
    """Candidates ranked by confirmed loss, then by screening loss."""
    inf = float("inf")
    return sorted(
        data.candidates,
        key=lambda c: (
            c.confirm.mean if c.confirm else inf,
            c.screen_loss if c.screen_loss is not None else inf,
        ),
    )


@dataclass
class Drawn:
    """What a live report's rebuilds reuse: each candidate's curve plot and highlighted diff
    do not change once drawn. Each rebuild leaves only what its page shows."""

    curves: dict[plots.CurveKey, str] = field(default_factory=dict)
    diffs: dict[str, RenderedDiff] = field(default_factory=dict)  # diff text -> its rows


def _diffs(data: ReportData, drawn: Drawn) -> dict[str, RenderedDiff]:
    """id -> highlighted diff, for every candidate with one; highlighting is done once."""
    texts = {c.id: c.record.diff for c in data.candidates if c.record.diff}
    kept = {text: drawn.diffs.get(text) or render_diff(text) for text in texts.values()}
    drawn.diffs = kept
    return {cid: kept[text] for cid, text in texts.items()}


def _context(data: ReportData, drawn: Drawn) -> dict[str, Any]:
    cfg = data.overview.config
    scored = [
        (c.screen.train_seconds, c.screen_loss, c.id)
        for c in data.candidates
        if c.screen and c.screen_loss is not None
    ]
    with plots.plot_style():
        figures = {
            "progress": plots.progress_plot(
                data.candidates, _incumbents(data), cfg.screen_fidelity
            ),
            "headline": plots.headline_plot(data.headline, cfg.fidelity),
            "funnel": plots.funnel_plot(data.funnel),
            "pareto": plots.pareto_plot(data.candidates, pareto_front(scored), cfg.screen_fidelity),
        }
        curves = plots.curve_plots(_curve_inputs(data), drawn.curves)
    return {
        "d": data,
        "o": data.overview,
        "cfg": cfg,
        "figures": figures,
        "curves": curves,
        "diffs": _diffs(data, drawn),
        "sections": _section_order(data),
        "leaderboard": _leaderboard(data),
        "highlight_css": highlight_css(".diff .src"),
        "mode_colours": plots.MODE_COLOURS,
    }


def render_report(store: RunStore, *, live: bool = False, drawn: Drawn | None = None) -> str:
    """The report for `store` as one HTML string. `live`: written by the running search, so
    while the run's status is `running` the page reloads itself and says when it was written.
    `drawn`: what the last rebuild drew, to reuse (see Drawn)."""
    data = gather(store)
    context = _context(data, Drawn() if drawn is None else drawn)
    context["live"] = live and data.overview.status == "running"
    context["refresh_seconds"] = REFRESH_SECONDS
    now = time.time()
    context["updated"] = time.strftime("%H:%M:%S UTC", time.gmtime(now))
    context["written"] = int(now)
    longest = max(
        (t.train_seconds + t.eval_seconds for c in data.candidates for t in c.trials), default=0.0
    )
    context["stale_seconds"] = int(max(STALE_SECONDS, 3 * longest))
    return _environment().get_template("report.html.j2").render(context)


def write_report(
    store: RunStore,
    path: Path,
    *,
    live: bool = False,
    drawn: Drawn | None = None,
) -> Path:
    """Render the report for `store` into `path` (one self-contained HTML file)."""
    return write_page(path, render_report(store, live=live, drawn=drawn))


def write_page(path: Path, html: str) -> Path:
    """Write `html` to `path` atomically: a reader sees the old page or the new one, never a
    part of one. A failure is a StoreError and leaves the old page as it was."""
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a name of its own in the same folder: two writers (the run, `dreamteam report`)
        # never share a temporary file, and os.replace stays on one file system
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        tmp = Path(name)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(html)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the page from other users
        os.replace(tmp, path)
    except OSError as exc:  # a read-only run, a full disk: one line, and `-o` elsewhere
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise os_fault(path.parent, exc) from exc
    return path
