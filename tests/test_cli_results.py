"""Reading and writing a run from the command line as a newcomer does: export, steer, diff,
show at 80 columns, candidate id prefixes. A real SQLite store with made-up candidates."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from dreamteam.cli import app
from dreamteam.cli.candidates import steering_text
from dreamteam.config import RunConfig
from dreamteam.records import (
    CandidateKind,
    CandidateRecord,
    ChangeRecord,
    Edit,
    Status,
    TrialResult,
)
from dreamteam.store import RunStore

runner = CliRunner()
_MAIN = "from dreamteam.cli import main; main()"
BASE = {"train.py": "lr = 1e-3\n", "model.py": "class GPT: pass\n"}
IDS = ("g0-baseline", "g1-aristotle", "g1-archimedes", "g1-ada-lovelace-the-very-long")


def _trial(loss: float, fidelity: str, seed: int) -> TrialResult:
    return TrialResult(Status.OK, "", seed, fidelity, 10, val_loss=loss)


@pytest.fixture
def run_dir(dt_env: Path) -> Path:
    """A run r1: a baseline and three proposals, screened at smoke, some confirmed at low."""
    store = RunStore(dt_env / "runs" / "r1")
    store.create_run("r1", "shakespeare", RunConfig().__dict__, [])
    kind = CandidateKind.PROPOSAL
    for i, cid in enumerate(IDS):
        persona = cid.split("-", 1)[1]
        files = BASE if i == 0 else {**BASE, "train.py": f"lr = {i}e-4\n"}
        parent = None if i == 0 else IDS[0]
        change = ChangeRecord(edits=(Edit("model.py", "GPT", "~", "x"),)) if i == 1 else None
        record = CandidateRecord(cid, min(i, 1), persona, "savant", parent, kind, str(i), files)
        store.add_candidate(replace(record, record=change))
        store.set_outcome(cid, "ok", "")
    # screening (smoke) ranks archimedes first; the confirmed figures (low) say otherwise
    screen = {IDS[0]: 5.0, IDS[1]: 4.9, IDS[2]: 4.0, IDS[3]: 4.5}
    for cid, loss in screen.items():
        store.add_trial(cid, _trial(loss, "smoke", 1))
    for cid, losses in {IDS[0]: [5.0, 5.2], IDS[1]: [4.6, 4.8], IDS[3]: [4.7]}.items():
        for seed, loss in enumerate(losses, start=1):
            store.add_trial(cid, _trial(loss, "low", seed))
    store.close()
    return store.run_dir


def test_export_refuses_to_overwrite_without_force(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert runner.invoke(app, ["export", "r1", "g1-aristotle", str(out)]).exit_code == 0
    (out / "train.py").write_text("my own edits\n", encoding="utf-8")
    refused = runner.invoke(app, ["export", "r1", "g1-aristotle", str(out)])
    assert refused.exit_code == 1
    assert isinstance(refused.exception, Exception) and "--force" in str(refused.exception)
    assert str(out / "train.py") in str(refused.exception)
    assert (out / "train.py").read_text(encoding="utf-8") == "my own edits\n"
    forced = runner.invoke(app, ["export", "r1", "g1-aristotle", str(out), "--force"])
    assert forced.exit_code == 0, forced.output
    assert (out / "train.py").read_text(encoding="utf-8") == "lr = 1e-4\n"


def test_export_refusal_is_one_line_in_a_real_process(run_dir: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "provenance.json").write_text("{}", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", _MAIN, "export", "r1", "g1-arist", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "--force" in done.stderr
    assert "provenance.json" in done.stderr and "Traceback" not in done.stderr


def test_steer_appends_versions_and_replace_starts_over(run_dir: Path) -> None:
    first = runner.invoke(app, ["steer", "r1", "Try schedules."])
    assert first.exit_code == 0 and "next generation" in first.output
    assert runner.invoke(app, ["steer", "r1", "Leave attention alone."]).exit_code == 0
    text = (run_dir / "steering.md").read_text(encoding="utf-8")
    assert re.findall(r"^## Steering (\d+)", text, re.MULTILINE) == ["1", "2"]
    assert text.index("Try schedules.") < text.index("Leave attention alone.")
    assert runner.invoke(app, ["steer", "r1", "Only the optimiser.", "--replace"]).exit_code == 0
    text = (run_dir / "steering.md").read_text(encoding="utf-8")
    assert "Try schedules." not in text and "Only the optimiser." in text
    assert re.findall(r"^## Steering (\d+)", text, re.MULTILINE) == ["1"]


def test_steer_on_a_finished_run_says_it_has_ended(run_dir: Path) -> None:
    store = RunStore.open_existing(run_dir)
    store.finish_run("done")
    store.close()
    result = runner.invoke(app, ["steer", "r1", "Too late?"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "has ended" in result.output and "next generation" not in result.output


@given(st.lists(st.text(min_size=1).filter(lambda t: t.strip() and "#" not in t), max_size=5))
def test_every_steering_version_is_kept_in_order(texts: list[str]) -> None:
    doc = ""
    for when, text in enumerate(texts):
        doc = steering_text(doc, text, float(when))
    numbers = [int(n) for n in re.findall(r"^## Steering (\d+) \(", doc, re.MULTILINE)]
    assert numbers == list(range(1, len(texts) + 1))
    at = 0
    for text in texts:  # each version's text whole, after the one before
        at = doc.index(text.strip(), at) + len(text.strip())


def test_a_hand_written_steering_file_counts_as_version_one() -> None:
    assert steering_text("focus on the optimiser\n", "and the schedule", 0.0).count("## Steering 2")


def test_diff_by_prefix_names_both_candidates(run_dir: Path) -> None:
    result = runner.invoke(app, ["diff", "g1-arist", "--run", "r1"])
    assert result.exit_code == 0, result.output
    assert "--- g0-baseline/train.py" in result.output
    assert "+++ g1-aristotle/train.py" in result.output
    against = runner.invoke(app, ["diff", "g1-arc", "g1-ari", "--run", "r1"])
    assert "--- g1-aristotle/train.py" in against.output
    assert "+++ g1-archimedes/train.py" in against.output


def test_an_ambiguous_prefix_lists_the_matches(run_dir: Path, tmp_path: Path) -> None:
    for args in (["diff", "g1-ar", "--run", "r1"], ["export", "r1", "g1-ar", str(tmp_path)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1
        message = str(result.exception)
        assert "\n" not in message and "g1-aristotle" in message and "g1-archimedes" in message
    missing = runner.invoke(app, ["sample", "zz", "--run", "r1"])
    assert missing.exit_code == 1 and "no candidate 'zz'" in str(missing.exception)


def test_a_file_named_as_the_export_directory_is_an_error(run_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("", encoding="utf-8")
    result = runner.invoke(app, ["export", "r1", "g0", str(target)])
    assert result.exit_code == 1 and "is a file" in str(result.exception)


def test_show_at_80_columns_keeps_ids_whole_and_ranks_confirmed_first(run_dir: Path) -> None:
    store = RunStore.open_existing(run_dir)
    long_reason = "a reason that goes on " * 8
    store.set_outcome(IDS[2], "ok", long_reason)
    store.close()
    result = runner.invoke(app, ["show", "r1"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
    order = [min(_where(result.output, cid)) for cid in IDS]
    # confirmed by mean at low: aristotle 4.7, ada-lovelace 4.7 (n=1), baseline 5.1;
    # archimedes has only a screening figure, so it comes after every confirmed one
    assert order[1] < order[0] and order[3] < order[0] and order[0] < order[2]
    assert "(n=1)" in result.output
    aristotle = result.output.splitlines()[order[1]]
    assert "struct" in aristotle.split()  # the change's kind, abbreviated at 80 columns
    wide = runner.invoke(app, ["show", "r1"], env={"COLUMNS": "160"})
    assert "structural" in wide.output and "aristotle" in wide.output.split()


def _where(output: str, cid: str) -> list[int]:
    """Lines of the table where the candidate's id appears whole."""
    hits = [i for i, line in enumerate(output.splitlines()) if cid in line]
    assert hits, f"{cid} is not whole in:\n{output}"
    return hits


def test_personas_list_at_80_columns_shows_every_slug_whole() -> None:
    from dreamteam.personas import load_library

    result = runner.invoke(app, ["personas", "list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    first_words = {line.split()[0] for line in lines if line.strip()}
    slugs = {p.slug for p in load_library(()).select()}
    assert slugs <= first_words, sorted(slugs - first_words)
