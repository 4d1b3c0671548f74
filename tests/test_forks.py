"""Stages forked from the pre-imported template (sandbox/forks.py, sandbox/template.py).

The same walls as a spawned child, confirmed the same way; nothing of the template within a
candidate's reach; and every failure of the template ends in the spawn path, never in a stage
with fewer walls. The hostile suite (test_hostile.py) runs on the fork path too.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from dreamteam.config import settings_from_env
from dreamteam.errors import ConfigError
from dreamteam.harness.sandbox.forks import ForkServer
from dreamteam.harness.sandbox.launcher import probe_isolation, run_sandboxed
from dreamteam.harness.sandbox.limits import Isolation, Limits, ProcessResult, StartMethod
from hostile.sandboxed import sandboxed_train

pytestmark = pytest.mark.skipif(platform.system() != "Linux", reason="the template is Linux's")


@pytest.fixture
def forks() -> Iterator[ForkServer]:
    server = ForkServer(probe_isolation())
    yield server
    server.close()


def _isolation(forks: ForkServer) -> Isolation:
    return replace(forks.isolation, forks=forks)


def _train(source: str, work: Path, isolation: Isolation, wall: float = 60) -> ProcessResult:
    return sandboxed_train(source, work, isolation, wall_seconds=wall)


def _check(work: Path, isolation: Isolation) -> ProcessResult:
    work.mkdir(parents=True, exist_ok=True)
    return run_sandboxed("check", {}, work, Limits(wall_seconds=60), isolation)


def test_a_forked_child_confirms_the_same_layers_as_a_spawned_one(
    forks: ForkServer, tmp_path: Path
) -> None:
    forked = _check(tmp_path / "fork", _isolation(forks))
    spawned = _check(tmp_path / "spawn", forks.isolation)
    assert forks.forked == 1 and not forks.refused
    assert forked.returncode == spawned.returncode == 0
    assert forked.layers == spawned.layers
    assert forked.report["layers"] == spawned.report["layers"] == list(forks.required)
    assert {"seccomp", "no-capabilities", "rlimits"} <= set(forks.required)


SPY = """
import ctypes, json, os, signal

def train(out_dir, **_):
    libc = ctypes.CDLL(None, use_errno=True)
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[name] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass
    found = {
        "ppid": os.getppid(),
        "pid": os.getpid(),
        "proc": sorted(p for p in os.listdir("/proc") if p.isdigit()),
        "fds": fds,
        "kill_template": libc.kill(TEMPLATE, signal.SIGKILL),
        "kill_parent_group": libc.kill(-TEMPLATE, signal.SIGKILL),
        "env": sorted(os.environ),
    }
    try:
        open(f"/proc/{TEMPLATE}/environ", "rb").read()
        found["template_proc"] = "read"
    except OSError as exc:
        found["template_proc"] = type(exc).__name__
    with open(os.path.join(out_dir, "found.json"), "w") as f:
        json.dump(found, f)
    return 0.0
"""


def test_a_forked_candidate_cannot_reach_the_template(forks: ForkServer, tmp_path: Path) -> None:
    _check(tmp_path / "warm", _isolation(forks))  # the template runs
    assert forks._proc is not None
    template = forks._proc.pid
    result = _train(SPY.replace("TEMPLATE", str(template)), tmp_path / "w", _isolation(forks))
    assert result.returncode == 0, result.log
    assert forks.forked == 2 and not forks.refused
    found = json.loads((tmp_path / "w" / "found.json").read_text())
    assert forks._proc.poll() is None  # the signals did not reach it
    assert found["kill_template"] == -1 and found["kill_parent_group"] == -1
    if forks.isolation.namespaces:
        assert found["pid"] == 1 and found["ppid"] == 0  # its parent is outside its world
        assert found["proc"] == ["1"]  # a /proc of its own namespace
        assert found["template_proc"] in ("FileNotFoundError", "PermissionError")
    # fds: stdin, stdout, stderr, the result channel, and the listing's own; no sockets
    assert len(found["fds"]) <= 5, found["fds"]
    assert not [t for t in found["fds"].values() if t.startswith("socket:")]
    assert "OPENAI_API_KEY" not in found["env"] and "HOME" in found["env"]


OPTIMIZER = """
import json, os, sys, tempfile, time
import torch

def train(out_dir, **_):
    ready = "torch._dynamo" in sys.modules
    start = time.perf_counter()
    torch.optim.AdamW([torch.zeros(2, requires_grad=True)])
    found = {"ready": ready, "build": time.perf_counter() - start,
             "tmp": tempfile.gettempdir(), "env_tmp": os.environ["TMPDIR"]}
    with open(os.path.join(out_dir, "found.json"), "w") as f:
        json.dump(found, f)
    return 0.0
"""


def test_a_forked_stage_builds_an_optimizer_without_importing_and_keeps_its_own_tmp(
    forks: ForkServer, tmp_path: Path
) -> None:
    result = _train(OPTIMIZER, tmp_path / "w", _isolation(forks))
    assert result.returncode == 0, result.log
    assert forks.forked == 1 and not forks.refused
    found = json.loads((tmp_path / "w" / "found.json").read_text())
    assert found["ready"]  # the template imported torch._dynamo: the stage pays nothing
    # whatever the template's imports cached, the stage's temp dir is its own (its work dir)
    assert found["tmp"] == found["env_tmp"]
    assert Path(found["tmp"]).resolve() == (tmp_path / "w").resolve()


SLEEPER = """
import os, time

def train(out_dir, **_):
    open(os.path.join(out_dir, "started"), "w").close()
    time.sleep(4)
    open(os.path.join(out_dir, "finished"), "w").close()
    return 0.0
"""


def test_a_template_killed_mid_run_falls_back_to_spawn(forks: ForkServer, tmp_path: Path) -> None:
    isolation = _isolation(forks)
    results: list[ProcessResult] = []
    running = threading.Thread(
        target=lambda: results.append(_train(SLEEPER, tmp_path / "long", isolation))
    )
    running.start()
    deadline = time.monotonic() + 60
    while not (tmp_path / "long" / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert forks._proc is not None and forks.forked == 1
    os.kill(forks._proc.pid, signal.SIGKILL)
    running.join()
    # the stage forked before the template died runs on to its end
    assert results[0].returncode == 0 and (tmp_path / "long" / "finished").exists()
    after = _check(tmp_path / "after", isolation)  # spawned: the template is gone
    assert after.returncode == 0 and forks.forked == 1
    assert after.layers == _check(tmp_path / "spawned", forks.isolation).layers
    assert _check(tmp_path / "again", isolation).returncode == 0  # a new template
    assert forks.forked == 2


def test_a_forked_child_missing_a_wall_is_spawned_instead(
    forks: ForkServer, tmp_path: Path
) -> None:
    _check(tmp_path / "warm", _isolation(forks))
    forks.required = (*forks.required, "a-wall-this-machine-lacks")
    result = _train(SLEEPER.replace("time.sleep(4)", "pass"), tmp_path / "w", _isolation(forks))
    assert result.returncode == 0, result.log
    assert (tmp_path / "w" / "finished").exists()
    assert "a-wall-this-machine-lacks" in forks.refused
    assert forks._proc is None  # no more forks


SPINNER = """
import os

def train(out_dir, **_):
    open(os.path.join(out_dir, "started"), "w").close()
    while True:
        pass
"""


def test_the_wall_clock_ends_a_forked_stage(forks: ForkServer, tmp_path: Path) -> None:
    work = tmp_path / "spin"
    result = _train(SPINNER, work, _isolation(forks), wall=4)
    assert forks.forked == 1
    assert result.timed_out and result.signal == signal.SIGKILL
    time.sleep(0.5)
    stray = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd").startswith(str(work)):
                    stray.append(entry.name)
            except OSError:
                continue
    assert not stray


def test_sandbox_start_comes_from_the_environment() -> None:
    assert settings_from_env({}).sandbox_start is StartMethod.FORK
    spawn = settings_from_env({"DREAMTEAM_SANDBOX_START": "spawn"})
    assert spawn.sandbox_start is StartMethod.SPAWN
    with pytest.raises(ConfigError, match="fork or spawn"):
        settings_from_env({"DREAMTEAM_SANDBOX_START": "vfork"})


HARNESS = """
import sys
from dataclasses import replace
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from dreamteam.harness.sandbox.forks import ForkServer
from dreamteam.harness.sandbox.launcher import probe_isolation
from hostile.sandboxed import sandboxed_train
forks = ForkServer(probe_isolation())
print(forks, flush=True)
sandboxed_train(Path(sys.argv[1]).read_text(), Path(sys.argv[2]), replace(forks.isolation, forks=forks))
"""


def _in(work: Path) -> list[int]:
    """Processes whose working directory is in `work` (a forked stage's is its work dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd").startswith(str(work)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_harness_killed_mid_stage_takes_its_forked_stage_and_template_along(
    tmp_path: Path,
) -> None:
    (tmp_path / "train.py").write_text(SLEEPER.replace("time.sleep(4)", "time.sleep(120)"))
    work = tmp_path / "work"
    harness = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HARNESS,
            str(tmp_path / "train.py"),
            str(work),
            str(Path(__file__).parent),
        ],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    deadline = time.monotonic() + 120
    while not (work / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (work / "started").exists() and _in(work)
    templates = _children(harness.pid)
    assert templates
    harness.kill()
    harness.wait()
    for _ in range(100):
        if not _in(work) and not [p for p in templates if _alive(p)]:
            break
        time.sleep(0.1)
    assert not _in(work)  # the stage died with the harness
    assert not [p for p in templates if _alive(p)]  # and so did the template


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


def test_the_template_shares_nothing_writable_with_its_forks(
    forks: ForkServer, tmp_path: Path
) -> None:
    """A fork's writes stay its own (no writable shared mapping to reach the next fork
    through), and one thread: nothing held mid-operation at the fork."""
    _check(tmp_path / "warm", _isolation(forks))
    assert forks._proc is not None
    pid = forks._proc.pid
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    assert not [m for m in maps if m.split()[1].startswith("rw") and m.split()[1][3] == "s"]
    status = Path(f"/proc/{pid}/status").read_text()
    assert status.split("Threads:")[1].split()[0] == "1"
    assert len(list(Path(f"/proc/{pid}/fd").iterdir())) == 4  # stdin, stdout, stderr, control
