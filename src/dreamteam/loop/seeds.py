"""Close calls get more seeds: the confirmation of a generation's finalists.

Every finalist trains on the confirmation seeds. Then, one extra seed at a time (the seed
plan's `extra`, up to `max_seeds` in all), each finalist whose comparison with the parent is
a close call (select/rules.close_call: the 95 % interval of the difference straddles the
threshold) trains on the next seed, and so does the parent, so that the two stay on the same
seeds (a paired comparison, and an interval that shrinks on both sides). A clear win or loss
stops early; selection then judges every finalist on all its seeds, beyond the noise as ever.

Resuming: each step's decision is read from stored trials, and a stored trial is never run
again, so a run killed between extra seeds continues where it stopped.
"""

from __future__ import annotations

from collections.abc import Sequence

from dreamteam.loop.measure import Trials
from dreamteam.records import CandidateRecord
from dreamteam.select.judge import Judge
from dreamteam.select.rules import close_call


def confirm_finalists(
    trials: Trials,
    standing: Judge,
    parent: CandidateRecord,
    finalists: Sequence[CandidateRecord],
) -> str:
    """Train the finalists on the confirmation seeds, then the close calls on extra seeds;
    returns a note naming the close calls and their seed counts ("" when there were none)."""
    fidelity = standing.config.fidelity
    trials.measure(finalists, fidelity, standing.confirm_seeds)
    for seed in standing.extra_seeds:
        close = [c for c in finalists if _close(standing, parent.id, c.id)]
        if not close:
            break
        trials.measure([parent, *close], fidelity, [seed], keep=False)
    grown = [(c.id, len(standing.trained(c.id, standing.extra_seeds))) for c in finalists]
    n = len(standing.confirm_seeds)
    named = [f"{cid} on {n + extra} seeds" for cid, extra in grown if extra]
    return f"close calls: {', '.join(named)}" if named else ""


def _close(standing: Judge, parent: str, candidate: str) -> bool:
    verdict = standing.verdict(parent, candidate)
    return verdict is not None and close_call(verdict)
