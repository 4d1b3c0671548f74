"""Novelty: a candidate that repeats an earlier experiment is not trained again, and the
prompt's history says what has been tried, from the research records.

    candidate + parent ─► note_change ─► its ChangeRecord; a `duplicate` of its twin, if any
    store ─► history_items ─► HistoryItem per earlier candidate (record + screening result)
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from dreamteam.propose.changes import dedupe_key, extract_record
from dreamteam.propose.prompt import HistoryItem
from dreamteam.records import CandidateKind, Status

if TYPE_CHECKING:
    from dreamteam.records import CandidateRecord
    from dreamteam.store import RunStore


class Lookup(Protocol):
    """Where earlier candidates are found (the run store)."""

    def by_hash(self, code_hash: str) -> CandidateRecord | None: ...

    def by_record(self, record_key: str) -> CandidateRecord | None: ...


def note_change(
    candidate: CandidateRecord, parent: CandidateRecord, lookup: Lookup
) -> CandidateRecord:
    """The candidate with its change record, marked as a duplicate when an earlier candidate
    has the same normalised code, or made the same change to the same code, or when the
    change is nothing the record sees (docstrings, prints, local names): then it is its
    parent's experiment again. A duplicate is not trained; it shares its twin's status."""
    change = extract_record(parent.files, candidate.files)
    key = dedupe_key(parent.code_hash, change) if change is not None else ""
    candidate = replace(candidate, record=change, record_key=key)
    if candidate.status:  # the answer did not apply: nothing to compare
        return candidate
    twin, why = lookup.by_hash(candidate.code_hash), "same code as"
    if (
        twin is None
        and change is not None
        and change.empty
        and parent.kind != CandidateKind.DUPLICATE
    ):
        twin, why = parent, "no change that matters (docstrings, prints, names) from"
    if twin is None and key:
        twin, why = lookup.by_record(key), "the same change to the same code as"
    if twin is None:
        return candidate
    return replace(
        candidate,
        kind=CandidateKind.DUPLICATE,
        status=twin.status,
        twin=twin.id,
        reason=f"{why} {twin.id}: not retrained",
    )


def history_items(store: RunStore, screen_fidelity: str, screen_seed: int) -> list[HistoryItem]:
    """Every earlier candidate for the prompt's history: its record (what the code changed)
    and what it gave at screening, best first, failures last. Duplicates add nothing new."""
    screen = {
        t.candidate: t
        for t in store.trials()
        if t.fidelity == screen_fidelity and t.seed == screen_seed and t.val_loss is not None
    }
    items = []
    for c in store.candidates():
        if c.kind in (CandidateKind.BASELINE, CandidateKind.DUPLICATE):
            continue
        mine, parent = screen.get(c.id), screen.get(c.parent or "")
        loss = mine.val_loss if mine else None
        base = parent.val_loss if parent else None
        delta = loss - base if loss is not None and base is not None else None
        summary = c.summary if c.status == Status.OK else f"{c.status}: {c.reason[:160]}"
        change = c.record.compact() if c.record is not None else ""
        figures = dict(mine.figures) if mine else {}
        items.append(HistoryItem(c.id, c.persona, c.status, loss, delta, summary, change, figures))
    items.sort(key=lambda h: (h.val_loss is None, h.val_loss or 0.0))
    return items
