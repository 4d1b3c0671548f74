"""The sandbox's terms: the limits a child gets, the isolation layers this machine offers,
how a child ended, and the v1 cgroups that bind its processes and memory even for root."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO, Any, Protocol

CGROUP_V1 = Path("/sys/fs/cgroup")
WALLS_EXIT = 4  # a forked child missed a wall its config requires: the harness spawns instead


@dataclass(frozen=True)
class Limits:
    """What one sandboxed process may use."""

    wall_seconds: float = 3600.0
    cpu_seconds: int | None = None  # None: derived from wall time x threads
    memory_bytes: int = 3 << 30  # a training step of the baseline needs ~0.65 GiB
    max_processes: int = 64  # threads count too (cgroup pids); torch needs a handful
    max_log_bytes: int = 128 << 10  # kept: half from the head, half from the tail
    max_file_bytes: int = 2 << 30
    open_files: int = 1024
    threads: int = 1


class StartMethod(Enum):
    """How a sandboxed stage's process starts (DREAMTEAM_SANDBOX_START)."""

    FORK = "fork"  # forked from a template that imported torch once (sandbox/forks.py)
    SPAWN = "spawn"  # a fresh interpreter per stage: pays the torch import each time


class Stage(Protocol):
    """A started stage, as run_sandboxed drives it: subprocess.Popen or a forked stage."""

    pid: int  # leads the stage's process group: killpg(pid) ends it
    stdin: IO[bytes] | None
    stdout: IO[bytes] | None
    returncode: int | None

    def wait(self) -> int: ...


class StageStarter(Protocol):
    """Starts stages by forking a pre-imported template (sandbox/forks.py)."""

    required: tuple[str, ...]  # the walls every forked child must confirm

    def start(
        self,
        mode: str,
        config: dict[str, Any],
        work_dir: Path,
        env: dict[str, str],
        fds: tuple[int, ...],
    ) -> Stage | None:
        """The started stage, or None when the template cannot start it (spawn instead)."""

    def refuse(self, reason: str) -> None:
        """Stop forking (a forked stage missed a wall the spawned one raises)."""


@dataclass(frozen=True)
class Isolation:
    """The isolation layers this machine offers (probed once per run), and the template to
    fork stages from, when the executor owns one (None: every stage is spawned)."""

    namespaces: bool
    cgroup: bool
    landlock: int  # ABI version, 0 = unavailable
    root: bool
    forks: StageStarter | None = field(default=None, compare=False, repr=False)

    def layers(self) -> tuple[str, ...]:
        """Names of the layers the harness will apply, for the run's record."""
        names = ["clean-env", "process-group-kill", "rlimits", "audit-hook", "bounded-log"]
        if self.namespaces:
            names += ["pid-namespace", "net-namespace"]
        if self.cgroup:
            names += ["cgroup-pids", "cgroup-memory"]
        if self.landlock:
            names.append(f"landlock-abi{self.landlock}")
        if not self.root:
            names.append("rlimit-nproc")
        return tuple(names)


@dataclass(frozen=True)
class ProcessResult:
    """How a sandboxed process ended, and what it reported through the result channel."""

    returncode: int
    timed_out: bool
    oom: bool
    wall_seconds: float
    log: str
    log_bytes: int
    report: dict[str, Any] = field(default_factory=dict)
    layers: tuple[str, ...] = ()

    @property
    def signal(self) -> int | None:
        """The signal that killed the process, if one did."""
        return -self.returncode if self.returncode < 0 else None


class Cgroup:
    """A pair of v1 cgroups (pids, memory) for one process tree."""

    def __init__(self, limits: Limits):
        name = f"dreamteam-{uuid.uuid4().hex[:12]}"
        self.pids = CGROUP_V1 / "pids" / name
        self.memory = CGROUP_V1 / "memory" / name
        self.pids.mkdir()
        self.memory.mkdir()
        (self.pids / "pids.max").write_text(str(limits.max_processes))
        (self.memory / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
        # no swapping around the limit where swap accounting exists
        with contextlib.suppress(OSError):
            (self.memory / "memory.memsw.limit_in_bytes").write_text(str(limits.memory_bytes))

    def procs_files(self) -> list[str]:
        return [str(self.pids / "cgroup.procs"), str(self.memory / "cgroup.procs")]

    def oom_killed(self) -> bool:
        try:
            control = (self.memory / "memory.oom_control").read_text()
        except OSError:
            return False
        for line in control.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value) > 0
        # older kernels have no oom_kill counter: hitting the limit is the best evidence
        return int((self.memory / "memory.failcnt").read_text() or 0) > 0

    def kill_all(self) -> None:
        for group in (self.pids, self.memory):
            try:
                pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
            except OSError:
                continue
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def destroy(self) -> None:
        for group in (self.pids, self.memory):
            for _ in range(50):
                try:
                    pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
                except OSError:
                    break
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.02)
            with contextlib.suppress(OSError):
                group.rmdir()
