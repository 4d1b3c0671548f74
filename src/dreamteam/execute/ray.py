"""Trials as Ray tasks: on a cluster (`--address auto` or `HOST:PORT`) or a local instance.

    job ─► ray task (num_cpus = threads per trial, num_gpus = 1 on cuda) ─► run_trial on the
           worker, in the worker's own sandbox and temp dir ─► (result, kept weights) ─► driver

A worker runs exactly what the local executor runs (`run_trial`: checks, sandbox, the
harness's own score); only the disk is the node's own, so the data set is resolved there and
the weights to keep come back as bytes. A worker that dies mid-trial (crash, OOM kill, node
lost) gets its job retried once on another; a second loss is recorded as `crashed` with the
reason "worker lost: ...", so no job ever goes missing. Ray is imported only here, and only
when `--executor ray` is asked for.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from dreamteam.config import settings_from_env
from dreamteam.errors import ConfigError, DataError, DreamteamError
from dreamteam.execute.devices import select_device
from dreamteam.execute.jobs import Job, JobFeed
from dreamteam.harness.sandbox.launcher import probe_isolation
from dreamteam.harness.trial import TrialBudget, run_trial
from dreamteam.records import Status, TrialResult
from dreamteam.tasks import Task
from dreamteam.tasks.data import DataPaths, resolve_data

ATTEMPTS = 2  # a job whose worker dies is tried once more, then recorded as crashed
INSTALL_HINT = "pip install 'dreamteam[ray]'"

# (task, job, driver's data root, budget, device) -> (result, kept weights or None)
TrialFn = Callable[[Task, Job, Path, TrialBudget, str], tuple[TrialResult, bytes | None]]


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray: {INSTALL_HINT}") from None
    return ray


@functools.cache
def _node_data(driver_root: Path) -> DataPaths:
    """The data set on this node: its own DREAMTEAM_DATA_MIRROR / DREAMTEAM_HOME first (a
    cluster node has its own disk), else the driver's directory if this node can see it."""
    # A worker is a process entry point of its own, so it reads its node's environment here.
    node = settings_from_env(os.environ)
    tried = []
    for home, mirror in ((node.home, node.mirror), (None, driver_root)):
        try:
            return resolve_data(home=home, mirror=mirror)
        except DataError as exc:
            tried.append(str(exc))
    raise DataError(
        f"no data set on Ray node {os.uname().nodename} ({'; '.join(tried)}): set "
        "DREAMTEAM_DATA_MIRROR there or run `dreamteam data prepare` on it"
    )


@functools.cache
def _node_isolation() -> Any:
    return probe_isolation()  # each node offers its own sandbox layers


def _node_device(device: str) -> str:
    """The GPU Ray gave this task (the sandbox's clean environment drops CUDA_VISIBLE_DEVICES,
    so the index is passed explicitly), or the device as asked."""
    if not device.startswith("cuda"):
        return device
    ids = _import_ray().get_gpu_ids()
    return f"cuda:{int(ids[0])}" if ids else device


def run_remote_trial(
    task: Task, job: Job, data_root: Path, budget: TrialBudget, device: str
) -> tuple[TrialResult, bytes | None]:
    """One trial on a Ray worker, in a temp dir of its node; the kept weights come back as
    bytes because the driver's paths are not this node's."""
    with tempfile.TemporaryDirectory(prefix="dreamteam-trial-") as tmp:
        keep = Path(tmp) / "keep.pt" if job.keep_checkpoint is not None else None
        result = run_trial(
            task,
            job.files,
            _node_data(data_root),
            job.fidelity,
            job.seed,
            Path(tmp) / "work",
            budget,
            _node_isolation(),
            device=_node_device(device),
            keep_checkpoint=keep,
        )
        return result, keep.read_bytes() if keep is not None and keep.is_file() else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


class RayExecutor:
    """Runs each job as a Ray task and yields results as they finish.

    With an `address` it attaches to that cluster (`auto`: the one `ray start` made on this
    machine); without one it starts a local instance with `workers` x threads-per-trial CPUs.
    If Ray is already initialised in this process, that instance is used as it is.
    """

    def __init__(
        self,
        task: Task,
        data: DataPaths,
        budget: TrialBudget,
        workers: int = 1,
        device: str = "cpu",
        address: str = "",
        trial_fn: TrialFn = run_remote_trial,
    ):
        self.task, self.data, self.budget = task, data, budget
        self._ray = _import_ray()
        self._started = self._connect(address, max(1, workers) * budget.threads)
        self.device = self._cluster_device(device)
        gpus = 1 if self.device.startswith("cuda") else 0  # mps and cpu: CPUs only
        # Ray's own retries are off: a lost worker is retried here, so it can be recorded
        self._remote = self._ray.remote(trial_fn).options(
            num_cpus=budget.threads, num_gpus=gpus, max_retries=0
        )

    def _connect(self, address: str, cpus: int) -> bool:
        """Attach to or start Ray; True when this executor started it (and so stops it)."""
        ray = self._ray
        if ray.is_initialized():
            return False
        try:
            if address:
                ray.init(address=address, logging_level=logging.WARNING)
            else:
                ray.init(num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
            raise ConfigError(
                f"cannot reach {where} ({_first_line(exc)}): start one with `ray start --head`, "
                "or leave --address empty to start a local one"
            ) from exc
        return True

    def _cluster_device(self, requested: str) -> str:
        """`cuda` when the cluster has GPUs and `auto` or `cuda` was asked (each trial then
        requests one GPU); otherwise what this machine offers (mps only suits a local
        instance)."""
        gpus = self._ray.cluster_resources().get("GPU", 0)
        if requested.startswith("cuda"):
            if not gpus:
                raise ConfigError(
                    f"--device {requested} asked for, but the Ray cluster has no GPU: "
                    "use --device cpu or add GPU nodes"
                )
            return requested
        if requested == "auto" and gpus:
            return "cuda"
        return select_device(requested)

    def _submit(self, job: Job) -> Any:
        return self._remote.remote(self.task, job, self.data.root, self.budget, self.device)

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, TrialResult]]:
        """Submit each job as soon as it arrives; yield (job, result) as each finishes."""
        ray, feed = self._ray, JobFeed(jobs)
        running: dict[Any, tuple[Job, int]] = {}  # object ref -> (job, attempt)
        try:
            while running or not feed.exhausted:
                for job in feed.take(1):
                    running[self._submit(job)] = (job, 1)
                if not running:
                    continue
                # while jobs may still come, only collect what is already done
                ready, _ = ray.wait(
                    list(running),
                    num_returns=1 if feed.exhausted else len(running),
                    timeout=None if feed.exhausted else 0,
                )
                for ref in ready:
                    job, attempt = running.pop(ref)
                    result = self._collect(ref, job, attempt)
                    if result is None:
                        running[self._submit(job)] = (job, attempt + 1)
                    else:
                        yield job, result
        finally:
            for ref in running:  # the caller stopped early: free the workers
                ray.cancel(ref, force=True)

    def _collect(self, ref: Any, job: Job, attempt: int) -> TrialResult | None:
        """The job's result; None when its worker was lost and it gets another attempt."""
        ray = self._ray
        try:
            result, weights = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, DreamteamError):
                raise cause from None  # a harness fault on the node, e.g. no data there
            raise
        except ray.exceptions.RayError as exc:
            if attempt < ATTEMPTS:
                return None
            return TrialResult(
                Status.CRASHED,
                f"worker lost: {_first_line(exc)} (after {attempt} attempts)",
                job.seed,
                job.fidelity,
                self.task.iterations(job.fidelity),
            )
        if weights is not None and job.keep_checkpoint is not None:
            job.keep_checkpoint.parent.mkdir(parents=True, exist_ok=True)
            job.keep_checkpoint.write_bytes(weights)
        return result

    def close(self) -> None:
        """Stop the local Ray instance if this executor started it."""
        if self._started:
            self._ray.shutdown()
            self._started = False
