"""Do cheap fidelities rank candidates the way the real budget does?

Builds distinct candidates from the offline catalogue (agents/techniques.py): single techniques
and small stacks applied to the built-in task's baseline, each drawn with its own fixed seed
and passed through the static checks. Every candidate and the baseline train at each screening
fidelity (default `smoke`, `low`, `medium`); the best few at the last of them, plus the
baseline, train at the final fidelity (default `full`). Every figure is scored as a candidate
is, through `dreamteam.evaluate_files` (the sandboxed trial and the harness's whole-split loss).

Printed: each candidate's loss per fidelity, Spearman's rho between each pair of fidelities
(over the candidates measured at both), and for each screening fidelity whether its winner is
still the winner at the final fidelity (among the candidates measured there).

    python benchmarks/fidelity_transfer.py [--fidelities smoke,low,medium] [--final full]
        [--candidates 16] [--top 3] [--seed 1337] [--cache FILE] [--stacks a+b,c] [--quick]

`--stacks a+b,c`: candidates of your own on top of the catalogue's `--candidates`, each a
stack of catalogue techniques applied in order (a name that is not in the catalogue is a
usage error; a stack that does not apply or fails the static checks is left out).

`--cache FILE`: every figure is added to FILE (JSON) as soon as it is measured and read back
on the next run, so an interrupted benchmark (it takes over an hour at `full`) goes on where
it stopped; a figure is reused only for the same candidate name, fidelity and seed.

`--quick`: 4 candidates at `smoke`, the best 2 and the baseline at `low`. One seed per figure:
the ranks carry seed noise (about 0.02-0.08 nats at `full`, see the README), so a pair of
candidates closer than that may swap between fidelities for no other reason.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from collections.abc import Sequence
from pathlib import Path

from dreamteam import evaluate_files, load_task, settings_from_env
from dreamteam.agents.techniques import CATALOGUE, technique
from dreamteam.harness.checks import check_candidate
from dreamteam.select.stats import spearman
from dreamteam.tasks import Task

# the catalogue's single techniques, in its order, but for three that barely move a short run
SINGLES = tuple(
    t.name for t in CATALOGUE if t.name not in {"dropout", "fan_in_init", "layer_scale"}
)
STACKS = (
    ("cosine_schedule", "tune_lr"),
    ("cosine_schedule", "grad_clip"),
    ("rmsnorm", "swiglu"),
    ("rope", "qk_norm"),
    ("cosine_schedule", "tune_lr", "rmsnorm"),
)
Files = dict[str, str]


def candidates(
    task: Task, count: int, extra: Sequence[Sequence[str]] = ()
) -> list[tuple[str, Files]]:
    """Up to `count` distinct, checked candidates: stacks first (they differ most), then
    singles; then the `extra` stacks asked for by name. Each technique is drawn with a seed of
    its own name, so the set is the same every time."""
    base = task.baseline_files()
    out: list[tuple[str, Files]] = []
    seen = {_key(base)}

    def add(names: Sequence[str]) -> None:
        files = _stack(base, names)
        if files is not None and _key(files) not in seen and check_candidate(files, task).ok:
            seen.add(_key(files))
            out.append(("+".join(names), files))

    for names in (*STACKS, *((n,) for n in SINGLES)):
        if len(out) < count:
            add(names)
    for names in extra:
        add(names)
    return out


def stacks_arg(text: str) -> list[tuple[str, ...]]:
    """`--stacks a+b,c`: technique names joined by + into stacks, stacks by commas."""
    known = {t.name for t in CATALOGUE}
    stacks = [tuple(n for n in s.split("+") if n) for s in text.split(",") if s.strip()]
    unknown = sorted({n for s in stacks for n in s} - known)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown technique {unknown[0]!r}: use names from agents/techniques.py"
        )
    return stacks


def _stack(base: Files, names: Sequence[str]) -> Files | None:
    files = dict(base)
    for name in names:
        t = technique(name)
        if not t.applies(files):
            return None
        try:
            files = t.apply(files, random.Random(name))
        except Exception:  # a technique that cannot edit these files: not a candidate
            return None
    return files


def _key(files: Files) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(files.items()))


class Cache:
    """Figures measured so far, as `{"<seed>/<fidelity>": {name: loss or null}}` in a JSON
    file rewritten after each one (no file: nothing is kept)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.data: dict[str, dict[str, float | None]] = {}
        if path is not None and path.is_file():
            self.data = json.loads(path.read_text(encoding="utf-8"))

    def get(self, seed: int, fidelity: str) -> dict[str, float | None]:
        return self.data.setdefault(f"{seed}/{fidelity}", {})

    def save(self) -> None:
        if self.path is not None:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, indent=1), encoding="utf-8")
            tmp.replace(self.path)


def measure(
    task: Task, named: Sequence[tuple[str, Files]], fidelity: str, seed: int, cache: Cache
) -> dict[str, float]:
    """Each candidate's harness loss at `fidelity` on `seed` (failed trials left out)."""
    settings = settings_from_env(os.environ)
    known = cache.get(seed, fidelity)
    for name, files in named:
        if name in known:
            loss = known[name]
            figure = ("failed" if loss is None else f"{loss:.4f}") + " (cached)"
        else:
            result = evaluate_files(task, files, fidelity, [seed], settings)[0]
            known[name] = result.val_loss
            cache.save()
            figure = str(result.status) if result.val_loss is None else f"{result.val_loss:.4f}"
        print(f"  {fidelity:>6} {name}: {figure}", flush=True)
    wanted = {name for name, _ in named}
    return {n: v for n, v in known.items() if v is not None and n in wanted}


def winner(losses: dict[str, float]) -> str:
    return min(losses, key=lambda n: (losses[n], n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fidelities", default="smoke,low,medium", help="screening levels")
    parser.add_argument("--final", default="full", help="the level the real budget is")
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument("--top", type=int, default=3, help="candidates trained at --final")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--cache", type=Path, help="keep figures here; reuse them on rerun")
    parser.add_argument(
        "--stacks", type=stacks_arg, default=[], help="more candidates: a+b,c (catalogue names)"
    )
    parser.add_argument("--quick", action="store_true", help="4 candidates, smoke then low")
    args = parser.parse_args()
    levels = ["smoke"] if args.quick else [f for f in args.fidelities.split(",") if f]
    final = "low" if args.quick else args.final
    count, top = (4, 2) if args.quick else (args.candidates, args.top)
    task = load_task("shakespeare")
    unknown = [f for f in [*levels, final] if f not in task.fidelity]
    if unknown or not levels:
        sys.exit(
            f"error: unknown fidelity {unknown[0] if unknown else '(none)'}: use "
            f"{', '.join(task.fidelity)}"
        )
    named = [("baseline", task.baseline_files()), *candidates(task, count, args.stacks)]
    print(f"{len(named) - 1} candidates + baseline; seed {args.seed}; levels {levels} -> {final}")
    cache = Cache(args.cache)
    by_level = {f: measure(task, named, f, args.seed, cache) for f in levels}
    last = by_level[levels[-1]]
    best = sorted((n for n in last if n != "baseline"), key=lambda n: last[n])[:top]
    by_level[final] = measure(
        task, [c for c in named if c[0] in {*best, "baseline"}], final, args.seed, cache
    )
    report(task, by_level, levels, final)


def report(
    task: Task, by_level: dict[str, dict[str, float]], levels: list[str], final: str
) -> None:
    """The rank correlations and whether each screening winner still wins at `final`."""
    every = [*levels, final]
    print("\nSpearman rho between fidelities (candidates measured at both, baseline included):")
    for i, a in enumerate(every):
        for b in every[i + 1 :]:
            shared = sorted(set(by_level[a]) & set(by_level[b]))
            rho = spearman([by_level[a][n] for n in shared], [by_level[b][n] for n in shared])
            shown = "n/a (under 3 pairs)" if rho is None else f"{rho:+.3f}"
            print(
                f"  {a} ({task.iterations(a)} steps) vs {b} ({task.iterations(b)} steps): "
                f"rho {shown} over {len(shared)}"
            )
    top = winner(by_level[final]) if by_level[final] else "-"
    kept = 0
    for level in levels:
        w = winner(by_level[level]) if by_level[level] else "-"
        same = w == top
        kept += same
        print(
            f"  winner at {level}: {w}; at {final}: {top}; {'still the winner' if same else 'not'}"
        )
    print(f"screening winner still the winner at {final}: {kept} of {len(levels)} fidelities")


if __name__ == "__main__":
    main()
