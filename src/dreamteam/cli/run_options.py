"""The options of `dreamteam run`, one line each, so the command reads as its body."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from dreamteam.config import RunConfig


def _help(text: str, field: str) -> str:
    """An option's help with RunConfig's default for it. The options themselves default to
    None, so that a --config file's values are not overridden by a default nobody typed."""
    value = getattr(RunConfig, field)
    shown = ",".join(value) if isinstance(value, tuple) else str(value)
    return escape(f"{text} [default: {shown or 'none'}]")  # help is rich markup: keep the [


ConfigOpt = Annotated[Path | None, typer.Option("--config", help="A TOML file with run settings.")]
TaskOpt = Annotated[
    str | None,
    typer.Option("--task", help=_help("A built-in task name or a task directory.", "task")),
]
PersonasOpt = Annotated[
    str | None,
    typer.Option(
        "--personas",
        help=_help(
            "Comma-separated persona slugs, e.g. archimedes,ada-lovelace (none: drawn).", "personas"
        ),
    ),
]
ModesOpt = Annotated[
    str | None,
    typer.Option(
        "--modes",
        help=_help("Persona modes the team is drawn from (comma-separated).", "modes"),
    ),
]
TeamSizeOpt = Annotated[
    int | None,
    typer.Option(
        "--team-size",
        min=1,
        help=_help("Personas drawn for the team.", "team_size"),
    ),
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        help=_help(
            "The agents: offline, openai:MODEL, anthropic:MODEL, ..., or MODE=SPEC,...", "model"
        ),
    ),
]
GenerationsOpt = Annotated[
    int | None,
    typer.Option(
        "--generations",
        min=1,
        help=_help("Generations after the baseline.", "generations"),
    ),
]
FidelityOpt = Annotated[
    str | None,
    typer.Option(
        "--fidelity",
        help=_help("Confirmation fidelity: smoke|low|medium|full.", "fidelity"),
    ),
]
SeedsOpt = Annotated[
    int | None,
    typer.Option("--seeds", min=2, help=_help("Seeds per confirmation (>= 2).", "seeds")),
]
MaxSeedsOpt = Annotated[
    int | None,
    typer.Option(
        "--max-seeds",
        min=1,
        help=_help(
            "Seeds a close call may grow to, one at a time, before it is judged "
            "(at most --seeds: no extra seeds).",
            "max_seeds",
        ),
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", min=1, help=_help("Trials trained at once.", "workers")),
]
ExecutorOpt = Annotated[
    str | None,
    typer.Option(
        "--executor",
        help=_help("local, or ray (extra `ray`): each trial a Ray task.", "executor"),
    ),
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        help=_help("ray: the cluster to attach to (auto: this machine's).", "address"),
    ),
]
AgentConcurrencyOpt = Annotated[
    int | None,
    typer.Option(
        "--agent-concurrency",
        min=1,
        help=_help("LLM calls in flight at once (1: in line).", "agent_concurrency"),
    ),
]
AgentTimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--agent-timeout",
        min=0,
        help=_help("Seconds for a whole agent call, retries included.", "agent_timeout"),
    ),
]
RunDirOpt = Annotated[
    Path | None,
    typer.Option("--run-dir", help="Where the run lives (default: DREAMTEAM_HOME/runs/ID)."),
]
ResumeOpt = Annotated[
    Path | None, typer.Option("--resume", help="Continue the run in this directory.")
]
BudgetMinutesOpt = Annotated[
    float | None,
    typer.Option(
        "--budget-minutes",
        min=0,
        help=_help("Stop between generations after M minutes (0: none).", "budget_minutes"),
    ),
]
RepairOpt = Annotated[
    int | None,
    typer.Option(
        "--repair",
        min=0,
        help=_help("Turns a failed candidate's persona gets to fix it.", "repair"),
    ),
]
AllocationOpt = Annotated[
    str | None,
    typer.Option(
        "--allocation",
        help=_help("uniform (each persona once) or bandit (more to winners).", "allocation"),
    ),
]
AllocationFloorOpt = Annotated[
    int | None,
    typer.Option(
        "--allocation-floor",
        min=1,
        help=_help("bandit: each persona once in N generations.", "allocation_floor"),
    ),
]
StructuralShareOpt = Annotated[
    float | None,
    typer.Option(
        "--structural-share",
        help=_help(
            "Share of each generation's proposals asked for a structural change (0 to 1).",
            "structural_share",
        ),
    ),
]
ScreenFidelityOpt = Annotated[
    str | None,
    typer.Option(
        "--screen-fidelity",
        help=_help("Screening fidelity: every valid candidate runs here once.", "screen_fidelity"),
    ),
]
StrategyOpt = Annotated[
    str | None,
    typer.Option(
        "--strategy",
        help=_help(
            "parallel (all from the parent) or chain (each from the last best).", "strategy"
        ),
    ),
]
DeviceOpt = Annotated[
    str | None,
    typer.Option("--device", help=_help("auto, cpu, cuda or mps.", "device")),
]
RecordOpt = Annotated[
    str | None,
    typer.Option(
        "--record",
        help=_help(
            "Record LLM answers to this cassette (replay with --model replay:PATH).", "record"
        ),
    ),
]
BudgetTokensOpt = Annotated[
    int | None,
    typer.Option(
        "--budget-tokens",
        min=0,
        help=_help("Stop after this many agent tokens (in + out).", "budget_tokens"),
    ),
]
BudgetCostOpt = Annotated[
    float | None,
    typer.Option(
        "--budget-cost",
        min=0,
        help=_help("Stop after this many USD of agent calls.", "budget_cost"),
    ),
]
ObjectiveOpt = Annotated[
    str | None,
    typer.Option("--objective", help=_help("loss, bpb, loss+time or pareto.", "objective")),
]
TimeWeightOpt = Annotated[
    float | None,
    typer.Option(
        "--time-weight",
        min=0,
        help=_help("loss+time: nats per training minute.", "time_weight"),
    ),
]
TimeToleranceOpt = Annotated[
    float | None,
    typer.Option(
        "--time-tolerance",
        min=0,
        help=_help("pareto: slower by this fraction still counts as not slower.", "time_tolerance"),
    ),
]
EliteOpt = Annotated[
    int | None,
    typer.Option("--elite", min=0, help=_help("Confirmed candidates kept (0: off).", "elite")),
]
CrossoverOpt = Annotated[
    int | None,
    typer.Option(
        "--crossover",
        min=0,
        max=1,
        help=_help("1: add a crossover of two elite members.", "crossover"),
    ),
]
PlainOpt = Annotated[bool, typer.Option("--plain", help="Plain lines instead of a live panel.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="Only the closing lines.")]
FinalFidelityOpt = Annotated[
    str | None,
    typer.Option(
        "--final-fidelity",
        help="Measure the final best and baseline here on fresh seeds (default: the "
        "confirmation fidelity; `full` for the real budget).",
    ),
]
FinalTopOpt = Annotated[
    int | None,
    typer.Option(
        "--final-top",
        min=1,
        help=_help(
            "Re-rank the elite's top N at the final fidelity (one seed each) and claim the "
            "best there: what wins at the confirmation fidelity may not last.",
            "final_top",
        ),
    ),
]
AblateOpt = Annotated[
    bool, typer.Option("--ablate", help="At the end, measure what each part of the best is worth.")
]
