"""The run store: one SQLite database (WAL) per run, plus a file tree people can read.

    <run>/dreamteam.sqlite            runs, candidates, trials, generations, steering, elite,
                                      allocations
    <run>/gen_<N>/<persona>/          train.py, model.py, log.txt of each candidate
    <run>/gen_<N>/results.txt         persona, loss, time, status per line

Every write is one transaction, so `kill -9` at any moment leaves either the whole record of
a finished step or none of it; `--resume` reads what is there and recomputes nothing finished.
The store only persists: ranking and selection live in loop/search.py.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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
from dreamteam.store.schema import (
    DB_NAME,
    SCHEMA,
    add_columns,
    allocation_from_row,
    candidate_from_row,
    generation_from_row,
    run_info_from_row,
    steering_from_row,
    trial_from_row,
)


class RunStore:
    """Reads and writes one run's database and file tree."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        # One connection per thread: a sqlite3 connection is not safe to share, while several
        # connections to one WAL database are (readers go on while BEGIN IMMEDIATE queues writers).
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()
        self._db.execute("SELECT 1")  # open now: a bad path fails here, not at first use

    @property
    def _db(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
        return db

    def _connect(self) -> sqlite3.Connection:
        try:
            # check_same_thread off only so that close() may close every thread's connection
            db = sqlite3.connect(
                self.run_dir / DB_NAME, isolation_level=None, timeout=30, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
            add_columns(db)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the run store in {self.run_dir}: {exc}") from exc
        db.row_factory = sqlite3.Row
        with self._opened_lock:
            self._opened.append(db)
        return db

    @classmethod
    def open_existing(cls, run_dir: Path) -> RunStore:
        """Open a run that must already exist (for --resume and the reading commands)."""
        if not (run_dir / DB_NAME).is_file():
            raise StoreError(f"{run_dir} is not a dreamteam run (no {DB_NAME}): check the path")
        return cls(run_dir)

    def close(self) -> None:
        """Close the connections of every thread that used this store."""
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for db in opened:
            db.close()
        self._local = threading.local()

    def _rows(self, table: str, column: str, value: object) -> list[sqlite3.Row]:
        """All rows of a table in the order written, or those whose column equals value."""
        where, args = (f" WHERE {column} = ?", (value,)) if value is not None else ("", ())
        return self._db.execute(f"SELECT * FROM {table}{where} ORDER BY created", args).fetchall()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            yield self._db
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    # -- runs ---------------------------------------------------------------------------
    def create_run(
        self, run_id: str, task: str, config: Mapping[str, Any], isolation: list[str]
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO runs (id, created, task, config, isolation, status)"
                " VALUES (?, ?, ?, ?, ?, 'running')",
                (run_id, time.time(), task, json.dumps(config), json.dumps(isolation)),
            )

    def run_info(self) -> RunInfo:
        row = self._db.execute("SELECT * FROM runs LIMIT 1").fetchone()
        if row is None:
            raise StoreError(f"{self.run_dir} holds no run record: start it with `dreamteam run`")
        return run_info_from_row(row)

    def finish_run(self, status: str, summary: RunSummary | None = None) -> None:
        """Mark the run ended, with the summary its last lines reported (the report reads it)."""
        text = summary.to_json() if summary else None
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET status = ?, finished = ?, summary = COALESCE(?, summary)",
                (status, time.time(), text),
            )

    def summary(self) -> RunSummary | None:
        """The summary stored when the run finished; None while it runs."""
        row = self._db.execute("SELECT summary FROM runs LIMIT 1").fetchone()
        return RunSummary.from_json(row["summary"]) if row and row["summary"] else None

    # -- candidates ---------------------------------------------------------------------
    def add_candidate(self, c: CandidateRecord) -> None:
        """Store a proposal and write its files into the readable tree."""
        row = asdict(c)
        row["files"] = json.dumps(dict(c.files))
        row["record"] = c.record.to_json() if c.record else None
        row["created"] = time.time()
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self._tx() as db:
            db.execute(
                f"INSERT OR REPLACE INTO candidates ({cols}) VALUES ({marks})", list(row.values())
            )
        folder = self.candidate_dir(c)
        folder.mkdir(parents=True, exist_ok=True)
        for name, source in c.files.items():
            (folder / name).write_text(source, encoding="utf-8")

    def candidate_dir(self, c: CandidateRecord) -> Path:
        """gen_<N>/<persona>[-k]: the id without its generation prefix."""
        return self.run_dir / f"gen_{c.generation}" / c.id.split("-", 1)[-1]

    def set_outcome(self, candidate_id: str, status: str, reason: str) -> None:
        """A candidate's status and reason; its duplicates take the status too."""
        with self._tx() as db:
            db.execute(
                "UPDATE candidates SET status = ?, reason = ? WHERE id = ?",
                (status, reason, candidate_id),
            )
            db.execute(
                "UPDATE candidates SET status = ? WHERE twin = ? AND kind = 'duplicate'",
                (status, candidate_id),
            )

    def candidate(self, candidate_id: str) -> CandidateRecord | None:
        row = self._db.execute("SELECT * FROM candidates WHERE id = ?", (candidate_id,)).fetchone()
        return candidate_from_row(row) if row else None

    def candidates(self, generation: int | None = None) -> list[CandidateRecord]:
        return [candidate_from_row(r) for r in self._rows("candidates", "generation", generation)]

    def usage(self) -> tuple[int, float]:
        """Agent tokens (input + output) and USD cost over every stored candidate."""
        row = self._db.execute(
            "SELECT COALESCE(SUM(tokens_in + tokens_out), 0), COALESCE(SUM(cost), 0.0)"
            " FROM candidates"
        ).fetchone()
        return int(row[0]), float(row[1])

    def by_hash(self, code_hash: str) -> CandidateRecord | None:
        row = self._db.execute(
            "SELECT * FROM candidates WHERE code_hash = ? AND kind != 'duplicate' ORDER BY created LIMIT 1",
            (code_hash,),
        ).fetchone()
        return candidate_from_row(row) if row else None

    def by_record(self, record_key: str) -> CandidateRecord | None:
        """The first candidate (not itself a duplicate) that made the same change."""
        row = self._db.execute(
            "SELECT * FROM candidates WHERE record_key = ? AND kind != 'duplicate'"
            " ORDER BY created LIMIT 1",
            (record_key,),
        ).fetchone()
        return candidate_from_row(row) if row else None

    # -- trials -------------------------------------------------------------------------
    def add_trial(self, candidate_id: str, result: TrialResult) -> None:
        """Store one measurement, and its log beside the candidate's files."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO trials VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
                ),
            )

    def trial(self, candidate_id: str, fidelity: str, seed: int) -> TrialRecord | None:
        row = self._db.execute(
            "SELECT * FROM trials WHERE candidate = ? AND fidelity = ? AND seed = ?",
            (candidate_id, fidelity, seed),
        ).fetchone()
        return trial_from_row(row) if row else None

    def trials(self, candidate_id: str | None = None) -> list[TrialRecord]:
        return [trial_from_row(r) for r in self._rows("trials", "candidate", candidate_id)]

    def trial_log(self, candidate_id: str) -> str:
        row = self._db.execute(
            "SELECT log FROM trials WHERE candidate = ? ORDER BY created LIMIT 1", (candidate_id,)
        ).fetchone()
        return row["log"] if row else ""

    # -- generations --------------------------------------------------------------------
    def start_generation(self, number: int, parent: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO generations (number, parent, started) VALUES (?,?,?)",
                (number, parent, time.time()),
            )

    def finish_generation(self, number: int, best: str, promoted: list[str], note: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE generations SET best = ?, promoted = ?, note = ?, finished = ? WHERE number = ?",
                (best, json.dumps(promoted), note, time.time(), number),
            )

    def generations(self) -> list[GenerationRecord]:
        rows = self._db.execute("SELECT * FROM generations ORDER BY number").fetchall()
        return [generation_from_row(r) for r in rows]

    def set_elite(self, generation: int, members: list[str]) -> None:
        """The elite (candidate ids, best first) as it stood after a generation."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO elite (generation, members, created) VALUES (?,?,?)",
                (generation, json.dumps(members), time.time()),
            )

    def elite(self, generation: int) -> list[str]:
        """The elite after `generation`; empty when none was stored."""
        row = self._db.execute(
            "SELECT members FROM elite WHERE generation = ?", (generation,)
        ).fetchone()
        return list(json.loads(row["members"])) if row else []

    def write_results(self, generation: int, lines: list[str]) -> None:
        """The seeds' per-generation results.txt, for people who read files."""
        folder = self.run_dir / f"gen_{generation}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "results.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def write_log(self, c: CandidateRecord, log: str) -> None:
        folder = self.candidate_dir(c)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "log.txt").write_text(log, encoding="utf-8")

    # -- steering -----------------------------------------------------------------------
    def record_steering(self, generation: int, text: str) -> bool:
        """Keep a new version of the steering text; False when it has not changed."""
        row = self._db.execute("SELECT text FROM steering ORDER BY version DESC LIMIT 1").fetchone()
        if row is not None and row["text"] == text:
            return False
        with self._tx() as db:
            db.execute(
                "INSERT INTO steering (generation, text, created) VALUES (?,?,?)",
                (generation, text, time.time()),
            )
        return True

    def steering(self) -> list[SteeringVersion]:
        rows = self._db.execute("SELECT * FROM steering ORDER BY version")
        return [steering_from_row(r) for r in rows]

    # -- allocations --------------------------------------------------------------------
    def set_allocation(self, a: Allocation) -> None:
        """Keep a generation's proposal slots (the first one stored stands: resume reuses it)."""
        with self._tx() as db:
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
        row = self._db.execute(
            "SELECT * FROM allocations WHERE generation = ?", (generation,)
        ).fetchone()
        return allocation_from_row(row) if row else None

    def allocations(self) -> list[Allocation]:
        rows = self._db.execute("SELECT * FROM allocations ORDER BY generation").fetchall()
        return [allocation_from_row(r) for r in rows]


def list_runs(runs_dir: Path) -> list[Path]:
    """Run directories under runs_dir, newest first."""
    if not runs_dir.is_dir():
        return []
    runs = [p for p in runs_dir.iterdir() if (p / DB_NAME).is_file()]
    return sorted(runs, key=lambda p: (p / DB_NAME).stat().st_mtime, reverse=True)
