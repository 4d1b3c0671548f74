"""Ablating a run's candidate and printing what each part of its change is worth (the body of
`dreamteam ablate` and of `dreamteam run --ablate`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from dreamteam.cli.context import console, settings
from dreamteam.config import RunConfig
from dreamteam.errors import StoreError
from dreamteam.harness.by_hand import evaluate_files
from dreamteam.loop.ablation import Ablation, Delta, PartResult, ablate, save
from dreamteam.loop.plan import BASE_SEED, BASELINE_ID
from dreamteam.records import TrialResult
from dreamteam.store import RunStore
from dreamteam.tasks import load_task


def _fmt(d: Delta | None) -> str:
    return f"{d.delta:+.4f} ± {d.ci95:.4f}" if d else "-"


def _print_part(r: PartResult) -> None:
    said = _fmt(r.contribution) if r.contribution else f"{r.status}: {r.reason}"
    console.print(f"  without {r.label}: {said}", markup=False, soft_wrap=True)


def best_of(store: RunStore) -> str:
    """The run's stored best, else the last generation's best."""
    summary = store.summary()
    if summary is not None and summary.best:
        return summary.best
    gens = [g for g in store.generations() if g.best]
    if not gens:
        raise StoreError(f"{store.run_dir.name} has no best yet: name a candidate to ablate")
    return gens[-1].best


def ablate_run(
    run_dir: Path, candidate: str | None, fidelity: str | None, seeds: int | None
) -> Ablation:
    """Ablate a candidate of the run in `run_dir`, print one line per part and store it."""
    store = RunStore.open_existing(run_dir)
    try:
        info = store.run_info()
        defaults = RunConfig()
        cid = candidate or best_of(store)
        if cid == BASELINE_ID:
            raise StoreError("the best is the baseline: there is no change to ablate")
        winner, base = store.candidate(cid), store.candidate(BASELINE_ID)
        if winner is None or base is None:
            raise StoreError(f"no candidate {cid!r} in {run_dir.name}: see `dreamteam show`")
        at = fidelity or str(info.config.get("fidelity", defaults.fidelity))
        n = seeds or int(str(info.config.get("seeds", defaults.seeds)))
        if n < 2:
            raise StoreError("--seeds must be at least 2: one seed cannot measure noise")
        plan = tuple(BASE_SEED + 1 + i for i in range(n))  # the run's confirmation seeds
        task = load_task(str(info.config.get("task") or info.task))
        stored = {cid: winner.files, BASELINE_ID: base.files}

        def train(files: Mapping[str, str]) -> list[TrialResult]:
            known = _stored(store, stored, files, at, plan)
            if known is not None:
                return known
            return evaluate_files(task, dict(files), at, plan, settings())

        console.print(f"ablating {cid} at {at} on seeds {list(plan)}", soft_wrap=True)
        result = ablate(
            task,
            base.files,
            winner.files,
            train,
            candidate=cid,
            fidelity=at,
            seeds=plan,
            on_part=_print_part,
        )
        _print_closing(result)
        save(store.run_dir, result)
        return result
    finally:
        store.close()


def _stored(
    store: RunStore,
    known: Mapping[str, Mapping[str, str]],
    files: Mapping[str, str],
    fidelity: str,
    seeds: Sequence[int],
) -> list[TrialResult] | None:
    """The run's own trials of these exact files on these seeds, when it has all of them."""
    cid = next((c for c, f in known.items() if dict(f) == dict(files)), None)
    trials = [store.trial(cid, fidelity, s) for s in seeds] if cid else []
    if not trials or any(t is None or t.val_loss is None for t in trials):
        return None
    return [
        TrialResult(t.status, t.reason, t.seed, t.fidelity, t.iters, t.val_loss, t.bpb)
        for t in trials
        if t is not None
    ]


def _print_closing(a: Ablation) -> None:
    mean = sum(a.winner) / len(a.winner)
    console.print(f"  winner {mean:.4f}, baseline {sum(a.baseline) / len(a.baseline):.4f}")
    r = a.recipe
    if r is None:
        console.print(
            "simplest recipe within the noise: the winner itself (every part counts)",
            soft_wrap=True,
        )
    elif r.vs_winner is None:
        console.print(
            f"simplest recipe within the noise: not measured ({r.reason})",
            markup=False,
            soft_wrap=True,
        )
    else:
        console.print(
            f"simplest recipe within the noise: without {', '.join(r.dropped)}: "
            f"vs winner {_fmt(r.vs_winner)}, vs baseline {_fmt(r.vs_baseline)}",
            markup=False,
            soft_wrap=True,
        )
    top = next((p for p in a.parts if p.label == a.carries), None)
    if top is not None:
        console.print(
            f"carries the gain: {top.label} ({_fmt(top.contribution)})",
            markup=False,
            soft_wrap=True,
        )
    else:
        console.print("carries the gain: no part could be measured alone")
