"""Running candidate code in a child process with limits: the harness side of the sandbox.

Layers, each probed and recorded (a user's laptop has fewer than a Linux server):
  - a clean environment (no API keys; HOME, TMPDIR and caches inside the work dir);
  - PID and network namespaces (`unshare`): no network, and nothing outlives the candidate;
  - cgroup v1 pids and memory controllers: fork bombs and memory hogs are stopped;
  - a wall-clock timeout that kills the whole process group;
  - stdout/stderr read through a pipe and kept to a bounded head and tail;
  - inside the child (child.py): rlimits, Landlock, no capabilities, seccomp and an audit
    hook, before candidate code. The child confirms them on the result channel before any
    candidate code runs, and only confirmed layers are recorded.
The harness process never imports candidate code.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from dreamteam.errors import SandboxError
from dreamteam.harness.sandbox.walls import landlock_abi

RUNNER = Path(__file__).resolve().parent / "child.py"
CGROUP_V1 = Path("/sys/fs/cgroup")
# glibc returns each large tensor to the kernel at free and gets zeroed pages back at the next
# allocation; keeping freed memory in the heap halves a small model's step time on a CPU.
MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "1073741824"}


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


@dataclass(frozen=True)
class Isolation:
    """The isolation layers this machine offers (probed once per run)."""

    namespaces: bool
    cgroup: bool
    landlock: int  # ABI version, 0 = unavailable
    root: bool

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


_UNSHARE = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--net"]


def probe_isolation() -> Isolation:
    """Find out which isolation layers work on this machine."""
    namespaces = False
    if shutil.which("unshare"):
        try:
            done = subprocess.run([*_UNSHARE, "true"], capture_output=True, timeout=10)
            namespaces = done.returncode == 0
        except (OSError, subprocess.SubprocessError):
            namespaces = False
    cgroup = all(os.access(CGROUP_V1 / c, os.W_OK) for c in ("pids", "memory"))
    return Isolation(namespaces, cgroup, landlock_abi(), os.geteuid() == 0)


def candidate_environment(work_dir: Path, threads: int) -> dict[str, str]:
    """A clean environment for candidate code: no inherited secrets, caches in work_dir."""
    home = str(work_dir)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "XDG_CACHE_HOME": home,
        "TORCH_HOME": home,
        "TORCHINDUCTOR_CACHE_DIR": home,
        "MPLCONFIGDIR": home,
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        # OpenMP threads that spin while waiting starve each other on a busy machine: one
        # other process on a 2-core CPU made the baseline's step 25x slower (2.6 s vs 0.1 s)
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    env.update(MALLOC_ENV)
    return env


class _Cgroup:
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


class _LogTap(threading.Thread):
    """Reads a pipe to its end, keeping a bounded head and tail."""

    def __init__(self, stream: IO[bytes], limit: int, on_line: Callable[[str], None] | None):
        super().__init__(daemon=True)
        self.stream, self.half = stream, max(limit // 2, 1)
        self.on_line = on_line
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self.partial = b""

    def _lines(self, chunk: bytes) -> None:
        if self.on_line is None or len(self.partial) > 4096:
            return
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        for line in lines[:20]:  # a flood of output is not shown, only counted
            self.on_line(line.decode("utf-8", "replace"))

    def run(self) -> None:
        while chunk := self.stream.read1(65536):  # type: ignore[attr-defined]
            self.total += len(chunk)
            self._lines(chunk)
            room = self.half - len(self.head)
            if room > 0:
                self.head += chunk[:room]
                chunk = chunk[room:]
            self.tail = (self.tail + chunk)[-self.half :]

    def text(self) -> str:
        skipped = self.total - len(self.head) - len(self.tail)
        middle = f"\n[... {skipped} bytes of output dropped ...]\n" if skipped > 0 else ""
        return (
            bytes(self.head).decode("utf-8", "replace")
            + middle
            + bytes(self.tail).decode("utf-8", "replace")
        )


Conversation = Callable[[IO[bytes], IO[bytes]], None]


def run_sandboxed(
    mode: str,
    config: dict[str, Any],
    work_dir: Path,
    limits: Limits,
    isolation: Isolation,
    converse: Conversation | None = None,
    on_output: Callable[[str], None] | None = None,
    pass_fds: tuple[int, ...] = (),
) -> ProcessResult:
    """Run child.py in `mode` inside the sandbox; return how it ended and what it reported.

    `converse(stdin, results)` runs while the child lives, for modes that talk (evaluation);
    otherwise the child's report is read from the result channel when it exits.
    `on_output` sees the child's output line by line as it comes (for progress displays).
    """
    cgroup = None
    if isolation.cgroup:
        try:
            cgroup = _Cgroup(limits)
        except OSError:  # probed writable, yet refused (a full hierarchy, a read-only mount)
            cgroup = None
    read_fd, write_fd = os.pipe()
    child_config = dict(config)
    child_config.update(
        work_dir=str(work_dir),
        result_fd=write_fd,
        threads=limits.threads,
        limits={
            "cpu_seconds": limits.cpu_seconds
            or int(limits.wall_seconds * max(limits.threads, 1)) + 5,
            "memory_bytes": limits.memory_bytes,
            "max_processes": limits.max_processes,
            "max_file_bytes": limits.max_file_bytes,
            "open_files": limits.open_files,
        },
        cgroup_procs=cgroup.procs_files() if cgroup else [],
    )
    argv = [sys.executable, "-I", str(RUNNER), mode, json.dumps(child_config)]
    if isolation.namespaces:
        argv = _UNSHARE + argv
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            cwd=work_dir,
            env=candidate_environment(work_dir, limits.threads),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(write_fd, *pass_fds),
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        if cgroup:
            cgroup.destroy()
        raise SandboxError(
            f"cannot start the sandboxed child ({exc}); check {sys.executable}"
        ) from exc
    os.close(write_fd)
    assert proc.stdout is not None and proc.stdin is not None
    tap = _LogTap(proc.stdout, limits.max_log_bytes, on_output)
    tap.start()
    results = os.fdopen(read_fd, "rb", buffering=0)
    expired = threading.Event()
    confirmed: list[str] = []

    def on_timeout() -> None:
        expired.set()
        _kill_group(proc)
        if cgroup:
            cgroup.kill_all()

    timer = threading.Timer(limits.wall_seconds, on_timeout)
    timer.start()
    try:
        if converse is not None:
            with contextlib.suppress(BrokenPipeError, OSError, ValueError):
                confirmed += _confirmed_layers(results.readline())
                converse(proc.stdin, results)
        with contextlib.suppress(OSError):
            proc.stdin.close()
        proc.wait()
        report = _read_report(read_fd, confirmed)
    finally:
        timer.cancel()
        _kill_group(proc)
        results.close()
        tap.join(timeout=5)
        oom = cgroup.oom_killed() if cgroup else False
        if cgroup:
            cgroup.destroy()
    return ProcessResult(
        returncode=proc.returncode,
        timed_out=expired.is_set(),
        oom=oom,
        wall_seconds=time.monotonic() - start,
        log=tap.text(),
        log_bytes=tap.total,
        report=report,
        layers=_recorded_layers(isolation, cgroup is not None, confirmed),
    )


# Layers the child applies to itself: recorded only when it confirmed them.
_CHILD_LAYERS = ("rlimits", "audit-hook", "landlock-abi")


def _recorded_layers(isolation: Isolation, cgroup: bool, confirmed: list[str]) -> tuple[str, ...]:
    parent = [name for name in isolation.layers() if not name.startswith(_CHILD_LAYERS)]
    if not cgroup:
        parent = [name for name in parent if not name.startswith("cgroup-")]
    return tuple(parent + [name for name in confirmed if name not in parent])


def _confirmed_layers(line: bytes) -> list[str]:
    """The layers named by the child's first line on the result channel, if it is that line."""
    try:
        value = json.loads(line)
    except ValueError:
        return []
    layers = value.get("confined") if isinstance(value, dict) else None
    return [str(name) for name in layers] if isinstance(layers, list) else []


def _read_report(fd: int, confirmed: list[str]) -> dict[str, Any]:
    """The last JSON line the child wrote to the result channel (it may write nothing).

    The first line, when no conversation has read it yet, is the child's confirmation of its
    walls: it goes to `confirmed`, not into the report. Read without blocking: a descendant
    that escaped could hold the pipe open forever.
    """
    os.set_blocking(fd, False)
    data = b""
    with contextlib.suppress(BlockingIOError, OSError):
        while chunk := os.read(fd, 1 << 16):
            data += chunk
    lines = data.splitlines()
    if lines and not confirmed and _confirmed_layers(lines[0]):
        confirmed += _confirmed_layers(lines.pop(0))
    for line in reversed(lines):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the harness dies (kill -9 included).

    The child has a session of its own, so a signal to the harness's process group misses
    it; without this an orphaned trial would train on and write into a resumed run's tree.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
