"""The full prompt for one proposal: persona, current code, constraints, and what was learned.

Pure: strings and dataclasses in, a string out. The persona part is the persona library's
rendering (byte-exact seeds for the built-in task); the sections after it carry the current
files, the protected constants, the steering text and a history trimmed to a budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dreamteam.personas import Persona, PromptView, render_prompt
from dreamteam.tasks import Task

CHARS_PER_TOKEN = 4  # a rough, provider-neutral estimate


@dataclass(frozen=True)
class HistoryItem:
    """One earlier candidate, as the next prompt reports it."""

    candidate: str
    persona: str
    status: str
    val_loss: float | None
    delta: float | None  # against its parent; negative is better
    summary: str  # what the agent said it changed, or why it failed
    change: str = ""  # what the code changed (records.ChangeRecord.compact)
    figures: Mapping[str, float] = field(default_factory=dict)  # the screening's other figures


def task_view(task: Task) -> PromptView:
    """The task as the persona templates name it (the seeds' names for the built-in task)."""
    entry = task.contract.entry_file
    names = [entry] + [n for n in task.editable if n != entry]
    return PromptView(
        files=tuple(task.display_name(n) for n in names),
        entry_point=task.contract.entry_point,
        returns=", ".join(task.contract.returns),
    )


def _code_section(task: Task, files: Mapping[str, str]) -> str:
    parts = ["## The current code", "", "This is the code you start from (the current best)."]
    for name in task.editable:
        parts += ["", f"```python\n{task.display_name(name)}\n{files[name].rstrip()}\n```"]
    return "\n".join(parts)


def _constraints_section(task: Task) -> str:
    pinned = ", ".join(f"{k} = {v!r}" for k, v in task.protected.items())
    entry = task.display_name(task.contract.entry_file)
    args = ", ".join(task.contract.arguments)
    return "\n".join(
        [
            "## Rules the harness enforces",
            f"- Protected constants in `{entry}` (checked before anything runs): {pinned}.",
            f"- `{task.contract.entry_point}({args})` is called by the harness; train for exactly "
            "`iters` optimizer steps of a torch.optim optimizer and save the checkpoint it expects.",
            _scoring_rule(task),
        ]
    )


def _scoring_rule(task: Task) -> str:
    """How the harness scores: the LM task's rule, or a task with a harness file's."""
    blocked = "Network, subprocesses and files outside the work directory are blocked."
    if task.is_lm:
        return (
            "- The harness scores the saved model itself on the whole validation split; "
            f"the model must be causal. {blocked}"
        )
    about = f"- The task: {task.description}\n" if task.description else ""
    return (
        f"{about}- The harness scores the saved model itself on an evaluation split only it "
        f"holds ({task.objective}, lower is better): it calls the model on batches of "
        f"evaluation inputs, and each row's output must depend on that row alone. {blocked}"
    )


def _history_section(items: Sequence[HistoryItem], budget_chars: int) -> str:
    if not items:
        return ""
    lines = [
        "## What the team has tried so far",
        "",
        "Each line: what the code changed (hyperparameters from→to, definitions added +, "
        "changed ~ or removed -, [techniques]), then what it gave at screening.",
        "",
    ]
    used = sum(len(line) for line in lines)
    for shown, item in enumerate(items):
        loss = f"val_loss {item.val_loss:.4f}" if item.val_loss is not None else item.status
        loss += "".join(f", {name} {value:.4f}" for name, value in item.figures.items())
        delta = f" ({item.delta:+.4f} vs its parent)" if item.delta is not None else ""
        what = f"{item.change} → " if item.change else ""
        said = f" {item.summary[:200]}" if item.summary else ""
        line = f"- {item.candidate} by {item.persona}: {what}{loss}{delta}.{said}".rstrip()
        if used + len(line) > budget_chars:
            lines.append(f"- ... and {len(items) - shown} more")
            break
        lines.append(line)
        used += len(line)
    return "\n".join(lines)


STRUCTURAL_REQUEST = (
    "## This proposal must be structural\n\n"
    "This slot is reserved for a structural change: change how the model or its training "
    "works (architecture, normalisation, attention, the optimizer, the schedule's code, the "
    "loss), not only the values of constants or literal arguments. A small learning-rate "
    "adjustment may come with it, since the best step size moves with the structure."
)
"""The section a proposal reserved by --structural-share gets (after the rules)."""


def build_prompt(
    persona: Persona,
    task: Task,
    files: Mapping[str, str],
    history: Sequence[HistoryItem] = (),
    steering: str = "",
    max_tokens: int = 24_000,
    structural: bool = False,
) -> str:
    """Persona prompt + current code + rules (+ the structural request) + steering + history,
    within max_tokens."""
    head = render_prompt(persona, task_view(task))
    sections = [head, _code_section(task, files), _constraints_section(task)]
    if structural:
        sections.append(STRUCTURAL_REQUEST)
    if steering.strip():
        sections.append("## Guidance from the person running this search\n\n" + steering.strip())
    used = sum(len(s) for s in sections)
    history_text = _history_section(history, max(max_tokens * CHARS_PER_TOKEN - used, 400))
    if history_text:
        sections.append(history_text)
    return "\n\n".join(sections)


def repair_note(status: str, reason: str, log: str) -> str:
    """The section that gives a persona another turn at its own failed candidate."""
    tail = "\n".join(log.strip().splitlines()[-25:])
    return "\n".join(
        [
            "## Your previous attempt failed",
            "",
            f"The code above is your last answer. The harness rejected it: {status}: {reason}",
            *(["", "The end of its log:", "```", tail, "```"] if tail else []),
            "",
            "Fix the problem and answer again in the same format, with the whole files.",
        ]
    )
