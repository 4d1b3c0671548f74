"""The run store: transactional records, the readable tree, reopening."""

from __future__ import annotations

from pathlib import Path

import pytest

from dreamteam.errors import StoreError
from dreamteam.records import CandidateRecord, Status, TrialResult
from dreamteam.store import RunStore, list_runs


def _candidate(cid: str = "g1-archimedes") -> CandidateRecord:
    return CandidateRecord(
        id=cid,
        generation=1,
        persona="archimedes",
        mode="savant",
        parent="g0-baseline",
        kind="proposal",
        code_hash="abc",
        files={"train.py": "x = 1\n", "model.py": "y = 2\n"},
    )


def test_candidates_and_trials_round_trip(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    store.create_run("run", "shakespeare", {"fidelity": "low"}, ["clean-env"])
    store.add_candidate(_candidate())
    result = TrialResult(Status.OK, "", 1337, "smoke", 40, val_loss=5.0, bpb=2.0, log="iter 0")
    store.add_trial("g1-archimedes", result)
    store.set_outcome("g1-archimedes", "ok", "")
    store.close()

    again = RunStore.open_existing(tmp_path / "run")
    c = again.candidate("g1-archimedes")
    assert c is not None and c.files["train.py"] == "x = 1\n" and c.status == "ok"
    t = again.trial("g1-archimedes", "smoke", 1337)
    assert t is not None and t.val_loss == 5.0 and t.status is Status.OK
    assert again.trial("g1-archimedes", "smoke", 1338) is None
    assert again.by_hash("abc") is not None
    assert (tmp_path / "run" / "gen_1" / "archimedes" / "train.py").read_text() == "x = 1\n"
    assert list_runs(tmp_path) == [tmp_path / "run"]
    assert again.run_info().config == {"fidelity": "low"}


def test_results_txt_and_second_proposals_get_their_own_folder(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.add_candidate(_candidate("g1-archimedes-2"))
    store.write_results(1, ["archimedes\t5.0\t1.0s\tok"])
    assert (tmp_path / "gen_1" / "archimedes-2" / "model.py").is_file()
    assert (tmp_path / "gen_1" / "results.txt").read_text().startswith("archimedes\t5.0")


def test_steering_versions_are_kept_once_each(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    assert store.record_steering(1, "focus on the optimiser")
    assert not store.record_steering(2, "focus on the optimiser")
    assert store.record_steering(3, "leave attention alone")
    assert [s.generation for s in store.steering()] == [1, 3]


def test_opening_a_folder_that_is_not_a_run_says_so(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a dreamteam run"):
        RunStore.open_existing(tmp_path)


def test_threads_write_and_read_one_store_at_once(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = RunStore(tmp_path / "run")
    store.create_run("run", "shakespeare", {}, [])
    store.add_candidate(_candidate())

    def write(seed: int) -> int:
        result = TrialResult(Status.OK, "", seed, "smoke", 40, val_loss=float(seed))
        store.add_trial("g1-archimedes", result)
        store.set_outcome("g1-archimedes", "ok", f"seed {seed}")
        return len(store.trials("g1-archimedes"))

    with ThreadPoolExecutor(8) as pool:
        seen = list(pool.map(write, range(64)))
    assert sorted(t.seed for t in store.trials("g1-archimedes")) == list(range(64))
    assert all(1 <= n <= 64 for n in seen)
    store.close()  # closes every thread's connection
    again = RunStore.open_existing(tmp_path / "run")
    assert len(again.trials()) == 64


def test_a_run_written_before_records_and_allocations_still_opens(tmp_path: Path) -> None:
    import sqlite3

    run = tmp_path / "old"
    run.mkdir()
    db = sqlite3.connect(run / "dreamteam.sqlite")
    db.execute(  # the candidates table as the first runs wrote it
        "CREATE TABLE candidates (id TEXT PRIMARY KEY, generation INTEGER, persona TEXT,"
        " mode TEXT, parent TEXT, kind TEXT, code_hash TEXT, files TEXT, diff TEXT,"
        " response TEXT, model TEXT, tokens_in INTEGER, tokens_out INTEGER, cost REAL,"
        " latency REAL, status TEXT, reason TEXT, summary TEXT, created REAL)"
    )
    db.execute(
        "INSERT INTO candidates (id, generation, persona, mode, parent, kind, code_hash, files,"
        " status) VALUES ('g1-a', 1, 'a', 'savant', 'g0-baseline', 'proposal', 'h', '{}', 'ok')"
    )
    db.commit()
    db.close()
    store = RunStore.open_existing(run)
    old = store.candidate("g1-a")
    assert old is not None and old.record is None and old.record_key == "" and old.twin == ""
    assert store.allocations() == []
    store.add_candidate(_candidate("g1-b"))  # the new columns are there now
    assert store.candidate("g1-b") is not None


def test_a_duplicate_takes_its_twins_status_when_the_twin_is_measured(tmp_path: Path) -> None:
    from dataclasses import replace

    store = RunStore(tmp_path / "run")
    store.add_candidate(_candidate("g1-a"))
    store.add_candidate(replace(_candidate("g1-b"), kind="duplicate", twin="g1-a"))
    store.set_outcome("g1-a", "crashed", "boom")
    twin = store.candidate("g1-b")
    assert twin is not None and twin.status == "crashed" and twin.reason == ""
