"""One run's SQLite database: a connection per thread, transactions, and faults as one line.

Every query and transaction goes through `Database`, so any SQLite fault (a damaged page, a
full disk, a read-only folder, a dropped table) reaches the caller as a StoreError.

The schema carries a version (`PRAGMA user_version`). A database written by this release
must hold every table: a missing one means the file was damaged, and creating it empty
would silently forget what the run had done. A database from before the version was kept
gets its missing tables and columns added instead, so every release reads earlier runs.

A run in a folder this process cannot write (a read-only mount, an archive) is opened
read-only and immutable: every reading command works on it, and any write is a StoreError
saying the run is read-only.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from dreamteam.errors import StoreError
from dreamteam.store.faults import FAULTS, damaged, sqlite_fault
from dreamteam.store.schema import DB_NAME, SCHEMA, SCHEMA_VERSION, TABLES, add_columns


class Database:
    """The run store's database in `run_dir`, opened lazily once per thread."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        # One connection per thread: a sqlite3 connection is not safe to share, while several
        # connections to one WAL database are (readers go on while BEGIN IMMEDIATE queues writers).
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()

    def conn(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
        return db

    def _connect(self) -> sqlite3.Connection:
        path = self.run_dir / DB_NAME
        frozen = path.is_file() and not os.access(self.run_dir, os.W_OK)
        target = f"{path.absolute().as_uri()}?immutable=1" if frozen else str(path)
        try:
            # check_same_thread off only so that close() may close every thread's connection
            db = sqlite3.connect(
                target, uri=frozen, isolation_level=None, timeout=30, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise sqlite_fault(self.run_dir, exc) from exc
        try:
            if not frozen:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
            self._check_schema(db, frozen)
        except (*FAULTS, StoreError) as exc:
            db.close()
            if isinstance(exc, StoreError):
                raise
            raise sqlite_fault(self.run_dir, exc) from exc
        db.row_factory = sqlite3.Row
        with self._opened_lock:
            self._opened.append(db)
        return db

    def _check_schema(self, db: sqlite3.Connection, frozen: bool) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        have = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if frozen and version < SCHEMA_VERSION:
            return  # an older run that cannot be migrated here: read what it has
        if version >= 1:  # every table was there from the first version kept
            missing = sorted(set(TABLES) - have)
            if missing:
                raise damaged(self.run_dir, f"its {', '.join(missing)} table is missing")
        if version >= SCHEMA_VERSION:
            return
        db.executescript(SCHEMA)
        add_columns(db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the connections of every thread that used this database."""
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for db in opened:
            db.close()
        self._local = threading.local()

    def rows(self, sql: str, args: Sequence[object] = ()) -> list[sqlite3.Row]:
        """Every row a query gives (read to the end here: a damaged page fails here too)."""
        try:
            return self.conn().execute(sql, args).fetchall()
        except FAULTS as exc:
            raise sqlite_fault(self.run_dir, exc) from exc

    def one(self, sql: str, args: Sequence[object] = ()) -> sqlite3.Row | None:
        """The first row a query gives, or None."""
        found = self.rows(sql, args)
        return found[0] if found else None

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it is stored, or none."""
        db = self.conn()
        try:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:
                with suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            if isinstance(exc, FAULTS):
                raise sqlite_fault(self.run_dir, exc) from exc
            raise
