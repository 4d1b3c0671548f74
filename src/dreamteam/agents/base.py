"""The one seam every agent plugs into: a request goes in, a response comes out.

An agent is anything with a ``name`` and a ``propose`` method: the LLM backends, the
record/replay wrappers and the offline technique agent. The search loop sees only this
protocol, so a test can swap any backend for the offline agent or a replayed cassette.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from dreamteam.records import Mode


class Role(StrEnum):
    """Who said a message in a conversation with an agent."""

    USER = "user"
    ASSISTANT = "assistant"


class FinishReason(StrEnum):
    """Why the agent stopped writing, in one vocabulary across providers."""

    STOP = "stop"  # the answer is complete
    LENGTH = "length"  # cut off at the output-token limit: the edits are likely truncated
    REFUSED = "refused"  # a safety filter or a refusal ended the answer
    OTHER = "other"


@dataclass(frozen=True)
class Message:
    """One earlier turn of a conversation (a repair round replays the failed attempt)."""

    role: Role
    content: str


@dataclass(frozen=True)
class AgentRequest:
    """What the search asks of one persona's agent.

    LLM backends send ``system``, ``history`` and ``prompt``; the other fields are
    context for agents that do not read prose (the offline agent) and for logs.
    """

    prompt: str  # the full rendered prompt: persona, current code, constraints, history
    persona: str = ""  # the persona's slug
    mode: Mode | None = None
    system: str = ""  # an optional system prompt; empty means none is sent
    history: tuple[Message, ...] = ()  # earlier turns, oldest first, before ``prompt``
    files: tuple[tuple[str, str], ...] = ()  # (file name, source) of the current candidate
    techniques: tuple[str, ...] = ()  # the persona's technique keys: the offline agent's priors
    seed: int = 0  # for agents that draw at random; LLM backends ignore it
    structural: bool = False  # this slot is reserved for a structural change (the prompt says so)
    tag: str = ""  # what the call is for (a candidate id), for progress notes; never sent


@dataclass(frozen=True)
class Usage:
    """Tokens the provider billed for one answer (zero where it did not say)."""

    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class AgentResponse:
    """One agent answer: the raw text, which the edits stage parses, and how it was made."""

    text: str
    model: str  # the model spec that answered, e.g. "anthropic:claude-sonnet-4-5"
    finish: FinishReason = FinishReason.STOP
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0  # wall time including retries
    attempts: int = 1  # HTTP attempts it took (1 when the first one answered)


class CallStage(StrEnum):
    """Where an agent call stands, for progress displays."""

    ASKING = "asking"  # the call started
    RETRY = "retry"  # an attempt failed and another follows after a wait
    ANSWERED = "answered"
    FAILED = "failed"  # given up: the AgentError follows


@dataclass(frozen=True)
class CallNote:
    """One step of one agent call, as a backend reports it to whoever listens."""

    stage: CallStage
    agent: str  # the model spec
    tag: str  # the request's tag (a candidate id)
    persona: str
    elapsed_s: float  # since the call started
    detail: str = ""  # the retry's reason and wait, or the deadline when asking


Listener = Callable[[CallNote], None]


def clean_text(text: str) -> str:
    """`text` that every UTF-8 sink (SQLite, files, the terminal) takes: lone surrogates and
    NUL, which JSON may carry, escaped as `\\ud800` and `\\x00`."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


@runtime_checkable
class Agent(Protocol):
    """Anything that turns a request into a proposal."""

    @property
    def name(self) -> str:
        """The model spec this agent answers as, e.g. ``offline`` or ``openai:gpt-4o``."""
        ...

    def propose(self, request: AgentRequest) -> AgentResponse:
        """Answer one request; raise AgentError only for a fault of the harness or provider."""
        ...
