"""What a run's trials say about its own search (select/evidence.py): the screen -> confirm
rank correlation and each kept change's p-values, stored with the run summary."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from clirun import dreamteam
from dreamteam.agents import build_team, parse_model_map
from dreamteam.agents.factory import Credentials
from dreamteam.config import RunConfig
from dreamteam.loop.plan import BASELINE_ID
from dreamteam.records import RankCorrelation, RunSummary, StatTest
from dreamteam.report.build import render_report
from dreamteam.select.evidence import is_low
from dreamteam.store import RunStore
from dreamteam.tasks import load_task
from test_search import _Scripted, fake_search

TRAIN = load_task("shakespeare").baseline_files()["train.py"]


def _summary(
    tmp_path: Path, personas: tuple[str, ...] = ("archimedes", "aristotle", "ada-lovelace")
) -> tuple[RunSummary, RunStore]:
    """Each persona raises the learning rate by a different amount; all are confirmed."""
    answers = [
        f"```python\ntrain.py\n{TRAIN.replace('learning_rate = 3e-4', f'learning_rate = {lr}')}```\n"
        for lr in ("1e-3", "2e-3", "3e-3")
    ]
    agent = _Scripted(answers)
    team = build_team(parse_model_map("offline"), Credentials.from_env({}), offline=lambda: agent)
    store = RunStore(tmp_path / "run")
    store.create_run("run", "shakespeare", {}, [])
    config = RunConfig(
        generations=1,
        personas=personas,
        fidelity="smoke",
        promote_fraction=1.0,
        max_promoted=3,
        repair=0,
    )
    return fake_search(config, store, team).run(), store


def test_a_run_stores_its_rank_correlation_and_its_kept_changes(tmp_path: Path) -> None:
    summary, store = _summary(tmp_path)
    rc = summary.screen_confirm
    assert rc is not None and rc.pairs == 4 and rc.rho == 1.0  # the fake scores by lr alone
    assert rc.by_generation == ((0, None, 1), (1, 1.0, 3))  # the baseline alone in gen 0
    assert sum(n for _, _, n in rc.by_generation) == rc.pairs
    assert summary.best != BASELINE_ID and summary.kept
    final = [k for k in summary.kept if k.candidate == summary.best and k.fidelity == "smoke"]
    assert final and all(k.against for k in final)
    for k in summary.kept:
        assert 0.0 <= k.p <= k.p_holm <= 1.0
        assert k.test is StatTest.PAIRED and len(k.seeds) >= 2 and k.delta < 0
    store.finish_run("done", summary)
    assert store.summary() == summary  # through JSON and back, records and enums intact


def test_a_low_or_unknown_correlation_is_flagged() -> None:
    assert is_low(None)
    assert is_low(RankCorrelation(None, 2))
    assert is_low(RankCorrelation(0.3, 10))
    assert not is_low(RankCorrelation(0.8, 10))


def test_an_old_summary_without_the_new_fields_still_reads() -> None:
    old = '{"best": "g0-baseline", "persona": "baseline", "val_loss": 6.0, "baseline": 6.0,'
    old += ' "delta": 0.0, "ci95": 0.0, "fidelity": "low", "seeds": [1, 2], "candidates": 0}'
    s = RunSummary.from_json(old)
    assert s.screen_confirm is None and s.kept == ()


def test_show_and_the_report_carry_the_statistics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary, store = _summary(tmp_path)
    store.finish_run("done", summary)
    entry = {
        "candidate": summary.best,
        "fidelity": "smoke",
        "seeds": [1338, 1339],
        "parts": [
            {
                "label": "learning_rate 0.0003→0.003",
                "status": "measured",
                "contribution": {"delta": 0.5, "ci95": 0.02},
            },
            {"label": "weight_decay 0.1→0.0", "status": "not separable", "reason": "x < y"},
        ],
        "recipe": {
            "dropped": ["weight_decay 0.1→0.0"],
            "vs_winner": {"delta": 0.001, "ci95": 0.02},
        },
        "carries": "learning_rate 0.0003→0.003",
    }
    (store.run_dir / "ablation.json").write_text(json.dumps({summary.best: entry, "junk": 3}))
    store.close()
    done = dreamteam(capsys, "show", str(tmp_path / "run"))
    assert done.code == 0
    assert "screen->confirm Spearman rho +1.00 over 4 candidates" in done.out
    assert f"kept: {summary.best} vs g0-baseline at smoke" in done.out
    html = render_report(RunStore.open_existing(tmp_path / "run"))
    assert 'id="screen-confirm"' in html and "+1.00" in html
    assert 'id="kept-changes"' in html and "one-sided paired t" in html
    assert "carries the gain" in html and "x &lt; y" in html  # escaped
    assert "leaves out <code>weight_decay 0.1→0.0</code>" in html
    assert "do not predict confirmation ranks here" not in html  # rho 1.0 on 4 pairs


def test_the_report_flags_a_correlation_on_too_few_pairs(tmp_path: Path) -> None:
    summary, store = _summary(tmp_path, ("archimedes",))
    assert summary.screen_confirm is not None and summary.screen_confirm.pairs == 2
    store.finish_run("done", summary)
    html = render_report(store)
    assert "too few pairs to say" in html
    assert "Screening ranks do not predict confirmation ranks here" in html


def test_show_and_the_report_carry_a_final_re_ranking(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary, store = _summary(tmp_path)
    ranking = (("g1-aristotle", 5.1), ("g1-archimedes", 5.25))
    store.finish_run("done", replace(summary, reranked=ranking, fidelity="medium"))
    store.close()
    line = "re-ranked at medium on seed 1337: g1-aristotle 5.1000, g1-archimedes 5.2500; "
    line += "the claim is g1-aristotle"
    done = dreamteam(capsys, "show", str(tmp_path / "run"))
    assert done.code == 0 and line in " ".join(done.out.split())  # wrapped at 80 columns
    html = render_report(RunStore.open_existing(tmp_path / "run"))
    assert 'id="rerank"' in html and line in html


def test_a_summary_without_a_re_ranking_shows_none(tmp_path: Path) -> None:
    summary, store = _summary(tmp_path)
    assert summary.reranked == ()
    store.finish_run("done", summary)
    assert 'id="rerank"' not in render_report(store)
