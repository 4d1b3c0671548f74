"""Proposals: who proposes in a generation, what each is told, and how an answer becomes a
stored candidate (parsed edits, a code hash, a change record, a duplicate or not).

`Search` owns the generations; a `Proposer` owns the turns within one. Each turn is built
here, asked through propose/overlap.py (concurrently when the agents wait on a network), and
recorded here in team order, so ids, seeds and the store's rows do not depend on timing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from dreamteam import pyparse
from dreamteam.agents import Agent, AgentRequest, AgentResponse, AgentTeam
from dreamteam.agents.base import clean_text
from dreamteam.agents.budget import BudgetSpent, Limits, answer_cost, spent_reason
from dreamteam.config import RunConfig
from dreamteam.errors import AgentError
from dreamteam.personas import Persona
from dreamteam.propose.allocation import Yardstick, allocate, reserved_for_structure
from dreamteam.propose.crossover import crossover_candidate
from dreamteam.propose.edits import apply_edits, diff_files, parse_edits
from dreamteam.propose.novelty import history_items, note_change
from dreamteam.propose.overlap import Answer, Turn
from dreamteam.propose.prompt import HistoryItem, build_prompt, repair_note
from dreamteam.propose.watch import FAILED_PREFIX, failure_reason
from dreamteam.records import CandidateKind, CandidateRecord, Event, Spend, Status
from dreamteam.select.judge import Judge
from dreamteam.store import RunStore
from dreamteam.tasks import Task

SLOT_SEED = 7919  # added to an agent request's seed per extra slot of the same persona
_REPAIRABLE = (str(Status.INVALID), str(Status.CRASHED))


def code_hash(files: dict[str, str]) -> str:
    """A hash of the code that ignores comments, docstrings' layout and formatting."""
    digest = hashlib.sha256()
    for name in sorted(files):
        try:
            text = pyparse.dump(pyparse.parse(files[name]))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            text = files[name]
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    return digest.hexdigest()[:16]


def repairable(c: CandidateRecord) -> bool:
    """Failed for a reason its author can fix: checks, edits or a crash (not the agent)."""
    return (
        c.kind in (CandidateKind.PROPOSAL, CandidateKind.REPAIR)
        and c.status in _REPAIRABLE
        and not c.reason.startswith(FAILED_PREFIX)
    )


def summary_line(text: str) -> str:
    """What the agent says it changed: its bullet points before the code, else its first line."""
    prose = text.split("```", 1)[0].splitlines()
    bullets = [
        line.strip()[2:].split(". Why:")[0] for line in prose if line.strip().startswith("- ")
    ]
    if bullets:
        return "; ".join(bullets)[:240]
    for line in prose:
        line = line.strip().lstrip("#*- ").strip()
        if line:
            return line[:240]
    return ""


@dataclass(frozen=True)
class ProposalContext:
    """What a run's proposals draw on: its settings, task, store, agents and team, the judge
    and screening seed their outcomes are read by, its budgets, and where events go."""

    config: RunConfig
    task: Task
    store: RunStore
    agents: AgentTeam
    team: Sequence[Persona]
    judge: Judge
    screen_seed: int
    limits: Limits
    spend: Callable[[], Spend]
    emit: Callable[[Event], None]


class Proposer:
    """The turns of a run's personas: prompts, requests, and answers made into candidates."""

    def __init__(self, ctx: ProposalContext):
        self.config, self.task, self.store, self.agents = (
            ctx.config,
            ctx.task,
            ctx.store,
            ctx.agents,
        )
        self.team, self.standing, self.screen_seed = list(ctx.team), ctx.judge, ctx.screen_seed
        self.limits, self.spend, self.on_event = ctx.limits, ctx.spend, ctx.emit
        self.skipped = 0  # proposals not asked for because the token or cost budget was spent
        # per generation, each call this process made: None if answered, else its error
        self.calls: dict[int, list[AgentError | None]] = {}
        self._slots_seen: dict[int, int] = {}  # per generation, proposal slots turned so far

    def history(self) -> list[HistoryItem]:
        """What every earlier candidate changed (its record) and what that gave at screening."""
        return history_items(self.store, self.config.screen_fidelity, self.screen_seed)

    def allocate(self, generation: int) -> list[Persona]:
        """Who proposes in this generation, one entry per slot (allocation.py)."""
        yard = Yardstick(self.config.screen_fidelity, self.screen_seed, self.standing)
        return allocate(self.store, self.config, self.team, generation, yard)

    def turn(
        self,
        generation: int,
        persona: Persona,
        parent: CandidateRecord,
        index: int,
        steering: str,
        history: Sequence[HistoryItem],
        repair_of: CandidateRecord | None = None,
    ) -> Turn:
        """A persona's turn at proposing, ready to ask; on resume, the stored record.

        With `repair_of`, the persona gets another turn at its own failed candidate: the
        prompt shows that candidate's code, its failure and its log tail.
        """
        cid = f"g{generation}-{persona.slug}" + (f"-{index}" if index > 1 else "")
        structural = repair_of is None and self._reserved(generation)
        if repair_of is not None:
            cid = f"{repair_of.id}-r"
        turn = Turn(cid, generation, persona, parent, repair_of)
        stored = self.store.candidate(cid)
        if stored is not None and not self._unanswered(stored):
            return replace(turn, known=stored)
        if spent := spent_reason(self.spend(), self.limits, minutes=False):
            return replace(turn, known=self.skipped_turn(cid, generation, persona, parent, spent))
        agent: Agent = self.agents.for_mode(persona.mode)
        prompt = build_prompt(
            persona, self.task, parent.files, history, steering, structural=structural
        )
        if repair_of is not None:
            prompt += "\n\n" + repair_note(
                repair_of.status, repair_of.reason, self.store.trial_log(repair_of.id)
            )
        request = AgentRequest(
            prompt=prompt,
            persona=persona.slug,
            mode=persona.mode,
            files=tuple(parent.files.items()),
            techniques=persona.technique_keys,
            # a persona with several slots gets a different draw in each (offline agent)
            seed=self.config.seed * 1000 + generation + SLOT_SEED * (index - 1),
            tag=cid,
            structural=structural,
        )
        return replace(turn, agent=agent, request=request)

    def _reserved(self, generation: int) -> bool:
        """Whether the generation's next proposal slot is reserved for a structural change
        (--structural-share); slots are turned in the same order on a resume."""
        position = self._slots_seen.get(generation, 0)
        self._slots_seen[generation] = position + 1
        return reserved_for_structure(position, self.config.structural_share)

    def _unanswered(self, stored: CandidateRecord) -> bool:
        """A turn whose call failed with no answer, in a generation that did not finish (the
        run stopped there): a resumed run asks again. Answered turns are never asked again."""
        if not stored.reason.startswith(FAILED_PREFIX) or stored.response:
            return False
        return not any(
            g.number == stored.generation and g.finished for g in self.store.generations()
        )

    def record(self, turn: Turn, answer: Answer) -> CandidateRecord:
        """A turn's answer made into a stored candidate (turns are recorded in team order)."""
        if turn.known is not None or turn.agent is None:
            assert turn.known is not None, "a turn has a record or an agent to ask"
            return turn.known
        cid, generation, persona, parent = turn.cid, turn.generation, turn.persona, turn.parent
        agent, repair_of = turn.agent, turn.repair_of
        # the record as it stands if the agent fails: the parent's files, marked invalid
        record = CandidateRecord(
            id=cid,
            generation=generation,
            persona=persona.slug,
            mode=str(persona.mode),
            parent=parent.id,
            kind=CandidateKind.REPAIR if repair_of is not None else CandidateKind.PROPOSAL,
            code_hash="",
            files=parent.files,
            status=str(Status.INVALID),
        )
        if isinstance(answer, BudgetSpent):  # not asked: a token or cost budget is spent
            return self.skipped_turn(cid, generation, persona, parent, str(answer))
        if not isinstance(answer, AgentResponse):  # the AgentError the agent raised
            return self._failed(turn, record, answer)
        self.calls.setdefault(generation, []).append(None)
        response = replace(answer, text=clean_text(answer.text))
        parsed = parse_edits(response.text, parent.files, self.task.aliases)
        applied = apply_edits(parent.files, parsed)
        files = dict(applied.files)
        record = replace(
            record,
            code_hash=code_hash(files),
            files=files,
            diff=diff_files(parent.files, files),
            response=response.text,
            model=response.model,
            tokens_in=response.usage.input_tokens,
            tokens_out=response.usage.output_tokens,
            cost=answer_cost(agent.name, response.model, response.usage, self.config.prices),
            latency=response.latency_s,
            status="" if applied.ok else str(Status.INVALID),
            reason="" if applied.ok else applied.reason() or "the answer changed no file",
            summary=summary_line(response.text),
        )
        record = note_change(record, parent, self.store)  # its record; a twin's duplicate?
        self.store.add_candidate(record)
        shown = f"{record.status}: {record.reason}" if record.reason else record.status
        self.on_event(Event("proposed", cid, persona.slug, shown or "valid", None, generation))
        return record

    def _failed(
        self, turn: Turn, record: CandidateRecord, error: AgentError | None
    ) -> CandidateRecord:
        """The turn's agent failed: the candidate is stored invalid with the reason, and with
        the provider's raw answer when one came."""
        assert error is not None and turn.agent is not None
        self.calls.setdefault(turn.generation, []).append(error)
        record = replace(
            record,
            reason=clean_text(failure_reason(error)),
            response=clean_text(error.raw),
            model=turn.agent.name,
        )
        self.store.add_candidate(record)
        detail = f"{Status.INVALID}: {record.reason}"
        self.on_event(Event("proposed", turn.cid, turn.persona.slug, detail, None, turn.generation))
        return record

    def crossovers(self, number: int) -> list[CandidateRecord]:
        """With crossover on, one candidate: the second elite member's change (its diff from its
        own parent, as search/replace edits) applied onto the first member's code."""
        if not self.config.crossover:
            return []
        cid = f"g{number}-crossover"
        stored = self.store.candidate(cid)
        if stored is not None:
            return [stored]
        pair = self.standing.crossover_pair(self.store.elite(number - 1))
        if pair is None:
            return []
        record = crossover_candidate(cid, number, *pair)
        record = replace(record, code_hash=code_hash(dict(record.files)))
        # the same duplicate rules as a persona's answer, against the first member's code
        record = note_change(record, pair[0], self.store)
        self.store.add_candidate(record)
        self.on_event(Event("proposed", cid, "crossover", record.status or "valid", None, number))
        return [record]

    def skipped_turn(
        self, cid: str, generation: int, persona: Persona, parent: CandidateRecord, why: str
    ) -> CandidateRecord:
        """A proposal not asked for (a budget is spent): returned, never stored or screened."""
        self.skipped += 1
        self.on_event(Event("proposed", cid, persona.slug, f"skipped: {why}", None, generation))
        mode = str(persona.mode)
        return CandidateRecord(
            cid,
            generation,
            persona.slug,
            mode,
            parent.id,
            CandidateKind.SKIPPED,
            "",
            parent.files,
            reason=why,
        )

    def steering(self, generation: int) -> str:
        path = self.store.run_dir / "steering.md"
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        if text.strip():
            self.store.record_steering(generation, text)
        return text
