"""`dreamteam run` for real: sandboxed training, the run tree, and kill -9 then --resume."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

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
