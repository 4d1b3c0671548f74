"""The research loop: generations of proposals, multi-fidelity screening, selection under noise.

    generation 0: the baseline, measured at the screening and confirmation fidelities
    generation N: every persona proposes from the parent ─► edits ─► dedupe by code hash
        ─► screen all at the low-cost fidelity (one seed) ─► promote the top fraction
        ─► confirm at the chosen fidelity with several seeds ─► replace the parent only
           when the improvement exceeds the 95 % interval of the noise
    end: the best is measured again on fresh seeds, beside the baseline, for the final figure

Everything is read from the store before it is computed, so a resumed run recomputes nothing
that finished.
"""

from __future__ import annotations

import ast
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from dreamteam.agents import Agent, AgentRequest, AgentTeam
from dreamteam.config import RunConfig
from dreamteam.edits import apply_edits, diff_files, parse_edits
from dreamteam.errors import AgentError, ConfigError
from dreamteam.executors import Executor, Job
from dreamteam.personas import Persona, PersonaLibrary
from dreamteam.prompting import HistoryItem, build_prompt, repair_note
from dreamteam.selection import Comparison, Estimate, compare, estimate, promote
from dreamteam.store import CandidateRecord, RunStore
from dreamteam.tasks import Task
from dreamteam.team import pick_team
from dreamteam.types import Status

BASE_SEED = 1337
BASELINE_ID = "g0-baseline"


@dataclass(frozen=True)
class Event:
    """Progress for displays: what happened, to which candidate."""

    kind: str  # proposed | trial | generation | final
    candidate: str = ""
    persona: str = ""
    detail: str = ""
    loss: float | None = None


@dataclass(frozen=True)
class RunSummary:
    """The outcome of a run, as the CLI's last lines report it."""

    best: str
    persona: str
    val_loss: float
    baseline: float
    delta: float
    ci95: float
    fidelity: str
    seeds: tuple[int, ...]
    candidates: int
    statuses: dict[str, int] = field(default_factory=dict)
    stopped: str = ""  # why the run ended early, if it did


def seed_plan(config: RunConfig) -> dict[str, tuple[int, ...]]:
    """The seeds of a run: one to screen, `seeds` to confirm, `seeds` fresh ones at the end."""
    confirm = tuple(BASE_SEED + 1 + i for i in range(config.seeds))
    final = tuple(BASE_SEED + 1 + config.seeds + i for i in range(config.seeds))
    return {"screen": (BASE_SEED,), "confirm": confirm, "final": final}


def code_hash(files: dict[str, str]) -> str:
    """A hash of the code that ignores comments, docstrings' layout and formatting."""
    digest = hashlib.sha256()
    for name in sorted(files):
        try:
            tree = ast.parse(files[name])
            text = ast.dump(tree, annotate_fields=False)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            text = files[name]
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    return digest.hexdigest()[:16]


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
        self.agents, self.executor, self.on_event = agents, executor, on_event
        self.team = pick_team(library, config)
        self.started = time.monotonic()
        plan = seed_plan(config)
        self.screen_seed = plan["screen"][0]
        self.confirm_seeds, self.final_seeds = plan["confirm"], plan["final"]
        self.noise_sd = 0.0

    # -- measuring ------------------------------------------------------------------------
    def _measure(
        self, candidates: Sequence[CandidateRecord], fidelity: str, seeds: Sequence[int]
    ) -> None:
        """Run every missing (candidate, seed) trial at `fidelity`; store each as it finishes."""
        # the weights of each candidate's first confirmation are kept, for `dreamteam sample`
        keep = fidelity == self.config.fidelity
        jobs = [
            Job(
                c.id,
                dict(c.files),
                fidelity,
                seed,
                self.store.candidate_dir(c) / "ckpt.pt" if keep and seed == seeds[0] else None,
            )
            for c in candidates
            for seed in seeds
            if self.store.trial(c.id, fidelity, seed) is None
        ]
        by_id = {c.id: c for c in candidates}
        for job, result in self.executor.run(jobs):
            self.store.add_trial(job.candidate, result)
            c = by_id[job.candidate]
            if (
                not c.status
                or result.status is not Status.OK
                or fidelity == self.config.screen_fidelity
            ):
                self.store.set_outcome(c.id, str(result.status), result.reason)
            if fidelity == self.config.screen_fidelity:
                self.store.write_log(c, result.log)
            self.on_event(
                Event(
                    "trial",
                    c.id,
                    c.persona,
                    f"{fidelity} seed {job.seed}: {result.status}",
                    result.val_loss,
                )
            )

    def _estimate(self, candidate: str, fidelity: str, seeds: Sequence[int]) -> Estimate | None:
        losses = []
        for seed in seeds:
            t = self.store.trial(candidate, fidelity, seed)
            if t is None or t.status is not Status.OK or t.val_loss is None:
                return None
            losses.append(t.val_loss)
        return estimate(losses)

    def _out_of_time(self) -> bool:
        limit = self.config.budget_minutes
        return bool(limit) and time.monotonic() - self.started > limit * 60

    # -- proposing ------------------------------------------------------------------------
    def _history(self) -> list[HistoryItem]:
        items = []
        for c in self.store.candidates():
            if c.kind == "baseline":
                continue
            t = self.store.trial(c.id, self.config.screen_fidelity, self.screen_seed)
            parent = self.store.trial(c.parent or "", self.config.screen_fidelity, self.screen_seed)
            loss = t.val_loss if t else None
            delta = (
                loss - parent.val_loss if loss is not None and parent and parent.val_loss else None
            )
            summary = c.summary if c.status == Status.OK else f"{c.status}: {c.reason[:160]}"
            items.append(HistoryItem(c.id, c.persona, c.status, loss, delta, summary))
        items.sort(key=lambda h: (h.val_loss is None, h.val_loss or 0.0))
        return items

    def _propose(
        self,
        generation: int,
        persona: Persona,
        parent: CandidateRecord,
        index: int,
        steering: str,
        history: Sequence[HistoryItem],
        repair_of: CandidateRecord | None = None,
    ) -> CandidateRecord:
        """One answer from the persona's agent, turned into a stored candidate.

        With `repair_of`, the persona gets another turn at its own failed candidate: the
        prompt shows that candidate's code, its failure and its log tail.
        """
        cid = f"g{generation}-{persona.slug}" + (f"-{index}" if index > 1 else "")
        if repair_of is not None:
            cid = f"{repair_of.id}-r"
        stored = self.store.candidate(cid)
        if stored is not None:
            return stored
        agent: Agent = self.agents.for_mode(persona.mode)
        prompt = build_prompt(persona, self.task, parent.files, history, steering)
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
            seed=self.config.seed * 1000 + generation,
        )
        # the record as it stands if the agent fails: the parent's files, marked invalid
        record = CandidateRecord(
            id=cid,
            generation=generation,
            persona=persona.slug,
            mode=str(persona.mode),
            parent=parent.id,
            kind="repair" if repair_of is not None else "proposal",
            code_hash="",
            files=parent.files,
            status=str(Status.INVALID),
        )
        try:
            response = agent.propose(request)
        except AgentError as exc:
            record = replace(record, reason=f"agent failed: {exc}")
            self.store.add_candidate(record)
            return record
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
            latency=response.latency_s,
            status="" if applied.ok else str(Status.INVALID),
            reason="" if applied.ok else applied.reason() or "the answer changed no file",
            summary=_summary_line(response.text),
        )
        twin = self.store.by_hash(record.code_hash) if applied.ok else None
        if twin is not None:
            record = replace(
                record,
                kind="duplicate",
                status=twin.status or str(Status.INVALID),
                reason=f"same code as {twin.id}: not retrained",
            )
        self.store.add_candidate(record)
        self.on_event(Event("proposed", cid, persona.slug, record.status or "valid"))
        return record

    # -- generations ----------------------------------------------------------------------
    def _baseline(self) -> CandidateRecord:
        stored = self.store.candidate(BASELINE_ID)
        if stored is None:
            files = self.task.baseline_files()
            stored = CandidateRecord(
                id=BASELINE_ID,
                generation=0,
                persona="baseline",
                mode="baseline",
                parent=None,
                kind="baseline",
                code_hash=code_hash(files),
                files=files,
            )
            self.store.add_candidate(stored)
            self.store.start_generation(0, "")
        self._measure([stored], self.config.screen_fidelity, [self.screen_seed])
        self._measure([stored], self.config.fidelity, self.confirm_seeds)
        est = self._estimate(BASELINE_ID, self.config.fidelity, self.confirm_seeds)
        if est is None:
            raise ConfigError(
                "the baseline itself failed to train: see "
                f"{self.store.run_dir / 'gen_0' / 'baseline' / 'log.txt'}"
            )
        self.noise_sd = est.sd
        self.store.finish_generation(
            0, BASELINE_ID, [], f"noise sd {est.sd:.4f} at {self.config.fidelity}"
        )
        return self.store.candidate(BASELINE_ID) or stored

    def _generation(self, number: int, parent: CandidateRecord) -> CandidateRecord:
        self.store.start_generation(number, parent.id)
        steering = self._steering(number)
        proposals = []
        current = parent
        seen: dict[str, int] = {}
        history = self._history()  # what earlier generations learned, read once
        for persona in self.team:
            seen[persona.slug] = seen.get(persona.slug, 0) + 1
            c = self._propose(number, persona, current, seen[persona.slug], steering, history)
            proposals.append(c)
            if self.config.strategy == "chain" and c.kind == "proposal" and not c.status:
                current = c  # the next persona builds on this one
        fresh = self._screen(proposals)
        for _ in range(self.config.repair):
            broken = [
                c for c in (self.store.candidate(p.id) for p in proposals) if c and _repairable(c)
            ]
            if not broken:
                break
            by_slug = {p.slug: p for p in self.team}
            history = self._history()  # now with this generation's screening
            repairs = [
                self._propose(number, by_slug[c.persona], c, 1, steering, history, repair_of=c)
                for c in broken
                if c.persona in by_slug
            ]
            proposals = repairs
            fresh += self._screen(repairs)
        parent_screen = self.store.trial(parent.id, self.config.screen_fidelity, self.screen_seed)
        limit = parent_screen.val_loss if parent_screen and parent_screen.val_loss else float("inf")
        screened = [
            (c.id, t.val_loss)
            for c in fresh
            if (t := self.store.trial(c.id, self.config.screen_fidelity, self.screen_seed))
            and t.val_loss is not None
            and t.val_loss < limit
        ]
        promoted = promote(screened, self.config.promote_fraction, self.config.max_promoted)
        finalists = [self.store.candidate(cid) for cid in promoted]
        self._measure([f for f in finalists if f], self.config.fidelity, self.confirm_seeds)
        best, note = self._select(parent, promoted)
        self._write_results(number)
        self.store.finish_generation(number, best.id, promoted, note)
        self.on_event(Event("generation", best.id, best.persona, note))
        return best

    def _screen(self, proposals: Sequence[CandidateRecord]) -> list[CandidateRecord]:
        """Screen the new, valid candidates at the cheap fidelity; return them."""
        fresh = [
            c
            for c in proposals
            if c.kind in ("proposal", "repair") and c.status in ("", str(Status.OK))
        ]
        self._measure(fresh, self.config.screen_fidelity, [self.screen_seed])
        return fresh

    def _select(
        self, parent: CandidateRecord, promoted: Sequence[str]
    ) -> tuple[CandidateRecord, str]:
        base = self._estimate(parent.id, self.config.fidelity, self.confirm_seeds)
        best, best_cmp = parent, None
        for cid in promoted:
            est = self._estimate(cid, self.config.fidelity, self.confirm_seeds)
            if est is None or base is None:
                continue
            cmp = compare(est, base, self.noise_sd)
            if cmp.better and (best_cmp is None or cmp.delta < best_cmp.delta):
                best, best_cmp = self.store.candidate(cid) or parent, cmp
        if best_cmp is None:
            return parent, f"kept {parent.id}: no finalist beat it beyond the noise"
        return (
            best,
            f"{best.id} replaces {parent.id}: delta {best_cmp.delta:+.4f} (ci95 {best_cmp.ci95:.4f})",
        )

    def _steering(self, generation: int) -> str:
        path = self.store.run_dir / "steering.md"
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        if text.strip():
            self.store.record_steering(generation, text)
        return text

    def _write_results(self, generation: int) -> None:
        lines = []
        for c in self.store.candidates(generation):
            t = self.store.trial(c.id, self.config.screen_fidelity, self.screen_seed)
            loss = f"{t.val_loss:.4f}" if t and t.val_loss is not None else "-"
            secs = f"{t.train_seconds:.1f}s" if t else "-"
            lines.append(f"{c.persona}\t{loss}\t{secs}\t{c.status or 'pending'}")
        self.store.write_results(generation, lines)

    # -- the whole run --------------------------------------------------------------------
    def run(self) -> RunSummary:
        """Run (or resume) every generation, then confirm the best on fresh seeds."""
        baseline = self._baseline()
        parent, stopped = baseline, ""
        for number in range(1, self.config.generations + 1):
            if self._out_of_time():
                stopped = f"budget of {self.config.budget_minutes} minutes reached before generation {number}"
                break
            parent = self._generation(number, parent)
        return self._final(baseline, parent, stopped)

    def _final(self, baseline: CandidateRecord, best: CandidateRecord, stopped: str) -> RunSummary:
        seeds = self.final_seeds if best.id != baseline.id else self.confirm_seeds
        self._measure(
            [baseline, best] if best.id != baseline.id else [baseline], self.config.fidelity, seeds
        )
        b = self._estimate(baseline.id, self.config.fidelity, seeds)
        c = self._estimate(best.id, self.config.fidelity, seeds) or b
        assert b is not None and c is not None
        cmp = (
            compare(c, b, self.noise_sd) if best.id != baseline.id else Comparison(0.0, 0.0, False)
        )
        statuses: dict[str, int] = {}
        for cand in self.store.candidates():
            if cand.kind != "baseline":
                statuses[cand.status or "pending"] = statuses.get(cand.status or "pending", 0) + 1
        self.on_event(Event("final", best.id, best.persona, "", c.mean))
        return RunSummary(
            best.id,
            best.persona,
            c.mean,
            b.mean,
            cmp.delta,
            cmp.ci95,
            self.config.fidelity,
            tuple(seeds),
            sum(statuses.values()),
            statuses,
            stopped,
        )


_REPAIRABLE = (str(Status.INVALID), str(Status.CRASHED))


def _repairable(c: CandidateRecord) -> bool:
    """Failed for a reason its author can fix: checks, edits or a crash (not the agent)."""
    return (
        c.kind in ("proposal", "repair")
        and c.status in _REPAIRABLE
        and not c.reason.startswith("agent failed")
    )


def _summary_line(text: str) -> str:
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
