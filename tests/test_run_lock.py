"""One writer per run, and no leftovers: a second process is refused while the first holds
the run, a lock left by a killed process is taken over, a run that fails before it starts
leaves no folder, and the reading commands step over folders that hold no run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from clirun import dreamteam
from dreamteam.errors import StoreError
from dreamteam.store import RunStore
from dreamteam.store.lock import LOCK_NAME, RunLock
from test_search import _search

HOLD = (
    "import sys, time; from pathlib import Path; from dreamteam.store.lock import RunLock; "
    "lock = RunLock(Path(sys.argv[1])); print('locked', flush=True); time.sleep(600)"
)


@pytest.fixture
def finished_run(tmp_path: Path) -> Path:
    """A run (fake trainer) that ran to its end."""
    search, _, store = _search(tmp_path, generations=1, team_size=2)
    store.finish_run("done", search.run())
    store.close()
    return tmp_path / "run"


def _holder(run: Path) -> subprocess.Popen[str]:
    """Another process holding the run's lock, until killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_is_refused_naming_the_holder_and_readers_go_on(
    finished_run: Path, dt_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    holder = _holder(finished_run)
    try:
        with pytest.raises(StoreError, match=f"being run by process {holder.pid}"):
            RunLock(finished_run)
        done = dreamteam(capsys, "run", "--resume", str(finished_run))
        assert done.code == 1 and f"process {holder.pid}" in done.err
        assert done.err.strip().count("\n") == 0
        assert dreamteam(capsys, "show", str(finished_run)).code == 0
        report = dreamteam(capsys, "report", str(finished_run))
        assert report.code == 0 and report.out.startswith("report: ")
        steered = dreamteam(capsys, "steer", str(finished_run), "try a schedule")
        assert steered.code == 0
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_process_is_taken_over(finished_run: Path) -> None:
    holder = _holder(finished_run)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert (finished_run / LOCK_NAME).read_text().strip() == str(holder.pid)  # left behind
    with RunLock(finished_run):
        assert (finished_run / LOCK_NAME).read_text().strip() == str(os.getpid())
    with RunLock(finished_run):  # and released again
        pass


def test_resuming_a_finished_run_prints_its_lines_and_writes_nothing(
    finished_run: Path, dt_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = finished_run / "dreamteam.sqlite"
    before = db.stat().st_mtime_ns, db.read_bytes()
    done = dreamteam(capsys, "run", "--resume", str(finished_run))
    assert done.code == 0, done.err
    lines = done.out.strip().splitlines()
    assert lines[-2].startswith("best: ") and lines[-1].startswith("report: ")
    assert (db.stat().st_mtime_ns, db.read_bytes()) == before


@pytest.mark.parametrize(
    "bad",
    [
        ["--model", "nosuchprovider:x"],
        ["--fidelity", "nosuchlevel"],
        ["--task", "no-such-task"],
        ["--personas", "nobody-at-all"],
    ],
)
def test_a_run_that_fails_before_it_starts_leaves_no_folder(
    bad: list[str], dt_env: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    done = dreamteam(capsys, "run", *bad)
    assert done.code == 1 and done.err.strip().count("\n") == 0, done.err
    runs = dt_env / "runs"
    assert not runs.exists() or list(runs.iterdir()) == []
    named = tmp_path / "named"
    assert dreamteam(capsys, "run", "--run-dir", str(named), *bad).code == 1
    assert not named.exists()


def test_a_new_run_into_a_folder_holding_a_run_is_refused(
    finished_run: Path, dt_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = dreamteam(capsys, "run", "--run-dir", str(finished_run))
    assert done.code == 1 and "already holds a run" in done.err and "--resume" in done.err


def test_runs_list_and_show_step_over_a_folder_without_a_run(
    dt_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = dt_env / "runs"
    search, _, store = _search(runs, generations=1, team_size=2)  # runs/run
    store.finish_run("done", search.run())
    store.close()
    RunStore(runs / "empty").close()  # what a failed start left behind before this fix
    listed = dreamteam(capsys, "runs", "list")
    assert listed.code == 0, listed.err
    assert "empty" in listed.out and "no run" in listed.out
    shown = dreamteam(capsys, "show")  # the newest folder holding a run
    assert shown.code == 0 and "g0-baseline" in shown.out, shown.err
