"""The spirals task in the sandbox: an honest baseline, models that cheat, a short generation.

The second built-in task is a classifier, not a language model: it proves that a task with
its own harness file runs the whole path (checks, sandboxed training, outputs computed in a
second sandbox, the task's metric applied in the harness) and that the offline team finds
distinct valid candidates on it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from dreamteam.agents import build_team, parse_model_map
from dreamteam.agents.factory import Credentials
from dreamteam.agents.offline import OfflineAgent
from dreamteam.config import RunConfig
from dreamteam.execute.local import LocalExecutor
from dreamteam.harness.sandbox.launcher import Isolation, probe_isolation
from dreamteam.harness.scoring.rows import N_REPEATS, _read_outputs, evaluate_rows
from dreamteam.harness.trial import TrialBudget, _checkpoint_problem, run_trial
from dreamteam.loop.build import build_search
from dreamteam.loop.search import BASELINE_ID
from dreamteam.personas import load_library
from dreamteam.records import Status, TrialResult
from dreamteam.store import RunStore
from dreamteam.tasks import Task, load_task
from dreamteam.tasks.data import DataPaths, resolve_task_data
from dreamteam.tasks.metric import load_metric

BUDGET = TrialBudget(base_seconds=120, eval_seconds=120, threads=1)


@pytest.fixture(scope="module")
def task() -> Task:
    return load_task("spirals")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, task: Task) -> DataPaths:
    return resolve_task_data(task, tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def isolation() -> Isolation:
    return probe_isolation()


@pytest.fixture(scope="module")
def baseline(
    tmp_path_factory: pytest.TempPathFactory, task: Task, data: DataPaths, isolation: Isolation
) -> tuple[TrialResult, Path]:
    """The baseline trained and scored at smoke; its work dir is kept for inspection."""
    work = tmp_path_factory.mktemp("baseline")
    keep = work / "kept" / "ckpt.pt"
    result = run_trial(
        task,
        task.baseline_files(),
        data,
        "smoke",
        1337,
        work,
        BUDGET,
        isolation,
        keep_checkpoint=keep,
    )
    return result, work


def test_the_baseline_is_scored_by_the_tasks_metric(baseline, task: Task) -> None:
    result, _ = baseline
    assert result.status is Status.OK, result.reason
    assert set(result.metrics) == {"loss", "accuracy"}
    assert result.val_loss == result.metrics["loss"] and result.bpb is None
    assert 0.0 <= result.metrics["accuracy"] <= 1.0 and result.val_loss > 0
    assert result.steps == task.iterations("smoke") and result.n_params > 0


def test_the_scoring_processes_see_inputs_and_nothing_of_the_harness(
    baseline, task: Task, data: DataPaths
) -> None:
    _, work = baseline
    inputs, _ = load_metric(task).eval_split(data.root)
    score_dir, probe_dir = work / "eval" / "score", work / "eval" / "probe"
    for folder in (score_dir, probe_dir):
        names = {p.name for p in folder.iterdir()}
        assert {"train.py", "model.py", "ckpt.pt", "inputs.npy", "outputs.npy"} <= names
        assert not names & {"harness.py", "eval.npz", "train.npz", "task.toml"}
    sent = np.load(score_dir / "inputs.npy")
    assert sent.shape == (len(inputs) + N_REPEATS, *inputs.shape[1:])
    assert sent.dtype == inputs.dtype  # the inputs alone: the targets are another array
    assert sorted(map(tuple, sent.tolist())) != sorted(map(tuple, inputs.tolist()))  # + repeats
    assert {tuple(r) for r in sent.tolist()} == {tuple(r) for r in inputs.tolist()}


def _evaluate(task, data, isolation, tmp_path, baseline, model_source: str):
    _, work = baseline
    files = dict(task.baseline_files(), **{"model.py": model_source})
    metric = load_metric(task)
    ckpt = work / "kept" / "ckpt.pt"
    return evaluate_rows(
        task, metric, files, ckpt, data.root, tmp_path, BUDGET.eval_limits(), isolation
    )


def _forward(task: Task, new_line: str) -> str:
    """The baseline model with one line added at the top of forward()."""
    source = task.baseline_files()["model.py"]
    anchor = "        logits = self.head(self.body(x))\n"
    assert anchor in source
    return source.replace(anchor, new_line + anchor)


@pytest.mark.parametrize(
    ("line", "status", "reason"),
    [
        # outputs that use their batch-mates' statistics: a transductive cheat
        ("        x = x - x.mean(0, keepdim=True)\n", "cheating", "row independence"),
        ("        x = x * float('nan')\n", "nan", "not finite"),
        ("        x = x[:, :1].repeat(1, 2)[: len(x) // 2]\n", "crashed", "one row per input"),
    ],
)
def test_models_that_break_the_contract_get_their_status(
    task, data, isolation, tmp_path, baseline, line, status, reason
) -> None:
    outcome = _evaluate(task, data, isolation, tmp_path, baseline, _forward(task, line))
    assert outcome.status == status and reason in outcome.reason, outcome.reason


def test_a_model_that_reads_its_whole_input_file_is_caught_in_the_second_process(
    task, data, isolation, tmp_path, baseline
) -> None:
    # consistent within one process (same file, same statistics), not across processes
    source = _forward(task, "        x = x - CENTRE\n").replace(
        "@dataclass\n",
        "import numpy as np\nCENTRE = torch.from_numpy(np.load('inputs.npy').mean(0))\n\n\n"
        "@dataclass\n",
        1,
    )
    outcome = _evaluate(task, data, isolation, tmp_path, baseline, source)
    assert outcome.status == "cheating" and "another process" in outcome.reason, outcome.reason


def test_the_scoring_process_cannot_read_the_evaluation_split(
    task, data, isolation, tmp_path, baseline
) -> None:
    if not isolation.landlock:
        pytest.skip("no Landlock here: file reads are not confined")
    probe = (
        "try:\n"
        f"    open({str(data.root / 'eval.npz')!r}, 'rb').read(1)\n"
        "    print('leak: read')\n"
        "except OSError:\n"
        "    print('leak: blocked')\n"
    )
    source = task.baseline_files()["model.py"] + "\n" + probe
    outcome = _evaluate(task, data, isolation, tmp_path, baseline, source)
    assert outcome.status == "ok", outcome.reason
    assert outcome.process is not None and "leak: blocked" in outcome.process.log


def test_outputs_of_the_wrong_shape_are_refused_by_the_tasks_score(
    task, data, isolation, tmp_path, baseline
) -> None:
    source = task.baseline_files()["model.py"].replace(
        "        return logits, loss\n", "        return logits[:, :3], loss\n"
    )
    outcome = _evaluate(task, data, isolation, tmp_path, baseline, source)
    assert outcome.status == "invalid" and "score() rejected" in outcome.reason, outcome.reason


def test_outputs_whose_width_depends_on_the_batch_are_caught(
    task, data, isolation, tmp_path, baseline
) -> None:
    source = task.baseline_files()["model.py"].replace(
        "        return logits, loss\n",
        "        return (logits if len(x) > 7 else logits[:, :3]), loss\n",
    )
    outcome = _evaluate(task, data, isolation, tmp_path, baseline, source)
    assert outcome.status == "cheating" and "differ across processes" in outcome.reason


def test_links_are_not_read_as_a_checkpoint_or_as_outputs(tmp_path: Path, task: Task) -> None:
    secret = tmp_path / "secret.npy"
    np.save(secret, np.zeros((4, 5), dtype=np.float32))
    (tmp_path / "outputs.npy").symlink_to(secret)
    with pytest.raises(ValueError, match="outputs file"):
        _read_outputs(tmp_path, 4)
    (tmp_path / "ckpt.pt").symlink_to(secret)
    assert "not a link" in _checkpoint_problem(task, tmp_path / "ckpt.pt")
    os.link(secret, tmp_path / "hard.pt")
    assert "not a link" in _checkpoint_problem(task, tmp_path / "hard.pt")
    shutil.copyfile(secret, tmp_path / "plain.pt")
    assert _checkpoint_problem(task, tmp_path / "plain.pt") == ""
    assert "wrote no" in _checkpoint_problem(task, tmp_path / "none.pt")


def test_a_short_generation_finds_distinct_valid_candidates(
    tmp_path: Path, task: Task, data: DataPaths, isolation: Isolation
) -> None:
    config = RunConfig(
        task="spirals",
        team_size=2,
        generations=1,
        screen_fidelity="smoke",
        fidelity="smoke",
        seeds=2,
        repair=0,
        max_promoted=1,
        workers=2,
    )
    team = build_team(
        parse_model_map("offline"),
        Credentials.from_env({}),
        offline=lambda: OfflineAgent(seed=3, protected=task.protected),
    )
    store = RunStore(tmp_path / "run")
    store.create_run("run", task.name, {}, [])
    executor = LocalExecutor(
        task, data, isolation, TrialBudget(threads=1), tmp_path / "work", workers=2
    )
    summary = build_search(
        config, store, task=task, library=load_library(), agents=team, executor=executor
    ).run()
    proposals = [c for c in store.candidates() if c.id != BASELINE_ID]
    assert len(proposals) == 2
    ok = [c for c in proposals if c.status == "ok"]
    assert len(ok) == 2, [(c.id, c.status, c.reason) for c in proposals]
    assert len({c.code_hash for c in ok} | {store.candidate(BASELINE_ID).code_hash}) == 3
    for c in ok:
        (screen,) = [t for t in store.trials(c.id) if t.fidelity == "smoke" and t.seed == 1337]
        assert screen.val_loss is not None and np.isfinite(screen.val_loss)
    assert summary.baseline > 0 and np.isfinite(summary.val_loss)
