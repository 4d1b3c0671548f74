"""The options of `dreamteam run`, one line each, so the command reads as its body."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="A TOML file with run settings.")]
TaskOpt = Annotated[
    str | None, typer.Option("--task", help="A built-in task name or a task directory.")
]
PersonasOpt = Annotated[
    str | None, typer.Option("--personas", help="Comma-separated persona slugs.")
]
ModesOpt = Annotated[str | None, typer.Option("--modes", help="savant,collaborator,specialist")]
TeamSizeOpt = Annotated[
    int | None, typer.Option("--team-size", min=1, help="Personas drawn for the team.")
]
ModelOpt = Annotated[
    str | None, typer.Option("--model", help="offline, openai:MODEL, MODE=SPEC,...")
]
GenerationsOpt = Annotated[
    int | None, typer.Option("--generations", min=1, help="Generations after the baseline.")
]
FidelityOpt = Annotated[
    str | None, typer.Option("--fidelity", help="Confirmation fidelity: smoke|low|medium|full.")
]
SeedsOpt = Annotated[
    int | None, typer.Option("--seeds", min=2, help="Seeds per confirmation (>= 2).")
]
WorkersOpt = Annotated[int | None, typer.Option("--workers", min=1, help="Trials trained at once.")]
ExecutorOpt = Annotated[
    str | None,
    typer.Option("--executor", help="local, or ray (extra `ray`): each trial a Ray task."),
]
AddressOpt = Annotated[
    str | None,
    typer.Option("--address", help="ray: the cluster to attach to (auto: this machine's)."),
]
AgentConcurrencyOpt = Annotated[
    int | None,
    typer.Option("--agent-concurrency", min=1, help="LLM calls in flight at once (1: in line)."),
]
AgentTimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--agent-timeout", min=0, help="Seconds for a whole agent call, retries included."
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
        "--budget-minutes", min=0, help="Stop between generations after M minutes (0: none)."
    ),
]
RepairOpt = Annotated[
    int | None,
    typer.Option("--repair", min=0, help="Turns a failed candidate's persona gets to fix it."),
]
AllocationOpt = Annotated[
    str | None,
    typer.Option("--allocation", help="uniform (each persona once) or bandit (more to winners)."),
]
AllocationFloorOpt = Annotated[
    int | None,
    typer.Option("--allocation-floor", min=1, help="bandit: each persona once in N generations."),
]
ScreenFidelityOpt = Annotated[
    str | None, typer.Option("--screen-fidelity", help="Where every candidate starts.")
]
StrategyOpt = Annotated[str | None, typer.Option("--strategy", help="parallel or chain.")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or mps.")]
RecordOpt = Annotated[
    str | None, typer.Option("--record", help="Record LLM answers to this cassette.")
]
BudgetTokensOpt = Annotated[
    int | None,
    typer.Option("--budget-tokens", min=0, help="Stop after this many agent tokens (in + out)."),
]
BudgetCostOpt = Annotated[
    float | None,
    typer.Option("--budget-cost", min=0, help="Stop after this many USD of agent calls."),
]
ObjectiveOpt = Annotated[
    str | None, typer.Option("--objective", help="loss, bpb, loss+time or pareto.")
]
TimeWeightOpt = Annotated[
    float | None, typer.Option("--time-weight", min=0, help="loss+time: nats per training minute.")
]
TimeToleranceOpt = Annotated[
    float | None,
    typer.Option(
        "--time-tolerance",
        min=0,
        help="pareto: slower by this fraction still counts as not slower.",
    ),
]
EliteOpt = Annotated[
    int | None, typer.Option("--elite", min=0, help="Confirmed candidates kept (0: off).")
]
CrossoverOpt = Annotated[
    int | None,
    typer.Option("--crossover", min=0, max=1, help="1: add a crossover of two elite members."),
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
AblateOpt = Annotated[
    bool, typer.Option("--ablate", help="At the end, measure what each part of the best is worth.")
]
