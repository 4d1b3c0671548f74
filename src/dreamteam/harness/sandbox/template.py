"""The sandbox's template process: imports torch once, then forks one child per stage.

Started by forks.ForkServer as ``python -I template.py CONTROL_FD`` with a clean environment
(no secrets) in an empty directory. It imports torch (with torch._dynamo, which building an
optimizer would import), numpy and child.py, never runs candidate code, raises no walls, and
does no torch work (no OpenMP pool to break in a fork). For each request on the control
socket (a JSON stage and its fds) it forks a supervisor, which:
  - leaves the template's session and gives up the control socket;
  - enters fresh PID, network and mount namespaces where asked (a new PID namespace holds the
    next fork, so it forks once more, like ``unshare --fork``);
  - forks the stage (PID 1 of the namespace, killed with its supervisor: PR_SET_PDEATHSIG),
    which mounts its own /proc, keeps only its own fds, takes the clean environment and work
    dir, says it is ready (before any candidate code), and runs child.run: the same walls
    and confirmation as a spawned child;
  - reports the stage's pid, readiness and exit code on the stage's own socket, and kills the
    stage if the harness goes away (that socket closes).
The template ends when the harness closes the control socket (or dies).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import socket
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # -I drops PYTHONPATH

from dreamteam.harness.sandbox import child

_CLONE_NEWNS, _CLONE_NEWPID, _CLONE_NEWNET = 0x00020000, 0x20000000, 0x40000000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 2, 4, 8
_MS_REC, _MS_PRIVATE = 1 << 14, 1 << 18
_PR_SET_PDEATHSIG = 1
MAX_FDS = 16  # stage socket, stdin, stdout, result channel and a few the caller passes
READY = b"ready"


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _send(stage: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        stage.send(json.dumps(message).encode())


def _enter_namespaces() -> None:
    """Fresh PID (for the next fork), network and mount namespaces (python 3.11: no
    os.unshare)."""
    _check(_libc().unshare(_CLONE_NEWPID | _CLONE_NEWNET | _CLONE_NEWNS), "unshare")


def _mount_proc() -> None:
    """A /proc of the new PID namespace only: the template and the harness are not in it."""
    libc = _libc()
    _check(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "mount --make-rprivate")
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    _check(libc.mount(b"proc", b"/proc", b"proc", flags, None), "mount /proc")


def _keep_only(keep: set[int]) -> None:
    """Close every fd but `keep`: the stage socket, the template's control socket and
    anything else it held never reach candidate code."""
    start = 0
    for fd in [*sorted(keep), os.sysconf("SC_OPEN_MAX")]:
        if start < fd:  # closerange(n, n) closes every fd from n up (close_range(n, ~0))
            os.closerange(start, fd)
        start = fd + 1


def _stage(request: dict[str, Any], fds: list[int], ready: int) -> None:
    """In the stage's process: finish the sandbox's outer layers, then run child.run."""
    try:
        _check(_libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
        if request["namespaces"]:
            _mount_proc()
        os.dup2(fds[1], 0)
        os.dup2(fds[2], 1)
        os.dup2(fds[2], 2)
        config = request["config"]
        for key, index in request["fd_keys"].items():
            config[key] = fds[index]
        _keep_only({0, 1, 2, ready, *(fds[i] for i in request["fd_keys"].values())})
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["work_dir"])
        tempfile.tempdir = None  # an import may have cached the template's: the stage has its own
        import numpy as np

        np.random.seed()  # a fresh process's global numpy generator, not the template's
    except Exception as exc:  # whatever it is, no candidate code has run: say so, and end
        os.write(ready, f"{type(exc).__name__}: {exc}".encode()[:4000])
        os._exit(1)
    os.write(ready, READY)
    os.close(ready)
    try:
        code = child.run(request["mode"], config)
    except BaseException:
        traceback.print_exc()  # as a spawned interpreter would, and with its exit code
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _wait(stage: socket.socket, pid: int) -> int:
    """The stage's exit code; it is killed if the harness's end of `stage` closes first."""
    pidfd = os.pidfd_open(pid)
    while True:
        readable, _, _ = select.select([stage.fileno(), pidfd], [], [])
        if pidfd in readable:
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        with contextlib.suppress(OSError):
            if stage.recv(64):
                continue  # the harness says nothing on this socket: ignore
        os.kill(pid, signal.SIGKILL)  # the harness went away: so does its stage
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _supervise(request: dict[str, Any], fds: list[int]) -> int:
    """In the supervisor: namespaces, the stage's fork, its readiness and its exit code."""
    stage = socket.socket(fileno=fds[0])
    os.setsid()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    _send(stage, {"pid": os.getpid()})
    try:
        if request["namespaces"]:
            _enter_namespaces()
        ready_r, ready_w = os.pipe()
        pid = os.fork()
    except OSError as exc:
        _send(stage, {"setup_error": str(exc)})
        return 1
    if pid == 0:
        os.close(ready_r)
        _stage(request, fds, ready_w)
    os.close(ready_w)
    for fd in fds[1:]:  # the stage's ends only: its pipes reach end of stream when it ends
        os.close(fd)
    note = os.read(ready_r, 4096)
    if note != READY:  # nothing of the candidate's ran: the harness spawns the stage instead
        _send(stage, {"setup_error": note.decode("utf-8", "replace") or "the stage died"})
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        return 1
    _send(stage, {"running": True})
    _send(stage, {"returncode": _wait(stage, pid)})
    return 0


def serve(control: socket.socket) -> int:
    """Fork a supervisor per request until the harness closes the control socket."""
    import numpy  # noqa: F401  (the point of the template: imported once, shared by forks)
    import torch
    import torch._dynamo  # a torch.optim optimizer imports it when built (~1 s)
    import torch.nn.functional
    import torch.optim  # noqa: F401

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the kernel
    control.send(READY)
    while True:
        try:
            message, fds, _flags, _addr = socket.recv_fds(control, 1 << 20, MAX_FDS)
        except OSError:
            return 0
        if not message:
            return 0  # the harness closed its end, or died
        try:
            pid = os.fork()
        except OSError:
            pid = -1  # the stage socket closes unanswered: the harness spawns instead
        if pid == 0:
            control.close()
            code = 1
            with contextlib.suppress(BaseException):
                code = _supervise(json.loads(message), fds)
            os._exit(code)
        for fd in fds:
            os.close(fd)
        del message, fds  # nothing of one stage stays for the next one's fork to inherit


if __name__ == "__main__":
    sys.exit(serve(socket.socket(fileno=int(sys.argv[1]))))
