"""The report's figures: matplotlib, rendered to inline SVG strings.

Figures are built on `matplotlib.figure.Figure` directly (no pyplot), so rendering leaves no
global state behind and needs no GUI backend. Text stays text in the SVG (svg.fonttype none):
the files stay small and the browser's fonts draw the labels.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from dreamteam.records import CandidateKind
from dreamteam.report.data import Headline
from dreamteam.report.tallies import Stage
from dreamteam.report.views import CandidateView, Curve

MODE_COLOURS = {
    "savant": "#c2571a",
    "collaborator": "#2f6db5",
    "specialist": "#2e8b57",
    "baseline": "#555555",
}
FAILED_COLOUR = "#b3261e"
_STYLE: dict[str, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "dreamteam",  # stable element ids: the same run renders the same file
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Helvetica", "Arial"],
    "font.size": 9.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "axes.titlesize": 10,
    "legend.frameon": False,
    "legend.fontsize": 8,
}
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)


@contextmanager
def plot_style() -> Iterator[None]:
    """The report's matplotlib settings, for the figures drawn inside the block."""
    with matplotlib.rc_context(_STYLE):  # type: ignore[arg-type]  # keys are literal-typed
        yield


def colour(mode: str) -> str:
    """The colour of a persona mode, shared by plots and page."""
    return MODE_COLOURS.get(mode, "#888888")


def _svg(fig: Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    text = buffer.getvalue()
    # the XML prolog and the RDF metadata (with its external namespace URLs) are not
    # needed inside HTML
    return _METADATA.sub("", text[text.index("<svg") :])


def _figure(width: float, height: float, **margins: float) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(**{"left": 0.1, "right": 0.98, "bottom": 0.16, "top": 0.95, **margins})
    return fig, fig.add_subplot()


def _mode_legend(ax: Any, modes: Sequence[str], **extra: Any) -> None:
    for mode in dict.fromkeys(modes):
        ax.scatter([], [], color=colour(mode), s=22, label=mode)
    # above the axes, where no point can hide under it
    ax.legend(**{"loc": "lower left", "bbox_to_anchor": (0.0, 1.0), "ncol": 8, **extra})


def progress_plot(
    candidates: Sequence[CandidateView], incumbents: Sequence[tuple[int, float]], fidelity: str
) -> str:
    """Every candidate's screening loss by generation, and the incumbent (best so far) line."""
    fig, ax = _figure(11.5, 3.8, left=0.06, top=0.86)
    scored = [c for c in candidates if c.screen_loss is not None and math.isfinite(c.screen_loss)]
    losses = [c.screen_loss or 0.0 for c in scored]
    high, low = max(losses, default=1.0), min(losses, default=0.0)
    base = next((c.screen_loss for c in scored if c.record.kind == CandidateKind.BASELINE), None)
    # a diverged candidate would flatten everything else: cap the axis above the baseline
    cap = high if base is None else min(high, base + max(0.6 * (base - low), 0.02 * abs(base)))
    span = cap - low or 1.0
    top = cap + 0.08 * span  # failed and off-axis candidates sit in a band above the points
    slot: dict[int, int] = {}
    points: dict[bool, list[tuple[float, float, CandidateView]]] = {False: [], True: []}
    scored_ids = {c.id for c in scored}
    for c in [*scored, *(c for c in candidates if c.id not in scored_ids)]:  # failures on top
        k = slot[c.record.generation] = slot.get(c.record.generation, 0) + 1
        x = c.record.generation - 0.12 + 0.04 * ((k - 1) % 7)  # spread points of one generation
        loss = c.screen_loss if c.id in scored_ids else None
        off_axis = loss is None or loss > cap
        points[off_axis].append((x, top if loss is None or off_axis else loss, c))
    ok = points[False]
    if ok:
        ax.scatter(
            [x for x, _, _ in ok],
            [y for _, y, _ in ok],
            c=[colour(c.record.mode) for _, _, c in ok],
            s=[44 if c.won else 24 for _, _, c in ok],
            marker="o",
            edgecolors=["#111111" if c.won else "none" for _, _, c in ok],
            linewidths=1.2,
            zorder=3,
        )
        for x, y, c in ok:
            if c.won:
                ax.annotate(c.record.persona, (x, y), xytext=(7, 3), textcoords="offset points")
    failed = points[True]
    ax.scatter(
        [x for x, _, _ in failed],
        [y for _, y, _ in failed],
        marker="x",
        s=22,
        color=FAILED_COLOUR,
        zorder=3,
        label="failed or above the axis",
    )
    if incumbents:
        gens, best = zip(*incumbents, strict=True)
        ax.step(gens, best, where="post", color="#111111", linewidth=1.6, label="best so far")
        ax.scatter(gens[-1:], best[-1:], marker="_", s=120, color="#111111")  # a lone incumbent too
    _mode_legend(ax, [c.record.mode for c in candidates])
    generations = sorted({c.record.generation for c in candidates})
    ax.set_xticks(generations)
    ax.set_xlim(generations[0] - 0.5, generations[-1] + 0.6)  # room for the winners' names
    ax.set_xlabel("generation")
    ax.set_ylabel(f"val loss @ {fidelity} (nats)")
    ax.set_ylim(top=top + 0.05 * span)
    return _svg(fig)


def headline_plot(headline: Headline, fidelity: str) -> str:
    """Per-seed losses of the baseline and the best, with mean ± sd."""
    fig, ax = _figure(5.6, 1.7, left=0.14, bottom=0.3)
    rows = [("baseline", headline.baseline_losses, headline.baseline_est, "baseline")]
    if headline.best is not headline.baseline:
        rows.append(("best", headline.best_losses, headline.best_est, headline.best.record.mode))
    for y, (_, losses, est, mode) in enumerate(rows):
        ax.scatter(losses, [y] * len(losses), color=colour(mode), s=22, alpha=0.7, zorder=3)
        if est is not None:
            ax.errorbar(
                est.mean,
                y,
                xerr=est.sd,
                fmt="|",
                markersize=14,
                capsize=4,
                color="#111111",
                zorder=4,
            )
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlabel(f"val loss @ {fidelity} (nats): dots are seeds, bars mean ± sd")
    ax.grid(axis="y", visible=False)
    return _svg(fig)


def funnel_plot(stages: Sequence[Stage]) -> str:
    """How many candidates reached each stage."""
    fig, ax = _figure(5.6, 2.2, left=0.15, bottom=0.08)
    names = [s.name for s in stages][::-1]
    counts = [s.count for s in stages][::-1]
    shades = matplotlib.colormaps["Blues"](
        [0.85 - 0.55 * i / max(1, len(stages) - 1) for i in range(len(stages))]
    )  # the later the stage, the darker
    bars = ax.barh(names, counts, color=shades, height=0.7)
    ax.bar_label(bars, padding=3, fontsize=8)
    ax.set_xlim(0, max([*counts, 1]) * 1.12)
    ax.set_xticks([])
    ax.grid(False)
    ax.spines["bottom"].set_visible(False)
    return _svg(fig)


def pareto_plot(
    candidates: Sequence[CandidateView], front: Sequence[tuple[float, float, str]], fidelity: str
) -> str:
    """Screening loss against training time, with the Pareto front."""
    fig, ax = _figure(11.5, 3.8, left=0.06, bottom=0.13, top=0.86)
    by_id = {c.id: c for c in candidates}
    for c in candidates:
        if c.screen is None or c.screen_loss is None or not math.isfinite(c.screen_loss):
            continue
        marker = "*" if c.record.kind == CandidateKind.BASELINE else "o"
        ax.scatter(
            c.screen.train_seconds,
            c.screen_loss,
            color=colour(c.record.mode),
            s=70 if marker == "*" else 24,
            marker=marker,
            alpha=0.85,
            zorder=3,
        )
    if front:
        xs, ys, ids = zip(*front, strict=True)
        ax.step(
            xs, ys, where="post", color="#111111", linewidth=1.2, label="Pareto front", zorder=2
        )
        for x, y, cid in zip(xs, ys, ids, strict=True):
            ax.annotate(
                by_id[cid].record.persona if cid in by_id else cid,
                (x, y),
                xytext=(4, 4),
                textcoords="offset points",
                fontsize=7,
            )
    _mode_legend(ax, [c.record.mode for c in candidates])
    ax.set_xlabel(f"training seconds @ {fidelity}")
    ax.set_ylabel(f"val loss @ {fidelity} (nats)")
    return _svg(fig)


CurveKey = tuple[Curve, str, Curve | None]  # (curve, mode, parent's curve): what a plot shows


def curve_plots(
    curves: Mapping[str, CurveKey], drawn: dict[CurveKey, str] | None = None
) -> dict[str, str]:
    """Each candidate's training curve (train and held-out loss) over its parent's in grey.

    `curves` maps a candidate id to (curve, mode, parent curve). One figure is reused for all:
    building axes and ticks is most of matplotlib's cost, and only the data changes. `drawn`
    holds the plots of an earlier call (a live report's last rebuild): a plot whose data is
    the same is not drawn again, and `drawn` is left holding exactly this call's plots.
    """
    drawn = {} if drawn is None else drawn
    missing = [key for key in dict.fromkeys(curves.values()) if key not in drawn]
    if missing:
        drawn.update(_draw_curves(missing))
    for stale in set(drawn) - set(curves.values()):
        del drawn[stale]
    return {cid: drawn[key] for cid, key in curves.items()}


def _draw_curves(keys: Sequence[CurveKey]) -> dict[CurveKey, str]:
    fig, ax = _figure(4.6, 2.1, left=0.14, bottom=0.2)
    (parent_line,) = ax.plot([], [], color="#9a9a9a", linewidth=1, label="parent")
    (train_line,) = ax.plot([], [], linewidth=1.6, label="train")
    (held_line,) = ax.plot([], [], linewidth=1.2, linestyle="--", label="held-out")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    svgs = {}
    for key in keys:
        curve, mode, parent = key
        held = [(i, v) for i, v in zip(curve.iters, curve.vloss, strict=True) if v is not None]
        parent_line.set_data(parent.iters if parent else [], parent.loss if parent else [])
        train_line.set_data(curve.iters, curve.loss)
        held_line.set_data([i for i, _ in held], [v for _, v in held])
        train_line.set_color(colour(mode))
        held_line.set_color(colour(mode))
        ax.relim()
        ax.autoscale_view()
        shown = [line for line in (parent_line, train_line, held_line) if len(line.get_xdata())]
        ax.legend(handles=shown, loc="upper right")
        svgs[key] = _svg(fig)
    return svgs
