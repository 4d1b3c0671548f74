"""What goes wrong under a run store, said in one line the user can act on.

SQLite and the file system report faults as exceptions of their own; the store turns each
into a StoreError (or DiskFullError) that names the run and what to do, so a damaged file,
a full disk or a read-only folder ends a command with one line, never a traceback.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

from dreamteam.errors import DiskFullError, StoreError
from dreamteam.records import DISK_FULL

_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
# what SQLite raises on a damaged file (text it cannot decode, even in its own schema, is a
# UnicodeDecodeError from Python's side)
FAULTS = (sqlite3.Error, UnicodeDecodeError)


def brief(detail: object, limit: int = 160) -> str:
    """An error's detail on one short line (SQLite quotes the text it could not decode)."""
    text = " ".join(str(detail).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def disk_full(run_dir: Path) -> DiskFullError:
    """The error that stops a run whose disk is full, with how to go on."""
    return DiskFullError(
        f"{DISK_FULL} under {run_dir}: free some space, then "
        f"`dreamteam run --resume {run_dir}` (nothing finished is lost)"
    )


def read_only(run_dir: Path, detail: object) -> StoreError:
    return StoreError(
        f"cannot write the run in {run_dir} ({brief(detail)}): it is read-only; make it writable, "
        "or read it with `dreamteam show` / `dreamteam report -o FILE`"
    )


def damaged(run_dir: Path, detail: object) -> StoreError:
    return StoreError(
        f"the run store in {run_dir} is damaged ({brief(detail)}): restore dreamteam.sqlite from a "
        "backup, or start a new run"
    )


def sqlite_fault(run_dir: Path, exc: sqlite3.Error | UnicodeDecodeError) -> StoreError:
    """A SQLite error as the one line that says what to do about it."""
    if isinstance(exc, UnicodeDecodeError):
        return damaged(run_dir, exc)
    name = getattr(exc, "sqlite_errorname", "")
    text = str(exc)
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return disk_full(run_dir)
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "no such table" in text:
        return damaged(run_dir, text)
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")) or "readonly" in text:
        return read_only(run_dir, text)
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        return damaged(run_dir, text)
    return StoreError(f"the run store in {run_dir} failed: {brief(text)}")


def os_fault(run_dir: Path, exc: OSError) -> StoreError:
    """A failed write into the run's folder (disk full, read-only, ...) as one line."""
    if exc.errno == errno.ENOSPC:
        return disk_full(run_dir)
    if exc.errno in _READ_ONLY:
        return read_only(run_dir, exc.strerror or exc)
    return StoreError(f"cannot write the run in {run_dir}: {brief(exc)}")


def write_text(run_dir: Path, path: Path, text: str) -> None:
    """Write one file of the readable run tree; a failure is a StoreError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise os_fault(run_dir, exc) from exc
