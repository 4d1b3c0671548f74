"""The research loop: generations of proposals, multi-fidelity screening, selection under noise.

    generation 0: the baseline, measured at the screening and confirmation fidelities
    generation N: the personas given slots (allocation.py) propose from the parent ─► edits
        ─► a research record each; a repeat (same code, or same change) is not trained
        ─► screen all at the low-cost fidelity (one seed) ─► promote the top fraction
        ─► confirm at the chosen fidelity with several seeds ─► replace the parent only
           when the improvement exceeds the 95 % interval of the noise (under the objective)
        ─► keep the elite (top confirmed); a new parent is rechecked on one more seed
           before its second generation, and an elite member that beats that takes over
    end: the best and the baseline measured again on fresh seeds at the final fidelity

Budgets (minutes, agent tokens, USD) stop the run between generations; once tokens or cost
run out no further agent call starts (budget.py).

Everything is read from the store before it is computed: a resumed run recomputes nothing
that finished, and a finished generation's stored outcome (best, promoted, note, elite) is
read back, never replayed; an unfinished one runs again from its stored proposals and trials.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace

from dreamteam.agents import AgentTeam
from dreamteam.agents.budget import Limits, Meter, check_prices, metered, spent_reason
from dreamteam.agents.factory import http_agents
from dreamteam.config import RunConfig
from dreamteam.errors import ConfigError, StoreError
from dreamteam.execute.jobs import Executor
from dreamteam.loop.measure import Trials
from dreamteam.loop.plan import BASELINE_ID, seed_plan
from dreamteam.loop.rerank import rerank
from dreamteam.loop.seeds import confirm_finalists
from dreamteam.loop.summary import Figures, closing_summary, results_lines
from dreamteam.personas import Persona, PersonaLibrary
from dreamteam.propose.overlap import Arrivals, Turn, waits_on_network
from dreamteam.propose.proposer import ProposalContext, Proposer, code_hash, repairable
from dreamteam.propose.team import pick_team
from dreamteam.propose.watch import call_event, check_agents, stop_if_unanswered
from dreamteam.records import CandidateKind, CandidateRecord, Event, RunSummary, Spend, Status
from dreamteam.select.judge import Judge
from dreamteam.select.rules import Comparison, compare, promote
from dreamteam.store import RunStore
from dreamteam.tasks import Task

_NEW = frozenset({CandidateKind.PROPOSAL, CandidateKind.REPAIR, CandidateKind.CROSSOVER})


class Search:
    """One run of the research loop over a store; call `run()`."""

    def __init__(
        self,
        config: RunConfig,
        task: Task,
        library: PersonaLibrary,
        agents: AgentTeam,
        store: RunStore,
        executor: Executor,
        on_event: Callable[[Event], None] = lambda e: None,
    ):
        self.config, self.task, self.store = config, task, store
        self.agents, self.executor, self._show = agents, executor, on_event
        self._team = agents  # unmetered, to close
        self.team = pick_team(library, config)
        self.started = time.monotonic()
        plan = seed_plan(config)
        self.screen_seed = plan.screen
        self.confirm_seeds, self.final_seeds = plan.confirm, plan.final
        self.noise_sd = 0.0
        self.standing = Judge(store, config, BASELINE_ID, plan.confirm, plan.recheck, plan.extra)
        self.limits = Limits(config.budget_minutes, config.budget_tokens, config.budget_cost)
        check_prices((a.name for a in agents.agents()), self.limits, config.prices)
        self.meter = Meter(self.limits, config.prices, *store.usage())  # resumed: spent before
        self.agents = metered(agents, self.meter)  # no call starts once tokens or cost run out
        for http in http_agents(agents):  # each call's start, retries and end: on the display
            http.listen(lambda note: self.on_event(call_event(note)))
        self.trials = Trials(config, store, executor, self.on_event)
        self.proposer = Proposer(
            ProposalContext(
                config,
                task,
                store,
                self.agents,
                self.team,
                self.standing,
                self.screen_seed,
                self.limits,
                self.spend,
                self.on_event,
            )
        )

    def close(self) -> None:
        """Release the agents' connections and the executor's workers."""
        for http in http_agents(self._team):
            http.listen(None)  # a script may reuse the team in another search
        self._team.close()
        if (close := getattr(self.executor, "close", None)) is not None:
            close()

    # -- budgets and progress -------------------------------------------------------------
    def spend(self) -> Spend:
        """Tokens and cost over the whole run, minutes of this process."""
        return Spend(self.meter.tokens, self.meter.cost, (time.monotonic() - self.started) / 60)

    def on_event(self, event: Event) -> None:
        """Pass an event to the display, with the run's spend so far."""
        self._show(replace(event, spend=self.spend()))

    # -- generations ----------------------------------------------------------------------
    def _baseline(self) -> CandidateRecord:
        stored = self.store.candidate(BASELINE_ID)
        done = self.store.generation(0)
        if stored is not None and done is not None and done.finished is not None:
            est = self.trials.estimate(BASELINE_ID, self.config.fidelity, self.confirm_seeds)
            self.noise_sd = est.sd if est else 0.0
            return stored  # resumed: generation 0 stands as stored
        if stored is None:
            files = self.task.baseline_files()
            stored = CandidateRecord(
                id=BASELINE_ID,
                generation=0,
                persona="baseline",
                mode="baseline",
                parent=None,
                kind=CandidateKind.BASELINE,
                code_hash=code_hash(files),
                files=files,
            )
            self.store.add_candidate(stored)
            self.store.start_generation(0, "")
        self.trials.measure([stored], self.config.screen_fidelity, [self.screen_seed])
        screened = self.store.trial(BASELINE_ID, self.config.screen_fidelity, self.screen_seed)
        if screened is not None and screened.status is not Status.OK:  # no use confirming it
            raise self._failed_baseline(f" ({screened.status}: {screened.reason})")
        self.trials.measure([stored], self.config.fidelity, self.confirm_seeds)
        est = self.trials.estimate(BASELINE_ID, self.config.fidelity, self.confirm_seeds)
        if est is None:
            raise self._failed_baseline("")
        self.noise_sd = est.sd
        note = f"noise sd {est.sd:.4f} at {self.config.fidelity}"
        self.store.finish_generation(0, BASELINE_ID, [], note, self._judge_elite())
        return self.store.candidate(BASELINE_ID) or stored

    def _failed_baseline(self, why: str) -> ConfigError:
        log = self.store.run_dir / "gen_0" / "baseline" / "log.txt"
        return ConfigError(f"the baseline itself failed to train{why}: see {log}")

    def _generation(self, number: int, parent: CandidateRecord, rescued: str) -> CandidateRecord:
        """Propose, screen, repair, promote, confirm and select; `rescued` says how the elite
        replaced the parent before the generation, if it did."""
        self.store.start_generation(number, parent.id)
        steering = self.proposer.steering(number)
        proposals, fresh = self._propose(number, parent, steering)
        stop_if_unanswered(number, self.proposer.calls.get(number, []), self.store.run_dir)
        fresh += self._repair(number, proposals, steering)
        promoted = self._promote(parent, fresh)
        finalists = [f for cid in promoted if (f := self.store.candidate(cid))]
        close = confirm_finalists(self.trials, self.standing, parent, finalists)  # loop/seeds.py
        best, note = self._select(parent, promoted, "; ".join(filter(None, [rescued, close])))
        lines = results_lines(self.store, number, self.config.screen_fidelity, self.screen_seed)
        self.store.write_results(number, lines)
        self.store.finish_generation(number, best.id, promoted, note, self._judge_elite())
        self.on_event(Event("generation", best.id, best.persona, note))
        return best

    def _slots(self, number: int) -> list[tuple[Persona, int]]:
        """Who proposes in this generation: (persona, its n-th slot in this generation)."""
        seen: dict[str, int] = {}
        slots = []
        for persona in self.proposer.allocate(number):
            seen[persona.slug] = seen.get(persona.slug, 0) + 1
            slots.append((persona, seen[persona.slug]))
        return slots

    def _propose(
        self, number: int, parent: CandidateRecord, steering: str
    ) -> tuple[list[CandidateRecord], list[CandidateRecord]]:
        """Every slot's proposal (and the crossovers), each screened as it is recorded;
        returns all the records and the screened ones."""
        slots = self._slots(number)
        history = self.proposer.history()  # what earlier generations learned, read once
        if self.config.strategy != "chain":
            # all from the parent: every agent asked at once, each answer screened on arrival
            turns = [self.proposer.turn(number, p, parent, i, steering, history) for p, i in slots]
            return self._screen_as_answered(turns, lambda: self.proposer.crossovers(number))
        proposals, current = [], parent
        for persona, index in slots:
            turn = self.proposer.turn(number, persona, current, index, steering, history)
            c = self.proposer.record(turn, turn.ask())
            proposals.append(c)
            if c.kind == CandidateKind.PROPOSAL and not c.status:
                current = c  # the next persona builds on this one
        proposals += self.proposer.crossovers(number)
        return proposals, self._screen(proposals)

    def _repair(
        self, number: int, proposals: list[CandidateRecord], steering: str
    ) -> list[CandidateRecord]:
        """Up to `repair` rounds of turns at the generation's failed candidates, each by its
        own persona; returns the screened repairs."""
        fresh: list[CandidateRecord] = []
        by_slug = {p.slug: p for p in self.team}
        for _ in range(self.config.repair):
            broken = [
                c for c in (self.store.candidate(p.id) for p in proposals) if c and repairable(c)
            ]
            if not broken:
                break
            history = self.proposer.history()  # now with this generation's screening
            repairs = [
                self.proposer.turn(number, by_slug[c.persona], c, 1, steering, history, repair_of=c)
                for c in broken
                if c.persona in by_slug
            ]
            proposals, repaired = self._screen_as_answered(repairs)
            fresh += repaired
        return fresh

    def _promote(self, parent: CandidateRecord, fresh: Sequence[CandidateRecord]) -> list[str]:
        """The screened candidates that beat the parent's screening loss, the best first,
        cut to the promotion fraction and cap."""
        fidelity, seed = self.config.screen_fidelity, self.screen_seed
        parent_screen = self.store.trial(parent.id, fidelity, seed)
        limit = parent_screen.val_loss if parent_screen and parent_screen.val_loss else float("inf")
        screened = [
            (c.id, t.val_loss)
            for c in fresh
            if (t := self.store.trial(c.id, fidelity, seed))
            and t.val_loss is not None
            and t.val_loss < limit
        ]
        return promote(screened, self.config.promote_fraction, self.config.max_promoted)

    def _screen(
        self, proposals: Iterable[CandidateRecord], settled: Callable[[], bool] = lambda: True
    ) -> list[CandidateRecord]:
        """Screen the new, valid candidates at the cheap fidelity, each as soon as it arrives
        (`proposals` may still be arriving; see `_measure`); return them."""
        fresh: list[CandidateRecord] = []

        def valid() -> Iterator[CandidateRecord]:
            for c in proposals:
                if c.kind in _NEW and (c.status in ("", str(Status.OK)) or self._screened(c)):
                    fresh.append(c)
                    yield c

        self.trials.measure(valid(), self.config.screen_fidelity, [self.screen_seed], settled)
        return fresh

    def _screened(self, c: CandidateRecord) -> bool:
        """Whether the candidate has a screening trial (on resume its status may already
        say how a later trial ended; it was screened all the same)."""
        return self.store.trial(c.id, self.config.screen_fidelity, self.screen_seed) is not None

    def _screen_as_answered(
        self, turns: Sequence[Turn], then: Callable[[], Sequence[CandidateRecord]] | None = None
    ) -> tuple[list[CandidateRecord], list[CandidateRecord]]:
        """Ask every turn's agent at once (`agent_concurrency` calls in flight; in line under
        the chain strategy and for in-process agents, see propose/overlap.py), record the answers in
        turn order, then `then()`'s candidates, and screen each valid one as soon as it is
        recorded.

        Returns every record, in order, and the screened ones.
        """
        concurrency = 1 if self.config.strategy == "chain" else self.config.agent_concurrency
        remote = [t.agent is not None and waits_on_network(t.agent) for t in turns]
        arrivals = Arrivals(
            [t.ask for t in turns],
            lambda i, a: self.proposer.record(turns[i], a),
            concurrency,
            then,
            remote,
        )
        fresh = self._screen(arrivals, settled=arrivals.poll)
        return arrivals.wait_all(), fresh

    def _select(
        self, parent: CandidateRecord, promoted: Sequence[str], rescued: str
    ) -> tuple[CandidateRecord, str]:
        """The finalist that beats the parent beyond the noise under the objective, else the
        parent; the note says which, after `rescued` (the elite's takeover, the close calls)."""
        picked = self.standing.select(parent.id, promoted)
        best = self.store.candidate(picked[0]) if picked else None
        if picked is None or best is None:
            note = f"kept {parent.id}: no finalist beat it beyond the noise"
            return parent, "; ".join(filter(None, [rescued, note]))
        v = picked[1]
        what = "" if self.config.objective == "loss" else f"{self.config.objective} "
        note = f"{best.id} replaces {parent.id}: {what}delta {v.delta:+.4f} (ci95 {v.ci95:.4f})"
        if self.config.objective in ("loss+time", "pareto"):
            note += f", training {v.minutes_delta:+.2f} min (ci95 {v.minutes_ci95:.2f})"
        return best, "; ".join(filter(None, [rescued, note]))

    # -- the elite and crossover ----------------------------------------------------------
    def _proven(self, number: int, parent: CandidateRecord) -> tuple[CandidateRecord, str]:
        """The parent for generation `number`: rechecked on one more seed if it has not led a
        generation yet, and replaced by an elite member that now beats it beyond the noise;
        with a note saying so when it was."""
        if not self.config.elite or number < 2:
            return parent, ""
        if parent.id != BASELINE_ID:
            self.trials.measure([parent], self.config.fidelity, [self.standing.recheck_seed])
        members = self.store.elite(number - 1)
        heir = self.standing.rescue(parent.id, members)
        record = self.store.candidate(heir) if heir else None
        if record is None:
            return parent, ""
        note = f"{record.id} took over from {parent.id} (rechecked, worse beyond the noise)"
        self.on_event(Event("rescue", record.id, record.persona, note, None, number))
        return record, note

    def _judge_elite(self) -> list[str]:
        """The elite as it stands now (stored with the generation that ends)."""
        return self.standing.elite() if self.config.elite else []

    def _finished(self, number: int) -> CandidateRecord | None:
        """A generation's best as stored when it finished; None if it has not finished."""
        g = self.store.generation(number)
        if g is None or g.finished is None:
            return None
        best = self.store.candidate(g.best)
        if best is None:
            raise StoreError(
                f"generation {number} of {self.store.run_dir} names a best candidate "
                f"{g.best!r} the store does not hold: the store is damaged"
            )
        return best

    # -- the whole run --------------------------------------------------------------------
    def run(self) -> RunSummary:
        """Run (or resume) every generation, then confirm the best on fresh seeds.

        A spent budget stops the run between generations; a token or cost budget spent during
        a generation's proposals skips the rest of them, and that generation still finishes.
        """
        if (done := self.store.finished_summary()) is not None:
            return done  # the run ran to its end: resuming it changes nothing
        for warning in check_agents(self._team, self.config.agent_timeout):  # before compute
            self.on_event(Event("agents", detail=warning))
        baseline = self._baseline()
        self._show_best(0, baseline)
        parent, stopped = baseline, ""
        for number in range(1, self.config.generations + 1):
            if (stored := self._finished(number)) is not None:
                parent = stored  # resumed: a finished generation stands as it was stored
                self._show_best(number, parent)
                continue
            if spent := spent_reason(self.spend(), self.limits):
                stopped = f"{spent} before generation {number}"
                break
            parent, rescued = self._proven(number, parent)
            self.on_event(Event("start", detail=f"of {self.config.generations}", generation=number))
            parent = self._generation(number, parent, rescued)
            self._show_best(number, parent)
        if self.proposer.skipped and not stopped:
            reason = spent_reason(self.spend(), self.limits, minutes=False)
            stopped = f"{reason}: {self.proposer.skipped} proposal(s) not asked for"
        return self._final(baseline, parent, stopped)

    def _show_best(self, generation: int, best: CandidateRecord) -> None:
        m = self.standing.measured(best.id)
        loss = m.loss.mean if m else None
        self.on_event(Event("best", best.id, best.persona, "", loss, generation))

    def _final(self, baseline: CandidateRecord, best: CandidateRecord, stopped: str) -> RunSummary:
        """The best (re-ranked there first with --final-top, loop/rerank.py) and the baseline
        measured again at the final fidelity on fresh seeds (the confirmation seeds when the
        baseline is still the best at the confirmation fidelity)."""
        fidelity = self.config.final_fidelity or self.config.fidelity
        best, ranking = rerank(self.trials, self.standing, best, fidelity, self.screen_seed)
        same = best.id == baseline.id
        seeds = (
            self.confirm_seeds if same and fidelity == self.config.fidelity else self.final_seeds
        )
        self.trials.measure([baseline] if same else [baseline, best], fidelity, seeds)
        b = self.trials.estimate(baseline.id, fidelity, seeds)
        c = self.trials.estimate(best.id, fidelity, seeds) or b
        if b is None or c is None:
            raise ConfigError(f"the baseline failed to train at {fidelity}: see its log in the run")
        # the confirmation noise holds only where it was measured
        noise = self.noise_sd if fidelity == self.config.fidelity else 0.0
        cmp = Comparison(0.0, 0.0, False) if same else compare(c, b, noise)
        self.on_event(Event("final", best.id, best.persona, "", c.mean))
        steps = self.task.iterations(fidelity)
        figures = Figures(best, c.mean, b.mean, cmp, fidelity, tuple(seeds), steps, ranking)
        return closing_summary(self.store, figures, stopped, self.standing, self.spend())
