"""The HTML report, rendered from real small runs (real offline agent, store and personas; the
trainer is test_search's fake, extended here with training curves, timings and failures).
"""

from __future__ import annotations

import dataclasses
import json
import re
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dreamteam.agents import build_team, parse_model_map
from dreamteam.agents.factory import Credentials
from dreamteam.agents.offline import OfflineAgent
from dreamteam.cli import app
from dreamteam.config import RunConfig
from dreamteam.execute.jobs import Job
from dreamteam.loop.build import build_search
from dreamteam.loop.search import BASELINE_ID
from dreamteam.personas import load_library
from dreamteam.records import CandidateRecord, ChangeKind, Status, TrialResult
from dreamteam.report import write_report
from dreamteam.report.data import gather
from dreamteam.report.diffs import render_diff
from dreamteam.report.tallies import pareto_front
from dreamteam.report.views import parse_curve
from dreamteam.store import RunStore
from dreamteam.tasks import load_task
from test_search import FakeExecutor

HOSTILE_ID = "g1-hostile"
_ITERS = {"smoke": 40, "low": 625}
_REMOTE = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:)?//", re.I)  # http://, https://, //host
_CSS_REMOTE = re.compile(r"url\(\s*[\"']?\s*(?:[a-z]+:)?//|@import", re.I)


class _Links(HTMLParser):
    """Every URL-valued attribute of every element, and the text of <style> and <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.code: list[str] = []
        self._in_code = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_code = tag in ("style", "script")
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "action", "poster", "data", "srcset"):
                self.urls.append(value or "")
            elif name == "style":
                self.code.append(value or "")

    def handle_endtag(self, tag: str) -> None:
        self._in_code = False

    def handle_data(self, data: str) -> None:
        if self._in_code:
            self.code.append(data)


class CurveExecutor(FakeExecutor):
    """The fake trainer, plus a loss curve in each log, varied timings and some failures."""

    def _score(self, job: Job) -> TrialResult:
        result = dataclasses.replace(super()._score(job), iters=_ITERS.get(job.fidelity, 40))
        knob = zlib.crc32(job.candidate.encode()) % 9
        if job.candidate != BASELINE_ID and knob == 0:
            return TrialResult(
                Status.CRASHED,
                "RuntimeError: shapes (4, 8) and (6,) <mismatch> & more",
                job.seed,
                job.fidelity,
                result.iters,
                log="iter 0: loss 10.8000 vloss 10.8100\nTraceback (most recent call last):\n"
                '  File "train.py", line 80\nRuntimeError: shapes (4, 8) and (6,) <mismatch>\n',
            )
        if job.candidate != BASELINE_ID and knob == 1:
            return TrialResult(
                Status.TIMEOUT, "training exceeded 110 s", job.seed, job.fidelity, result.iters
            )
        final = result.val_loss or 6.0
        steps = range(0, result.iters + 1, max(1, result.iters // 8))
        log = "".join(
            f"iter {i}: loss {final + 4.8 * (1 - i / result.iters) ** 2:.4f} "
            f"vloss {final + 0.05 + 4.8 * (1 - i / result.iters) ** 2:.4f}\n"
            for i in steps
        )
        return dataclasses.replace(result, train_seconds=20.0 + 3.0 * knob, log=log)


def build_run(run_dir: Path, generations: int = 3, team_size: int = 5) -> RunStore:
    """A finished run with the offline agent and the curve-drawing fake trainer.

    The search's own summary (what `dreamteam run` prints) is kept in `<run>/summary.json`.
    """
    config = RunConfig(generations=generations, team_size=team_size, fidelity="low")
    team = build_team(
        parse_model_map("offline"), Credentials.from_env({}), offline=lambda: OfflineAgent(seed=0)
    )
    store = RunStore(run_dir)
    store.create_run(run_dir.name, "shakespeare", dataclasses.asdict(config), ["rlimits", "netns"])
    task = load_task("shakespeare")
    executor = CurveExecutor()  # duck-types LocalExecutor, as in test_search
    summary = build_search(
        config, store, task=task, library=load_library(), agents=team, executor=executor
    ).run()
    (run_dir / "summary.json").write_text(json.dumps(dataclasses.asdict(summary)))
    store.finish_run("done")
    store.record_steering(2, "Prefer <schedules> & warm-up; avoid 'tricks'.")
    return store


def add_hostile(store: RunStore) -> None:
    """A candidate whose answer, reason, summary and diff are full of markup."""
    baseline = store.candidate(BASELINE_ID)
    assert baseline is not None
    store.add_candidate(
        CandidateRecord(
            id=HOSTILE_ID,
            generation=1,
            persona="archimedes",
            mode="savant",
            parent=BASELINE_ID,
            kind="proposal",
            code_hash="hostile",
            files=baseline.files,
            diff="--- a/train.py\n+++ b/train.py\n@@ -1,1 +1,1 @@\n-x = 1\n"
            "+x = '<script>alert(\"diff\")</script>'\n",
            response="<script>alert('answer')</script> & <b>bold</b> \"quoted\"",
            model="offline",
            status="crashed",
            reason="<img src=x onerror=alert('reason')>",
            summary="uses <iframe src=//evil.example> & friends",
        )
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> RunStore:
    # about forty candidates: the size the render-time test is about
    store = build_run(tmp_path_factory.mktemp("report") / "run", generations=4, team_size=10)
    add_hostile(store)
    return store


@pytest.fixture(scope="module")
def html(run: RunStore) -> str:
    return write_report(run, run.run_dir / "report.html").read_text(encoding="utf-8")


def test_report_has_leaderboards_plots_and_diffs(run: RunStore, html: str) -> None:
    assert 'id="persona-leaderboard"' in html and 'id="leaderboard"' in html
    for c in run.candidates():
        assert f'id="c-{c.id}"' in html  # a section per candidate
        assert c.persona in html
    assert html.count("<svg") >= 5  # headline, progress, funnel, Pareto, training curves
    assert '<tr class="add">' in html and '<tr class="del">' in html
    sections = ("summary", "headline", "progress", "funnel", "lineage", "pareto", "steering")
    for section in (*sections, "allocation", "mode-tallies", "allocation-table"):
        assert f'id="{section}"' in html


def test_report_numbers_come_from_the_store(run: RunStore, html: str) -> None:
    data = gather(run)
    h = data.headline
    assert h.best.id != BASELINE_ID and h.comparison is not None and h.comparison.better
    assert h.best_est is not None and h.baseline_est is not None
    # the same figures as the `best:` line of `dreamteam run`
    summary = json.loads((run.run_dir / "summary.json").read_text())
    assert h.best.id == summary["best"] and list(h.seeds) == summary["seeds"]
    assert h.best_est.mean == pytest.approx(summary["val_loss"])
    assert h.baseline_est.mean == pytest.approx(summary["baseline"])
    assert h.comparison.delta == pytest.approx(summary["delta"])
    assert h.comparison.ci95 == pytest.approx(summary["ci95"])
    assert f"{h.best_est.mean:.4f}" in html and f"{h.comparison.delta:+.4f}" in html
    stages = {s.name: s.count for s in data.funnel}
    assert stages["proposed"] == len(run.candidates()) - 1
    assert stages["proposed"] >= stages["valid"] >= stages["screened"] >= stages["promoted"]
    assert stages["promoted"] >= stages["confirmed"] >= stages["won"] >= 1
    # a generation has one best; more than one finalist may beat the parent beyond the noise
    best = sum(p.replaced for p in data.personas)
    assert best == stages["won"] == len(data.lineage) - 1
    assert sum(p.wins for p in data.personas) >= 1
    assert sum(m.proposals for m in data.modes) == stages["proposed"]
    assert any(p.failures for p in data.personas)


def test_structural_shares_come_from_the_change_records(run: RunStore, html: str) -> None:
    kinds: dict[str, list[ChangeKind]] = {}
    for c in run.candidates():
        if c.kind != "baseline" and c.record is not None and c.record.kind is not None:
            kinds.setdefault(c.persona, []).append(c.record.kind)
    stats = {p.persona: p for p in gather(run).personas}
    assert any(ChangeKind.STRUCTURAL in k for k in kinds.values())
    for persona, labels in kinds.items():
        assert stats[persona].labelled == len(labels)
        assert stats[persona].structural == labels.count(ChangeKind.STRUCTURAL)
    assert 'title="share of its changes that altered code' in html
    every = [k for labels in kinds.values() for k in labels]
    structural = every.count(ChangeKind.STRUCTURAL)
    shown = CliRunner().invoke(app, ["show", str(run.run_dir)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    line = (
        f"changes: {structural} structural, {len(every) - structural} hyperparameter "
        f"({structural / len(every):.0%} structural)"
    )
    assert line in shown.output


def test_report_needs_no_network(html: str) -> None:
    links = _Links()
    links.feed(html)
    assert links.urls, "the page links its own sections"
    assert not [u for u in links.urls if _REMOTE.match(u)]
    assert not [c for c in links.code if _CSS_REMOTE.search(c)]
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "").replace(
        'xmlns:xlink="http://www.w3.org/1999/xlink"', ""
    )


def test_special_characters_are_escaped(html: str) -> None:
    for raw in (
        "<script>alert(",
        "<img src=x",
        "<iframe",
        "<b>bold</b>",
        "<schedules>",
        "<mismatch>",
    ):
        assert raw not in html
    assert "&lt;script&gt;alert(&#39;answer&#39;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(&#39;reason&#39;)&gt;" in html
    assert "&lt;schedules&gt; &amp; warm-up" in html


def test_a_run_of_forty_candidates_renders_to_a_page_of_bounded_size(
    run: RunStore, tmp_path: Path
) -> None:
    # Its time is measured by benchmarks/, never asserted here (the machines are noisy).
    assert len(run.candidates()) >= 40
    path = write_report(run, tmp_path / "report.html")
    assert path.stat().st_size < 5_000_000


def test_curves_are_parsed_from_iter_lines() -> None:
    curve = parse_curve("noise\niter 0: loss 10.5 vloss 10.6\niter 10: loss 7.25\nlater\n")
    assert curve.iters == (0, 10) and curve.loss == (10.5, 7.25) and curve.vloss == (10.6, None)
    assert parse_curve("no curve here").iters == ()


def test_pareto_front_keeps_points_nothing_beats() -> None:
    points = [(10.0, 5.0, "a"), (5.0, 6.0, "b"), (20.0, 4.0, "c"), (12.0, 5.5, "d")]
    assert [cid for _, _, cid in pareto_front(points)] == ["b", "a", "c"]


def test_diff_rows_keep_line_numbers_and_highlight_python() -> None:
    diff = (
        "--- a/train.py\n+++ b/train.py\n@@ -3,3 +3,3 @@\n a = 1\n-b = 2\n+b = 3\n"
        " c = '<x>'\n--- a/model.py\n+++ b/model.py\n@@ -1 +1 @@\n--- x\n+++ y\n"
    )
    rendered = render_diff(diff)
    kinds = [r.kind for r in rendered.lines]
    assert kinds == ["file", "hunk", "ctx", "del", "add", "ctx", "file", "hunk", "del", "add"]
    assert (rendered.added, rendered.removed, rendered.hidden) == (2, 2, 0)
    delete = rendered.lines[3]
    assert (delete.old, delete.new) == (4, None) and "<span" in delete.html
    assert "&lt;x&gt;" in rendered.lines[5].html
    assert render_diff(diff, limit=4).hidden == len(diff.splitlines()) - 4
