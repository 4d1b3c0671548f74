"""`dreamteam export-mlflow RUN`: copy a run into an MLflow tracking store."""

from __future__ import annotations

import typer

from dreamteam.cli.context import console
from dreamteam.cli.research import resolve_run
from dreamteam.report.mlflow import experiment_name, export_run
from dreamteam.store import RunStore


def export_mlflow(
    run: str | None = typer.Argument(None, help="A run id or directory (default: the newest)."),
    tracking_uri: str | None = typer.Option(
        None,
        "--tracking-uri",
        envvar="MLFLOW_TRACKING_URI",
        help="Where to write (default: sqlite:///RUN/mlflow.db, artifacts in RUN/mlartifacts).",
    ),
) -> None:
    """Export every candidate of a run as an MLflow run (needs the `mlflow` extra)."""
    path = resolve_run(run)
    store = RunStore.open_existing(path)
    # the default keeps everything inside the run directory; MLflow 3 refuses plain file
    # stores unless MLFLOW_ALLOW_FILE_STORE=true, so a database file is the portable choice
    uri = tracking_uri or f"sqlite:///{(path / 'mlflow.db').resolve()}"
    artifacts = None if tracking_uri else (path / "mlartifacts").resolve().as_uri()
    written = export_run(store, uri, artifact_location=artifacts)
    name = experiment_name(store.run_info().id)
    store.close()
    console.print(f"exported {written} new candidate(s) to experiment {name}")
    print(f"mlflow: {uri}")
    if not tracking_uri:
        console.print(f"view it with: mlflow ui --backend-store-uri {uri}")
