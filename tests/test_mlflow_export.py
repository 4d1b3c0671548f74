"""MLflow export of a real small run into a local tracking store (skipped without mlflow)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from dreamteam.cli.tracking import export_mlflow
from dreamteam.config import config_from_dict
from dreamteam.errors import ConfigError
from dreamteam.records import Status, TrialRecord
from dreamteam.report.evidence import gather_statistics
from dreamteam.report.mlflow import CANDIDATE_TAG, _metrics, experiment_name, export_run, metric_key
from dreamteam.store import RunStore
from test_report import build_run

needs_mlflow = pytest.mark.skipif(
    importlib.util.find_spec("mlflow") is None,
    reason="mlflow is not installed (pip install -e '.[mlflow]')",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> RunStore:
    # three generations of five keep changes (their tests are exported too)
    return build_run(tmp_path_factory.mktemp("mlflow") / "run", generations=3, team_size=5)


@pytest.fixture
def file_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses file stores without it
    return (tmp_path / "mlruns").as_uri()


@needs_mlflow
def test_each_candidate_becomes_an_mlflow_run(run: RunStore, file_store: str) -> None:
    from mlflow.tracking import MlflowClient

    candidates = run.candidates()
    assert export_run(run, file_store) == len(candidates)
    client = MlflowClient(tracking_uri=file_store)
    experiment = client.get_experiment_by_name(experiment_name(run.run_info().id))
    assert experiment is not None
    exported = {
        r.data.tags[CANDIDATE_TAG]: r for r in client.search_runs([experiment.experiment_id])
    }
    assert set(exported) == {c.id for c in candidates}

    c = next(c for c in candidates if c.kind == "proposal" and c.status == Status.OK)
    mlrun = exported[c.id]
    params = mlrun.data.params
    assert (params["persona"], params["mode"], params["parent"]) == (c.persona, c.mode, c.parent)
    assert (params["generation"], params["model"], params["status"]) == ("1", c.model, "ok")
    for t in run.trials(c.id):
        key = f"{t.fidelity}/seed_{t.seed}"
        assert mlrun.data.metrics[f"{key}/val_loss"] == pytest.approx(t.val_loss)
        assert mlrun.data.metrics[f"{key}/bpb"] == pytest.approx(t.bpb)
        assert mlrun.data.metrics[f"{key}/train_seconds"] == pytest.approx(t.train_seconds)
    stats = gather_statistics(run, config_from_dict(run.run_info().config))
    assert experiment.tags["dreamteam.screen_confirm"] == stats.correlation_line
    kept = [(k, exported[k.candidate]) for k in stats.kept]
    assert kept, "the fake run keeps a change: its tests must be exported"
    for k, holder in kept:
        key = f"kept/vs_{k.against}/{k.fidelity}"
        assert holder.data.metrics[f"{key}/p"] == pytest.approx(k.p)
        assert holder.data.metrics[f"{key}/p_holm"] == pytest.approx(k.p_holm)
        assert holder.data.metrics[f"{key}/delta"] == pytest.approx(k.delta)
    curve = client.get_metric_history(mlrun.info.run_id, "curve/train_loss")
    assert len(curve) > 2 and curve[0].step == 0
    top = {a.path for a in client.list_artifacts(mlrun.info.run_id)}
    assert {"files", "diff.patch", "answer.md", "log.txt"} <= top
    files = {a.path for a in client.list_artifacts(mlrun.info.run_id, "files")}
    assert files == {f"files/{name}" for name in c.files}
    assert mlrun.info.status == "FINISHED"

    assert export_run(run, file_store) == 0  # a second export adds nothing


@needs_mlflow
def test_the_command_writes_into_the_run_directory_by_default(run: RunStore) -> None:
    export_mlflow(run=str(run.run_dir), tracking_uri=None)
    assert (run.run_dir / "mlflow.db").is_file()
    assert any((run.run_dir / "mlartifacts").rglob("train.py"))


def test_a_missing_mlflow_is_a_user_error(run: RunStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match="pip install"):
        export_run(run, "file:///nowhere")


def test_a_task_s_own_figures_are_exported_under_keys_mlflow_accepts() -> None:
    trial = TrialRecord(
        candidate="g1-x",
        fidelity="low",
        seed=1338,
        status=Status.OK,
        reason="",
        val_loss=0.5,
        bpb=None,
        self_loss=None,
        train_seconds=1.0,
        eval_seconds=1.0,
        steps=10,
        iters=10,
        n_params=100,
        figures={"accuracy": 0.9, "f1@macro (%)": 71.0, "bpb": 1.5},
    )
    keys = {k: v for k, v, _ in _metrics([trial], "")}
    assert keys["low/seed_1338/accuracy"] == 0.9
    assert keys["low/seed_1338/f1_macro ___"] == 71.0
    assert "low/seed_1338/bpb" not in keys  # bpb is a measure of its own (None here)
    assert metric_key("a/b c-d.e_f") == "a/b c-d.e_f"
