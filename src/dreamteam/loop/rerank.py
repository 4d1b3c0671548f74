"""What lasts: the elite re-ranked at the final fidelity before the claim is measured.

A change that wins at the confirmation fidelity may not hold at the real budget: on the
built-in task the best of 16 candidates at 625 steps (a schedule, hard clipping and an untied
head: -0.71 nats) is the worst of the five measured at 10,001 (-0.05), where a plain schedule
keeps the most (-0.17; the README's transfer table). With `--final-top N` the top N
of the elite (the search's best first) train once at the final fidelity on the screening
seed, which no final figure uses, and the lowest loss there becomes the claim. The claim is
then measured on the fresh final seeds beside the baseline, as ever: the pick and the
reported figure share no seed, so picking the luckiest of N does not inflate the delta.
"""

from __future__ import annotations

from dreamteam.loop.measure import Trials
from dreamteam.records import CandidateRecord, Ranking
from dreamteam.select.judge import Judge


def rerank(
    trials: Trials, judge: Judge, best: CandidateRecord, fidelity: str, seed: int
) -> tuple[CandidateRecord, Ranking]:
    """The claim to measure at `fidelity` and the losses it was picked on, best first.

    Nothing is read or trained (and `best` stands) unless the run's `final_top` is 2 or more,
    the final fidelity differs from the confirmation fidelity, and the search found something
    better than the baseline. A member that fails at `fidelity` drops out of the ranking.
    """
    config, store = judge.config, judge.store
    if config.final_top < 2 or fidelity == config.fidelity or best.id == judge.baseline:
        return best, ()
    ids = [cid for cid in dict.fromkeys([best.id, *judge.elite()]) if cid != judge.baseline]
    members = [c for cid in ids[: config.final_top] if (c := store.candidate(cid)) is not None]
    trials.measure(members, fidelity, [seed])
    losses = sorted(
        ((c.id, e.mean) for c in members if (e := trials.estimate(c.id, fidelity, [seed]))),
        key=lambda pair: (pair[1], pair[0]),
    )
    chosen = store.candidate(losses[0][0]) if losses else None
    return chosen or best, tuple(losses)
