"""The run store: one SQLite database (WAL) per run, plus a file tree people can read.

    <run>/dreamteam.sqlite            runs, candidates, trials, generations, steering, elite,
                                      allocations
    <run>/gen_<N>/<persona>/          train.py, model.py, log.txt of each candidate
    <run>/gen_<N>/results.txt         persona, loss, time, status per line

Every write is one transaction, so `kill -9` at any moment leaves either the whole record of
a finished step or none of it; `--resume` reads what is there and recomputes nothing finished.
A finished generation's row, with its elite, is written in one transaction and never again.
The store only persists: ranking and selection live in loop/search.py.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dreamteam.errors import StoreError
from dreamteam.records import (
    Allocation,
    CandidateRecord,
    GenerationRecord,
    RunInfo,
    RunSummary,
    SteeringVersion,
    TrialRecord,
    TrialResult,
)
from dreamteam.store.db import Database
from dreamteam.store.faults import damaged, os_fault, write_text
from dreamteam.store.schema import (
    DB_NAME,
    allocation_from_row,
    candidate_from_row,
    generation_from_row,
    members_from_row,
    run_info_from_row,
    steering_from_row,
    trial_from_row,
)

# named, not positional: each value goes to its column whatever columns the table gained
_TRIAL_COLUMNS = (
    "candidate",
    "fidelity",
    "seed",
    "status",
    "reason",
    "val_loss",
    "bpb",
    "self_loss",
    "self_loss_gap",
    "train_seconds",
    "eval_seconds",
    "steps",
    "iters",
    "n_params",
    "log",
    "layers",
    "created",
    "figures",
)


class RunStore:
    """Reads and writes one run's database and file tree."""

    def __init__(self, run_dir: Path):
        # absolute: trials run in child processes that change into their own work dirs
        self.run_dir = run_dir.absolute()
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise os_fault(self.run_dir, exc) from exc
        self._dbs = Database(self.run_dir)
        self._dbs.conn()  # open now: a bad path or a damaged file fails here, not at first use

    @classmethod
    def open_existing(cls, run_dir: Path) -> RunStore:
        """Open a run that must already exist (for --resume and the reading commands)."""
        if not (run_dir / DB_NAME).is_file():
            raise StoreError(f"{run_dir} is not a dreamteam run (no {DB_NAME}): check the path")
        return cls(run_dir)

    def close(self) -> None:
        """Close the connections of every thread that used this store."""
        self._dbs.close()

    def _rows(self, table: str, column: str, value: object) -> list[sqlite3.Row]:
        """All rows of a table in the order written, or those whose column equals value."""
        where, args = (f" WHERE {column} = ?", (value,)) if value is not None else ("", ())
        return self._dbs.rows(f"SELECT * FROM {table}{where} ORDER BY created", args)

    # -- runs ---------------------------------------------------------------------------
    def create_run(
        self, run_id: str, task: str, config: Mapping[str, Any], isolation: list[str]
    ) -> None:
        with self._dbs.tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO runs (id, created, task, config, isolation, status)"
                " VALUES (?, ?, ?, ?, ?, 'running')",
                (run_id, time.time(), task, json.dumps(config), json.dumps(isolation)),
            )

    def run_info(self) -> RunInfo:
        row = self._dbs.one("SELECT * FROM runs LIMIT 1")
        if row is None:
            raise StoreError(f"{self.run_dir} holds no run record: start it with `dreamteam run`")
        return run_info_from_row(row)

    def finish_run(self, status: str, summary: RunSummary | None = None) -> None:
        """Mark the run ended, with the summary its last lines reported (the report reads it);
        a run already done stays as it was stored."""
        text = summary.to_json() if summary else None
        with self._dbs.tx() as db:
            db.execute(
                "UPDATE runs SET status = ?, finished = ?, summary = COALESCE(?, summary)"
                " WHERE status IS NOT 'done'",
                (status, time.time(), text),
            )

    def finished_summary(self) -> RunSummary | None:
        """The summary of a run that ran to its end; None while it runs or if it stopped early."""
        row = self._dbs.one("SELECT status FROM runs LIMIT 1")
        return self.summary() if row is not None and row["status"] == "done" else None

    def summary(self) -> RunSummary | None:
        """The summary stored when the run finished; None while it runs."""
        row = self._dbs.one("SELECT summary FROM runs LIMIT 1")
        if not row or not row["summary"]:
            return None
        try:
            return RunSummary.from_json(row["summary"])
        except (ValueError, KeyError, TypeError) as exc:
            raise damaged(self.run_dir, f"the run's summary: {exc}") from exc

    # -- candidates ---------------------------------------------------------------------
    def add_candidate(self, c: CandidateRecord) -> None:
        """Store a proposal and write its files into the readable tree."""
        row = asdict(c)
        row["files"] = json.dumps(dict(c.files))
        row["record"] = c.record.to_json() if c.record else None
        row["created"] = time.time()
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        folder = self.candidate_dir(c)
        for name, source in c.files.items():  # first: a stored candidate always has its files
            write_text(self.run_dir, folder / name, source)
        with self._dbs.tx() as db:
            db.execute(
                f"INSERT OR REPLACE INTO candidates ({cols}) VALUES ({marks})", list(row.values())
            )

    def candidate_dir(self, c: CandidateRecord) -> Path:
        """gen_<N>/<persona>[-k]: the id without its generation prefix."""
        return self.run_dir / f"gen_{c.generation}" / c.id.split("-", 1)[-1]

    def set_outcome(self, candidate_id: str, status: str, reason: str) -> None:
        """A candidate's status and reason; its duplicates take the status too."""
        with self._dbs.tx() as db:
            db.execute(
                "UPDATE candidates SET status = ?, reason = ? WHERE id = ?",
                (status, reason, candidate_id),
            )
            db.execute(
                "UPDATE candidates SET status = ? WHERE twin = ? AND kind = 'duplicate'",
                (status, candidate_id),
            )

    def candidate(self, candidate_id: str) -> CandidateRecord | None:
        row = self._dbs.one("SELECT * FROM candidates WHERE id = ?", (candidate_id,))
        return candidate_from_row(row) if row else None

    def candidates(self, generation: int | None = None) -> list[CandidateRecord]:
        return [candidate_from_row(r) for r in self._rows("candidates", "generation", generation)]

    def usage(self) -> tuple[int, float]:
        """Agent tokens (input + output) and USD cost over every stored candidate."""
        row = self._dbs.one(
            "SELECT COALESCE(SUM(tokens_in + tokens_out), 0), COALESCE(SUM(cost), 0.0)"
            " FROM candidates"
        )
        return (int(row[0]), float(row[1])) if row else (0, 0.0)

    def by_hash(self, code_hash: str) -> CandidateRecord | None:
        row = self._dbs.one(
            "SELECT * FROM candidates WHERE code_hash = ? AND kind != 'duplicate' ORDER BY created LIMIT 1",
            (code_hash,),
        )
        return candidate_from_row(row) if row else None

    def by_record(self, record_key: str) -> CandidateRecord | None:
        """The first candidate (not itself a duplicate) that made the same change."""
        row = self._dbs.one(
            "SELECT * FROM candidates WHERE record_key = ? AND kind != 'duplicate'"
            " ORDER BY created LIMIT 1",
            (record_key,),
        )
        return candidate_from_row(row) if row else None

    # -- trials -------------------------------------------------------------------------
    def add_trial(self, candidate_id: str, result: TrialResult) -> None:
        """Store one measurement, and its log beside the candidate's files."""
        with self._dbs.tx() as db:
            db.execute(
                f"INSERT OR REPLACE INTO trials ({', '.join(_TRIAL_COLUMNS)})"
                f" VALUES ({', '.join('?' * len(_TRIAL_COLUMNS))})",
                (
                    candidate_id,
                    result.fidelity,
                    result.seed,
                    str(result.status),
                    result.reason,
                    result.val_loss,
                    result.bpb,
                    result.self_loss,
                    int(result.self_loss_gap),
                    result.train_seconds,
                    result.eval_seconds,
                    result.steps,
                    result.iters,
                    result.n_params,
                    result.log,
                    json.dumps(list(result.layers)),
                    time.time(),
                    json.dumps(result.figures),
                ),
            )

    def trial(self, candidate_id: str, fidelity: str, seed: int) -> TrialRecord | None:
        row = self._dbs.one(
            "SELECT * FROM trials WHERE candidate = ? AND fidelity = ? AND seed = ?",
            (candidate_id, fidelity, seed),
        )
        return trial_from_row(row) if row else None

    def trials(self, candidate_id: str | None = None) -> list[TrialRecord]:
        return [trial_from_row(r) for r in self._rows("trials", "candidate", candidate_id)]

    def trial_log(self, candidate_id: str, fidelity: str = "", seed: int | None = None) -> str:
        """The log of the candidate's trial at `fidelity` and `seed`, else of its first."""
        sql, args = "", list[object]([candidate_id])
        if fidelity and seed is not None:
            sql = " AND fidelity = ? AND seed = ?"
            args += [fidelity, seed]
        row = self._dbs.one(
            f"SELECT log FROM trials WHERE candidate = ?{sql} ORDER BY created LIMIT 1", args
        )
        return row["log"] if row else ""

    # -- generations --------------------------------------------------------------------
    def start_generation(self, number: int, parent: str) -> None:
        with self._dbs.tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO generations (number, parent, started) VALUES (?,?,?)",
                (number, parent, time.time()),
            )

    def finish_generation(
        self, number: int, best: str, promoted: list[str], note: str, elite: list[str]
    ) -> None:
        """A generation's outcome and the elite (candidate ids, best first) as it stood after
        it, in one transaction; a finished generation is never written again (resume)."""
        with self._dbs.tx() as db:
            done = db.execute(
                "UPDATE generations SET best = ?, promoted = ?, note = ?, finished = ?"
                " WHERE number = ? AND finished IS NULL",
                (best, json.dumps(promoted), note, time.time(), number),
            ).rowcount
            if done:
                db.execute(
                    "INSERT OR REPLACE INTO elite (generation, members, created) VALUES (?,?,?)",
                    (number, json.dumps(elite), time.time()),
                )

    def generation(self, number: int) -> GenerationRecord | None:
        row = self._dbs.one("SELECT * FROM generations WHERE number = ?", (number,))
        return generation_from_row(row) if row else None

    def generations(self) -> list[GenerationRecord]:
        rows = self._dbs.rows("SELECT * FROM generations ORDER BY number")
        return [generation_from_row(r) for r in rows]

    def elite(self, generation: int) -> list[str]:
        """The elite after `generation`; empty when none was stored."""
        row = self._dbs.one("SELECT members FROM elite WHERE generation = ?", (generation,))
        return members_from_row(row) if row else []

    def write_results(self, generation: int, lines: list[str]) -> None:
        """The seeds' per-generation results.txt, for people who read files."""
        path = self.run_dir / f"gen_{generation}" / "results.txt"
        write_text(self.run_dir, path, "\n".join(lines) + "\n")

    def write_log(self, c: CandidateRecord, log: str) -> None:
        write_text(self.run_dir, self.candidate_dir(c) / "log.txt", log)

    # -- steering -----------------------------------------------------------------------
    def record_steering(self, generation: int, text: str) -> bool:
        """Keep a new version of the steering text; False when it has not changed."""
        row = self._dbs.one("SELECT text FROM steering ORDER BY version DESC LIMIT 1")
        if row is not None and row["text"] == text:
            return False
        with self._dbs.tx() as db:
            db.execute(
                "INSERT INTO steering (generation, text, created) VALUES (?,?,?)",
                (generation, text, time.time()),
            )
        return True

    def steering(self) -> list[SteeringVersion]:
        rows = self._dbs.rows("SELECT * FROM steering ORDER BY version")
        return [steering_from_row(r) for r in rows]

    # -- allocations --------------------------------------------------------------------
    def set_allocation(self, a: Allocation) -> None:
        """Keep a generation's proposal slots (the first one stored stands: resume reuses it)."""
        with self._dbs.tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO allocations VALUES (?,?,?,?,?,?)",
                (
                    a.generation,
                    a.policy,
                    json.dumps(a.slots),
                    json.dumps(a.posterior),
                    json.dumps(a.floor),
                    time.time(),
                ),
            )

    def allocation(self, generation: int) -> Allocation | None:
        row = self._dbs.one("SELECT * FROM allocations WHERE generation = ?", (generation,))
        return allocation_from_row(row) if row else None

    def allocations(self) -> list[Allocation]:
        rows = self._dbs.rows("SELECT * FROM allocations ORDER BY generation")
        return [allocation_from_row(r) for r in rows]


def holds_run(run_dir: Path) -> bool:
    """Whether a folder holds a readable run record (read only: a run in progress, or a
    folder left by a run that never started, is only looked at)."""
    db = run_dir / DB_NAME
    if not db.is_file():
        return False
    try:
        conn = sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("SELECT 1 FROM runs LIMIT 1").fetchone() is not None
        finally:
            conn.close()
    except sqlite3.Error:
        return False


def list_runs(runs_dir: Path, *, every: bool = False) -> list[Path]:
    """Run directories under runs_dir, newest first; with `every`, also folders holding a
    store but no readable run (listed, so they can be found and removed)."""
    if not runs_dir.is_dir():
        return []
    found = [p for p in runs_dir.iterdir() if (p / DB_NAME).is_file()]
    runs = found if every else [p for p in found if holds_run(p)]
    return sorted(runs, key=lambda p: (p / DB_NAME).stat().st_mtime, reverse=True)
