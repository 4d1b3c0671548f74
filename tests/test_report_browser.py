"""The report in a real headless Chromium: no console errors, the leaderboard and the plots on
screen, and a screenshot kept as a test artifact (test-artifacts/report.png).

No browser driver is needed: `--dump-dom` returns the page after its scripts ran, a small probe
script injected into a copy of the page records errors and what is visible, and Chromium's
stderr log carries every console message.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import pytest
from matplotlib.image import imread

from dreamteam.report import write_report
from test_report import build_run

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)
# Records uncaught errors, failed resource loads and what is on screen into attributes of
# <html>, which --dump-dom then shows.
PROBE = """<script>
(function () {
  var errors = [];
  window.addEventListener("error", function (e) {
    var t = e.target || {};
    errors.push(e.message || ("failed to load " + (t.src || t.href || t.tagName)));
  }, true);
  window.addEventListener("unhandledrejection", function (e) { errors.push(String(e.reason)); });
  window.addEventListener("load", function () {
    var shown = function (el) { var r = el.getBoundingClientRect(); return r.width > 100 && r.height > 50; };
    var plots = Array.prototype.filter.call(document.querySelectorAll("section:not(#candidates) figure.plot svg"), shown);
    var board = document.getElementById("persona-leaderboard");
    var root = document.documentElement;
    root.setAttribute("data-errors", JSON.stringify(errors));
    root.setAttribute("data-visible-plots", String(plots.length));
    root.setAttribute("data-board-rows", String(board ? board.tBodies[0].rows.length : -1));
    root.setAttribute("data-board-shown", String(board ? shown(board) : false));
  });
})();
</script>"""
_CONSOLE = re.compile(r":CONSOLE[:(]|Uncaught", re.I)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium)"
)


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    command = [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("browser") / "20260101-093000-demo"
    run = build_run(run_dir, generations=3, team_size=5)
    return write_report(run, run.run_dir / "report.html")


def _load(page: str, tmp_path: Path) -> tuple[list[str], list[str], dict[str, str], str]:
    """Open `page` with the probe: (console lines, page errors, <html> attributes, DOM)."""
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("<head>", "<head>\n" + PROBE, 1), encoding="utf-8")
    result = _chromium(
        tmp_path,
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1280,2000",
        "--dump-dom",
        probed.as_uri(),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if _CONSOLE.search(line)]
    root = re.search(r"<html([^>]*)>", result.stdout)
    assert root, result.stdout[:500]
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', root.group(1)))
    return console, json.loads(unescape(attrs["data-errors"])), attrs, result.stdout


def test_the_probe_sees_errors(tmp_path: Path) -> None:
    broken = (
        "<!doctype html><html><head></head><body><img src='missing.png'>"
        "<script>console.error('boom'); undefinedFunction();</script></body></html>"
    )
    console, errors, _, _ = _load(broken, tmp_path)
    assert any("boom" in line for line in console)
    assert any("undefinedFunction" in e for e in errors)
    assert any("missing.png" in e for e in errors)


def test_report_loads_without_errors_and_shows_leaderboard_and_plots(
    report: Path, tmp_path: Path
) -> None:
    console, errors, attrs, dom = _load(report.read_text(encoding="utf-8"), tmp_path)
    assert console == [], "the page logged to the console:\n" + "\n".join(console)
    assert errors == []
    assert attrs["data-visible-plots"] == "4"  # headline, progress, funnel, Pareto
    assert int(attrs["data-board-rows"]) >= 5 and attrs["data-board-shown"] == "true"
    assert 'id="leaderboard"' in dom


def test_screenshot_is_saved_as_an_artifact(report: Path, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    result = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", report.as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    pixels = imread(shot)
    assert pixels.shape[:2] == (2000, 1280)
    assert pixels[..., :3].std() > 0.05  # something is drawn, not a blank page
