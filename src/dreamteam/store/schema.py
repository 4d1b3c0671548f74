"""The run store's tables, and how a row becomes a record.

Columns added since the first runs were written are added to an older run's tables when it
is opened, so every release reads every earlier run. A row that cannot be read back (bad
JSON, a status or kind no release wrote) is a StoreError naming its table, never a traceback.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable
from typing import TypeVar

from dreamteam.errors import StoreError
from dreamteam.records import (
    Allocation,
    CandidateKind,
    CandidateRecord,
    ChangeRecord,
    GenerationRecord,
    RunInfo,
    Status,
    SteeringVersion,
    TrialRecord,
)
from dreamteam.store.faults import brief

DB_NAME = "dreamteam.sqlite"
# kept in the database (PRAGMA user_version) from version 1 on: see db.py. 2 added
# trials.figures (a run of version 1 gets it on opening)
SCHEMA_VERSION = 2
TABLES = ("runs", "candidates", "trials", "generations", "steering", "allocations", "elite")


SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, created REAL, task TEXT, config TEXT, isolation TEXT,
    status TEXT, finished REAL, summary TEXT
);
CREATE TABLE IF NOT EXISTS candidates (
    id TEXT PRIMARY KEY, generation INTEGER, persona TEXT, mode TEXT, parent TEXT,
    kind TEXT, code_hash TEXT, files TEXT, diff TEXT, response TEXT, model TEXT,
    tokens_in INTEGER, tokens_out INTEGER, cost REAL, latency REAL,
    status TEXT, reason TEXT, summary TEXT, created REAL,
    record TEXT, record_key TEXT, twin TEXT
);
CREATE TABLE IF NOT EXISTS trials (
    candidate TEXT, fidelity TEXT, seed INTEGER, status TEXT, reason TEXT,
    val_loss REAL, bpb REAL, self_loss REAL, self_loss_gap INTEGER, train_seconds REAL,
    eval_seconds REAL, steps INTEGER, iters INTEGER, n_params INTEGER, log TEXT,
    layers TEXT, created REAL, figures TEXT,
    PRIMARY KEY (candidate, fidelity, seed)
);
CREATE TABLE IF NOT EXISTS generations (
    number INTEGER PRIMARY KEY, parent TEXT, best TEXT, promoted TEXT, note TEXT,
    started REAL, finished REAL
);
CREATE TABLE IF NOT EXISTS steering (
    version INTEGER PRIMARY KEY, generation INTEGER, text TEXT, created REAL
);
CREATE TABLE IF NOT EXISTS allocations (
    generation INTEGER PRIMARY KEY, policy TEXT, slots TEXT, posterior TEXT, floor TEXT,
    created REAL
);
CREATE TABLE IF NOT EXISTS elite (
    generation INTEGER PRIMARY KEY, members TEXT, created REAL
);
"""


# Columns added since the first runs were written: an older run's table gets them on opening.
ADDED_COLUMNS = (
    ("candidates", "record", "TEXT"),
    ("candidates", "record_key", "TEXT"),
    ("candidates", "twin", "TEXT"),
    ("runs", "summary", "TEXT"),
    ("trials", "figures", "TEXT"),
)


R = TypeVar("R")


def _reads(table: str) -> Callable[[Callable[[sqlite3.Row], R]], Callable[[sqlite3.Row], R]]:
    """A row reader whose failure on a damaged row is a StoreError naming the table."""

    def wrap(read: Callable[[sqlite3.Row], R]) -> Callable[[sqlite3.Row], R]:
        @functools.wraps(read)
        def reader(row: sqlite3.Row) -> R:
            try:
                return read(row)
            except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
                raise StoreError(
                    f"a row of the run store's {table} table is damaged ({brief(exc)}): restore "
                    "dreamteam.sqlite from a backup, or start a new run"
                ) from exc

        return reader

    return wrap


@_reads("candidates")
def candidate_from_row(row: sqlite3.Row) -> CandidateRecord:
    data = dict(row)
    data.pop("created", None)
    data["files"] = json.loads(data["files"])
    data["record"] = ChangeRecord.from_json(data["record"]) if data.get("record") else None
    data["record_key"] = data.get("record_key") or ""
    data["twin"] = data.get("twin") or ""
    data["kind"] = CandidateKind(data["kind"])
    if data["status"]:
        Status(data["status"])  # "" while pending, else one a trial can end with
    return CandidateRecord(**data)


@_reads("allocations")
def allocation_from_row(row: sqlite3.Row) -> Allocation:
    return Allocation(
        generation=row["generation"],
        policy=row["policy"],
        slots=tuple((str(s), int(n)) for s, n in json.loads(row["slots"])),
        posterior=tuple((str(s), int(w), int(n)) for s, w, n in json.loads(row["posterior"])),
        floor=tuple(json.loads(row["floor"])),
    )


def add_columns(db: sqlite3.Connection) -> None:
    """Give an older run's tables the columns added since (a no-op on a current run)."""
    for table, column, kind in ADDED_COLUMNS:
        have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            try:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            except sqlite3.OperationalError as exc:  # another connection added it first
                if "duplicate column" not in str(exc):
                    raise


@_reads("trials")
def trial_from_row(row: sqlite3.Row) -> TrialRecord:
    return TrialRecord(
        candidate=row["candidate"],
        fidelity=row["fidelity"],
        seed=row["seed"],
        status=Status(row["status"]),
        reason=row["reason"],
        val_loss=row["val_loss"],
        bpb=row["bpb"],
        self_loss=row["self_loss"],
        train_seconds=row["train_seconds"],
        eval_seconds=row["eval_seconds"],
        steps=row["steps"],
        iters=row["iters"],
        n_params=row["n_params"],
        figures=_figures(row),
    )


def _figures(row: sqlite3.Row) -> dict[str, float]:
    """A trial's secondary figures; a run from before they were kept (or one opened read-only,
    not migrated) has only the language model's bpb to show."""
    # a Row's `in` looks at its values: the column names are its keys()
    text = row["figures"] if "figures" in row.keys() else None  # noqa: SIM118
    if text is None:
        return {} if row["bpb"] is None else {"bpb": row["bpb"]}
    figures = json.loads(text)
    if not isinstance(figures, dict):
        raise TypeError(f"figures is {type(figures).__name__}, not a table")
    return {str(k): float(v) for k, v in figures.items()}


@_reads("runs")
def run_info_from_row(row: sqlite3.Row) -> RunInfo:
    config = json.loads(row["config"])
    if not isinstance(config, dict):
        raise TypeError(f"the config is {type(config).__name__}, not a table")
    return RunInfo(
        id=row["id"],
        created=row["created"],
        task=row["task"],
        config=config,
        isolation=tuple(json.loads(row["isolation"] or "[]")),
        status=row["status"] or "",
        finished=row["finished"],
    )


@_reads("generations")
def generation_from_row(row: sqlite3.Row) -> GenerationRecord:
    return GenerationRecord(
        number=row["number"],
        parent=row["parent"] or "",
        best=row["best"] or "",
        promoted=tuple(json.loads(row["promoted"] or "[]")),
        note=row["note"] or "",
        started=row["started"],
        finished=row["finished"],
    )


@_reads("steering")
def steering_from_row(row: sqlite3.Row) -> SteeringVersion:
    return SteeringVersion(
        version=row["version"],
        generation=row["generation"],
        text=row["text"],
        created=row["created"],
    )


@_reads("elite")
def members_from_row(row: sqlite3.Row) -> list[str]:
    members = json.loads(row["members"])
    if not isinstance(members, list):
        raise TypeError(f"members is {type(members).__name__}, not a list")
    return [str(m) for m in members]
