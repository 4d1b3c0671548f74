"""Tests for dreamteam.propose.edits: reading an agent's answer into edits and applying them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dreamteam.propose.edits import (
    Edit,
    EditKind,
    EditResult,
    ParsedEdits,
    Replacement,
    apply_edits,
    diff_files,
    parse_edits,
    render_edits,
)
from dreamteam.tasks import load_task

TRAIN = """import torch

from model import GPT

learning_rate = 3e-4
base_lr = 1e-3


def train(data_dir, out_dir, iters, seed, device):
    model = GPT()
    for step in range(iters):
        loss = model(step)
        loss.backward()
    return 1.0, 0.5
"""

MODEL = """import torch.nn as nn


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(32, 32)

    def forward(self, x):
        return self.head(x)
"""

FILES = {"train.py": TRAIN, "model.py": MODEL}
ALIASES = {"train.py": ("train_mps.py",)}
NEW_MODEL = MODEL.replace("nn.Linear(32, 32)", "nn.Linear(32, 32, bias=False)")
NEW_TRAIN = TRAIN.replace("3e-4", "1e-2")


def apply_response(
    text: str, files: Mapping[str, str], aliases: Mapping[str, Sequence[str]] | None = None
) -> EditResult:
    """Parse and apply in one step, as the search loop does."""
    return apply_edits(files, parse_edits(text, files, aliases))


def fenced(body: str, info: str = "python") -> str:
    return f"```{info}\n{body}```\n"


def test_seed_format_with_display_name_updates_both_files() -> None:
    answer = (
        "My idea.\n\n"
        + fenced("train_mps.py\n" + NEW_TRAIN)
        + "\n"
        + fenced("model.py\n" + NEW_MODEL)
    )
    result = apply_response(answer, FILES, ALIASES)
    assert result.ok, result.reason()
    assert result.files == {"train.py": NEW_TRAIN, "model.py": NEW_MODEL}
    assert result.changed == ("train.py", "model.py")


def test_empty_or_placeholder_block_leaves_the_file_unchanged() -> None:
    answer = fenced("train_mps.py\n" + NEW_TRAIN) + fenced(
        "model.py\n# Your modified model.py code here\n"
    )
    result = apply_response(answer, FILES, ALIASES)
    assert result.ok
    assert result.files["model.py"] == MODEL
    assert result.changed == ("train.py",)


@pytest.mark.parametrize(
    "answer",
    [
        fenced(NEW_MODEL, info="python model.py"),
        fenced(NEW_MODEL, info="python title=model.py"),
        fenced("# File: model.py\n" + NEW_MODEL),
        "Here is the new `model.py`:\n\n" + fenced(NEW_MODEL),
        "### src/model.py\n" + fenced(NEW_MODEL),
        "1. The model:\n\n   ```python\n   model.py\n"
        + "".join(f"   {line}\n" if line else "\n" for line in NEW_MODEL.splitlines())
        + "   ```\n",
        "~~~python\nmodel.py\n" + NEW_MODEL + "~~~\n",
        ("model.py\n" + fenced(NEW_MODEL)).replace("\n", "\r\n"),
    ],
)
def test_a_file_can_be_named_in_several_ways(answer: str) -> None:
    result = apply_response(answer, FILES, ALIASES)
    assert result.changed == ("model.py",), result.notes
    assert result.files["model.py"].replace("# File: model.py\n", "") == NEW_MODEL


def test_an_unnamed_whole_file_goes_to_the_file_it_resembles() -> None:
    result = apply_response("Changed the head.\n\n" + fenced(NEW_MODEL), FILES)
    assert result.changed == ("model.py",)


def test_an_unnamed_snippet_is_not_taken_for_a_file() -> None:
    result = apply_response(fenced("x = torch.zeros(3)\nprint(x)\n"), FILES)
    assert not result.ok
    assert result.changed == ()
    assert "names no file" in result.reason()


def test_a_weakly_named_snippet_does_not_replace_the_whole_file() -> None:
    snippet = "self.head = nn.Linear(32, 32, bias=False)\n"
    answer = (
        "In model.py:\n" + fenced(NEW_MODEL) + "\nThe key line in model.py:\n" + fenced(snippet)
    )
    result = apply_response(answer, FILES)
    assert result.files["model.py"] == NEW_MODEL
    assert any("not used" in note for note in result.notes)


def test_the_last_named_block_for_a_file_wins() -> None:
    answer = fenced("model.py\n" + MODEL.replace("32, 32", "32, 64")) + fenced(
        "model.py\n" + NEW_MODEL
    )
    parsed = parse_edits(answer, FILES)
    assert [e.content for e in parsed.edits] == [NEW_MODEL]
    assert len(parsed.notes) == 1


def test_blocks_for_other_files_and_other_languages_are_ignored() -> None:
    answer = (
        fenced("utils.py\ndef helper():\n    return 1\n")
        + "Then run train.py:\n"
        + fenced("python train.py --iters 10\n", info="bash")
        + fenced("model.py\n" + NEW_MODEL)
    )
    result = apply_response(answer, FILES)
    assert result.ok
    assert result.changed == ("model.py",)
    assert any("utils.py" in note for note in result.notes)


def test_a_truncated_block_fails_instead_of_applying_half_a_file() -> None:
    answer = fenced("model.py\n" + NEW_MODEL) + "```python\ntrain_mps.py\nimport torch\n\ndef tra"
    result = apply_response(answer, FILES, ALIASES)
    assert not result.ok
    assert "cut off" in result.reason()
    assert result.failures[0].file == "train.py"


def test_an_elided_file_fails() -> None:
    body = "model.py\nimport torch.nn as nn\n\n# ... rest of the code unchanged ...\n"
    result = apply_response(fenced(body), FILES)
    assert not result.ok
    assert "elides" in result.reason()


def test_a_unified_diff_is_reported_not_applied() -> None:
    diff = diff_files(FILES, {**FILES, "model.py": NEW_MODEL})
    result = apply_response(fenced(diff, info="diff"), FILES)
    assert not result.ok
    assert "unified diff" in result.reason()


def test_an_answer_without_edits_changes_nothing() -> None:
    result = apply_response("I would keep everything as it is.", FILES)
    assert not result.ok
    assert result.reason() == "the answer changed no file"
    assert result.files == FILES


def sr(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n"


def test_search_replace_in_a_named_fence() -> None:
    answer = fenced("train_mps.py\n" + sr("learning_rate = 3e-4\n", "learning_rate = 1e-2\n"))
    result = apply_response(answer, FILES, ALIASES)
    assert result.ok, result.reason()
    assert result.files["train.py"] == NEW_TRAIN


def test_bare_search_replace_blocks_switch_files_on_name_lines() -> None:
    answer = (
        "train.py\n"
        + sr("learning_rate = 3e-4\n", "learning_rate = 1e-2\n")
        + "\nmodel.py\n"
        + sr("self.head = nn.Linear(32, 32)\n", "self.head = nn.Linear(32, 32, bias=False)\n")
    )
    result = apply_response(answer, FILES)
    assert result.ok, result.reason()
    assert result.files == {"train.py": NEW_TRAIN, "model.py": NEW_MODEL}


def test_an_unnamed_search_block_goes_to_the_file_holding_its_text() -> None:
    answer = fenced(sr("        return self.head(x)\n", "        return self.head(x) * 2\n"))
    result = apply_response(answer, FILES)
    assert result.changed == ("model.py",)


def test_search_matches_whole_lines_only() -> None:
    # "lr = 1e-3" is the tail of "base_lr = 1e-3": it must not be edited in place.
    result = apply_response(fenced("train.py\n" + sr("lr = 1e-3\n", "lr = 5e-3\n")), FILES)
    assert not result.ok
    assert "matches nothing" in result.reason()
    assert "closest to line 6" in result.reason()


def test_search_tolerates_other_indentation_and_trailing_spaces() -> None:
    search = "for step in range(iters):   \n    loss = model(step)\n"
    replace = "for step in range(iters):\n    loss = model(step) * 0.5\n"
    result = apply_response(fenced("train.py\n" + sr(search, replace)), FILES)
    assert result.ok, result.reason()
    assert (
        "    for step in range(iters):\n        loss = model(step) * 0.5\n"
        in result.files["train.py"]
    )


def test_an_ambiguous_search_fails() -> None:
    result = apply_response(
        fenced("train.py\n" + sr("import torch\n", "import torch as t\n")), FILES
    )
    assert result.ok  # "import torch" occurs once as a whole line
    result = apply_response(fenced("train.py\n" + sr("loss = model(step)\n", "x\n")), FILES)
    assert result.ok
    text = "model.py\n" + sr("        super().__init__()\n", "        pass\n")
    doubled = {"model.py": MODEL + MODEL.split("\n\n\n")[1]}
    result = apply_response(fenced(text), doubled)
    assert not result.ok
    assert "occurs 2 times" in result.reason()


def test_a_cut_off_search_block_fails() -> None:
    answer = "```python\ntrain.py\n<<<<<<< SEARCH\nlearning_rate = 3e-4\n======="
    result = apply_response(answer, FILES)
    assert not result.ok
    assert "cut off" in result.reason()


def test_replacements_apply_after_a_whole_file_in_answer_order() -> None:
    answer = fenced("model.py\n" + NEW_MODEL) + fenced(
        "model.py\n"
        + sr(
            "        self.head = nn.Linear(32, 32, bias=False)\n",
            "        self.head = nn.Linear(32, 32, bias=True)\n",
        )
    )
    result = apply_response(answer, FILES)
    assert result.ok, result.reason()
    assert "bias=True" in result.files["model.py"]


def test_apply_edits_reports_an_unknown_file() -> None:
    parsed = ParsedEdits((Edit("other.py", EditKind.FILE, "x = 1\n"),))
    result = apply_edits(FILES, parsed)
    assert not result.ok
    assert "not an editable file" in result.reason()


def test_render_then_parse_round_trips_both_kinds() -> None:
    edits = [
        Edit("train.py", EditKind.REPLACE, replacements=(Replacement("base_lr = 1e-3\n", ""),)),
        Edit("model.py", EditKind.FILE, content=NEW_MODEL),
    ]
    answer = render_edits(edits, {"train.py": "train_mps.py"})
    assert "train_mps.py" in answer
    result = apply_response(answer, FILES, ALIASES)
    assert result.ok, result.reason()
    assert "base_lr" not in result.files["train.py"]
    assert result.files["model.py"] == NEW_MODEL


_LINE = st.text(alphabet="abxyz019 =()_:`'\"\t", max_size=30)


@settings(max_examples=200, deadline=None)
@given(st.lists(_LINE, min_size=1, max_size=20))
def test_any_whole_file_survives_render_and_parse(lines: list[str]) -> None:
    content = "\n".join(line.rstrip() for line in lines).strip("\n")
    if not content.strip():
        return  # an empty block means "unchanged" by design
    content += "\n"
    parsed = parse_edits(render_edits([Edit("model.py", EditKind.FILE, content)]), FILES)
    assert [(e.file, e.content) for e in parsed.edits] == [("model.py", content)]


def test_diff_files_shows_only_changed_files() -> None:
    diff = diff_files(FILES, {**FILES, "model.py": NEW_MODEL})
    assert diff.startswith("--- a/model.py\n+++ b/model.py\n")
    assert "+        self.head = nn.Linear(32, 32, bias=False)\n" in diff
    assert diff_files(FILES, FILES) == ""


def test_the_builtin_task_accepts_the_seed_answer_format() -> None:
    task = load_task("shakespeare")
    files = task.baseline_files()
    train = files["train.py"].replace("learning_rate = 3e-4", "learning_rate = 1e-3")
    answer = (
        f"```python\n{task.display_name('train.py')}\n{train}```\n\n"
        "```python\nmodel.py\n# Your modified model.py code here\n```\n"
    )
    result = apply_response(answer, files, task.aliases)
    assert result.ok, result.reason()
    assert result.changed == ("train.py",)
    assert "learning_rate = 1e-3" in result.files["train.py"]
