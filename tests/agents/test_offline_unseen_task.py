"""The offline agent on a task it has never seen, end to end: a default three-generation run
on tests/tasks/rings (an nn.Sequential classifier trained by plain SGD at an inline lr=0.05)
must beat the baseline by at least half a nat, with edits found by what the code does."""

from __future__ import annotations

from pathlib import Path

import pytest

from dreamteam.config import RunConfig
from dreamteam.loop.build import run_search
from dreamteam.records import CandidateKind
from dreamteam.store import RunStore

RINGS = Path(__file__).resolve().parents[1] / "tasks" / "rings"


@pytest.mark.slow
def test_three_offline_generations_improve_an_unseen_task(dt_env: Path, tmp_path: Path) -> None:
    config = RunConfig(task=str(RINGS), generations=3)  # the task's own smoke and low levels
    run_dir = tmp_path / "run"
    summary = run_search(config, run_dir)
    print(f"rings: baseline {summary.baseline:.4f}, best {summary.best} {summary.val_loss:.4f}")
    assert summary.best != "g0-baseline"
    assert summary.delta <= -0.5 and summary.better
    store = RunStore.open_existing(run_dir)
    try:
        proposals = [c for c in store.candidates() if c.kind != CandidateKind.BASELINE]
        best = store.candidate(summary.best)
    finally:
        store.close()
    assert proposals and all(c.status == "ok" for c in proposals)  # every edit checked clean
    assert best is not None and best.record is not None and best.record.kind is not None
