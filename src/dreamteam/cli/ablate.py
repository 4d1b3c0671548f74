"""`dreamteam ablate RUN [CANDIDATE]`: what each part of a winner's change is worth."""

from __future__ import annotations

import typer

from dreamteam.cli.ablation import ablate_run
from dreamteam.cli.research import resolve_run


def ablate(
    run: str = typer.Argument(..., help="A run id or directory."),
    candidate: str = typer.Argument(None, help="A candidate id (default: the run's best)."),
    fidelity: str = typer.Option(None, "--fidelity", help="Default: the run's confirmation one."),
    seeds: int = typer.Option(None, "--seeds", min=2, help="Default: the run's seeds count."),
) -> None:
    """Remove each part of the winner's change in turn and measure what it was worth."""
    ablate_run(resolve_run(run), candidate, fidelity, seeds)
