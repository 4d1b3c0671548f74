"""Watching a run's agents: a first tiny request before the run spends compute, each call's
progress as events, the run's agent failures counted by fault, and the rule that stops a run
whose generation got no answer at all.

    start ─► check each HTTP model ─► AgentSetupError (key, model, URL), or a warning
    calls ─► CallNote ─► Event (asking, retry, answered, failed) ─► the display
    generation's answers ─► every call failed? ─► AgentOutageError
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from dreamteam.agents.base import CallNote, CallStage
from dreamteam.agents.factory import AgentTeam, http_agents
from dreamteam.errors import AgentError, AgentFault, AgentOutageError, AgentSetupError
from dreamteam.records import CandidateRecord, Event

CHECK_DEADLINE_S = 60.0  # the first request is tiny: a minute is plenty for a healthy server
# Faults that the first request shows will hit every call: the run stops before it starts.
SETUP_FAULTS = frozenset(
    {
        AgentFault.CREDENTIALS,
        AgentFault.NOT_FOUND,
        AgentFault.REJECTED,
        AgentFault.UNREACHABLE,
        AgentFault.BAD_ANSWER,
    }
)
FAILED_PREFIX = "agent failed"  # how a candidate's reason starts when its agent failed
_FAILED = re.compile(rf"^{FAILED_PREFIX} \(([^)]*)\)")


def check_agents(team: AgentTeam, deadline_s: float) -> list[str]:
    """Ask each HTTP model of the team one tiny question (offline and replay agents need
    none). AgentSetupError when a model cannot be used at all; a warning per model that
    failed in a way that may pass (a timeout, an outage), for the display."""
    warnings = []
    for agent in http_agents(team):
        try:
            agent.check(min(deadline_s, CHECK_DEADLINE_S))
        except AgentError as exc:
            if exc.fault in SETUP_FAULTS:
                raise AgentSetupError(str(exc), exc.fault) from None
            warnings.append(f"{agent.name} failed a first request ({exc.fault}); going on: {exc}")
    return warnings


def call_event(note: CallNote) -> Event:
    """A backend's note about a call, as the display's event (elapsed time in the detail)."""
    elapsed = f"{note.elapsed_s:.1f} s"
    detail = {
        CallStage.ASKING: note.detail,
        CallStage.RETRY: f"after {elapsed}: {note.detail}",
        CallStage.ANSWERED: f"in {elapsed}, {note.detail}",
        CallStage.FAILED: f"after {elapsed}",
    }[note.stage]
    return Event(str(note.stage), note.tag, note.persona, detail)


def failure_reason(error: AgentError) -> str:
    """A failed call as a candidate's reason: `agent failed (<fault>): <message>`."""
    return f"{FAILED_PREFIX} ({error.fault}): {error}"


def agent_failures(candidates: Iterable[CandidateRecord]) -> dict[str, int]:
    """How many candidates' agents failed, by fault, over a run."""
    counts = Counter(m[1] for c in candidates if (m := _FAILED.match(c.reason)))
    return dict(sorted(counts.items()))


def stop_if_unanswered(generation: int, calls: Sequence[AgentError | None], run: Path) -> None:
    """AgentOutageError when every call of this generation failed without an answer (an
    unreadable answer is still an answer); `calls` holds None for each answered call."""
    failed = [c for c in calls if c is not None and c.fault is not AgentFault.BAD_ANSWER]
    if not calls or len(failed) < len(calls):
        return
    counts = ", ".join(f"{fault} {n}" for fault, n in Counter(c.fault for c in failed).items())
    raise AgentOutageError(
        f"generation {generation}: all {len(calls)} agent calls failed ({counts}); the last: "
        f"{failed[-1]}. Fix that, then continue with: dreamteam run --resume {run}",
        failed[-1].fault,
    )
