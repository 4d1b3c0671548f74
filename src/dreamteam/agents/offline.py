"""The offline agent: proposes real, well-known improvements without a model or a network.

It draws one or more techniques from the catalogue (``techniques.py``) and the task-independent
hyperparameter tuner (``techniques_generic.py``), weighting those that match the persona's
technique keys, applies them to the candidate's current files as code edits, and answers in
the seeds' format: a short preamble, then one fenced block per file. On a task that is not
the built-in language model, the catalogue's transformer techniques find nothing to edit; the
techniques that find their code by what it does (inline hyperparameters, the optimizer, the
training loop, ``nn.Sequential`` stacks) and the tuner of module constants do the work. A
structural change may come with a small learning-rate re-tune (``choose_and_apply``).
Its draws depend only on its seed, the request's seed, the persona and the files, so the same
request always gets the same answer: it doubles as the test fake for the search loop.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections.abc import Iterable, Mapping, Sequence

from dreamteam.agents.base import AgentRequest, AgentResponse, FinishReason, Usage
from dreamteam.agents.techniques import (
    CATALOGUE,
    MODEL,
    TRAIN,
    Change,
    Technique,
    for_any_script,
)
from dreamteam.agents.techniques_generic import hyperparameter_tuner
from dreamteam.agents.techniques_script import retune_lr
from dreamteam.propose.changes import extract_record
from dreamteam.records import ChangeKind

PRIOR_WEIGHT = 4.0  # a technique that matches a persona's keys is drawn this much more often
# how often a structural change comes with a learning-rate re-tune: more often for personas
# whose priors are about step sizes
RETUNE_CHANCE, RETUNE_CHANCE_LR = 0.5, 0.8
_LR_KEYS = frozenset({"lr_schedules", "adaptive_optimizers"})
_ALIASES = {"train_mps.py": TRAIN}  # the seeds' name for train.py
_DISPLAY = {TRAIN: "train_mps.py"}  # ...which an answer uses when the request names no files


def _fence(body: str) -> str:
    """A backtick fence longer than any backtick run in ``body``, so the block stays whole."""
    runs = re.findall(r"`{3,}", body)
    return "`" * max([3, *(len(r) + 1 for r in runs)])


def _block(name: str, source: str | None) -> str:
    """One answer block: the file name on the first line, then the whole file (or nothing)."""
    body = f"{name}\n{source.rstrip()}\n" if source is not None else f"{name}\n"
    fence = _fence(body)
    return f"{fence}python\n{body}{fence}\n"


def render_answer(
    preamble: str,
    before: Mapping[str, str],
    after: Mapping[str, str],
    names: Sequence[str],
    shown: Mapping[str, str] = _DISPLAY,
) -> str:
    """The seeds' answer format: prose, then a block per file (empty when it is unchanged).

    `shown` maps a file's name to the name its block carries (the name the request used).
    """
    blocks = [
        _block(shown.get(n, n), after[n] if after.get(n) != before.get(n) else None) for n in names
    ]
    return preamble.rstrip() + "\n\n" + "\n".join(blocks)


def _seed(*parts: object) -> int:
    """A stable seed (Python's ``hash`` of a str changes per process)."""
    digest = hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def choose_and_apply(
    files: Mapping[str, str],
    priors: Iterable[str],
    rng: random.Random,
    count: int,
    catalogue: Sequence[Technique] = CATALOGUE,
    retune: Technique | None = None,
    structural: bool = False,
) -> tuple[dict[str, str], list[tuple[Technique, Change]]]:
    """Apply up to ``count`` techniques one after another, each drawn among those that apply
    to the files as they stand, favouring ``priors``; a technique that fails is skipped.

    After a structural technique, ``retune`` (a small learning-rate move) follows when the
    persona's draw allows: a new shape rarely trains best at the old step size. With
    ``structural``, the first change must alter code, not only values (its change record
    says structural); techniques that only move values are passed over until one does."""
    keys = set(priors)
    chance = RETUNE_CHANCE_LR if keys & _LR_KEYS else RETUNE_CHANCE
    current = dict(files)
    done: list[tuple[Technique, Change]] = []
    pool = list(catalogue)
    applied = 0
    while applied < count and pool:
        usable = [t for t in pool if t.applies(current)]
        if not usable:
            break
        weights = [PRIOR_WEIGHT if keys & set(t.keys) else 1.0 for t in usable]
        pick = rng.choices(usable, weights)[0]
        pool.remove(pick)
        try:
            change = pick.transform(current, rng)
        except Exception:  # weird code: this technique sits this one out
            continue
        if change.files == current:
            continue
        if structural and not done and not _restructures(current, change.files):
            continue
        current = change.files
        done.append((pick, change))
        applied += 1
        if pick.structural and retune is not None and rng.random() < chance:
            current, done = _retuned(current, done, retune, rng)
    return current, done


def _restructures(before: Mapping[str, str], after: Mapping[str, str]) -> bool:
    """Whether the change from ``before`` to ``after`` alters code, not only values."""
    record = extract_record(before, after)
    return record is not None and record.kind is ChangeKind.STRUCTURAL


def _retuned(
    files: dict[str, str],
    done: list[tuple[Technique, Change]],
    retune: Technique,
    rng: random.Random,
) -> tuple[dict[str, str], list[tuple[Technique, Change]]]:
    """The files after ``retune``, when it applies and succeeds (else as they were)."""
    if not retune.applies(files):
        return files, done
    try:
        change = retune.transform(files, rng)
    except Exception:  # no learning rate it can move: the structural change goes alone
        return files, done
    return change.files, [*done, (retune, change)]


class OfflineAgent:
    """An agent that edits code with the technique catalogue instead of asking a model."""

    def __init__(
        self,
        seed: int = 0,
        max_techniques: int = 2,
        protected: Iterable[str] = (),
        imports: Iterable[str] | None = None,
    ):
        """`protected`: the task's protected constants, which no edit may touch; `imports`:
        the modules a candidate may import (None: any)."""
        if max_techniques < 1:
            raise ValueError("max_techniques must be at least 1")
        self._seed = seed
        self._max = max_techniques
        frozen = frozenset(protected)
        self._catalogue = (
            *CATALOGUE,
            *for_any_script(frozen, imports),
            hyperparameter_tuner(frozen),
        )
        self._retune = retune_lr(frozen)

    @property
    def name(self) -> str:
        """The model spec this agent answers as."""
        return "offline"

    def propose(self, request: AgentRequest) -> AgentResponse:
        """Apply 1..max_techniques techniques to the request's files and answer with them."""
        start = time.perf_counter()
        files = {_ALIASES.get(name, name): source for name, source in request.files}
        names = list(files) or [TRAIN, MODEL]
        # answer with the names the request used: every task accepts its own file names
        shown = {_ALIASES.get(name, name): name for name, _ in request.files} or _DISPLAY
        rng = random.Random(
            _seed(self._seed, request.seed, request.persona, *sorted(files.items()))
        )
        count = rng.randint(1, self._max)
        draw = (files, request.techniques, rng, count, self._catalogue, self._retune)
        after, done = choose_and_apply(*draw, structural=request.structural)
        missing = request.structural and not done  # asked for structure, none applies
        if missing:
            after, done = choose_and_apply(*draw)
        who = f" for {request.persona}" if request.persona else ""
        if done:
            lines = [f"Offline agent{who}: {len(done)} change(s) from the technique catalogue."]
            if missing:
                lines[0] += " No structural technique applies here, so these only move values."
            lines += [f"- {t.name}: {c.detail}. Why: {t.why}." for t, c in done]
        else:
            lines = [
                f"Offline agent{who}: no catalogue technique applies to these files; "
                "nothing is changed."
            ]
        text = render_answer("\n".join(lines), files, after, names, shown)
        return AgentResponse(
            text=text,
            model=self.name,
            finish=FinishReason.STOP,
            usage=Usage(),
            latency_s=time.perf_counter() - start,
        )
