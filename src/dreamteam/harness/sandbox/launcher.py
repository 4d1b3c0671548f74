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
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from dreamteam.errors import SandboxError
from dreamteam.harness.sandbox.limits import (
    CGROUP_V1,
    WALLS_EXIT,
    Cgroup,
    Isolation,
    Limits,
    ProcessResult,
    Stage,
)
from dreamteam.harness.sandbox.walls import landlock_abi

_Cgroup = Cgroup  # looked up at call time, so tests can stand a refusing one in

RUNNER = Path(__file__).resolve().parent / "child.py"
# glibc returns each large tensor to the kernel at free and gets zeroed pages back at the next
# allocation; keeping freed memory in the heap halves a small model's step time on a CPU.
MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "1073741824"}


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
    prepare: Callable[[IO[bytes]], bool] | None = None,
) -> ProcessResult:
    """Run child.py in `mode` inside the sandbox; return how it ended and what it reported.

    `converse(stdin, results)` runs while the child lives, for modes that talk (evaluation);
    otherwise the child's report is read from the result channel when it exits.
    `on_output` sees the child's output line by line as it comes (for progress displays).
    `prepare(stdin)`, for a child started ahead of its work (it imports while the harness
    waits), runs first: it stages the child's files and tells it to go, or returns False to
    end it unstarted (the conversation is then skipped).
    """
    cgroup = _open_cgroup(isolation, limits)
    read_fd, write_fd = os.pipe()
    child_config = _child_config(config, work_dir, write_fd, limits, cgroup)
    start = time.monotonic()
    try:
        proc, forked = _start(
            mode, child_config, work_dir, limits, isolation, (write_fd, *pass_fds)
        )
    except SandboxError:
        os.close(read_fd)
        os.close(write_fd)
        if cgroup:
            cgroup.destroy()
        raise
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
        started = prepare is None
        if prepare is not None:
            with contextlib.suppress(BrokenPipeError, OSError, ValueError):
                started = prepare(proc.stdin)
        if converse is not None and started:
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
    missing = _walls_missing(proc.returncode, confirmed, isolation) if forked else []
    if isolation.forks and missing:
        # nothing of the candidate's ran in the forked child: spawn it, and fork no more
        isolation.forks.refuse(f"a forked child did not raise {', '.join(missing)}")
        return run_sandboxed(
            mode, config, work_dir, limits, replace(isolation, forks=None), converse, on_output,
            pass_fds, prepare,
        )  # fmt: skip
    return ProcessResult(
        returncode=proc.wait(),
        timed_out=expired.is_set(),
        oom=oom,
        wall_seconds=time.monotonic() - start,
        log=tap.text(),
        log_bytes=tap.total,
        report=report,
        layers=_recorded_layers(isolation, cgroup is not None, confirmed),
    )


def _walls_missing(returncode: int | None, confirmed: list[str], isolation: Isolation) -> list[str]:
    """The walls for want of which a forked child ended before candidate code ([]: none)."""
    required = isolation.forks.required if isolation.forks else ()
    return sorted(set(required) - set(confirmed)) if returncode == WALLS_EXIT else []


def _open_cgroup(isolation: Isolation, limits: Limits) -> Cgroup | None:
    """A cgroup of its own for the child, where the machine grants one."""
    if not isolation.cgroup:
        return None
    try:
        return _Cgroup(limits)
    except OSError:  # probed writable, yet refused (a full hierarchy, a read-only mount)
        return None


def _child_config(
    config: dict[str, Any], work_dir: Path, result_fd: int, limits: Limits, cgroup: Cgroup | None
) -> dict[str, Any]:
    """What the child is told: the caller's config plus where to work and report, and the
    limits it raises on itself before any candidate code runs."""
    return dict(config) | {
        "work_dir": str(work_dir),
        "result_fd": result_fd,
        "threads": limits.threads,
        "limits": {
            "cpu_seconds": limits.cpu_seconds
            or int(limits.wall_seconds * max(limits.threads, 1)) + 5,
            "memory_bytes": limits.memory_bytes,
            "max_processes": limits.max_processes,
            "max_file_bytes": limits.max_file_bytes,
            "open_files": limits.open_files,
        },
        "cgroup_procs": cgroup.procs_files() if cgroup else [],
    }


def _start(
    mode: str,
    child_config: dict[str, Any],
    work_dir: Path,
    limits: Limits,
    isolation: Isolation,
    fds: tuple[int, ...],
) -> tuple[Stage, bool]:
    """The stage's process, forked from the template where there is one, else spawned;
    and whether it was forked."""
    env = candidate_environment(work_dir, limits.threads)
    if isolation.forks is not None:
        stage = isolation.forks.start(mode, child_config, work_dir, env, fds)
        if stage is not None:
            return stage, True
    argv = [sys.executable, "-I", str(RUNNER), mode, json.dumps(child_config)]
    if isolation.namespaces:
        argv = _UNSHARE + argv
    return _spawn(argv, work_dir, env, fds), False


def _spawn(
    argv: list[str], work_dir: Path, env: dict[str, str], pass_fds: tuple[int, ...]
) -> subprocess.Popen[bytes]:
    """Start the child in its own session, with a clean environment, dying with its parent."""
    try:
        return subprocess.Popen(
            argv,
            cwd=work_dir,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=pass_fds,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    except OSError as exc:
        raise SandboxError(
            f"cannot start the sandboxed child ({exc}); check {sys.executable}"
        ) from exc


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


def _kill_group(proc: Stage) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
