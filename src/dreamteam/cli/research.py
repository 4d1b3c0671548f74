"""`dreamteam run` and the commands that read runs: runs list, show, diff, export, steer."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import typer
from rich.table import Table

from dreamteam.agents.budget import Limits
from dreamteam.cli import run_options as opt
from dreamteam.cli.ablation import ablate_run
from dreamteam.cli.context import console, settings
from dreamteam.cli.progress import Progress, choose_mode
from dreamteam.config import RunConfig, config_from_dict, load_run_config
from dreamteam.errors import StoreError, TaskError
from dreamteam.execute.devices import cpu_threads
from dreamteam.harness.sampling import SamplingSettings, sample_tokens
from dreamteam.harness.sandbox.launcher import probe_isolation
from dreamteam.loop.build import build_search, conclude, writing
from dreamteam.loop.plan import BASELINE_ID
from dreamteam.propose.allocation import repair_rescue
from dreamteam.propose.edits import diff_files
from dreamteam.records import CandidateRecord, ChangeKind, RunSummary
from dreamteam.report import write_report
from dreamteam.store import RunStore, list_runs
from dreamteam.store.faults import os_fault
from dreamteam.tasks import load_task
from dreamteam.tasks.data import load_tokenizer

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
    final_fidelity: opt.FinalFidelityOpt = None,
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
    """Run the research loop: propose, screen, confirm, select, for N generations."""
    options = {k: v for k, v in locals().items() if k not in _NOT_CONFIG}
    # a new run's config is checked before its folder exists
    cfg = None if resume is not None else load_run_config(config, options)
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
        _print_summary(summary, write_report(store, store.run_dir / "report.html"))
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
    print(
        f"best: {summary.best} {summary.persona} val_loss={summary.val_loss:.4f} "
        f"baseline={summary.baseline:.4f} delta={summary.delta:+.4f} ci95={summary.ci95:.4f} "
        f"fidelity={summary.fidelity} steps={summary.steps}"
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
    defaults = RunConfig()
    screen_at = str(info.config.get("screen_fidelity", defaults.screen_fidelity))
    confirm_at = str(info.config.get("fidelity", defaults.fidelity))
    table = Table(
        "candidate",
        "persona",
        "status",
        f"loss@{screen_at}",
        f"mean@{confirm_at}",
        "change",
        "reason / summary",
        title=f"run {store.run_dir.name}",
    )
    rows = []
    for c in store.candidates():
        trials = store.trials(c.id)
        screen = [t.val_loss for t in trials if t.fidelity == screen_at and t.val_loss]
        confirm = [t.val_loss for t in trials if t.fidelity == confirm_at and t.val_loss]
        key = min(screen) if screen else float("inf")
        rows.append((key, c, screen, confirm))
    for _, c, screen, confirm in sorted(rows, key=lambda r: r[0]):
        table.add_row(
            c.id,
            c.persona,
            c.status or "pending",
            f"{screen[0]:.4f}" if screen else "-",
            f"{sum(confirm) / len(confirm):.4f} (n={len(confirm)})" if confirm else "-",
            str(c.record.kind) if c.record and c.record.kind else "-",
            _cut(c.reason or c.summary),
        )
    console.print(table)
    for _, c, _, _ in sorted(rows, key=lambda r: r[0]):
        if len(c.reason) > _CELL:  # whole, wrapped: the fix is at its end
            console.print(f"{c.id}: {c.reason}", markup=False)
    _show_change_kinds(store.candidates())
    for g in store.generations():
        console.print(f"gen {g.number}: {g.note}")
    _show_allocation(store)


_CELL = 70  # characters of a reason or summary in show's table


def _cut(text: str) -> str:
    return text if len(text) <= _CELL else text[: _CELL - 1] + "…"


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


def _open_candidate(run: str | None, candidate: str) -> tuple[RunStore, CandidateRecord]:
    store = RunStore.open_existing(resolve_run(run))
    c = store.candidate(candidate)
    if c is None:
        raise StoreError(
            f"no candidate {candidate!r} in {store.run_dir.name}: see `dreamteam show`"
        )
    return store, c


def diff(
    candidate: str = typer.Argument(..., help="A candidate id, e.g. g1-archimedes."),
    other: str = typer.Argument(None, help="Another candidate (default: its parent)."),
    run: str = typer.Option(None, "--run", help="The run (default: the newest)."),
) -> None:
    """The diff of a candidate against its parent, or against another candidate."""
    store, c = _open_candidate(run, candidate)
    base_id = other or c.parent
    base = store.candidate(base_id) if base_id else None
    if base is None:
        raise StoreError(f"no candidate {base_id!r} to compare with")
    print(diff_files(base.files, c.files) or "(no difference)")


def export(
    run: str = typer.Argument(..., help="A run id or directory."),
    candidate: str = typer.Argument(..., help="A candidate id."),
    directory: Path = typer.Argument(..., help="Where to write the files."),
) -> None:
    """Write a candidate's files, ready to use."""
    store, c = _open_candidate(run, candidate)
    directory.mkdir(parents=True, exist_ok=True)
    for name, source in c.files.items():
        (directory / name).write_text(source, encoding="utf-8")
    (directory / "provenance.json").write_text(
        json.dumps(
            {
                "run": str(store.run_dir),
                "candidate": c.id,
                "persona": c.persona,
                "parent": c.parent,
                "status": c.status,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    console.print(f"wrote {', '.join(c.files)} to {directory}")


def steer(
    run: str = typer.Argument(..., help="A run id or directory."),
    text: str = typer.Argument(..., help="Guidance for the next generations' prompts."),
) -> None:
    """Write the run's steering.md (read at the start of every generation)."""
    path = resolve_run(run) / "steering.md"
    tmp = path.with_suffix(".md.tmp")
    try:
        tmp.write_text(text.strip() + "\n", encoding="utf-8")
        os.replace(tmp, path)  # atomic: a generation never reads half a file
    except OSError as exc:
        raise os_fault(path.parent, exc) from exc
    console.print(f"steering saved to {path}; it takes effect at the next generation")


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


def sample(
    candidate: str = typer.Argument(..., help="A candidate id, e.g. g1-archimedes."),
    run: str = typer.Option(None, "--run", help="The run (default: the newest)."),
    prompt: str = typer.Option("\n", "--prompt", help="Text to continue."),
    tokens: int = typer.Option(200, "--tokens", min=1, help="Tokens to generate."),
    temperature: float = typer.Option(0.8, "--temperature", min=0.0),
    top_k: int = typer.Option(200, "--top-k", min=0, help="0 turns top-k off."),
    top_p: float = typer.Option(1.0, "--top-p", min=0.0, max=1.0),
    seed: int = typer.Option(1337, "--seed"),
) -> None:
    """Generate text from a trained candidate (its kept weights, its own model code)."""
    store, c = _open_candidate(run, candidate)
    ckpt = store.candidate_dir(c) / "ckpt.pt"
    if not ckpt.is_file():
        raise StoreError(
            f"{c.id} kept no trained weights (only confirmed candidates do): "
            f"`dreamteam export {store.run_dir.name} {c.id} DIR` then `dreamteam train` it"
        )
    s = settings()
    info = store.run_info()
    t = load_task(str(info.config.get("task") or info.task))
    if not t.is_lm:
        raise TaskError(f"task {t.name!r} is not a language model: there is no text to sample")
    encoding = load_tokenizer(home=s.home, mirror=s.mirror)
    ids = sample_tokens(
        t,
        c.files,
        ckpt,
        encoding.encode_ordinary(prompt),
        SamplingSettings(tokens, temperature, top_k, top_p, seed),
        probe_isolation(),
        threads=cpu_threads(1),
    )
    print(encoding.decode(ids))
