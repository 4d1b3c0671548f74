"""Copy a run into MLflow: one experiment per run, one MLflow run per candidate.

    experiment  dreamteam-<run id>
      run       <candidate id>
        params    persona, mode, parent, generation, model, status, kind
        metrics   <fidelity>/seed_<seed>/{val_loss,bpb,train_seconds,<each figure score() returns>},
                  <fidelity>/val_loss_mean, curve/{train_loss,held_out_loss} (step = iteration),
                  kept/vs_<other>/<fidelity>/{delta,p,p_holm} for each kept change
      tags      the run's screen->confirm rank correlation on the experiment
        artifacts files/<name>, diff.patch, answer.md, log.txt

MLflow is an optional extra (`pip install 'dreamteam[mlflow]'`), imported only when exporting.
Exporting again adds only the candidates the experiment does not hold yet.
"""

from __future__ import annotations

import re
import statistics
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dreamteam.config import config_from_dict
from dreamteam.errors import ConfigError
from dreamteam.records import CandidateRecord, KeptChange, RunInfo, Status, TrialRecord
from dreamteam.report.evidence import Statistics, gather_statistics
from dreamteam.report.views import parse_curve
from dreamteam.store import RunStore

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

CANDIDATE_TAG = "dreamteam.candidate"
_BATCH = 1000  # MLflow's cap on metrics per log_batch call
_MEASURES = ("val_loss", "bpb", "train_seconds")


def experiment_name(run_id: str) -> str:
    """The MLflow experiment a run is exported into."""
    return f"dreamteam-{run_id}"


def _client(tracking_uri: str) -> MlflowClient:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise ConfigError(
            "MLflow is not installed: pip install 'dreamteam[mlflow]' to export runs"
        ) from exc
    return MlflowClient(tracking_uri=tracking_uri)


def _params(c: CandidateRecord) -> dict[str, str]:
    return {
        "persona": c.persona,
        "mode": c.mode,
        "parent": c.parent or "-",
        "generation": str(c.generation),
        "model": c.model or "-",
        "status": c.status or "pending",
        "kind": c.kind,
    }


def metric_key(name: str) -> str:
    """`name` as an MLflow metric key: a task's own figure may use any characters, MLflow
    accepts letters, digits, `_ - . /` and spaces."""
    return re.sub(r"[^\w\-. /]", "_", name, flags=re.ASCII)


def _metrics(
    trials: Sequence[TrialRecord], log: str, kept: Sequence[KeptChange] = ()
) -> Iterator[tuple[str, float, int]]:
    """(key, value, step) for every measurement of one candidate, its training curve and
    the tests of its kept changes."""
    by_fidelity: dict[str, list[float]] = {}
    for t in trials:
        seed = f"{t.fidelity}/seed_{t.seed}"
        for name in _MEASURES:
            value = getattr(t, name)
            if value is not None:
                yield f"{seed}/{name}", float(value), 0
        for name, value in t.figures.items():
            if name not in _MEASURES:
                yield f"{seed}/{metric_key(name)}", float(value), 0
        if t.status is Status.OK and t.val_loss is not None:
            by_fidelity.setdefault(t.fidelity, []).append(t.val_loss)
    for fidelity, losses in by_fidelity.items():
        yield f"{fidelity}/val_loss_mean", statistics.fmean(losses), 0
    curve = parse_curve(log)
    for step, loss, held in zip(curve.iters, curve.loss, curve.vloss, strict=True):
        yield "curve/train_loss", loss, step
        if held is not None:
            yield "curve/held_out_loss", held, step
    for k in kept:
        key = f"kept/vs_{k.against}/{k.fidelity}"
        yield from ((f"{key}/delta", k.delta, 0), (f"{key}/p", k.p, 0))
        yield f"{key}/p_holm", k.p_holm, 0


def _write_artifacts(folder: Path, c: CandidateRecord, log: str) -> None:
    for name, source in c.files.items():
        target = folder / "files" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source, encoding="utf-8")
    for name, text in (("diff.patch", c.diff), ("answer.md", c.response), ("log.txt", log)):
        if text:
            (folder / name).write_text(text, encoding="utf-8")


def _experiment(
    client: MlflowClient, info: RunInfo, stats: Statistics, artifact_location: str | None
) -> str:
    name = experiment_name(info.id)
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return str(existing.experiment_id)
    tags = {"dreamteam.run": info.id, "dreamteam.task": info.task}
    tags["dreamteam.screen_confirm"] = stats.correlation_line
    return str(client.create_experiment(name, artifact_location=artifact_location, tags=tags))


def _exported(client: MlflowClient, experiment_id: str) -> set[str]:
    done, token = set(), None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        done |= {r.data.tags.get(CANDIDATE_TAG, "") for r in page}
        token = page.token
        if not token:
            return done


def _export_candidate(
    client: MlflowClient,
    experiment_id: str,
    store: RunStore,
    c: CandidateRecord,
    start: int,
    kept: Sequence[KeptChange],
) -> None:
    from mlflow.entities import Metric, Param

    log = store.trial_log(c.id)
    tags = {CANDIDATE_TAG: c.id, "dreamteam.reason": c.reason[:5000]}
    if c.summary:
        tags["mlflow.note.content"] = c.summary
    run_id = client.create_run(
        experiment_id, start_time=start, tags=tags, run_name=c.id
    ).info.run_id
    client.log_batch(run_id, params=[Param(k, v) for k, v in _params(c).items()])
    metrics = [Metric(k, v, start, step) for k, v, step in _metrics(store.trials(c.id), log, kept)]
    for i in range(0, len(metrics), _BATCH):
        client.log_batch(run_id, metrics=metrics[i : i + _BATCH])
    with tempfile.TemporaryDirectory(prefix="dreamteam-mlflow-") as tmp:
        _write_artifacts(Path(tmp), c, log)
        client.log_artifacts(run_id, tmp)
    failed = c.status not in ("", Status.OK)
    client.set_terminated(run_id, status="FAILED" if failed else "FINISHED", end_time=start)


def export_run(store: RunStore, tracking_uri: str, artifact_location: str | None = None) -> int:
    """Write each candidate not yet exported as an MLflow run; return how many were written.

    `artifact_location` applies only when the experiment is created (MLflow's default for a
    database store is ./mlruns under the current directory).
    """
    client = _client(tracking_uri)
    info = store.run_info()
    stats = gather_statistics(store, config_from_dict(info.config))
    experiment_id = _experiment(client, info, stats, artifact_location)
    done = _exported(client, experiment_id)
    # the run's own clock, so exporting twice gives the same timestamps
    start = int(info.created * 1000)
    written = 0
    for c in store.candidates():
        if c.id not in done:
            _export_candidate(client, experiment_id, store, c, start, stats.kept_for(c.id))
            written += 1
    return written
