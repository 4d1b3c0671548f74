"""benchmarks/fidelity_transfer.py without training: its candidates are distinct, pass the
static checks and are the same every time; its summary counts winners that hold."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from dreamteam.harness.checks import check_candidate
from dreamteam.tasks import load_task

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import fidelity_transfer as ft


def test_sixteen_distinct_checked_candidates_the_same_every_time() -> None:
    task = load_task("shakespeare")
    first = ft.candidates(task, 16)
    assert len(first) == 16 and len({ft._key(f) for _, f in first}) == 16
    assert all(check_candidate(f, task).ok for _, f in first)
    assert ft._key(task.baseline_files()) not in {ft._key(f) for _, f in first}
    assert [(n, ft._key(f)) for n, f in ft.candidates(task, 16)] == [
        (n, ft._key(f)) for n, f in first
    ]
    assert any("+" in n for n, _ in first) and any("+" not in n for n, _ in first)


def test_stacks_of_ones_own_come_after_the_catalogues_and_bad_names_are_refused() -> None:
    task = load_task("shakespeare")
    stacks = ft.stacks_arg("untie_head,cosine_schedule+grad_clip+untie_head")
    named = ft.candidates(task, 3, stacks)
    assert [n for n, _ in named][3:] == ["untie_head", "cosine_schedule+grad_clip+untie_head"]
    # a stack equal to a catalogue candidate is not trained twice
    again = ft.candidates(task, 3, [("cosine_schedule", "tune_lr")])
    assert [n for n, _ in again] == [n for n, _ in named][:3]
    with pytest.raises(argparse.ArgumentTypeError, match="unknown technique 'warp_drive'"):
        ft.stacks_arg("untie_head,warp_drive")


def test_the_report_counts_the_screening_winners_that_still_win(
    capsys: pytest.CaptureFixture[str],
) -> None:
    task = load_task("shakespeare")
    by_level = {
        "smoke": {"baseline": 10.3, "a": 10.1, "b": 10.2, "c": 10.25},
        "low": {"baseline": 6.3, "a": 6.2, "b": 6.0, "c": 6.1},
        "full": {"baseline": 5.1, "b": 4.8, "c": 4.9},
    }
    ft.report(task, by_level, ["smoke", "low"], "full")
    text = capsys.readouterr().out
    assert "smoke (40 steps) vs low (625 steps): rho +0.400 over 4" in text  # sum d^2 = 6
    assert "low (625 steps) vs full (10001 steps): rho +1.000 over 3" in text
    assert "winner at smoke: a; at full: b; not" in text
    assert "winner at low: b; at full: b; still the winner" in text
    assert text.splitlines()[-1] == "screening winner still the winner at full: 1 of 2 fidelities"


def test_the_cache_measures_each_figure_once_across_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, int]] = []

    class Result:
        def __init__(self, loss: float | None) -> None:
            self.val_loss, self.status = loss, "ok" if loss is not None else "crashed"

    def fake(task, files, fidelity, seeds, settings):  # type: ignore[no-untyped-def]
        calls.append((files["train.py"], seeds[0]))
        return [Result(None if files["train.py"] == "bad" else float(len(calls)))]

    monkeypatch.setattr(ft, "evaluate_files", fake)
    named = [("a", {"train.py": "a"}), ("b", {"train.py": "bad"})]
    path = tmp_path / "figures.json"
    first = ft.measure(None, named, "low", 1337, ft.Cache(path))  # type: ignore[arg-type]
    assert first == {"a": 1.0} and len(calls) == 2
    # a new run reads the file: nothing trains again, a failed figure stays failed
    again = ft.measure(None, named, "low", 1337, ft.Cache(path))  # type: ignore[arg-type]
    assert again == first and len(calls) == 2
    # another seed or fidelity is another figure
    ft.measure(None, named[:1], "low", 1338, ft.Cache(path))  # type: ignore[arg-type]
    ft.measure(None, named[:1], "medium", 1337, ft.Cache(path))  # type: ignore[arg-type]
    assert len(calls) == 4
