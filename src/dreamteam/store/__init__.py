"""The run store: one SQLite database (WAL) per run, plus a file tree people can read."""

from dreamteam.store.runs import RunStore, list_runs
from dreamteam.store.schema import DB_NAME

__all__ = ["DB_NAME", "RunStore", "list_runs"]
