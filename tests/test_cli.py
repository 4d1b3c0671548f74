"""The `dreamteam` command end to end: exit codes, one-line errors, the contract's output lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from dreamteam.cli import app

runner = CliRunner()


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    code = "from dreamteam.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("train", "eval", "data", "personas"):
        assert command in result.output


def test_usage_error_exits_2() -> None:
    assert runner.invoke(app, ["train", "--no-such-flag"]).exit_code == 2


def test_user_error_is_one_line_on_stderr_and_exits_1(dt_env: Path, tmp_path: Path) -> None:
    import os

    env = dict(os.environ, DREAMTEAM_HOME=str(dt_env))
    done = _run("eval", str(tmp_path / "missing"), env=env)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0
    assert done.stderr.startswith("TaskError: ")


def test_data_prepare_from_the_mirror(dt_env: Path) -> None:
    result = runner.invoke(app, ["data", "prepare"])
    assert result.exit_code == 0, result.output
    assert (dt_env / "data" / "shakespeare" / "val.bin").is_file()


def test_train_prints_the_harness_loss(dt_env: Path) -> None:
    result = runner.invoke(app, ["train", "--iters", "20"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[-3] == "status: ok"
    assert lines[-2].startswith("val_loss: ") and float(lines[-2].split()[1]) < 10.7
    assert lines[-1].startswith("bpb: ")
