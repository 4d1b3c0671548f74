"""`dreamteam task init|check|list`, and `eval`/`run` on a task of one's own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dreamteam.cli import app
from dreamteam.errors import DreamteamError
from dreamteam.tasks import load_task

runner = CliRunner()


def _run(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """The real command in a child process: its exit code and stderr as a user sees them."""
    code = "from dreamteam.cli import main; main()"
    env = dict(os.environ, DREAMTEAM_HOME=str(home))
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=900
    )


@pytest.fixture
def scaffold(dt_env: Path, tmp_path: Path) -> Path:
    target = tmp_path / "my-task"
    result = runner.invoke(app, ["task", "init", str(target)])
    assert result.exit_code == 0, result.output
    assert f"then `dreamteam task check {target} --run`" in result.output  # the next step, whole
    return target


def test_init_writes_a_task_named_after_its_directory(scaffold: Path) -> None:
    assert {p.name for p in scaffold.iterdir()} == {
        "task.toml",
        "train.py",
        "model.py",
        "harness.py",
    }
    text = (scaffold / "task.toml").read_text()
    assert 'name = "my-task"' in text
    # the template explains its fields: every table carries comments
    for table in ("[files]", "[contract]", "[protected]", "[data]", "[evaluation]", "[fidelity]"):
        assert f"{table}\n#" in text, table


def test_a_scaffolded_task_passes_its_check(scaffold: Path, dt_env: Path) -> None:
    result = runner.invoke(app, ["task", "check", str(scaffold)])
    assert result.exit_code == 0, result.output
    oks = [line for line in result.output.splitlines() if line.startswith("ok: ")]
    assert len(oks) == 5
    assert "defines load_eval, score, prepare" in result.output
    assert "4000 rows" in result.output and "ready" in result.output
    # "ready" is static: the line before it says how to train the baseline first
    assert f"not trained yet: `dreamteam task check {scaffold} --run`" in result.output
    assert (dt_env / "data" / "tasks").is_dir()  # the data was prepared under the home


def test_check_run_trains_and_scores_the_baseline(scaffold: Path) -> None:
    result = runner.invoke(app, ["task", "check", str(scaffold), "--run"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "status: ok" in lines
    assert any(line.startswith("val_loss: ") for line in lines)
    assert any(line.startswith("accuracy: ") for line in lines)


def test_eval_scores_a_directory_holding_a_task(scaffold: Path) -> None:
    result = runner.invoke(app, ["eval", str(scaffold), "--fidelity", "smoke"])
    assert result.exit_code == 0, result.output
    # the task's own figures first, then the contract's closing lines
    lines = result.output.strip().splitlines()
    tail = lines[-4:]
    assert tail[0].startswith("loss: ") and tail[1].startswith("accuracy: ")
    assert tail[2] == "status: ok" and tail[3].startswith("val_loss: ")
    assert tail[3].split()[1] == tail[0].split()[1]  # the objective is the task's loss
    # only the figures the task's score() returns: not a language model, no bytes to count
    assert not any("bpb" in line for line in lines)
    seed_line = next(line for line in lines if line.startswith("seed 1337: ok"))
    assert " accuracy=" in seed_line and " loss=" not in seed_line  # the objective is val_loss


def test_a_broken_task_is_one_line_naming_the_file_and_field(scaffold: Path, dt_env: Path) -> None:
    toml = scaffold / "task.toml"
    toml.write_text(toml.read_text().replace("smoke = 200", "smoke = -1"))
    done = _run("task", "check", str(scaffold), home=dt_env)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0
    assert done.stderr.startswith(f"TaskError: {toml}: [fidelity] smoke: ")


def test_a_baseline_that_fails_the_checks_is_named(scaffold: Path, dt_env: Path) -> None:
    train = scaffold / "train.py"
    train.write_text(train.read_text().replace("batch_size = 64", "batch_size = 65"))
    done = _run("task", "check", str(scaffold), home=dt_env)
    assert done.returncode == 1
    assert f"{train}:" in done.stderr and "protected-constant" in done.stderr


def test_init_refuses_a_directory_in_use(scaffold: Path, dt_env: Path) -> None:
    done = _run("task", "init", str(scaffold), home=dt_env)
    assert done.returncode == 1 and "not an empty directory" in done.stderr
    done = _run("task", "init", str(scaffold.parent / "x"), "--from", "nope", home=dt_env)
    assert done.returncode == 1 and "shakespeare, spirals" in done.stderr


def test_list_shows_the_built_in_tasks() -> None:
    result = runner.invoke(app, ["task", "list"])
    assert result.exit_code == 0
    assert "shakespeare" in result.output and "spirals" in result.output


@pytest.mark.slow
def test_run_on_a_task_directory_ends_with_the_contract_lines(
    scaffold: Path, dt_env: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    args = ["--generations", "1", "--team-size", "2", "--fidelity", "smoke", "--repair", "0"]
    done = _run("run", "--task", str(scaffold), *args, "--run-dir", str(run_dir), home=dt_env)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-2].startswith("best: ") and "baseline=" in lines[-2]
    assert (run_dir / "gen_1" / "results.txt").is_file()


def test_a_task_with_only_smoke_and_full_gets_defaults_it_has(scaffold: Path) -> None:
    """`task check` prints a command; the config that command resolves to uses the task's
    own levels (screen at its smallest, confirm at its second smallest)."""
    import shlex

    from dreamteam.config import load_run_config

    toml = scaffold / "task.toml"
    lines = toml.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if not line.startswith(("low =", "medium ="))]
    toml.write_text("\n".join(kept) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["task", "check", str(scaffold)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    printed = result.output.strip().splitlines()[-1].split("is ready: ", 1)[1]
    argv = shlex.split(printed)
    assert argv[:2] == ["dreamteam", "run"]
    options = dict(zip(argv[2::2], argv[3::2], strict=True))
    config = load_run_config(None, {"task": options["--task"]})
    assert (config.screen_fidelity, config.fidelity) == ("smoke", "full")
    task = load_task(str(scaffold))
    with pytest.raises(DreamteamError, match="no fidelity 'low'"):
        task.iterations("low")  # the old default would have failed
    assert task.level("low", 1) == "full"  # what `eval` takes when no --fidelity is given


def test_a_run_whose_baseline_crashes_stops_at_its_first_trial_saying_why(
    scaffold: Path, dt_env: Path, tmp_path: Path
) -> None:
    """`task check` without --run cannot see a train() that crashes: the run stops after the
    baseline's screening trial (not after its confirmation seeds too), with the reason."""
    train = scaffold / "train.py"
    train.write_text(train.read_text().replace("MLP(MLPConfig(**model_args))", "MLP()"))
    run_dir = tmp_path / "run"
    args = ["--generations", "1", "--plain", "--run-dir", str(run_dir)]
    done = _run("run", "--task", str(scaffold), *args, home=dt_env)
    assert done.returncode == 1
    assert done.stdout.count("trial g0-baseline") == 1, done.stdout
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("ConfigError: the baseline itself failed to train (crashed: ")
    assert "TypeError" in line and line.endswith(str(run_dir / "gen_0" / "baseline" / "log.txt"))


RINGS = Path(__file__).resolve().parent / "tasks" / "rings"
KWARGS_MODEL = """class Classifier(nn.Module):
    def __init__(self, n_inputs=2, n_classes=4, hidden=32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_inputs, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x):
        return self.net(x)
"""


def test_a_model_taking_keyword_arguments_needs_no_config_class(
    dt_env: Path, tmp_path: Path
) -> None:
    task = tmp_path / "rings"
    shutil.copytree(RINGS, task)
    train = (task / "train.py").read_text()
    start, end = train.index("@dataclass\nclass ClassifierConfig"), train.index("def train(")
    train = train[:start] + KWARGS_MODEL + "\n\n" + train[end:]
    (task / "train.py").write_text(
        train.replace("Classifier(ClassifierConfig(**args))", "Classifier(**args)")
    )
    toml = task / "task.toml"
    toml.write_text(
        toml.read_text().replace('config_class = "ClassifierConfig"', 'config_class = ""')
    )
    assert load_task(str(task)).contract.config_class == ""
    result = runner.invoke(app, ["eval", str(task), "--fidelity", "smoke"])
    assert result.exit_code == 0, result.output
    assert "status: ok" in result.output.splitlines()
    # the same model file with a config class named that it does not define: one clear line
    toml.write_text(toml.read_text().replace('config_class = ""', 'config_class = "Cfg"'))
    done = _run("task", "check", str(task), home=dt_env)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "must define Cfg, the [contract] config_class" in done.stderr
