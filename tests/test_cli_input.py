"""Bad input to `dreamteam run`, as a newcomer types it: one line on stderr, exit 1, no traceback.

Each case fails before any training, in a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dreamteam.config import load_run_config
from dreamteam.errors import ConfigError


def _run(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from dreamteam.cli import main; main()", "run", "--plain", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, DREAMTEAM_HOME=str(home), COLUMNS="80"),
        timeout=120,
    )


def _one_line(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    for word in words:
        assert word in done.stderr


def test_a_run_dir_that_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("mine\n", encoding="utf-8")
    done = _run("--run-dir", str(target), home=tmp_path / "home")
    _one_line(done, "--run-dir", "is a file")
    assert target.read_text(encoding="utf-8") == "mine\n"


def test_an_unknown_mode_names_the_allowed_ones(tmp_path: Path) -> None:
    done = _run("--modes", "savant,wizard", home=tmp_path / "home")
    _one_line(done, "'wizard'", "savant", "collaborator", "specialist")


def test_a_string_where_the_config_wants_a_number(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('[run]\ngenerations = "two"\n', encoding="utf-8")
    done = _run("--config", str(config), home=tmp_path / "home")
    _one_line(done, "generations", "whole number", '"two"', "generations = 2")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("model = 5", ("model", "string")),
        ("seeds = 2.5", ("seeds", "whole number")),
        ("generations = true", ("generations", "whole number", "true")),
        ('modes = "savant"\npersonas = [1]', ("personas", "list of strings")),
        ("agent_timeout = [1]", ("agent_timeout", "number")),
    ],
)
def test_every_field_is_checked_against_its_type(
    tmp_path: Path, body: str, words: tuple[str, ...]
) -> None:
    config = tmp_path / "run.toml"
    config.write_text(body + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_run_config(config, {})
    assert "\n" not in str(caught.value)
    for word in words:
        assert word in str(caught.value)


def test_well_typed_values_pass_unchanged(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text(
        'agent_timeout = 90\nmodes = ["savant"]\ngenerations = 3\ntime_weight = 1\n',
        encoding="utf-8",
    )
    cfg = load_run_config(config, {"seeds": 3})
    assert (cfg.agent_timeout, cfg.modes, cfg.generations, cfg.seeds) == (90, ("savant",), 3, 3)


def test_run_help_shows_the_defaults_and_describes_every_option() -> None:
    import typer.main
    from typer.testing import CliRunner

    from dreamteam.cli import app

    result = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "Generations after the baseline. [default: 2]" in text
    assert "[default: savant,collaborator,specialist]" in text
    command = typer.main.get_command(app)
    run = command.commands["run"]  # type: ignore[attr-defined]
    undescribed = [p.name for p in run.params if not getattr(p, "help", "")]
    assert undescribed == []
    for args in (["run"], ["eval"], ["task", "init"]):
        shown = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
        assert "Examples:" in shown.output and "dreamteam " in shown.output, args
