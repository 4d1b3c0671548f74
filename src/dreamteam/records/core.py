"""The records of one candidate: the enums, what a change did, the candidate, its trials.

Also the run's spend and the events a display is told. Pure data.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum


class Status(StrEnum):
    """How a candidate's evaluation ended: exactly one per candidate."""

    OK = "ok"
    INVALID = "invalid"  # rejected by a static check or the run contract
    CRASHED = "crashed"  # raised, exited non-zero, or died by a signal
    TIMEOUT = "timeout"
    OOM = "oom"
    NAN = "nan"
    CHEATING = "cheating"  # failed an integrity probe


class Mode(StrEnum):
    """The three kinds of persona."""

    SAVANT = "savant"  # historical scientists and thinkers
    COLLABORATOR = "collaborator"  # research roles
    SPECIALIST = "specialist"  # mathematical fields


class CandidateKind(StrEnum):
    """How a candidate came to be."""

    BASELINE = "baseline"  # the task's own files
    PROPOSAL = "proposal"  # an agent's answer
    REPAIR = "repair"  # an agent's fix of its own failed candidate
    DUPLICATE = "duplicate"  # the same change as an earlier candidate: not trained again
    CROSSOVER = "crossover"  # two elite members' changes combined
    SKIPPED = "skipped"  # not asked for (a budget was spent): returned, never stored


class ChangeKind(StrEnum):
    """What a change moved, from its change record."""

    HYPERPARAMETER = "hyperparameter"  # only constants and literal arguments
    STRUCTURAL = "structural"  # a definition's code


class AllocationPolicy(StrEnum):
    """How a generation's proposal slots are shared among the team."""

    UNIFORM = "uniform"
    BANDIT = "bandit"


class ObjectiveName(StrEnum):
    """What selection minimises."""

    LOSS = "loss"
    BPB = "bpb"
    LOSS_TIME = "loss+time"
    PARETO = "pareto"


class StatTest(StrEnum):
    """Which test gave a p-value (select/stats.py)."""

    PAIRED = "paired t"  # on the seeds both candidates trained on
    WELCH = "Welch t"  # unequal variances, no shared seeds


@dataclass(frozen=True)
class Event:
    """Progress for displays: what happened, to which candidate."""

    # start | proposed | started | trial | generation | best | rescue | final, report (the
    # live report.html could not be written), and for agent calls: agents (a first
    # request's warning) | asking | retry | answered | failed
    kind: str
    candidate: str = ""
    persona: str = ""
    detail: str = ""
    loss: float | None = None
    generation: int = 0  # the generation under way (0: the baseline)
    spend: Spend | None = None  # the run's tokens, cost and minutes so far


@dataclass(frozen=True)
class Spend:
    """What a run has used so far."""

    tokens: int  # input + output, over every answer
    cost: float  # USD
    minutes: float  # wall time of this process's part of the run


MODULE = "<module>"  # the pseudo-definition holding a file's other top-level statements


@dataclass(frozen=True)
class Move:
    """One hyperparameter that moved: its name, and the value before and after ("" = absent)."""

    name: str  # `learning_rate`, `GPTConfig.dropout`, or `train:AdamW(lr)` for a keyword
    before: str  # the value's canonical repr (1e-3 and 0.001 are the same)
    after: str

    @property
    def keyword(self) -> bool:
        """A constant keyword argument of a call (`train:AdamW(lr)`), not a named constant."""
        return "(" in self.name

    def describe(self) -> str:
        """`learning_rate 0.0003→0.003`, `+warmup_iters=200`, `-dropout`."""
        if not self.before:
            return f"+{self.name}={self.after}"
        if not self.after:
            return f"-{self.name}"
        return f"{self.name} {self.before}→{self.after}"


@dataclass(frozen=True)
class Edit:
    """A definition the change added (+), removed (-) or changed (~)."""

    file: str
    name: str  # `GPT.forward`, `RMSNorm`, or MODULE
    op: str  # + | - | ~
    shape: str  # hash of the definition's normalised code after the change ("" when removed)


@dataclass(frozen=True)
class ChangeRecord:
    """A change summarised from its code: hyperparameters moved, definitions edited, techniques."""

    moves: tuple[Move, ...] = ()
    edits: tuple[Edit, ...] = ()
    techniques: tuple[str, ...] = ()  # vocabulary keys, sorted

    @property
    def empty(self) -> bool:
        return not self.moves and not self.edits

    @property
    def kind(self) -> ChangeKind | None:
        """Structural when a definition's code changed; hyperparameter when only constants
        and literal keyword arguments moved; None for no change at all."""
        if self.edits:
            return ChangeKind.STRUCTURAL
        return ChangeKind.HYPERPARAMETER if self.moves else None

    @property
    def shown_moves(self) -> tuple[Move, ...]:
        """The moves worth showing: a keyword constant that came or went with its call is
        part of an edit (kept in `moves` all the same: it tells two such edits apart)."""
        return tuple(m for m in self.moves if not m.keyword or (m.before and m.after))

    def compact(self, limit: int = 6) -> str:
        """One line for prompts and tables: `learning_rate 0.0003→0.003; +lr_multiplier; [lr_schedules]`."""
        parts = [m.describe() for m in self.shown_moves]
        parts += [f"{e.op}{e.name}" for e in self.edits if e.name != MODULE]
        if any(e.name == MODULE for e in self.edits):
            parts.append("~top-level code")
        text = "; ".join(parts[:limit]) + (
            f"; … {len(parts) - limit} more" if len(parts) > limit else ""
        )
        if self.techniques:
            text += f" [{', '.join(self.techniques)}]"
        return text.strip() or "no code change"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ChangeRecord:
        data = json.loads(text)
        return cls(
            tuple(Move(**m) for m in data.get("moves", ())),
            tuple(Edit(**e) for e in data.get("edits", ())),
            tuple(data.get("techniques", ())),
        )


@dataclass(frozen=True)
class CandidateRecord:
    """A proposal as stored: who made it, from what, the files, and how it ended."""

    id: str
    generation: int
    persona: str
    mode: str
    parent: str | None
    kind: CandidateKind
    code_hash: str
    files: Mapping[str, str]
    diff: str = ""
    response: str = ""
    model: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    latency: float = 0.0
    status: str = ""  # empty until evaluated; a Status value after
    reason: str = ""
    summary: str = ""
    record: ChangeRecord | None = None  # what the change did, from its code (above)
    record_key: str = ""  # records.dedupe_key: equal for the same change to the same code
    twin: str = ""  # a duplicate's earlier candidate, whose result it shares


# How a trial's reason starts when the machine ran out of disk under it (the harness's own
# writes failed, or the candidate's did and the harness then found no room either). Not the
# candidate's fault: the run stops, and the trial runs again on resume. A candidate cannot
# forge it: the reasons it can cause start with an exception's type name, which has no spaces.
DISK_FULL = "no space left on device"


@dataclass(frozen=True)
class TrialRecord:
    """One stored measurement (candidate x fidelity x seed)."""

    candidate: str
    fidelity: str
    seed: int
    status: Status
    reason: str
    val_loss: float | None
    bpb: float | None
    self_loss: float | None
    train_seconds: float
    eval_seconds: float
    steps: int
    iters: int
    n_params: int
    figures: Mapping[str, float] = field(default_factory=dict)  # as TrialResult.figures

    @property
    def disk_full(self) -> bool:
        """The machine's disk, not the candidate, ended this trial: it runs again on resume."""
        return self.status is Status.CRASHED and self.reason.startswith(DISK_FULL)


@dataclass(frozen=True)
class TrialResult:
    """What the harness measured for one candidate, seed and fidelity."""

    status: Status
    reason: str
    seed: int
    fidelity: str
    iters: int
    val_loss: float | None = None
    bpb: float | None = None
    self_loss: float | None = None  # the candidate's own claim: advisory
    self_loss_gap: bool = False
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    steps: int = 0
    n_params: int = 0
    log: str = ""
    layers: tuple[str, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)  # a harness-file task's figures
    # the figures beside the objective, as stored and shown: `bpb` for the language model,
    # the other keys of score() (e.g. `accuracy`) for a task with a harness file
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def disk_full(self) -> bool:
        """The machine's disk, not the candidate, ended this trial."""
        return self.status is Status.CRASHED and self.reason.startswith(DISK_FULL)


def mean_figures(trials: Iterable[TrialRecord]) -> dict[str, float]:
    """Each secondary figure averaged over the trials that have it, in first-seen order."""
    values: dict[str, list[float]] = {}
    for t in trials:
        for name, value in t.figures.items():
            values.setdefault(name, []).append(value)
    return {name: sum(v) / len(v) for name, v in values.items()}
