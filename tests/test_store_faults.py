"""A damaged, read-only or full run store ends a command with one line and exit 1, never a
traceback, and a damaged store is never silently patched (a dropped table is not recreated
empty under a run that had it)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clirun import dreamteam
from conftest import tmpfs
from dreamteam.errors import StoreError
from dreamteam.store import RunStore
from dreamteam.store.db import Database
from test_search import _search


def _checkpoint(run: Path) -> Path:
    """Fold the WAL into the database file, so damage to the file is damage to the run."""
    db = run / "dreamteam.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return db


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run that went through one generation (fake trainer), still marked running."""
    root = tmp_path_factory.mktemp("pristine")
    search, _, store = _search(root, generations=1, team_size=2)
    search.run()
    store.close()
    _checkpoint(root / "run")
    return root / "run"


@pytest.fixture
def run(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(pristine, copy)
    return copy


def _sql(statement: str) -> Callable[[Path], None]:
    def damage(db: Path) -> None:
        with sqlite3.connect(db) as conn:
            conn.execute(statement)

    return damage


def _garble_pages(db: Path) -> None:
    """Random bytes over every page but the first (the schema stays readable)."""
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page:] = os.urandom(len(data) - page)
    db.write_bytes(bytes(data))


def _garble_header(db: Path) -> None:
    data = bytearray(db.read_bytes())
    data[:100] = b"\xff" * 100
    db.write_bytes(bytes(data))


DAMAGE = {
    "garbled header": _garble_header,
    "garbled pages": _garble_pages,
    "bad JSON in a candidate": _sql("UPDATE candidates SET files = '{not json'"),
    "bad JSON in the elite": _sql("UPDATE elite SET members = '[1,'"),
    "an unknown trial status": _sql("UPDATE trials SET status = 'exploded'"),
    "an unknown candidate status": _sql("UPDATE candidates SET status = 'weird'"),
    "an unknown kind": _sql("UPDATE candidates SET kind = 'mystery'"),
    "a dropped table": _sql("DROP TABLE trials"),
    "bad JSON in the run's config": _sql("UPDATE runs SET config = 'nope'"),
}

READ_ON_RESUME_ONLY = {"bad JSON in the elite"}  # show and report read the stored summary


def _one_line(err: str) -> bool:
    return err.strip().count("\n") == 0 and "Traceback" not in err


@pytest.mark.parametrize("what", list(DAMAGE))
def test_a_damaged_store_is_one_line_and_exit_1(
    what: str, run: Path, dt_env: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    DAMAGE[what](run / "dreamteam.sqlite")
    commands = [["show", str(run)], ["report", str(run), "-o", str(tmp_path / "r.html")]]
    if what in READ_ON_RESUME_ONLY:
        commands = [["run", "--resume", str(run)]]
    for args in commands:
        done = dreamteam(capsys, *args)
        assert done.code == 1, (what, args, done.out[-500:])
        assert done.err.startswith("StoreError: ") and _one_line(done.err), done.err
    listed = dreamteam(capsys, "runs", "list")  # the list goes on past a damaged run
    assert listed.code == 0, listed.err


def test_resuming_a_damaged_store_is_one_line_and_exit_1(
    run: Path, dt_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _garble_pages(run / "dreamteam.sqlite")
    done = dreamteam(capsys, "run", "--resume", str(run))
    assert done.code == 1 and done.err.startswith("StoreError: ") and _one_line(done.err)
    assert "damaged" in done.err


def test_a_dropped_table_is_detected_not_recreated_empty(run: Path) -> None:
    _sql("DROP TABLE generations")(run / "dreamteam.sqlite")
    with pytest.raises(StoreError, match="generations table is missing"):
        RunStore.open_existing(run)
    with sqlite3.connect(run / "dreamteam.sqlite") as conn:  # and nothing was recreated
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "generations" not in names


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=64)), max_size=8))
def test_any_damage_reads_as_the_run_or_a_store_error(pristine: Path, tmp_path: Path, hits) -> None:
    run = tmp_path / "hyp"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(pristine, run)
    db = run / "dreamteam.sqlite"
    data = bytearray(db.read_bytes())
    for where, junk in hits:
        at = int(where * (len(data) - len(junk)))
        data[at : at + len(junk)] = junk
    db.write_bytes(bytes(data))
    try:
        store = RunStore.open_existing(run)
        try:
            store.run_info()
            store.summary()
            for c in store.candidates():
                store.trials(c.id)
            store.trials()
            for g in store.generations():
                store.elite(g.number)
            store.allocations()
            store.steering()
        finally:
            store.close()
    except StoreError as exc:
        assert "\n" not in str(exc)


# -- read-only and full disks ----------------------------------------------------------------
@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs of our own (root only; skipped where mounting is not allowed)."""
    with tmpfs(tmp_path / "mnt", "64m") as point:
        yield point


def test_a_read_only_run_is_one_line_and_exit_1(
    pristine: Path, mounted: Path, dt_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = mounted / "run"
    shutil.copytree(pristine, run)
    subprocess.run(["mount", "-o", "remount,ro", str(mounted)], check=True)
    done = dreamteam(capsys, "run", "--resume", str(run))
    assert done.code == 1 and done.err.startswith("StoreError: ") and _one_line(done.err)
    assert "read-only" in done.err
    shown = dreamteam(capsys, "show", str(run))  # reading needs no write
    assert shown.code == 0 and "g0-baseline" in shown.out, shown.err
    elsewhere = dreamteam(capsys, "report", str(run), "-o", str(dt_env / "r.html"))
    assert elsewhere.code == 0, elsewhere.err
    for args in (["report", str(run)], ["steer", str(run), "go"]):  # these write into it
        done = dreamteam(capsys, *args)
        assert done.code == 1 and "read-only" in done.err and _one_line(done.err), done.err


def test_a_full_disk_under_the_store_is_one_line(run: Path, mounted: Path) -> None:
    store_dir = mounted / "run"
    shutil.copytree(run, store_dir)
    store = RunStore.open_existing(store_dir)
    with open(mounted / "ballast", "wb") as ballast:  # fill the tmpfs to the last byte
        block = b"\0" * (1 << 20)
        try:
            while True:
                ballast.write(block)
                ballast.flush()
        except OSError:
            pass
    with pytest.raises(StoreError, match="no space left on device") as raised:
        for i in range(10_000):  # until the WAL needs a page the disk does not have
            store.record_steering(1, f"steer {i} " + "x" * 4000)
    assert "--resume" in str(raised.value)
    store.close()


def test_a_schema_version_is_kept_so_a_current_run_is_checked(tmp_path: Path) -> None:
    RunStore(tmp_path / "run").close()
    with sqlite3.connect(tmp_path / "run" / "dreamteam.sqlite") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] >= 1
    db = Database(tmp_path / "run")
    assert db.one("SELECT count(*) FROM runs")[0] == 0  # type: ignore[index]
    db.close()
