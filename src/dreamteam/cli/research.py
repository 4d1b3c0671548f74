"""`dreamteam run` and the commands that read runs: runs list, show, report (candidates.py
holds the commands that take a candidate)."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import typer
from rich.table import Table

from dreamteam.agents.budget import Limits
from dreamteam.cli import leaderboard
from dreamteam.cli import run_options as opt
from dreamteam.cli.ablation import ablate_run
from dreamteam.cli.context import console, settings
from dreamteam.cli.progress import Progress, choose_mode
from dreamteam.config import RunConfig, config_from_dict, load_run_config
from dreamteam.errors import ConfigError, StoreError
from dreamteam.loop.build import build_search, conclude, writing
from dreamteam.loop.plan import BASE_SEED, BASELINE_ID, seed_plan
from dreamteam.propose.allocation import repair_rescue
from dreamteam.records import CandidateRecord, ChangeKind, RunSummary
from dreamteam.report import write_report
from dreamteam.select.evidence import (
    describe_correlation,
    describe_kept,
    describe_rerank,
    run_evidence,
)
from dreamteam.select.judge import Judge
from dreamteam.store import RunStore, list_runs

runs_app = typer.Typer(help="Runs on this machine.", no_args_is_help=True)


def _new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]


def run(
    config: opt.ConfigOpt = None,
    task: opt.TaskOpt = None,
    personas: opt.PersonasOpt = None,
    modes: opt.ModesOpt = None,
    team_size: opt.TeamSizeOpt = None,
    model: opt.ModelOpt = None,
    generations: opt.GenerationsOpt = None,
    fidelity: opt.FidelityOpt = None,
    seeds: opt.SeedsOpt = None,
    max_seeds: opt.MaxSeedsOpt = None,
    final_fidelity: opt.FinalFidelityOpt = None,
    final_top: opt.FinalTopOpt = None,
    workers: opt.WorkersOpt = None,
    executor: opt.ExecutorOpt = None,
    address: opt.AddressOpt = None,
    agent_concurrency: opt.AgentConcurrencyOpt = None,
    agent_timeout: opt.AgentTimeoutOpt = None,
    run_dir: opt.RunDirOpt = None,
    resume: opt.ResumeOpt = None,
    budget_minutes: opt.BudgetMinutesOpt = None,
    repair: opt.RepairOpt = None,
    allocation: opt.AllocationOpt = None,
    allocation_floor: opt.AllocationFloorOpt = None,
    structural_share: opt.StructuralShareOpt = None,
    screen_fidelity: opt.ScreenFidelityOpt = None,
    strategy: opt.StrategyOpt = None,
    device: opt.DeviceOpt = None,
    record: opt.RecordOpt = None,
    budget_tokens: opt.BudgetTokensOpt = None,
    budget_cost: opt.BudgetCostOpt = None,
    objective: opt.ObjectiveOpt = None,
    time_weight: opt.TimeWeightOpt = None,
    time_tolerance: opt.TimeToleranceOpt = None,
    elite: opt.EliteOpt = None,
    crossover: opt.CrossoverOpt = None,
    plain: opt.PlainOpt = False,
    quiet: opt.QuietOpt = False,
    ablate: opt.AblateOpt = False,
) -> None:
    """Run the research loop: propose, screen, confirm, select, for N generations.

    Examples:

      dreamteam run                      (offline agent, built-in task: a few minutes on a CPU)

      dreamteam run --personas archimedes,ada-lovelace --generations 3

      dreamteam run --model openai:gpt-4o-mini --config run.toml --budget-cost 2

      dreamteam run --task my-task/      (a task of your own: see `dreamteam task init`)
    """
    options = {k: v for k, v in locals().items() if k not in _NOT_CONFIG}
    # a new run's config is checked before its folder exists
    cfg = None if resume is not None else load_run_config(config, options)
    if run_dir is not None and run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--run-dir {run_dir} is a file: give a directory (new or empty)")
    path = resume or run_dir or settings().runs_dir / _new_run_id()
    with writing(path, resume=resume is not None) as store:
        if cfg is None:
            console.print(f"resuming {store.run_dir}")
            cfg = config_from_dict(store.run_info().config)
        if (done := store.finished_summary()) is not None:
            console.print("the run had finished: nothing to do; its closing lines as stored")
            _print_summary(done, _report_of(store))
            return
        progress = Progress(
            console,
            choose_mode(console, plain, quiet),
            cfg.generations,
            Limits(cfg.budget_minutes, cfg.budget_tokens, cfg.budget_cost),
        )
        search = build_search(cfg, store, on_event=progress, settings=settings())
        _print_start(store.run_dir, cfg, [p.slug for p in search.team])
        with progress:
            summary = conclude(search)
        _print_summary(summary, _report_of(store))  # the search wrote its final page
    if ablate and summary.best != BASELINE_ID:  # after the lock: ablate only reads the run
        ablate_run(store.run_dir, summary.best, None, None)


# `run`'s parameters that are not RunConfig fields
_NOT_CONFIG = frozenset({"config", "run_dir", "resume", "plain", "quiet", "ablate"})


def _print_start(run_dir: Path, cfg: RunConfig, team: list[str]) -> None:
    console.print(f"run {run_dir}")
    console.print(
        f"team: {', '.join(team)}; model: {cfg.model}; "
        f"screen at {cfg.screen_fidelity}, confirm at {cfg.fidelity} x {cfg.seeds} seeds; "
        f"objective {cfg.objective}"
    )


def _report_of(store: RunStore) -> Path:
    """The run's report, written only if it is missing (a finished run is not rewritten)."""
    path = store.run_dir / "report.html"
    return path if path.is_file() else write_report(store, path)


def _print_summary(summary: RunSummary, report: Path) -> None:
    if summary.stopped:
        console.print(f"stopped early: {summary.stopped}")
    counts = ", ".join(f"{k}={v}" for k, v in sorted(summary.statuses.items()))
    console.print(
        f"{summary.candidates} candidates ({counts}); final figures at {summary.fidelity} "
        f"on fresh seeds {list(summary.seeds)}"
    )
    if summary.elite:
        console.print(f"elite: {', '.join(summary.elite)}")
    if summary.tokens:
        console.print(f"agents: {summary.tokens:,} tokens, ${summary.cost:.4f}")
    if summary.agent_failures:
        faults = ", ".join(f"{fault} {n}" for fault, n in summary.agent_failures.items())
        console.print(f"agent failures: {faults} (reasons: dreamteam show {report.parent})")
    console.print(describe_correlation(summary.screen_confirm), markup=False)
    if summary.reranked:
        console.print(describe_rerank(summary.reranked, summary.fidelity, BASE_SEED), markup=False)
    print(
        f"best: {summary.best} {summary.persona} val_loss={summary.val_loss:.4f} "
        f"baseline={summary.baseline:.4f} delta={summary.delta:+.4f} ci95={summary.ci95:.4f} "
        f"fidelity={summary.fidelity} steps={summary.steps} "
        # a delta inside its interval is no win, whatever its sign
        f"beyond_noise={'yes' if summary.better else 'no'}"
    )
    print(f"report: {report}")


def resolve_run(run: str | None) -> Path:
    s = settings()
    if run:
        path = Path(run)
        if (path / "dreamteam.sqlite").is_file():
            return path
        if (s.runs_dir / run / "dreamteam.sqlite").is_file():
            return s.runs_dir / run
        raise StoreError(f"no run {run!r}: see `dreamteam runs list`")
    runs = list_runs(s.runs_dir)
    if not runs:
        raise StoreError("no runs yet: start one with `dreamteam run`")
    return runs[0]


@runs_app.command("list")
def runs_list() -> None:
    """List runs, newest first (a folder that holds no readable run is listed as such)."""
    table = Table("run", "task", "status", "candidates", "path")
    for path in list_runs(settings().runs_dir, every=True):
        try:
            store = RunStore.open_existing(path)
            try:
                info = store.run_info()
                row = [info.task, info.status, str(len(store.candidates()))]
            finally:
                store.close()
        except StoreError as exc:
            row = ["-", "no run" if "no run record" in str(exc) else "unreadable", "-"]
        table.add_row(path.name, *row, str(path))
    console.print(table)


def show(
    run: str = typer.Argument(None, help="A run id or directory (default: the newest)."),
) -> None:
    """The leaderboard of a run."""
    store = RunStore.open_existing(resolve_run(run))
    info = store.run_info()
    rows = leaderboard.ranked(store, info.config)
    board, lines = leaderboard.view(rows, info.config, f"run {store.run_dir.name}", console)
    console.print(board)
    for line in lines:
        console.print(line, markup=False)
    _show_change_kinds(store.candidates())
    for g in store.generations():
        console.print(f"gen {g.number}: {g.note}")
    _show_allocation(store)
    _show_evidence(store, config_from_dict(info.config))


def _show_evidence(store: RunStore, cfg: RunConfig) -> None:
    """The screen->confirm rank correlation (one line) and each kept change's p-values."""
    plan = seed_plan(cfg)
    judge = Judge(store, cfg, BASELINE_ID, plan.confirm, plan.recheck, plan.extra)
    rc, kept = run_evidence(store, judge, plan.screen)
    console.print(describe_correlation(rc), markup=False)
    for k in kept:
        console.print(f"kept: {describe_kept(k)}", markup=False)
    if (summary := store.summary()) is not None and summary.reranked:
        console.print(
            describe_rerank(summary.reranked, summary.fidelity, plan.screen), markup=False
        )


def _show_change_kinds(candidates: Sequence[CandidateRecord]) -> None:
    """How many proposals changed code and how many only moved hyperparameters."""
    kinds = Counter(c.record.kind for c in candidates if c.record and c.record.kind)
    labelled = sum(kinds.values())
    if labelled:
        structural = kinds[ChangeKind.STRUCTURAL]
        console.print(
            f"changes: {structural} structural, {kinds[ChangeKind.HYPERPARAMETER]} "
            f"hyperparameter ({structural / labelled:.0%} structural)"
        )


def _show_allocation(store: RunStore) -> None:
    """Who got the proposal slots of each generation, and what repair turns rescued."""
    for a in store.allocations():
        slots = ", ".join(f"{slug} {n}" for slug, n in a.slots if n)
        console.print(f"gen {a.generation} slots ({a.policy}): {slots}")
    rescue = repair_rescue(store.candidates())
    if rescue.fraction is not None:
        console.print(
            f"repair: rescued {rescue.rescued} of {rescue.repaired} failed candidates "
            f"({rescue.fraction:.0%})"
        )


def report(
    run: str = typer.Argument(None, help="A run id or directory (default: the newest)."),
    output: Path = typer.Option(None, "-o", "--output", help="Where to write the HTML."),
    open_: bool = typer.Option(False, "--open", help="Open it in a browser."),
) -> None:
    """Write the run's self-contained HTML report."""
    store = RunStore.open_existing(resolve_run(run))
    path = write_report(store, output or store.run_dir / "report.html")
    print(f"report: {path}")
    if open_:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())
