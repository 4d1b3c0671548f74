"""The commands that take a candidate: diff, export, sample; and steer, which writes to a run.

A candidate may be named by a unique prefix of its id (`g1-ar` for `g1-aristotle`).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import typer

from dreamteam.cli.context import console, settings
from dreamteam.cli.research import resolve_run
from dreamteam.errors import OverwriteError, StoreError, TaskError
from dreamteam.execute.devices import cpu_threads
from dreamteam.harness.sampling import SamplingSettings, sample_tokens
from dreamteam.harness.sandbox.launcher import probe_isolation
from dreamteam.propose.edits import diff_files
from dreamteam.records import CandidateRecord
from dreamteam.store import RunStore
from dreamteam.store.faults import os_fault
from dreamteam.tasks import load_task
from dreamteam.tasks.data import load_tokenizer

# run statuses after which no generation will read steering.md again
_ENDED = frozenset({"done", "stopped"})
_VERSION = re.compile(r"^## Steering (\d+)\b", re.MULTILINE)


def find_candidate(store: RunStore, text: str) -> CandidateRecord:
    """The candidate whose id is `text`, or the only one whose id starts with it."""
    exact = store.candidate(text)
    if exact is not None:
        return exact
    matches = [c for c in store.candidates() if c.id.startswith(text)]
    if len(matches) == 1:
        return matches[0]
    run = store.run_dir.name
    if not matches:
        raise StoreError(f"no candidate {text!r} in {run}: see `dreamteam show {run}`")
    ids = ", ".join(c.id for c in matches)
    raise StoreError(f"{text!r} matches {len(matches)} candidates in {run} ({ids}): give more")


def _open_candidate(run: str | None, candidate: str) -> tuple[RunStore, CandidateRecord]:
    store = RunStore.open_existing(resolve_run(run))
    return store, find_candidate(store, candidate)


def diff(
    candidate: str = typer.Argument(..., help="A candidate id or its prefix, e.g. g1-arch."),
    other: str = typer.Argument(None, help="Another candidate (default: its parent)."),
    run: str = typer.Option(None, "--run", help="The run (default: the newest)."),
) -> None:
    """The diff of a candidate against its parent, or against another candidate.

    Example: dreamteam diff g1-aristotle g0-baseline
    """
    store, c = _open_candidate(run, candidate)
    if other:
        base = find_candidate(store, other)
    elif c.parent:
        base = find_candidate(store, c.parent)
    else:
        raise StoreError(f"{c.id} has no parent: name another candidate to compare it with")
    print(diff_files(base.files, c.files, labels=f"{base.id} {c.id}") or "(no difference)")


def export(
    run: str = typer.Argument(..., help="A run id or directory."),
    candidate: str = typer.Argument(..., help="A candidate id or its prefix."),
    directory: Path = typer.Argument(..., help="Where to write the files."),
    force: bool = typer.Option(False, "--force", help="Overwrite files already there."),
) -> None:
    """Write a candidate's files, ready to use (never over existing files without --force)."""
    store, c = _open_candidate(run, candidate)
    names = [*c.files, "provenance.json"]
    if directory.exists() and not directory.is_dir():
        raise OverwriteError(f"{directory} is a file: give a directory to write the files into")
    taken = [directory / n for n in names if (directory / n).exists()]
    if taken and not force:
        raise OverwriteError(f"{taken[0]} exists: pass --force to overwrite, or choose another DIR")
    directory.mkdir(parents=True, exist_ok=True)
    for name, source in c.files.items():
        (directory / name).write_text(source, encoding="utf-8")
    provenance = {
        "run": str(store.run_dir),
        "candidate": c.id,
        "persona": c.persona,
        "parent": c.parent,
        "status": c.status,
    }
    (directory / "provenance.json").write_text(json.dumps(provenance, indent=2), encoding="utf-8")
    console.print(f"wrote {', '.join(c.files)} to {directory}")


def steering_text(existing: str, text: str, when: float) -> str:
    """steering.md with `text` appended as the next version under its own heading.

    The loop reads the whole file, so every version stays in the prompt, newest last; a file
    written by hand (no headings) counts as version 1.
    """
    versions = [int(v) for v in _VERSION.findall(existing)]
    number = max(versions, default=1 if existing.strip() else 0) + 1
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when))
    block = f"## Steering {number} ({stamp})\n\n{text.strip()}\n"
    return f"{existing.rstrip()}\n\n{block}" if existing.strip() else block


def steer(
    run: str = typer.Argument(..., help="A run id or directory."),
    text: str = typer.Argument(..., help="Guidance for the next generations' prompts."),
    replace: bool = typer.Option(
        False, "--replace", help="Start the steering over instead of appending a version."
    ),
) -> None:
    """Add a version to the run's steering.md (read at the start of every generation).

    Example: dreamteam steer 20261206-120000-ab12 "Try learning-rate schedules; leave attention."
    """
    if not text.strip():
        raise StoreError("the steering text is empty: say what the next generations should try")
    run_dir = resolve_run(run)
    path = run_dir / "steering.md"
    existing = "" if replace or not path.is_file() else path.read_text(encoding="utf-8")
    tmp = path.with_suffix(".md.tmp")
    try:
        tmp.write_text(steering_text(existing, text, time.time()), encoding="utf-8")
        os.replace(tmp, path)  # atomic: a generation never reads half a file
    except OSError as exc:  # a read-only run, a full disk
        raise os_fault(run_dir, exc) from exc
    store = RunStore.open_existing(run_dir)
    status = store.run_info().status
    store.close()
    if status in _ENDED:
        console.print(
            f"steering saved to {path}, but run {run_dir.name} has ended ({status}): "
            "no generation will read it"
        )
    else:
        console.print(f"steering saved to {path}; it takes effect at the next generation")


def sample(
    candidate: str = typer.Argument(..., help="A candidate id or its prefix, e.g. g1-arch."),
    run: str = typer.Option(None, "--run", help="The run (default: the newest)."),
    prompt: str = typer.Option("\n", "--prompt", help="Text to continue."),
    tokens: int = typer.Option(200, "--tokens", min=1, help="Tokens to generate."),
    temperature: float = typer.Option(0.8, "--temperature", min=0.0),
    top_k: int = typer.Option(200, "--top-k", min=0, help="0 turns top-k off."),
    top_p: float = typer.Option(1.0, "--top-p", min=0.0, max=1.0),
    seed: int = typer.Option(1337, "--seed"),
) -> None:
    """Generate text from a trained candidate (its kept weights, its own model code)."""
    store, c = _open_candidate(run, candidate)
    ckpt = store.candidate_dir(c) / "ckpt.pt"
    if not ckpt.is_file():
        raise StoreError(
            f"{c.id} kept no trained weights (only confirmed candidates do): "
            f"`dreamteam export {store.run_dir.name} {c.id} DIR` then `dreamteam train` it"
        )
    s = settings()
    info = store.run_info()
    t = load_task(str(info.config.get("task") or info.task))
    if not t.is_lm:
        raise TaskError(f"task {t.name!r} is not a language model: there is no text to sample")
    encoding = load_tokenizer(home=s.home, mirror=s.mirror)
    ids = sample_tokens(
        t,
        c.files,
        ckpt,
        encoding.encode_ordinary(prompt),
        SamplingSettings(tokens, temperature, top_k, top_p, seed),
        probe_isolation(),
        threads=cpu_threads(1),
    )
    print(encoding.decode(ids))
