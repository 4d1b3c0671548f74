"""The `dreamteam` command: thin typer commands over the library.

Every command exits 0 on success, 1 on a user error (one line on stderr saying what to do),
2 on a usage error. Any other exception is a bug and shows its traceback.
"""

from __future__ import annotations

import sys

import typer

from dreamteam.cli import ablate, candidates, evaluate, personas, research, task, tracking
from dreamteam.cli.context import err_console
from dreamteam.errors import DreamteamError

app = typer.Typer(
    name="dreamteam",
    help="A team of persona agents doing ML research, evaluated honestly.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(evaluate.data_app, name="data")
app.add_typer(personas.app, name="personas", help="The persona library.")
app.add_typer(task.app, name="task", help="Tasks: scaffold, check and list them.")
app.command("run")(research.run)
app.command("train")(evaluate.train)
app.command("eval")(evaluate.evaluate)
app.add_typer(research.runs_app, name="runs")
app.command("show")(research.show)
app.command("diff")(candidates.diff)
app.command("export")(candidates.export)
app.command("sample")(candidates.sample)
app.command("report")(research.report)
app.command("export-mlflow")(tracking.export_mlflow)
app.command("steer")(candidates.steer)
app.command("ablate")(ablate.ablate)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except DreamteamError as exc:
        err_console.print(f"{type(exc).__name__}: {exc}", markup=False, soft_wrap=True)
        sys.exit(1)
