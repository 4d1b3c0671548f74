"""The sandbox's parent side (launcher.py) and the child's self-confinement probes (walls.py).

Most tests swap the real runner for tests/hostile/stub_runner.py, which applies none of the
child's own walls: what it cannot escape, the parent's walls (namespaces, cgroups, timeout,
clean environment, bounded log) held on their own.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from dreamteam.harness.sandbox import launcher as sandbox
from dreamteam.harness.sandbox import walls as confine
from dreamteam.harness.sandbox.launcher import (
    Isolation,
    Limits,
    ProcessResult,
    probe_isolation,
    run_sandboxed,
)
from dreamteam.harness.scoring.common import process_failure

STUB = Path(__file__).parent / "hostile" / "stub_runner.py"
linux_only = pytest.mark.skipif(platform.system() != "Linux", reason="Linux sandbox layers")


@pytest.fixture(scope="module")
def isolation() -> Isolation:
    return probe_isolation()


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "RUNNER", STUB)


def _leftovers(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _run(
    mode: str, work: Path, isolation: Isolation, config: dict | None = None, **limits
) -> ProcessResult:
    work.mkdir(parents=True, exist_ok=True)
    return run_sandboxed(
        mode, config or {}, work, Limits(**{"wall_seconds": 30, **limits}), isolation
    )


# --- probing, and degrading where a layer is missing -------------------------------------------------


@linux_only
def test_probe_isolation_on_this_machine(isolation: Isolation) -> None:
    assert isinstance(isolation.namespaces, bool) and isinstance(isolation.cgroup, bool)
    assert isolation.landlock == confine.landlock_abi()
    assert isolation.root == (os.geteuid() == 0)
    layers = isolation.layers()
    assert {"clean-env", "process-group-kill", "bounded-log"} <= set(layers)
    assert ("pid-namespace" in layers) == isolation.namespaces


def test_probe_without_unshare_or_cgroups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    monkeypatch.setattr(sandbox.os, "access", lambda path, mode: False)
    monkeypatch.setattr(sandbox, "landlock_abi", lambda: 0)
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 1000)
    found = probe_isolation()
    assert found == Isolation(namespaces=False, cgroup=False, landlock=0, root=False)
    layers = found.layers()
    assert "rlimit-nproc" in layers  # binds for a non-root uid only
    assert not any(n.startswith(("pid-", "net-", "cgroup-", "landlock")) for n in layers)


def test_probe_when_unshare_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise OSError("unshare: unshare failed: Operation not permitted")

    monkeypatch.setattr(sandbox.shutil, "which", lambda name: "/usr/bin/unshare")
    monkeypatch.setattr(sandbox.subprocess, "run", refuse)
    assert probe_isolation().namespaces is False
    monkeypatch.setattr(
        sandbox.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, b"", b"denied")
    )
    assert probe_isolation().namespaces is False


def test_confine_probes_off_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(confine.platform, "system", lambda: "Darwin")
    assert confine.landlock_abi() == 0
    assert confine.apply_landlock([Path(".")], []) == []
    assert confine.apply_seccomp() == []
    assert confine.drop_capabilities() == []


def test_seccomp_on_an_unknown_architecture(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(confine.platform, "machine", lambda: "riscv64")
    assert confine._seccomp_program("riscv64") is None
    assert confine.apply_seccomp() == []
    assert confine.landlock_abi() == 0


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_seccomp_program_is_well_formed(machine: str) -> None:
    program = confine._seccomp_program(machine)
    assert program is not None and len(program) < 256
    for i, (code, jt, jf, _) in enumerate(program):
        if code != confine._RET_K:
            assert i + 1 + max(jt, jf) < len(program)  # every jump lands inside
    assert program[-1][0] == confine._RET_K


@linux_only
def test_cgroup_that_cannot_be_created_is_skipped_and_not_recorded(
    stub: None, isolation: Isolation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def refuse(limits: Limits):
        raise PermissionError("read-only cgroup mount")

    monkeypatch.setattr(sandbox, "_Cgroup", refuse)
    result = _run("env", tmp_path, replace(isolation, cgroup=True))
    assert result.returncode == 0
    assert not any(name.startswith("cgroup-") for name in result.layers)


# --- the clean environment -------------------------------------------------------------------------


@linux_only
def test_child_cannot_see_the_parents_api_keys(
    stub: None, isolation: Isolation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-must-not-leak")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-must-not-leak")
    result = _run("env", tmp_path, isolation)
    env = json.loads(result.log.strip().splitlines()[-1])
    assert "OPENAI_API_KEY" not in env and "ANTHROPIC_API_KEY" not in env
    assert "must-not-leak" not in result.log
    assert env["HOME"] == env["TMPDIR"] == str(tmp_path)


@linux_only
def test_real_runner_sees_a_clean_environment(
    isolation: Isolation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-must-not-leak")
    (tmp_path / "train.py").write_text(
        "import os\n\n\ndef train(**kwargs):\n    print(sorted(os.environ))\n"
        "    print(os.environ.get('OPENAI_API_KEY'))\n    return 0.0, 0.0\n"
    )
    config = {
        "entry_file": "train.py",
        "entry_point": "train",
        "data_dir": str(tmp_path),
        "iters": 1,
        "seed": 0,
        "device": "cpu",
    }
    result = run_sandboxed("train", config, tmp_path, Limits(wall_seconds=60), isolation)
    assert result.report.get("returned") == [0.0, 0.0], result.log[-2000:]
    assert "OPENAI_API_KEY" not in result.log and "must-not-leak" not in result.log
    assert "audit-hook" in result.layers  # confirmed by the child before the candidate ran


# --- the timeout kills the whole tree --------------------------------------------------------------


@linux_only
@pytest.mark.parametrize("layer", ["namespaces", "cgroup"])
def test_timeout_kills_a_setsid_grandchild(
    layer: str, stub: None, isolation: Isolation, tmp_path: Path
) -> None:
    if not getattr(isolation, layer):
        pytest.skip(f"no {layer} on this machine")
    only = replace(isolation, namespaces=layer == "namespaces", cgroup=layer == "cgroup")
    start = time.monotonic()
    result = _run("daemon", tmp_path, only, wall_seconds=3)
    assert result.timed_out and time.monotonic() - start < 20
    assert (tmp_path / "grandchild.started").exists()  # it did get going
    deadline = time.monotonic() + 5
    while _leftovers(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.1)  # SIGKILL is sent; let the kernel finish
    assert not _leftovers(str(tmp_path))
    assert process_failure(result, "")[0] == "timeout"


@linux_only
def test_cgroup_pids_limit_stops_a_fork_bomb(
    stub: None, isolation: Isolation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if not isolation.cgroup:
        pytest.skip("no cgroup v1 pids controller here")
    created: list[sandbox._Cgroup] = []
    real = sandbox._Cgroup

    def recording(limits: Limits) -> sandbox._Cgroup:
        created.append(real(limits))
        return created[-1]

    monkeypatch.setattr(sandbox, "_Cgroup", recording)
    result = _run("forkbomb", tmp_path, isolation, {"forks": 200}, max_processes=16)
    assert 0 < result.report["born"] < 16
    assert not _leftovers(str(tmp_path))
    assert created and not any(g.pids.exists() or g.memory.exists() for g in created)  # cleaned up


# --- the log stays bounded ----------------------------------------------------------------------------


@linux_only
def test_log_keeps_a_bounded_head_and_tail(
    stub: None, isolation: Isolation, tmp_path: Path
) -> None:
    result = _run("flood", tmp_path, isolation, {"megabytes": 8}, max_log_bytes=32 << 10)
    assert result.log_bytes >= 8 << 20
    assert len(result.log) < (32 << 10) + 200
    assert "bytes of output dropped" in result.log


# --- the result channel ---------------------------------------------------------------------------------


@linux_only
def test_first_line_confirms_layers_and_last_line_reports(
    stub: None, isolation: Isolation, tmp_path: Path
) -> None:
    lines = [{"confined": ["landlock-fs", "seccomp"]}, {"steps": 1}, {"returned": [1.0]}]
    result = _run("report", tmp_path, isolation, {"lines": lines})
    assert result.report == {"returned": [1.0]}
    assert {"landlock-fs", "seccomp"} <= set(result.layers)


@linux_only
def test_a_late_confirmation_is_not_believed(
    stub: None, isolation: Isolation, tmp_path: Path
) -> None:
    lines = [{"steps": 1}, {"confined": ["seccomp"]}, {"returned": [1.0]}]
    result = _run("report", tmp_path, isolation, {"lines": lines})
    assert "seccomp" not in result.layers


# --- classifying how a process ended --------------------------------------------------------------------


def _ended(
    returncode: int = 1, timed_out: bool = False, oom: bool = False, log: str = ""
) -> ProcessResult:
    return ProcessResult(returncode, timed_out, oom, 12.0, log, len(log))


@pytest.mark.parametrize(
    ("process", "error", "status", "words"),
    [
        (_ended(-9, timed_out=True), "", "timeout", "time limit"),
        (_ended(-9, oom=True), "", "oom", "memory"),
        (_ended(1), "MemoryError: ", "oom", "memory"),
        (_ended(1), "RuntimeError: DefaultCPUAllocator: can't allocate memory", "oom", "memory"),
        (_ended(1), "ValueError: bad", "crashed", "ValueError: bad"),
        (_ended(-11, log="last words\n"), "", "crashed", "killed by signal 11: last words"),
        (_ended(7), "", "crashed", "exited with code 7"),
        (_ended(0), "", "crashed", "exited without reporting a result"),
        # what the candidate prints is not evidence: only the harness's own observations are
        (_ended(1, log="MemoryError\n"), "ValueError: bad", "crashed", "ValueError"),
    ],
)
def test_process_failure_classification(
    process: ProcessResult, error: str, status: str, words: str
) -> None:
    got_status, reason = process_failure(process, error)
    assert got_status == status and words in reason


def test_a_checkpoint_of_another_form_says_which_form_it_must_have() -> None:
    """A bare state_dict (the usual torch.save) is named as such, not a KeyError."""
    from dreamteam.harness.sandbox.child import checkpoint_parts

    bare = {"fc1.weight": 0, "fc1.bias": 0, "fc2.weight": 0, "fc2.bias": 0}
    with pytest.raises(
        ValueError,
        match=r'must be \{"model_args": dict.*keys fc1.weight, fc1.bias, fc2.weight, \.\.\.',
    ):
        checkpoint_parts(bare)
    with pytest.raises(ValueError, match="not list"):
        checkpoint_parts([1, 2])
    with pytest.raises(ValueError, match="model_args must be a dict, not int"):
        checkpoint_parts({"model_args": 3, "state_dict": {}})
    assert checkpoint_parts({"model_args": {"a": 1}, "state_dict": {"w": 2}}) == (
        {"a": 1},
        {"w": 2},
    )
