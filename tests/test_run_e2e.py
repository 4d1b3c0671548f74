"""`dreamteam run` for real: sandboxed training, the run tree, kill -9 then --resume at several
points (same history as a run never killed), one writer per run, and a full disk."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import tmpfs

pytestmark = pytest.mark.slow

RUN = [sys.executable, "-c", "from dreamteam.cli import main; main()", "run"]
SMALL = ["--generations", "1", "--team-size", "2", "--fidelity", "smoke"]


def _env(home: Path, mirror: Path) -> dict[str, str]:
    return dict(os.environ, DREAMTEAM_HOME=str(home), DREAMTEAM_DATA_MIRROR=str(mirror))


def _trials(db: Path) -> dict[tuple[str, str, int], float]:
    if not db.exists():
        return {}
    with sqlite3.connect(db) as conn:
        try:
            rows = conn.execute("SELECT candidate, fidelity, seed, created FROM trials").fetchall()
        except sqlite3.OperationalError:
            return {}
    return {(c, f, s): t for c, f, s, t in rows}


def test_run_writes_the_tree_and_the_contract_lines(tmp_path: Path, mirror: Path) -> None:
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [*RUN, *SMALL, "--run-dir", str(run_dir)],
        env=_env(tmp_path, mirror),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-2].startswith("best: ") and "baseline=" in lines[-2] and "ci95=" in lines[-2]
    assert " fidelity=smoke" in lines[-2]  # the claim names its budget
    fields = dict(f.split("=", 1) for f in lines[-2].split() if "=" in f)
    beyond = float(fields["delta"]) < -float(fields["ci95"])
    assert fields["beyond_noise"] == ("yes" if beyond else "no")  # says whether it is a win
    assert lines[-1] == f"report: {run_dir / 'report.html'}"
    assert (run_dir / "dreamteam.sqlite").is_file() and (run_dir / "report.html").is_file()
    results = (run_dir / "gen_1" / "results.txt").read_text().splitlines()
    assert len(results) == 2 and all(len(line.split("\t")) == 4 for line in results)
    for persona in ("archimedes", "aristotle"):
        folder = run_dir / "gen_1" / persona
        assert {"train.py", "model.py", "log.txt"} <= {p.name for p in folder.iterdir()}


def test_kill_9_then_resume_loses_and_recomputes_nothing(tmp_path: Path, mirror: Path) -> None:
    run_dir = tmp_path / "run"
    db = run_dir / "dreamteam.sqlite"
    env = _env(tmp_path, mirror)
    child = subprocess.Popen(
        [*RUN, *SMALL, "--run-dir", str(run_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 900
    while len(_trials(db)) < 2 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.5)
    os.killpg(child.pid, signal.SIGKILL)  # the run and every sandboxed child it started
    child.wait()
    before = _trials(db)
    assert len(before) >= 2, "the run should have finished two trials before the kill"

    done = subprocess.run(
        [*RUN, "--resume", str(run_dir)], env=env, capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-2].startswith("best: ")
    after = _trials(db)
    for key, created in before.items():
        assert after[key] == created, f"{key} was recomputed"
    assert len(after) > len(before)


# -- kill -9 at several points -----------------------------------------------------------------
# spirals: a trial takes seconds, and Aristotle's learning rate beats the baseline at
# screening, so generation 1 has a confirmation to kill
TWO = ["--task", "spirals", "--generations", "2", "--team-size", "2", "--fidelity", "smoke"]
SCREEN_SEED, CONFIRM_SEED = 1337, 1338


def _query(db: Path, sql: str) -> list[tuple]:
    """Rows from the store of a run in progress (nothing yet: no rows)."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []


def _screening(db: Path) -> bool:
    sql = f"SELECT 1 FROM trials WHERE candidate LIKE 'g1-%' AND seed = {SCREEN_SEED}"
    return bool(_query(db, sql))


def _generation_done(number: int) -> Callable[[Path], bool]:
    def done(db: Path) -> bool:
        sql = f"SELECT 1 FROM generations WHERE number = {number} AND finished IS NOT NULL"
        return bool(_query(db, sql))

    return done


def _confirming(db: Path) -> bool:
    """A generation-1 finalist has a confirmation trial."""
    sql = f"SELECT 1 FROM trials WHERE candidate LIKE 'g1-%' AND seed = {CONFIRM_SEED}"
    return bool(_query(db, sql))


def _start(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*RUN, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group: kill -9 reaches the sandboxed children too
    )


def _kill_when(child: subprocess.Popen[str], db: Path, ready: Callable[[Path], bool]) -> None:
    deadline = time.monotonic() + 1800
    while not ready(db) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert child.poll() is None, f"the run ended before the kill point: {child.stderr.read()}"
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def _decisions(db: Path) -> dict[str, list[tuple]]:
    """What selection decided: parents, bests, promotions, the elite, every status."""
    return {
        "generations": _query(db, "SELECT number, parent, best, promoted FROM generations"),
        "elite": _query(db, "SELECT generation, members FROM elite ORDER BY generation"),
        "candidates": _query(db, "SELECT id, parent, kind, status FROM candidates ORDER BY id"),
    }


def _checksums(db: Path) -> dict[str, str]:
    tables = [r[0] for r in _query(db, "SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {
        t: hashlib.sha256(repr(sorted(_query(db, f"SELECT * FROM {t}"))).encode()).hexdigest()
        for t in tables
    }


def _best_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("best: "))


def test_kill_9_anywhere_then_resume_gives_the_uninterrupted_history(
    tmp_path: Path, mirror: Path
) -> None:
    env = _env(tmp_path / "home", mirror)
    (tmp_path / "whole").mkdir()
    whole = _start([*TWO, "--run-dir", "run"], tmp_path / "whole", env)  # alongside, as reference
    db = tmp_path / "run" / "dreamteam.sqlite"
    child = _start([*TWO, "--run-dir", "run"], tmp_path, env)  # a relative --run-dir
    for ready in (_screening, _confirming, _generation_done(1)):
        _kill_when(child, db, ready)
        before = _trials(db)
        child = _start(["--resume", "run"], tmp_path, env)
        _wait_for_lock(tmp_path / "run", child)
        for key, created in before.items():  # nothing finished is lost
            assert _trials(db).get(key) == created, f"{key} was lost or recomputed"
    _second_writer_is_refused(tmp_path / "run", child, env)
    out, err = child.communicate(timeout=3600)
    assert child.returncode == 0, err[-2000:]
    out_whole, err_whole = whole.communicate(timeout=3600)
    assert whole.returncode == 0, err_whole[-2000:]
    assert _decisions(db) == _decisions(tmp_path / "whole" / "run" / "dreamteam.sqlite")
    assert _best_line(out) == _best_line(out_whole)

    sums = _checksums(db)  # resuming the finished run changes no table
    again = subprocess.run(
        [*RUN, "--resume", "run"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert again.returncode == 0 and _best_line(again.stdout) == _best_line(out)
    assert _checksums(db) == sums


def _wait_for_lock(run_dir: Path, child: subprocess.Popen[str]) -> None:
    lock = run_dir / "run.lock"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and child.poll() is None:
        if lock.is_file() and lock.read_text().strip() == str(child.pid):
            return
        time.sleep(0.2)
    raise AssertionError(f"the resumed run never took the lock: {child.communicate()[1]}")


def _second_writer_is_refused(
    run_dir: Path, holder: subprocess.Popen[str], env: dict[str, str]
) -> None:
    """While `holder` runs: a second writer exits 1 at once naming it; readers work.

    The refusal naming `holder` is what proves the run was in progress: a finished run would
    have been resumed as done (exit 0). The readers may end after it (on the fork path the
    rest of the run can take less time than two CLI start-ups on a loaded machine)."""
    second = subprocess.run(
        [*RUN, "--resume", str(run_dir)], env=env, capture_output=True, text=True, timeout=600
    )
    assert second.returncode == 1, second.stdout[-2000:]
    assert f"process {holder.pid}" in second.stderr and second.stderr.count("\n") == 1
    cli = [sys.executable, "-c", "from dreamteam.cli import main; main()"]
    for reader in (["show", str(run_dir)], ["report", str(run_dir), "-o", str(run_dir / "r.html")]):
        read = subprocess.run([*cli, *reader], env=env, capture_output=True, text=True)
        assert read.returncode == 0, read.stderr[-2000:]


# -- a full disk -------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of our own (root only; skipped where mounting is not allowed)."""
    with tmpfs(tmp_path / "disk", "256m") as point:
        yield point


def _fill(disk: Path, leave: int) -> Path:
    """A ballast file that leaves about `leave` bytes free on the disk."""
    ballast = disk / "ballast"
    size = shutil.disk_usage(disk).free - leave
    with open(ballast, "wb") as f:
        f.truncate(0)
        block = b"\1" * (1 << 20)
        while size > 0:
            f.write(block[: min(size, len(block))])
            size -= len(block)
    return ballast


def test_a_full_disk_stops_the_run_cleanly_and_it_resumes_once_freed(
    tmp_path: Path, mirror: Path, small_disk: Path
) -> None:
    env = _env(tmp_path / "home", mirror)
    run_dir = small_disk / "run"
    ballast = _fill(small_disk, 2 << 20)  # room for the store, not for a trained checkpoint
    full = subprocess.run(
        [*RUN, *SMALL, "--run-dir", str(run_dir)], env=env, capture_output=True, text=True
    )
    assert full.returncode == 1, full.stdout[-2000:]
    err = full.stderr.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert "no space left on device" in err and f"--resume {run_dir}" in err
    db = run_dir / "dreamteam.sqlite"
    crashed = _query(db, "SELECT candidate, status, reason FROM trials")
    assert crashed and all(s == "crashed" for _, s, _ in crashed)
    assert all(r.startswith("no space left on device") for _, _, r in crashed), crashed
    assert _query(db, "SELECT status FROM candidates WHERE id = 'g0-baseline'") == [("",)]

    ballast.unlink()  # space freed: the run goes on, the disk-full trial trained again
    done = subprocess.run(
        [*RUN, "--resume", str(run_dir)], env=env, capture_output=True, text=True, timeout=3600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert _best_line(done.stdout)
    reasons = [r for (r,) in _query(db, "SELECT reason FROM trials")]
    assert not [r for r in reasons if r.startswith("no space left")]
