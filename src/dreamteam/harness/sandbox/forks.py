"""Stages forked from a pre-imported template: the harness's side of the fork server.

A spawned stage pays a fresh interpreter and ``import torch`` (~1 s, some 15 baseline steps)
for every training, probe and scoring process. A ForkServer starts one template process
(template.py) on first use, which imports torch once in a clean environment and then forks a
child per stage; each child raises exactly the walls a spawned one raises (child.run) and
confirms them the same way. The object's owner (an executor, a command) closes it.

Nothing here ever lowers the sandbox: the template is started and checked lazily, and a stage
it cannot start (the template died or hangs, a namespace or mount refused) is spawned instead;
a forked child that misses a wall the spawned check child raised exits before candidate code
(child.WALLS_EXIT) and the launcher spawns it again and stops forking.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from dreamteam.harness.sandbox.launcher import candidate_environment, run_sandboxed
from dreamteam.harness.sandbox.limits import Isolation, Limits

TEMPLATE = Path(__file__).resolve().parent / "template.py"
READY = b"ready"
START_SECONDS = 120.0  # importing torch on a loaded 2-core machine took up to ~10 s
SETUP_SECONDS = 30.0  # from a request to its stage running: a fork and two mounts
MAX_STARTS = 3  # a template that keeps dying is given up for the spawn path


class ForkedStage:
    """A stage forked from the template, driven by run_sandboxed like a subprocess.Popen.

    `pid` is the stage's supervisor, which leads the stage's process group: killpg(pid)
    ends the supervisor, and the stage dies with it (PR_SET_PDEATHSIG), and with the stage,
    as PID 1 of its namespace, everything it started.
    """

    def __init__(self, pid: int, sock: socket.socket, stdin: IO[bytes], stdout: IO[bytes]):
        self.pid, self._sock = pid, sock
        self.stdin: IO[bytes] | None = stdin
        self.stdout: IO[bytes] | None = stdout
        self.returncode: int | None = None

    def wait(self) -> int:
        """The stage's exit code as its supervisor reports it (-SIGKILL if it was killed)."""
        if self.returncode is None:
            self._sock.settimeout(None)
            message = _receive(self._sock)
            code = message.get("returncode")
            self.returncode = code if isinstance(code, int) else -signal.SIGKILL
            self._sock.close()
        return self.returncode


def _receive(sock: socket.socket) -> dict[str, Any]:
    """One JSON message from the supervisor; {} on end of stream, a timeout or nonsense."""
    try:
        value = json.loads(sock.recv(1 << 16) or b"{}")
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


class ForkServer:
    """A template process to fork sandboxed stages from, started on first use.

    Safe to share between threads. `isolation` is what the machine offers (as probed, with
    no forks); `threads` sets the template's OpenMP defaults (each stage sets its own).
    """

    def __init__(self, isolation: Isolation, threads: int = 1):
        self.isolation = replace(isolation, forks=None)
        self.threads = threads
        self.required: tuple[str, ...] = ()  # the walls a spawned child confirms here
        self.refused = ""  # why this server no longer forks, once it does not
        self.forked = 0  # stages started from the template (the rest were spawned)
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._home: Path | None = None
        self._starts = 0

    # --- the template's lifetime ---------------------------------------------------------
    def _start_template(self) -> None:
        self._starts += 1
        self._home = Path(tempfile.mkdtemp(prefix="dreamteam-template-"))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", str(TEMPLATE), str(theirs.fileno())],
                cwd=self._home,
                env=candidate_environment(self._home, self.threads),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,  # a terminal's Ctrl-C is the harness's to handle
            )
        finally:
            theirs.close()
        self._control = ours
        ours.settimeout(START_SECONDS)
        try:
            ready = ours.recv(64) == READY
        except OSError:
            ready = False
        ours.settimeout(None)
        if not ready:
            self._stop_template()

    def _stop_template(self) -> None:
        if self._control is not None:
            self._control.close()  # the template ends at end of stream
            self._control = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
            self._home = None

    def _check_walls(self) -> None:
        """The walls a spawned child raises on this machine: every forked child must too."""
        with tempfile.TemporaryDirectory(prefix="dreamteam-check-") as work:
            spawned = run_sandboxed(
                "check", {}, Path(work), Limits(wall_seconds=60), self.isolation
            )
        layers = spawned.report.get("layers")
        if spawned.returncode != 0 or not isinstance(layers, list):
            self.refused = "the spawned check child did not confirm its walls"
        self.required = tuple(str(name) for name in layers or ())

    def _live_control(self) -> socket.socket | None:
        """The control socket of a live, checked template; None: spawn this stage."""
        with self._lock:
            if self.refused:
                return None
            if self._proc is not None and self._proc.poll() is not None:
                self._stop_template()  # it died: this stage is spawned, the next restarts it
                return None
            if self._control is None and self._starts < MAX_STARTS:
                if not self.required:
                    self._check_walls()
                if not self.refused:
                    self._start_template()
            return self._control

    def refuse(self, reason: str) -> None:
        """Fork no more stages: every later stage is spawned."""
        with self._lock:
            self.refused = reason or "refused"
            self._stop_template()

    def close(self) -> None:
        """End the template (stages already forked run to their end)."""
        with self._lock:
            self._stop_template()
            self._starts = MAX_STARTS

    # --- one stage -----------------------------------------------------------------------
    def start(
        self,
        mode: str,
        config: dict[str, Any],
        work_dir: Path,
        env: dict[str, str],
        fds: tuple[int, ...],
    ) -> ForkedStage | None:
        """Fork a stage running child.run(mode, config) in work_dir with env and fds; None
        when the template cannot (the caller spawns it instead: nothing of it ran)."""
        control = self._live_control()
        if control is None:
            return None
        config = dict(config) | {"require_layers": list(self.required)}
        # the child finds each passed fd under its config key, at the number it has there
        fd_keys = {k: 3 + fds.index(v) for k, v in config.items() if k.endswith("_fd") and v in fds}
        request = {
            "mode": mode,
            "config": config,
            "env": env,
            "work_dir": str(work_dir),
            "namespaces": self.isolation.namespaces,
            "fd_keys": fd_keys,
        }
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        try:
            with self._lock:
                socket.send_fds(
                    control,
                    [json.dumps(request).encode()],
                    [theirs.fileno(), stdin_r, stdout_w, *fds],
                )
        except OSError:
            _close(ours, stdin_w, stdout_r)
            return None
        finally:
            theirs.close()
            os.close(stdin_r)
            os.close(stdout_w)
        return self._started(ours, stdin_w, stdout_r)

    def _started(self, sock: socket.socket, stdin_w: int, stdout_r: int) -> ForkedStage | None:
        """The forked stage once its supervisor says it runs; None if it never does."""
        sock.settimeout(SETUP_SECONDS)
        hello, running = _receive(sock), _receive(sock)
        pid = hello.get("pid")
        if isinstance(pid, int) and running.get("running"):
            with self._lock:
                self.forked += 1
            return ForkedStage(pid, sock, os.fdopen(stdin_w, "wb"), os.fdopen(stdout_r, "rb"))
        if isinstance(pid, int):  # it hangs, or set-up failed before any candidate code
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        if running.get("setup_error"):
            self.refuse(f"a forked stage could not set up: {running['setup_error']}")
        _close(sock, stdin_w, stdout_r)
        return None


def _close(sock: socket.socket, *fds: int) -> None:
    sock.close()
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
