"""Secondary figures (a classifier's accuracy, the language model's bpb): stored per trial,
shown by `show`, in the report's candidates table and in the prompt history; an older run
store without them still opens, shows and reports.

The classifier is tests/tasks/rings (a user task written the way users write theirs), run
for real at its smoke level by a small offline search.
"""

from __future__ import annotations

import re
import sqlite3
import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dreamteam.cli import app
from dreamteam.config import RunConfig
from dreamteam.harness.scoring.common import Score
from dreamteam.harness.trial import _secondary
from dreamteam.loop.build import run_search
from dreamteam.personas import load_library
from dreamteam.propose.novelty import history_items
from dreamteam.propose.prompt import build_prompt
from dreamteam.records import (
    CandidateKind,
    CandidateRecord,
    Status,
    TrialRecord,
    TrialResult,
    mean_figures,
)
from dreamteam.report import write_report
from dreamteam.store import RunStore
from dreamteam.tasks import load_task, load_task_dir

RINGS = Path(__file__).resolve().parent / "tasks" / "rings"
runner = CliRunner()


@pytest.fixture(scope="module")
def rings_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A finished one-generation offline run on the rings classifier, at its smoke level."""
    home = tmp_path_factory.mktemp("home")
    config = RunConfig(
        task=str(RINGS),
        generations=1,
        team_size=2,
        screen_fidelity="smoke",
        fidelity="smoke",
        seeds=2,
        repair=0,
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DREAMTEAM_HOME", str(home))
        run_dir = home / "runs" / "rings"
        run_search(config, run_dir)
        yield run_dir


def _trials(run_dir: Path) -> list[TrialRecord]:
    store = RunStore.open_existing(run_dir)
    try:
        return store.trials()
    finally:
        store.close()


def test_a_classifiers_accuracy_is_stored_with_every_trial(rings_run: Path) -> None:
    trials = [t for t in _trials(rings_run) if t.status is Status.OK]
    assert len(trials) >= 4  # the baseline's screening and confirmation, the proposals'
    for t in trials:
        assert set(t.figures) == {"accuracy"}  # the objective (loss) is val_loss itself
        assert 0.0 <= t.figures["accuracy"] <= 1.0
        assert t.bpb is None


def test_show_has_a_column_for_accuracy_at_80_columns(rings_run: Path) -> None:
    result = runner.invoke(app, ["show", str(rings_run)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    header = next(line for line in lines if line.split()[:1] == ["candidate"])
    assert "accuracy" in header.split() and "bpb" not in result.output
    column = header.split().index("accuracy")
    base = [t for t in _trials(rings_run) if t.candidate == "g0-baseline"]
    row = next(line for line in lines if line.startswith(" g0-baseline"))
    # `mean@smoke` is two words ("1.3624 (n=3)"): accuracy is one word further along
    assert float(row.split()[column + 1]) == pytest.approx(
        statistics.fmean(t.figures["accuracy"] for t in base), abs=5e-5
    )


def test_show_puts_the_figures_under_a_table_with_no_room_for_them(rings_run: Path) -> None:
    result = runner.invoke(app, ["show", str(rings_run)], env={"COLUMNS": "60"})
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if "candidate" in line)
    assert "accuracy" not in header
    assert "figures (accuracy)" in result.output
    assert re.search(r"^g0-baseline: accuracy 0\.\d{4}$", result.output, re.M)


def test_the_report_has_a_column_per_figure_and_no_bpb(rings_run: Path, tmp_path: Path) -> None:
    store = RunStore.open_existing(rings_run)
    try:
        html = write_report(store, tmp_path / "report.html").read_text(encoding="utf-8")
    finally:
        store.close()
    board = html[html.index('id="leaderboard"') :]
    board = board[: board.index("</table>")]
    assert re.search(r'<th class="num figure"[^>]*>accuracy</th>', board)
    base = [t for t in _trials(rings_run) if t.candidate == "g0-baseline"]
    confirmed = [t for t in base if t.seed != 1337]  # the screening trial is not confirmation
    assert f"{mean_figures(confirmed)['accuracy']:.4f}" in board
    assert "bpb" not in html.lower()


def test_the_prompt_history_carries_the_accuracy(rings_run: Path) -> None:
    store = RunStore.open_existing(rings_run)
    try:
        items = history_items(store, "smoke", 1337)
        task = load_task_dir(RINGS)
        persona = load_library().get("archimedes")
        base = store.candidate("g0-baseline")
        assert base is not None
        prompt = build_prompt(persona, task, base.files, items)
    finally:
        store.close()
    assert items and all(set(i.figures) == {"accuracy"} for i in items if i.val_loss)
    history = prompt[prompt.index("## What the team has tried so far") :]
    tried = [line for line in history.splitlines() if line.startswith("- g1-")]
    assert tried and all(re.search(r"val_loss \d\.\d{4}, accuracy \d\.\d{4}", x) for x in tried)
    assert "bpb" not in history


def test_the_language_model_keeps_bpb_and_a_classifier_never_has_one() -> None:
    score = Score(3.0, 1.25, 100, 10, 1.0, {}, metrics={"loss": 3.0, "accuracy": 0.5})
    assert _secondary(load_task("shakespeare"), score) == {"bpb": 1.25}
    rings = load_task_dir(RINGS)
    assert _secondary(rings, score) == {"accuracy": 0.5}


# -- a run store from before the figures were kept --------------------------------------------
def _old_run(run_dir: Path) -> None:
    """A run written by the release before `trials.figures`: schema version 1, no column."""
    store = RunStore(run_dir)
    store.create_run(run_dir.name, "shakespeare", RunConfig().__dict__, [])
    files = load_task("shakespeare").baseline_files()
    kind = CandidateKind.BASELINE
    store.add_candidate(CandidateRecord("g0-baseline", 0, "baseline", "", None, kind, "h", files))
    for fidelity, seeds in (("smoke", (1337,)), ("low", (1338, 1339))):
        for seed in seeds:
            result = TrialResult(
                Status.OK, "", seed, fidelity, 40, val_loss=5.0 + seed % 2, bpb=2.5
            )
            store.add_trial("g0-baseline", result)
    store.set_outcome("g0-baseline", "ok", "")
    store.close()
    db = sqlite3.connect(run_dir / "dreamteam.sqlite")
    db.execute("ALTER TABLE trials DROP COLUMN figures")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()


def test_a_run_from_before_the_figures_opens_shows_and_reports(
    tmp_path: Path, dt_env: Path
) -> None:
    run_dir = tmp_path / "old"
    _old_run(run_dir)
    shown = runner.invoke(app, ["show", str(run_dir)], env={"COLUMNS": "80"})
    assert shown.exit_code == 0, shown.output
    assert "bpb" in shown.output and "2.5000" in shown.output  # from the old bpb column
    out = tmp_path / "report.html"
    reported = runner.invoke(app, ["report", str(run_dir), "-o", str(out)])
    assert reported.exit_code == 0, reported.output
    assert re.search(r'<th class="num figure"[^>]*>bpb</th>', out.read_text(encoding="utf-8"))
    db = sqlite3.connect(run_dir / "dreamteam.sqlite")
    columns = {r[1] for r in db.execute("PRAGMA table_info(trials)")}
    version = db.execute("PRAGMA user_version").fetchone()[0]
    db.close()
    assert "figures" in columns and version == 2  # migrated on opening
    store = RunStore.open_existing(run_dir)
    try:
        store.add_trial("g0-baseline", TrialResult(Status.OK, "", 7, "low", 40, 5.0, 2.4))
        assert [t.figures for t in store.trials() if t.seed == 7] == [{}]  # a new row's own
        assert all(t.figures == {"bpb": 2.5} for t in store.trials() if t.seed != 7)
    finally:
        store.close()
