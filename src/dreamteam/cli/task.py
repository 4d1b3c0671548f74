"""`dreamteam task init|check|list`: writing and checking a task of one's own."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer
from rich.table import Table

from dreamteam.cli.context import console, settings
from dreamteam.cli.evaluate import print_summary, run_trials
from dreamteam.tasks import builtin_tasks, load_task
from dreamteam.tasks.authoring import DEFAULT_TEMPLATE, check_task, init_task

app = typer.Typer(help="Tasks: scaffold, check and list them.", no_args_is_help=True)


@app.command("init")
def init(
    directory: Path = typer.Argument(..., help="A new (or empty) directory for the task."),
    template: str = typer.Option(
        DEFAULT_TEMPLATE, "--from", help="The built-in task to start from."
    ),
) -> None:
    """Scaffold a working task from a built-in one; its task.toml explains every field.

    Examples:

      dreamteam task init my-task                  (from the spirals classifier)

      dreamteam task init my-lm --from shakespeare (from the language model)

    Then: dreamteam task check my-task --run, and dreamteam run --task my-task.
    """
    init_task(directory, template)
    check = f"dreamteam task check {shlex.quote(str(directory))} --run"
    console.print(
        f"task written to {directory}: edit task.toml, then `{check}`", markup=False, soft_wrap=True
    )
    for path in sorted(directory.iterdir()):
        console.print(f"  {path.name}")


@app.command("check")
def check(
    directory: Path = typer.Argument(..., help="The task directory."),
    run: bool = typer.Option(
        False, "--run", help="Also train and score the baseline at the smallest fidelity."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps (with --run)."),
) -> None:
    """Check a task directory: task.toml, harness file, baseline, data; --run trains it."""
    s = settings()
    result = check_task(directory, s.home, s.mirror)
    for line in result.passed:
        console.print(f"ok: {line}")
    for line in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {line}")
    if run:
        t = result.task
        level = t.smallest_fidelity()
        console.print(f"training the baseline at {level} ({t.iterations(level)} steps)")
        results = run_trials(t, t.baseline_files(), level, [1337], None, device, show=False)
        print_summary(results)
        if not results[0].ok:
            raise typer.Exit(1)
    quoted = shlex.quote(str(directory))
    if not run:
        level = result.task.smallest_fidelity()
        note = (
            f"baseline not trained yet: `dreamteam task check {quoted} --run` trains and scores"
            f" it at {level} ({result.task.iterations(level)} steps)"
        )
        console.print(note, markup=False, soft_wrap=True)
    command = f"dreamteam run --task {quoted}"
    console.print(f"task {result.task.name!r} is ready: {command}", markup=False, soft_wrap=True)


@app.command("list")
def list_tasks() -> None:
    """The built-in tasks."""
    table = Table("task", "metric", "objective", "description")
    for name in builtin_tasks():
        t = load_task(name)
        table.add_row(name, t.metric, t.objective, t.description)
    console.print(table)
