"""Research records: hyperparameter moves, edited definitions and techniques read from the code,
and the duplicate they let the search skip."""

from __future__ import annotations

import random
import re
from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from dreamteam.agents import build_team, parse_model_map
from dreamteam.agents.factory import Credentials
from dreamteam.agents.techniques import CATALOGUE
from dreamteam.config import RunConfig
from dreamteam.loop.build import build_search
from dreamteam.loop.search import code_hash
from dreamteam.personas import load_library
from dreamteam.propose.changes import dedupe_key, extract_record
from dreamteam.propose.novelty import note_change
from dreamteam.records import CandidateRecord, ChangeRecord, Move
from dreamteam.store import RunStore
from dreamteam.tasks import load_task
from test_search import FakeExecutor, _Scripted, fake_search

BASE = load_task("shakespeare").baseline_files()
TRAIN = BASE["train.py"]
# the free hyperparameters of the baseline's train.py, with their values as written
FREE = {
    "learning_rate": 3e-4,
    "weight_decay": 0.1,
    "beta1": 0.9,
    "beta2": 0.95,
    "dropout": 0.0,
    "grad_clip": 1.0,
}


def _set(source: str, name: str, value: object) -> str:
    """The source with `name = ...` at the top level set to `value` (comment kept)."""
    out, n = re.subn(
        rf"^{name} = [^#\n]+?(\s*(#.*)?)$", rf"{name} = {value!r}\1", source, count=1, flags=re.M
    )
    assert n == 1, name
    return out


def _answer(train: str) -> str:
    return f"```python\ntrain_mps.py\n{train}```\n"


values = st.one_of(
    st.floats(min_value=1e-6, max_value=10.0, allow_nan=False, allow_infinity=False),
    st.integers(min_value=0, max_value=100_000),
)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(FREE)), values, min_size=1, max_size=len(FREE)))
def test_random_hyperparameter_edits_are_read_back_as_moves(edits: dict[str, float]) -> None:
    source = TRAIN
    for name, value in edits.items():
        source = _set(source, name, value)
    record = extract_record(BASE, {**BASE, "train.py": source})
    assert record is not None
    expected = {(n, repr(FREE[n]), repr(v)) for n, v in edits.items() if repr(v) != repr(FREE[n])}
    assert {(m.name, m.before, m.after) for m in record.moves} == expected
    assert record.edits == ()  # values moved; no definition changed
    assert ChangeRecord.from_json(record.to_json()) == record
    back = extract_record({**BASE, "train.py": source}, BASE)
    assert back is not None
    assert {(m.name, m.after, m.before) for m in back.moves} == expected


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(sorted(FREE)), values, values)
def test_the_same_edit_from_the_same_code_has_the_same_key(name: str, a: float, b: float) -> None:
    one = extract_record(BASE, {**BASE, "train.py": _set(TRAIN, name, a)})
    two = extract_record(BASE, {**BASE, "train.py": _set(TRAIN, name, b)})
    assert one is not None and two is not None
    same = repr(a) == repr(b)
    assert (dedupe_key("p", one) == dedupe_key("p", two)) is same
    assert dedupe_key("p", one) != dedupe_key("q", one)  # another parent: another experiment


def test_spelling_layout_docstrings_prints_and_local_names_are_not_changes() -> None:
    respelled = TRAIN.replace("learning_rate = 3e-4", "learning_rate = 6e-4 / 2")
    renamed = respelled.replace("best_vloss", "lowest").replace(
        '    """Train ``iters`` steps on all of train.bin',
        '    """Train, differently worded: ``iters`` steps of train.bin',
    )
    chatty = renamed.replace("    elapsed_min = (", '    print("done")\n    elapsed_min = (')
    record = extract_record(BASE, {**BASE, "train.py": chatty})
    assert record is not None and record.empty and record.compact() == "no code change"


def test_keyword_constants_move_and_new_calls_are_edits() -> None:
    before = {"train.py": "import torch\nopt = torch.optim.AdamW(params, lr=1e-3, eps=1e-8)\n"}
    after = {"train.py": "import torch\nopt = torch.optim.AdamW(params, lr=3e-3, eps=1e-8)\n"}
    record = extract_record(before, after)
    assert record is not None
    assert record.moves == (Move("<module>:AdamW(lr)", "0.001", "0.003"),)
    assert record.techniques == ("adaptive_optimizers", "lr_schedules")  # AdamW's lr
    grown = {
        "train.py": after["train.py"]
        + "sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100)\n"
    }
    record = extract_record(before, grown)
    assert record is not None and "lr_schedules" in record.techniques
    assert [(e.name, e.op) for e in record.edits] == [("<module>", "~")]


def test_catalogue_changes_touch_the_techniques_they_are_filed_under() -> None:
    expected = {
        "cosine_schedule": "lr_schedules",
        "tune_lr": "lr_schedules",
        "weight_decay": "regularization",
        "adam_betas": "adaptive_optimizers",
        "grad_clip": "gradient_clipping",
        "rmsnorm": "norms_activations",
        "rope": "rope",
        "swiglu": "gated_mlp",
        "qk_norm": "qk_norm",
        "untie_head": "weight_tying",
        "fan_in_init": "initialization",
        "muon": "muon",
        "label_smoothing": "label_smoothing",
    }
    by_name = {t.name: t for t in CATALOGUE}
    for name, key in expected.items():
        change = by_name[name].transform(BASE, random.Random(3))
        record = extract_record(BASE, change.files)
        assert record is not None and key in record.techniques, (name, record)
        assert not record.empty
    cosine = extract_record(
        BASE, by_name["cosine_schedule"].transform(BASE, random.Random(3)).files
    )
    assert cosine is not None
    assert {m.name for m in cosine.moves} >= {"learning_rate", "warmup_iters", "min_lr_ratio"}
    assert ("lr_multiplier", "+") in {(e.name, e.op) for e in cosine.edits}


def test_code_that_does_not_parse_has_no_record() -> None:
    assert extract_record(BASE, {**BASE, "model.py": "def broken(:\n"}) is None


class _Lookup:
    def __init__(self, *known: CandidateRecord) -> None:
        self.known = known

    def by_hash(self, code_hash: str) -> CandidateRecord | None:
        return next((c for c in self.known if c.code_hash == code_hash), None)

    def by_record(self, record_key: str) -> CandidateRecord | None:
        return next((c for c in self.known if c.record_key == record_key), None)


def _candidate(cid: str, files: dict[str, str], parent: str | None = "g0-baseline"):
    return CandidateRecord(cid, 1, "x", "savant", parent, "proposal", code_hash(files), files)


def test_note_change_finds_code_twins_record_twins_and_no_change() -> None:
    parent = replace(_candidate("g0-baseline", BASE, None), kind="baseline", status="ok")
    faster = {**BASE, "train.py": _set(TRAIN, "learning_rate", 2e-3)}
    first = note_change(_candidate("g1-a", faster), parent, _Lookup(parent))
    assert first.kind == "proposal" and first.record is not None and first.record_key
    first = replace(first, status="ok")
    again = {**faster, "train.py": faster["train.py"].replace("best_vloss", "lowest_vloss")}
    second = note_change(_candidate("g1-b", again), parent, _Lookup(parent, first))
    assert second.kind == "duplicate" and second.twin == "g1-a" and second.status == "ok"
    assert "same change to the same code as g1-a" in second.reason
    same = note_change(_candidate("g1-c", faster), parent, _Lookup(parent, first))
    assert same.twin == "g1-a" and same.reason.startswith("same code as")
    noop = {**BASE, "train.py": TRAIN.replace("best_vloss", "lowest_vloss")}
    idle = note_change(_candidate("g1-d", noop), parent, _Lookup(parent, first))
    assert idle.twin == "g0-baseline" and idle.kind == "duplicate"


def test_a_duplicate_by_record_is_not_retrained(tmp_path: Path) -> None:
    faster = _set(TRAIN, "learning_rate", 2e-3)
    reworded = faster.replace("best_vloss", "lowest_vloss")  # other code, the same experiment
    agent = _Scripted([_answer(faster), _answer(reworded)])
    team = build_team(parse_model_map("offline"), Credentials.from_env({}), offline=lambda: agent)
    store = RunStore(tmp_path / "run")
    store.create_run("run", "shakespeare", {}, [])
    config = RunConfig(generations=1, personas=("archimedes", "aristotle"), fidelity="smoke")
    executor = FakeExecutor()
    build_search(
        config,
        store,
        task=load_task("shakespeare"),
        library=load_library(),
        agents=team,
        executor=executor,
    ).run()
    first, second = store.candidate("g1-archimedes"), store.candidate("g1-aristotle")
    assert first is not None and second is not None
    assert first.code_hash != second.code_hash
    assert second.kind == "duplicate" and second.twin == first.id
    assert second.status == first.status == "ok"
    assert {cid for cid, _, _ in executor.calls} == {"g0-baseline", "g1-archimedes"}


def test_the_history_in_the_next_prompt_lists_the_records(tmp_path: Path) -> None:
    faster = _set(TRAIN, "learning_rate", 2e-3)
    agent = _Scripted([_answer(faster), _answer(_set(faster, "dropout", 0.1))])
    team = build_team(parse_model_map("offline"), Credentials.from_env({}), offline=lambda: agent)
    store = RunStore(tmp_path / "run")
    store.create_run("run", "shakespeare", {}, [])
    config = RunConfig(generations=2, personas=("archimedes",), fidelity="smoke")
    fake_search(config, store, team).run()
    assert len(agent.prompts) == 2
    assert "## What the team has tried so far" not in agent.prompts[0]
    tried = agent.prompts[1].split("## What the team has tried so far")[1]
    assert (
        "g1-archimedes by archimedes: learning_rate 0.0003→0.002 [lr_schedules] → val_loss" in tried
    )
