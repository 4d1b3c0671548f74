"""The executor a run asks for: the local pool, or Ray (imported only when asked for)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dreamteam.execute.devices import select_device
from dreamteam.execute.local import LocalExecutor
from dreamteam.harness.sandbox.limits import Isolation, StartMethod
from dreamteam.harness.trial import TrialBudget
from dreamteam.tasks import Task
from dreamteam.tasks.data import DataPaths

if TYPE_CHECKING:
    from dreamteam.execute.ray import RayExecutor

EXECUTORS = ("local", "ray")


def make_executor(
    kind: str,
    task: Task,
    data: DataPaths,
    isolation: Isolation,
    budget: TrialBudget,
    work_root: Path,
    workers: int = 1,
    device: str = "cpu",
    address: str = "",
    start: StartMethod = StartMethod.FORK,
) -> LocalExecutor | RayExecutor:
    """The executor a run asked for: `local`, or `ray` (attached to `address`, or a local
    Ray instance sized to `workers` when the address is empty).

    `device` is as asked (`auto`, `cpu`, `cuda`, `mps`): the local executor checks it against
    this machine, the Ray executor against the cluster's GPUs. `start`: how the local
    executor's sandboxed stages start (Ray's workers spawn theirs).
    """
    if kind == "ray":
        from dreamteam.execute.ray import RayExecutor

        return RayExecutor(task, data, budget, workers=workers, device=device, address=address)
    where = select_device(device)
    return LocalExecutor(
        task, data, isolation, budget, work_root, workers=workers, device=where, start=start
    )
