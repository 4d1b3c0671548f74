"""<run>/report.html kept current while a run goes on: rebuilt as trials are stored (throttled
by its own cost), reloading itself only while the run is live, written atomically, and never
a reason for a run to stop. The pages are opened in a real headless Chromium.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from dreamteam.agents import build_team, parse_model_map
from dreamteam.agents.factory import Credentials
from dreamteam.agents.offline import OfflineAgent
from dreamteam.config import RunConfig
from dreamteam.errors import StoreError
from dreamteam.execute.jobs import Job
from dreamteam.loop.build import build_search, conclude
from dreamteam.personas import load_library
from dreamteam.records import Event, TrialResult
from dreamteam.report import live, plots, write_report
from dreamteam.report.build import write_page
from dreamteam.report.live import LiveReport
from dreamteam.report.views import Curve
from dreamteam.store import RunStore
from dreamteam.tasks import load_task
from test_report_browser import CHROMIUM, _load
from test_search import FakeExecutor

REFRESH = '<meta http-equiv="refresh"'
MARKER = "live — updated"
# Records whether the live marker is on screen, and its text, into attributes of <html>.
MARKER_PROBE = """<script>
window.addEventListener("load", function () {
  var el = document.getElementById("live"), root = document.documentElement;
  var r = el ? el.getBoundingClientRect() : null;
  root.setAttribute("data-live-shown", String(!!r && r.width > 0 && r.height > 0));
  root.setAttribute("data-live-text", el ? el.textContent : "");
});
</script>"""


class PageKeeper(FakeExecutor):
    """The fake trainer, keeping a copy of report.html as it stands when each trial starts:
    the pages a browser open on the run would have shown mid-run."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.page = run_dir / "report.html"
        self.seen: list[str] = []

    def _score(self, job: Job) -> TrialResult:
        if self.page.is_file():
            self.seen.append(self.page.read_text(encoding="utf-8"))
        return super()._score(job)


def _run(tmp_path: Path, executor_for=PageKeeper) -> tuple[RunStore, PageKeeper, list[Event]]:
    """A short search (one generation, two personas) run to its end as `dreamteam run` does."""
    store = RunStore(tmp_path / "run")
    store.create_run("run", "shakespeare", {}, [])
    team = build_team(
        parse_model_map("offline"), Credentials.from_env({}), offline=lambda: OfflineAgent(seed=0)
    )
    events: list[Event] = []
    executor = executor_for(store.run_dir)
    config = RunConfig(generations=1, team_size=2, fidelity="smoke")
    task, library = load_task("shakespeare"), load_library()
    search = build_search(
        config,
        store,
        task=task,
        library=library,
        agents=team,
        executor=executor,
        on_event=events.append,
    )
    conclude(search)
    return store, executor, events


@pytest.fixture(scope="module")
def live_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunStore, PageKeeper]:
    """A run whose page is rebuilt after every trial (no interval, no cost spacing)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(live, "INTERVAL", 0.0)
        mp.setattr(live, "COST_SHARE", 0)
        store, keeper, _ = _run(tmp_path_factory.mktemp("live"))
    return store, keeper


def test_pages_written_mid_run_reload_and_the_final_page_does_not(
    live_run: tuple[RunStore, PageKeeper],
) -> None:
    store, keeper = live_run
    assert len(keeper.seen) >= 3  # a page after each stored trial, before the next one
    for page in keeper.seen:
        assert page.count(REFRESH) == 1 and MARKER in page
        assert page.rstrip().endswith("</html>")
    final = (store.run_dir / "report.html").read_text(encoding="utf-8")
    assert REFRESH not in final and MARKER not in final
    assert store.run_info().status == "done"
    # mid-run pages grow with the run: the last one knows more candidates than the first
    assert keeper.seen[-1].count('class="cand"') >= keeper.seen[0].count('class="cand"')


def test_only_the_running_search_marks_its_page_live(
    live_run: tuple[RunStore, PageKeeper], tmp_path: Path
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(live_run[0].run_dir, copy)
    db = sqlite3.connect(copy / "dreamteam.sqlite")
    db.execute("UPDATE runs SET status = 'running'")  # as a killed run is left
    db.commit()
    db.close()
    store = RunStore.open_existing(copy)
    try:
        by_hand = write_report(store, tmp_path / "by-hand.html").read_text(encoding="utf-8")
        by_run = write_report(store, tmp_path / "live.html", live=True).read_text(encoding="utf-8")
    finally:
        store.close()
    assert REFRESH not in by_hand and MARKER not in by_hand  # `dreamteam report`
    assert REFRESH in by_run and MARKER in by_run


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_chromium_shows_the_live_marker_mid_run_and_not_at_the_end(
    live_run: tuple[RunStore, PageKeeper], tmp_path: Path
) -> None:
    store, keeper = live_run
    final = (store.run_dir / "report.html").read_text(encoding="utf-8")
    for page, is_live in ((keeper.seen[-1], True), (final, False)):
        probed = page.replace("<head>", "<head>\n" + MARKER_PROBE, 1)
        console, errors, attrs, dom = _load(probed, tmp_path)
        assert console == [] and errors == []
        assert attrs["data-live-shown"] == str(is_live).lower()
        assert (MARKER in attrs["data-live-text"]) is is_live
        assert (REFRESH in dom) is is_live  # the browser kept the reload in the live page


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_chromium_says_a_live_page_left_behind_by_a_killed_run_is_stale(
    live_run: tuple[RunStore, PageKeeper], tmp_path: Path
) -> None:
    store, keeper = live_run
    page = keeper.seen[-1]
    written = re.search(r'data-written="(\d+)"', page)
    assert written is not None and 'data-stale="900"' in page
    # the same page as a killed run leaves it, 20 minutes later
    old = page.replace(written.group(0), f'data-written="{int(time.time()) - 1200}"')
    for html, stale in ((page, False), (old, True)):
        _, errors, attrs, _ = _load(html.replace("<head>", "<head>\n" + MARKER_PROBE, 1), tmp_path)
        assert errors == []
        text = attrs["data-live-text"]
        assert (MARKER in text) is not stale
        assert ("not updated for 20 min: the run may have stopped" in text) is stale
        assert (f"dreamteam resume {store.run_info().id}" in text) is stale


def test_a_page_that_cannot_be_written_is_one_warning_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "INTERVAL", 0.0)
    monkeypatch.setattr(live, "COST_SHARE", 0)

    class Blocked(FakeExecutor):
        def __init__(self, run_dir: Path) -> None:
            super().__init__()
            (run_dir / "report.html").mkdir()  # os.replace onto a directory fails

    store, executor, events = _run(tmp_path, Blocked)
    warnings = [e for e in events if e.kind == "report"]
    assert len(warnings) == 1 and "report.html not updated" in warnings[0].detail
    assert "the run goes on" in warnings[0].detail
    assert store.run_info().status == "done" and len(executor.calls) >= 4
    assert not list(store.run_dir.glob(".report.html.*"))  # no temporary file left behind


def test_rebuilds_wait_for_the_interval_and_for_twenty_times_their_cost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [100.0]
    written: list[bool] = []

    def slow_write(store: object, path: Path, *, live: bool, drawn: object) -> Path:
        now[0] += 2.0  # a rebuild that takes two seconds
        written.append(live)
        return path

    monkeypatch.setattr(live, "write_report", slow_write)
    store = RunStore(tmp_path / "run")
    page = LiveReport(store, warn=print, interval=30.0, clock=lambda: now[0])
    page.trial_stored()
    assert written == []  # the first page one interval into the run
    now[0] += 30.0
    page.trial_stored()
    assert written == [True]
    now[0] += 30.0  # due by the interval, not yet by 20 x 2 s = 40 s
    page.trial_stored()
    assert written == [True]
    now[0] += 10.0
    page.trial_stored()
    assert written == [True, True]
    page.final()  # always, however recent the last one
    assert written == [True, True, False]


def test_a_reader_never_sees_part_of_a_page(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    pages = [f"<!doctype html>\n<p>{c * 2_000_000}</p>\n</html>\n" for c in "ab"]
    write_page(path, pages[0])
    done = threading.Event()
    seen: list[str] = []
    torn: list[int] = []

    def read() -> None:
        while not done.is_set():
            text = path.read_text(encoding="utf-8")
            seen.append(text[20])
            if text not in pages:
                torn.append(len(text))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(60):
            write_page(path, pages[i % 2])
    finally:
        done.set()
        reader.join()
    assert torn == [], f"the reader saw {len(torn)} partial pages"
    assert set(seen) == {"a", "b"}  # it read while the page was being rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_a_failed_write_keeps_the_old_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "report.html"
    write_page(path, "<p>old</p>")

    def full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("dreamteam.report.build.os.replace", full)
    with pytest.raises(StoreError):
        write_page(path, "<p>new</p>")
    assert path.read_text(encoding="utf-8") == "<p>old</p>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_a_rebuild_draws_only_the_curves_it_has_not_drawn(monkeypatch: pytest.MonkeyPatch) -> None:
    one = (Curve((0, 10), (5.0, 4.0), (5.1, None)), "savant", None)
    two = (Curve((0, 10), (5.0, 3.5), (None, 3.6)), "specialist", one[0])
    calls: list[int] = []
    draw = plots._draw_curves

    def counted(keys):  # type: ignore[no-untyped-def]
        calls.append(len(keys))
        return draw(keys)

    monkeypatch.setattr(plots, "_draw_curves", counted)
    drawn: dict = {}
    first = plots.curve_plots({"a": one}, drawn)
    again = plots.curve_plots({"a": one, "b": two}, drawn)
    assert calls == [1, 1] and again["a"] == first["a"] and again["b"].startswith("<svg")
    assert plots.curve_plots({"b": two}, drawn) == {"b": again["b"]} and calls == [1, 1]
    assert list(drawn) == [two]  # a plot no candidate shows any more is let go
