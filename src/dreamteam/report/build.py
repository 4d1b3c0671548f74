"""Render a run into one self-contained HTML file: inline CSS, inline JS, inline SVG plots.

    RunStore ─► data.gather ─► plots (matplotlib SVG) + diffs (pygments) ─► report.html.j2

The page loads nothing from anywhere: it can be mailed, archived or opened offline.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import jinja2

from dreamteam.report import plots
from dreamteam.report.data import ReportData, gather
from dreamteam.report.diffs import highlight_css, render_diff
from dreamteam.report.tallies import pareto_front
from dreamteam.report.views import CandidateView, Curve
from dreamteam.store import RunStore
from dreamteam.store.faults import os_fault


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


def _curve_inputs(data: ReportData) -> dict[str, tuple[Curve, str, Curve | None]]:
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


def _context(data: ReportData) -> dict[str, Any]:
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
        curves = plots.curve_plots(_curve_inputs(data))
    return {
        "d": data,
        "o": data.overview,
        "cfg": cfg,
        "figures": figures,
        "curves": curves,
        "diffs": {c.id: render_diff(c.record.diff) for c in data.candidates if c.record.diff},
        "sections": _section_order(data),
        "leaderboard": _leaderboard(data),
        "highlight_css": highlight_css(".diff .src"),
        "mode_colours": plots.MODE_COLOURS,
    }


def render_report(store: RunStore) -> str:
    """The report for `store` as one HTML string."""
    template = _environment().get_template("report.html.j2")
    return template.render(_context(gather(store)))


def write_report(store: RunStore, path: Path) -> Path:
    """Render the report for `store` into `path` (one self-contained HTML file)."""
    html = render_report(store)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(html, encoding="utf-8")
        tmp.replace(path)  # a reader never sees half a report
    except OSError as exc:  # a read-only run, a full disk: one line, and `-o` elsewhere
        raise os_fault(path.parent, exc) from exc
    return path
