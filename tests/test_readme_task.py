"""The README's worked example of a task of one's own, built from its code blocks as a reader
would copy them: it passes `task check --run`, and `run`'s defaults resolve for it."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from dreamteam.cli import app
from dreamteam.config import load_run_config

README = Path(__file__).resolve().parents[1] / "README.md"


def _example(target: Path) -> list[str]:
    """Write each fenced block of the worked example whose first line is `# sine/NAME`."""
    section = README.read_text(encoding="utf-8").split("### A worked example", 1)[1]
    section = section.split("\n## ", 1)[0]
    written = []
    for body in re.findall(r"```(?:toml|python)\n(.*?)```", section, re.DOTALL):
        first, _, rest = body.partition("\n")
        name = first.removeprefix("# sine/")
        (target / name).write_text(rest, encoding="utf-8")
        written.append(name)
    return written


def test_the_readme_task_passes_its_check_and_trains(dt_env: Path, tmp_path: Path) -> None:
    task = tmp_path / "sine"
    task.mkdir()
    assert sorted(_example(task)) == ["harness.py", "model.py", "task.toml", "train.py"]
    result = CliRunner().invoke(app, ["task", "check", str(task), "--run"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "status: ok" in result.output and "mse: " in result.output
    assert "warning" not in result.output
    config = load_run_config(None, {"task": str(task)})
    assert (config.screen_fidelity, config.fidelity) == ("smoke", "low")
