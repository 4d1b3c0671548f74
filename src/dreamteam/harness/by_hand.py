"""The harness by hand: a directory of task files checked, trained and scored on given seeds,
exactly as a candidate is (`dreamteam eval`, `dreamteam train`, and scripts)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from dreamteam.config import Settings
from dreamteam.errors import TaskError
from dreamteam.execute.devices import cpu_threads, select_device
from dreamteam.harness.sandbox.forks import ForkServer
from dreamteam.harness.sandbox.launcher import probe_isolation
from dreamteam.harness.sandbox.limits import Isolation, StartMethod
from dreamteam.harness.trial import TrialBudget, run_trial
from dreamteam.records import TrialResult
from dreamteam.tasks import Task
from dreamteam.tasks.data import DataPaths, resolve_task_data


def read_task_files(directory: Path, task: Task) -> dict[str, str]:
    """The task's editable files from a directory (aliases such as train_mps.py accepted)."""
    files = {}
    for name in task.editable:
        for candidate in (name, *task.aliases.get(name, ())):
            if (directory / candidate).is_file():
                files[name] = (directory / candidate).read_text(encoding="utf-8")
                break
        else:
            raise TaskError(f"{directory} has no {name}: put the task's files there")
    return files


def evaluate_files(
    task: Task,
    files: dict[str, str],
    fidelity: str,
    seeds: Sequence[int],
    settings: Settings,
    *,
    iters: int | None = None,
    device: str = "auto",
    on_output: Callable[[str], None] | None = None,
    on_result: Callable[[TrialResult], None] = lambda r: None,
) -> list[TrialResult]:
    """One sandboxed trial per seed, each in a scratch folder under the settings' home."""
    data = resolve_task_data(task, settings.home, settings.mirror)
    where = select_device(device)
    isolation = probe_isolation()
    budget = TrialBudget(threads=cpu_threads(1))
    settings.home.mkdir(parents=True, exist_ok=True)
    forks = None
    if settings.sandbox_start is StartMethod.FORK:
        forks = ForkServer(isolation, budget.threads)  # one torch import for every stage
        isolation = replace(isolation, forks=forks)
    try:
        return _each_seed(task, files, fidelity, seeds, settings, isolation, budget, data,
                          where, iters, on_output, on_result)  # fmt: skip
    finally:
        if forks is not None:
            forks.close()


def _each_seed(
    task: Task,
    files: dict[str, str],
    fidelity: str,
    seeds: Sequence[int],
    settings: Settings,
    isolation: Isolation,
    budget: TrialBudget,
    data: DataPaths,
    where: str,
    iters: int | None,
    on_output: Callable[[str], None] | None,
    on_result: Callable[[TrialResult], None],
) -> list[TrialResult]:
    results = []
    for seed in seeds:
        with tempfile.TemporaryDirectory(dir=settings.home, prefix="trial-") as work:
            result = run_trial(
                task,
                files,
                data,
                fidelity,
                seed,
                Path(work),
                budget,
                isolation,
                device=where,
                iters=iters,
                on_output=on_output,
            )
        results.append(result)
        on_result(result)
    return results
