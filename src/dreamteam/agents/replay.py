"""Record and replay: keep every answer an agent gave, and answer again from that record.

A cassette is a JSON Lines file, one answer per line, appended as answers arrive so a run
that dies keeps what it paid for. Each line is keyed by a hash of what an LLM sees (system
prompt, earlier turns, prompt), not by the model, so ``replay:PATH`` reproduces a run
offline, in tests and in CI, with no key and no network.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dreamteam.agents.base import (
    Agent,
    AgentRequest,
    AgentResponse,
    FinishReason,
    Message,
    Role,
    Usage,
)
from dreamteam.errors import AgentError, ConfigError

CASSETTE_VERSION = 1


@dataclass(frozen=True)
class CassetteEntry:
    """One recorded answer and the request it answered."""

    key: str
    persona: str
    system: str
    history: tuple[Message, ...]
    prompt: str
    response: AgentResponse


def request_key(request: AgentRequest) -> str:
    """The hex sha256 of what an LLM sees of ``request``: equal prompts replay equal answers."""
    seen = {
        "system": request.system,
        "history": [[str(m.role), m.content] for m in request.history],
        "prompt": request.prompt,
    }
    text = json.dumps(seen, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_cassette(path: Path) -> tuple[CassetteEntry, ...]:
    """Read every entry of a cassette, oldest first; ConfigError names a bad file or line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigError(
            f"replay cassette {path} does not exist: record one first by running with a real model"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read replay cassette {path}: {exc}") from None
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entries.append(_entry_from_json(json.loads(line)))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"replay cassette {path}, line {number}: not a recorded answer ({exc})"
            ) from None
    return tuple(entries)


def append_entry(path: Path, entry: CassetteEntry) -> None:
    """Append one entry as one line; the line is written whole or the write raises."""
    line = json.dumps(_entry_to_json(entry), ensure_ascii=False, separators=(",", ":"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(line + "\n")


class RecordingAgent:
    """Wraps an agent and appends each of its answers to a cassette."""

    def __init__(self, inner: Agent, path: Path) -> None:
        self.inner = inner
        self.path = path
        self._lock = threading.Lock()  # whole lines even when workers answer at once

    @property
    def name(self) -> str:
        """The wrapped agent's name: recording does not change who answers."""
        return self.inner.name

    def propose(self, request: AgentRequest) -> AgentResponse:
        """Ask the wrapped agent, record its answer, and return it."""
        response = self.inner.propose(request)
        entry = CassetteEntry(
            key=request_key(request),
            persona=request.persona,
            system=request.system,
            history=request.history,
            prompt=request.prompt,
            response=response,
        )
        with self._lock:
            try:
                append_entry(self.path, entry)
            except OSError as exc:
                raise AgentError(f"cannot write the cassette {self.path}: {exc}") from None
        return response


class ReplayAgent:
    """Answers from a cassette: the same prompt gets the recorded answers in recorded order.

    When a prompt was recorded several times, its answers are handed out in turn and the
    last one repeats once they run out. A prompt never recorded goes to ``fallback`` if
    one is given, else raises AgentError.
    """

    def __init__(
        self,
        path: Path,
        entries: Iterable[CassetteEntry] | None = None,
        *,
        fallback: Agent | None = None,
    ) -> None:
        self.path = path
        self.fallback = fallback
        self._queues: dict[str, deque[AgentResponse]] = {}
        for entry in load_cassette(path) if entries is None else entries:
            self._queues.setdefault(entry.key, deque()).append(entry.response)
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """``replay:PATH``."""
        return f"replay:{self.path}"

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def propose(self, request: AgentRequest) -> AgentResponse:
        """The next recorded answer to this exact request."""
        key = request_key(request)
        with self._lock:
            queue = self._queues.get(key)
            if queue:
                return queue.popleft() if len(queue) > 1 else queue[0]
        if self.fallback is not None:
            return self.fallback.propose(request)
        who = f"persona {request.persona!r}" if request.persona else "this request"
        raise AgentError(
            f"cassette {self.path} holds no answer for {who} (prompt key {key[:12]}): "
            "the prompt changed since it was recorded; record the cassette again"
        )


def _entry_to_json(entry: CassetteEntry) -> dict[str, Any]:
    response = entry.response
    return {
        "v": CASSETTE_VERSION,
        "key": entry.key,
        "persona": entry.persona,
        "model": response.model,
        "system": entry.system,
        "history": [[str(m.role), m.content] for m in entry.history],
        "prompt": entry.prompt,
        "response": response.text,
        "finish": str(response.finish),
        "usage": asdict(response.usage),
        "latency_s": round(response.latency_s, 3),
        "attempts": response.attempts,
    }


def _entry_from_json(data: object) -> CassetteEntry:
    if not isinstance(data, Mapping):
        raise ValueError("a line must be a JSON object")
    if data.get("v") != CASSETTE_VERSION:
        raise ValueError(f"unknown cassette version {data.get('v')!r}")
    history = tuple(Message(Role(role), str(text)) for role, text in data.get("history", []))
    usage = data.get("usage") or {}
    response = AgentResponse(
        text=str(data["response"]),
        model=str(data["model"]),
        finish=FinishReason(data.get("finish", "stop")),
        usage=Usage(int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))),
        latency_s=float(data.get("latency_s", 0.0)),
        attempts=int(data.get("attempts", 1)),
    )
    system, prompt = str(data.get("system", "")), str(data.get("prompt", ""))
    # The key is recomputed when the prompt was kept, so a hand-edited prompt replays as edited.
    key = str(data["key"])
    if prompt:
        key = request_key(AgentRequest(prompt=prompt, system=system, history=history))
    return CassetteEntry(key, str(data.get("persona", "")), system, history, prompt, response)
