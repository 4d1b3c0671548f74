"""Turn a run store into the report's data, plots and HTML. Every number comes from the store."""

from __future__ import annotations

import io
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from dreamteam.store import RunStore

_MODE_COLOURS = {
    "savant": "#b5522b",
    "collaborator": "#2b6cb5",
    "specialist": "#3a8f4b",
    "baseline": "#444444",
}


@dataclass(frozen=True)
class Row:
    """One candidate in the leaderboard."""

    id: str
    persona: str
    mode: str
    generation: int
    status: str
    screen: float | None
    confirm_mean: float | None
    confirm_sd: float | None
    confirm_n: int
    train_seconds: float | None
    reason: str
    diff: str


def _rows(store: RunStore, cfg: dict[str, Any]) -> list[Row]:
    rows = []
    for c in store.candidates():
        trials = [t for t in store.trials(c.id) if t.val_loss is not None]
        screen = [t for t in trials if t.fidelity == cfg["screen_fidelity"]]
        confirm = [t.val_loss for t in trials if t.fidelity == cfg["fidelity"] and t.val_loss]
        rows.append(
            Row(
                id=c.id,
                persona=c.persona,
                mode=c.mode,
                generation=c.generation,
                status=c.status or "pending",
                screen=screen[0].val_loss if screen else None,
                confirm_mean=statistics.fmean(confirm) if confirm else None,
                confirm_sd=statistics.stdev(confirm) if len(confirm) > 1 else None,
                confirm_n=len(confirm),
                train_seconds=screen[0].train_seconds if screen else None,
                reason=c.reason or c.summary,
                diff=c.diff,
            )
        )
    return rows


def _svg(fig: Any) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _progress_plot(rows: list[Row], fidelity: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    best = float("inf")
    gens, bests = [], []
    for g in sorted({r.generation for r in rows}):
        for r in rows:
            if r.generation == g and r.screen is not None:
                ax.scatter(g, r.screen, color=_MODE_COLOURS.get(r.mode, "#888"), s=28, alpha=0.8)
                best = min(best, r.screen)
        if best < float("inf"):
            gens.append(g)
            bests.append(best)
    ax.plot(gens, bests, color="#111", linewidth=1.5, label="best so far")
    for mode, colour in _MODE_COLOURS.items():
        ax.scatter([], [], color=colour, label=mode)
    ax.set_xlabel("generation")
    ax.set_ylabel(f"validation loss @ {fidelity} (nats)")
    ax.legend(fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    svg = _svg(fig)
    plt.close(fig)
    return svg


def write_report(store: RunStore, path: Path) -> Path:
    """Render the report for `store` into `path` (one self-contained HTML file)."""
    info = store.run_info()
    cfg = info["config"]
    rows = _rows(store, cfg)
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dreamteam.report", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    html = env.get_template("report.html.j2").render(
        info=info,
        cfg=cfg,
        rows=sorted(rows, key=lambda r: (r.screen is None, r.screen or 0.0)),
        generations=store.generations(),
        steering=store.steering(),
        progress_svg=_progress_plot(rows, cfg["screen_fidelity"]),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
