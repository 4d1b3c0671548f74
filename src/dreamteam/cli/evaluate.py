"""`dreamteam data prepare`, `dreamteam train` and `dreamteam eval`: the harness by hand."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path

import typer

from dreamteam.cli.context import console, settings
from dreamteam.errors import TaskError
from dreamteam.harness.by_hand import evaluate_files, read_task_files
from dreamteam.records import TrialResult
from dreamteam.select.stats import t95
from dreamteam.tasks import Task, load_task
from dreamteam.tasks.data import prepare_data

data_app = typer.Typer(help="The built-in data set.", no_args_is_help=True)

TaskOpt = typer.Option("shakespeare", "--task", help="A built-in task name or a task directory.")


@data_app.command("prepare")
def data_prepare(
    force: bool = typer.Option(False, "--force", help="Download and tokenise again."),
) -> None:
    """Download, check and tokenise tiny Shakespeare (or copy it from DREAMTEAM_DATA_MIRROR)."""
    s = settings()
    paths = prepare_data(s.home, mirror=s.mirror, force=force)
    console.print(f"data ready: {paths.root}")


def _print_progress(line: str) -> None:
    if line.startswith("iter "):
        console.print(f"  [dim]{line}[/dim]")


def run_trials(
    task: Task,
    files: dict[str, str],
    fidelity: str,
    seeds: Sequence[int],
    iters: int | None,
    device: str,
    show: bool,
) -> list[TrialResult]:
    """One sandboxed trial per seed, a line printed as each ends."""

    def line(result: TrialResult) -> None:
        text = f"seed {result.seed}: {result.status}"
        if result.ok:
            text += f" val_loss={result.val_loss:.4f}"
            text += "".join(f" {k}={v:.4f}" for k, v in result.figures.items())
            text += f" train={result.train_seconds:.1f}s eval={result.eval_seconds:.1f}s"
        console.print(text)

    return evaluate_files(
        task,
        files,
        fidelity,
        seeds,
        settings(),
        iters=iters,
        device=device,
        on_output=_print_progress if show else None,
        on_result=line,
    )


def print_summary(results: list[TrialResult]) -> None:
    """The contract's closing lines: status, then val_loss and bpb, or reason.

    val_loss is the task's objective; a task with a harness file prints each figure of its
    score() first (e.g. `loss:` and `accuracy:`), and no `bpb:` line: it has no bytes.
    """
    ok = [r for r in results if r.ok]
    if len(ok) < len(results):
        bad = next(r for r in results if not r.ok)
        print(f"status: {bad.status}")
        print(f"reason: {bad.reason}")
        return
    losses = [r.val_loss for r in ok if r.val_loss is not None]
    bpbs = [r.bpb for r in ok if r.bpb is not None]
    if len(losses) > 1:
        sd = statistics.stdev(losses)
        print(f"val_loss_std: {sd:.6f}")
        print(f"ci95: {t95(len(losses) - 1) * sd / math.sqrt(len(losses)):.6f}")
    for name in ok[0].metrics:
        print(f"{name}: {statistics.fmean(r.metrics[name] for r in ok):.6f}")
    print("status: ok")
    print(f"val_loss: {statistics.fmean(losses):.6f}")
    if bpbs:  # the language model's last line; another task has no bits per byte
        print(f"bpb: {statistics.fmean(bpbs):.6f}")


def train(
    task: str = TaskOpt,
    iters: int = typer.Option(None, "--iters", help="Optimizer steps (default: the fidelity's)."),
    fidelity: str = typer.Option(
        None,
        "--fidelity",
        help="smoke, low, medium or full (default: low, or the task's second smallest level).",
    ),
    seed: int = typer.Option(1337, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
) -> None:
    """Train the task's baseline in the sandbox and print the harness's validation loss."""
    t = load_task(task)
    console.print(f"training the {t.name} baseline ({iters or t.iterations(fidelity)} steps)")
    (result,) = run_trials(t, t.baseline_files(), fidelity, [seed], iters, device, show=True)
    print_summary([result])
    if not result.ok:
        raise typer.Exit(1)


def evaluate(
    directory: Path = typer.Argument(..., help="A directory holding the task's files."),
    task: str = typer.Option(
        None,
        "--task",
        help="A built-in task name or a task directory (default: DIR itself when it holds "
        "a task.toml, else shakespeare).",
    ),
    fidelity: str = typer.Option(
        None,
        "--fidelity",
        help="smoke, low, medium or full (default: low, or the task's second smallest level).",
    ),
    seeds: int = typer.Option(1, "--seeds", min=1, help="Independent training seeds."),
    device: str = typer.Option("auto", "--device"),
) -> None:
    """Check, train and score a directory of task files, exactly as a candidate is scored.

    Examples:

      dreamteam eval exported/ --fidelity smoke   (a quick look: a few dozen steps)

      dreamteam eval exported/ --seeds 3          (at low: the mean and spread of 3 seeds)

      dreamteam eval my-task/                     (a task directory: its own baseline)
    """
    if task is None:
        task = str(directory) if (directory / "task.toml").is_file() else "shakespeare"
    t = load_task(task)
    fidelity = fidelity or t.level("low", 1)
    if not directory.is_dir():
        raise TaskError(
            f"{directory} is not a directory: pass a folder holding {', '.join(t.editable)}"
        )
    files = read_task_files(directory, t)
    print_summary(
        run_trials(t, files, fidelity, range(1337, 1337 + seeds), None, device, show=False)
    )
