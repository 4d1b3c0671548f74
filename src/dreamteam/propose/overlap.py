"""Overlapping the team's LLM calls with training.

    turns ─► agent calls on a small thread pool (the slow, waiting part)
          ─► answers recorded strictly in the order asked, on the caller's thread
          ─► each valid proposal's trial handed to the executor as soon as it is recorded

Two rules keep a run deterministic while calls overlap: proposals are recorded in the order
they were asked, whatever order the answers come back in; and what a trial does to its
candidate (status, reason) is applied only once every proposal of the batch is recorded, in
that order (loop/measure.py), so each proposal meets the store as the sequential loop would
have left it (the duplicate check reads it). The trial itself is stored as it finishes.

Only agents that wait on a server get a thread. In-process agents (offline, replay) compute
under the GIL, so a thread buys them nothing, and they parse code with `ast`, which CPython
does not make safe in two threads at once (gh-106905: "AST constructor recursion depth
mismatch"): they are asked in line, on the caller's thread, like every other parse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from dreamteam.agents import Agent, AgentRequest, AgentResponse, parse_model_spec
from dreamteam.agents.factory import PROVIDERS
from dreamteam.errors import AgentError, ConfigError
from dreamteam.personas import Persona
from dreamteam.records import CandidateRecord

A = TypeVar("A")  # an answer
R = TypeVar("R")  # a record made from it

Answer = AgentResponse | AgentError | None  # None: the turn needed no call


def waits_on_network(agent: Agent) -> bool:
    """Whether the agent's calls mostly wait on a server, judged by the model spec it answers
    as (wrappers keep it); an agent that names no known provider counts as in-process."""
    try:
        return PROVIDERS[parse_model_spec(agent.name).provider].network
    except ConfigError:
        return False


@dataclass(frozen=True)
class Turn:
    """One persona's turn: the request to send, or a record that needs no call (stored by an
    earlier run of a resumed search, or skipped because a budget is spent)."""

    cid: str
    generation: int
    persona: Persona
    parent: CandidateRecord
    repair_of: CandidateRecord | None = None
    agent: Agent | None = None
    request: AgentRequest | None = None
    known: CandidateRecord | None = None

    def ask(self) -> Answer:
        """The agent's answer, or the AgentError it raised. Touches no store, so any thread
        may call it."""
        if self.known is not None or self.agent is None or self.request is None:
            return None
        try:
            return self.agent.propose(self.request)
        except AgentError as exc:
            return exc


class Arrivals(Generic[A, R]):
    """Answers to `calls`, asked up to `concurrency` at a time, made into records in call order.

    `calls[i]()` runs on a worker thread when `threaded[i]` (default: all) and concurrency is
    above 1, else in line, on the caller's thread, when its record is first wanted;
    `record(i, answer)` runs on the thread that iterates or polls, for i = 0, 1, 2, ...
    `then()`, if given, runs once after the last record and its records join the stream
    (e.g. candidates made from the store, not asked).
    """

    def __init__(
        self,
        calls: Sequence[Callable[[], A]],
        record: Callable[[int, A], R],
        concurrency: int = 1,
        then: Callable[[], Sequence[R]] | None = None,
        threaded: Sequence[bool] | None = None,
    ):
        self._calls, self._record, self._then = list(calls), record, then
        self.records: list[R] = []
        self._recorded = 0  # calls whose answers are recorded
        self.done = False
        self._pool: ThreadPoolExecutor | None = None
        self._futures: dict[int, Future[A]] = {}
        pooled = [i for i in range(len(self._calls)) if threaded is None or threaded[i]]
        if concurrency > 1 and pooled and len(self._calls) > 1:
            self._pool = ThreadPoolExecutor(min(concurrency, len(pooled)), "agent")
            self._futures = {i: self._pool.submit(self._calls[i]) for i in pooled}
        self._finish_if_complete()

    def poll(self) -> bool:
        """Record every answer already back, in order, without waiting; True once all are
        (an in-line call stops the poll: it runs only when its record is wanted)."""
        while not self.done:
            future = self._futures.get(self._recorded)
            if future is None or not future.done():
                break
            self._record_next()
        return self.done

    def wait_all(self) -> list[R]:
        """Wait for and record every remaining answer; every record, in order."""
        while not self.done:
            self._record_next()
        return self.records

    def __iter__(self) -> Iterator[R]:
        """Each record as soon as it and every earlier one exist."""
        served = 0
        try:
            while served < len(self.records) or not self.done:
                self.poll()
                if served == len(self.records):
                    self._record_next()  # wait for the next answer
                    continue
                served += 1
                yield self.records[served - 1]
        finally:
            self.close()

    def close(self) -> None:
        """Drop the calls not yet started (a stopped loop must not wait on them)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _record_next(self) -> None:
        i = self._recorded
        future = self._futures.get(i)
        answer = future.result() if future is not None else self._calls[i]()
        self.records.append(self._record(i, answer))
        self._recorded += 1
        self._finish_if_complete()

    def _finish_if_complete(self) -> None:
        if self._recorded == len(self._calls) and not self.done:
            if self._then is not None:
                self.records.extend(self._then())
            self.done = True
            self.close()
