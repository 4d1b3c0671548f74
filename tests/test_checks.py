"""The static checks: every rule, with the file and line it names; never an exception."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dreamteam.harness.checks import CheckReport, Violation, check_candidate
from dreamteam.tasks import load_task

TASK = load_task("shakespeare")
BASELINE = TASK.baseline_files()
ANCHOR = "    torch.manual_seed(seed)\n"  # top of train()
ANCHOR_LINE = BASELINE["train.py"][: BASELINE["train.py"].index(ANCHOR)].count("\n") + 1


def _with(code: str, file: str = "train.py", anchor: str = ANCHOR) -> dict[str, str]:
    files = dict(BASELINE)
    assert files[file].count(anchor) == 1
    files[file] = files[file].replace(anchor, code + anchor)
    return files


def _rules(report: CheckReport) -> set[tuple[str, str, int]]:
    return {(v.rule, v.file, v.line) for v in report.violations}


def test_the_baseline_passes() -> None:
    report = check_candidate(BASELINE, TASK)
    assert report.ok and report.reason() == ""


@pytest.mark.parametrize(
    ("code", "rule", "words"),
    [
        ("    eval('1')\n", "forbidden-call", "eval()"),
        ("    exec('x = 1')\n", "forbidden-call", "exec()"),
        ("    __import__('socket')\n", "forbidden-call", "__import__()"),
        ("    globals()['batch_size'] = 16\n", "forbidden-call", "globals()"),
        ("    vars()['batch_size'] = 16\n", "forbidden-call", "vars()"),
        ("    setattr(torch, 'x', 1)\n", "forbidden-call", "only allowed on `self`"),
        ("    os.system('id')\n", "forbidden-attribute", ".system"),
        ("    os.fork()\n", "forbidden-attribute", ".fork"),
        ("    os.kill(1, 9)\n", "forbidden-attribute", ".kill"),
        ("    getattr(os, 'fork')()\n", "forbidden-attribute", "'fork'"),
        ("    getattr(os, 'fo' + 'rk')()\n", "forbidden-attribute", "'fork'"),
        ("    getattr(os, f\"{'po'}pen\")('id')\n", "forbidden-attribute", "'popen'"),
        ("    np.ctypeslib.ctypes.CDLL(None)\n", "forbidden-attribute", ".ctypeslib"),
        ("    x = os.sys.modules\n", "forbidden-attribute", ".modules"),
        ("    open('/etc/passwd')\n", "file-access", "outside the work directory"),
        ("    open('../../x', 'w')\n", "file-access", "outside the work directory"),
        ("    open('/tm' + 'p/x', 'w')\n", "file-access", "outside the work directory"),
        ("    p = 'val.bin'\n", "file-access", "validation split"),
        ("    p = 'va' + 'l.bin'\n", "file-access", "validation split"),
        ("    import socket\n", "import", "'socket'"),
        ("    import ctypes\n", "import", "'ctypes'"),
        ("    from subprocess import run\n", "import", "'subprocess'"),
        ("    import importlib\n", "import", "'importlib'"),
        ("    batch_size = 16\n", "protected-constant", "batch_size"),
        ("    global n_layer\n", "protected-constant", "n_layer rebound"),
        ("    import train\n    train.batch_size = 16\n", "protected-constant", "batch_size"),
        (
            "    import train as module\n    setattr(module, 'n_embd', 64)\n",
            "forbidden-call",
            "on the module",
        ),
        ("    cfg = GPTConfig()\n    cfg.n_layer = 8\n", "protected-constant", "n_layer"),
        ("    import train\n    del train.max_iters\n", "protected-constant", "max_iters"),
        ("    import train\n    train.__dict__['n_head'] = 8\n", "forbidden-attribute", "__dict__"),
    ],
)
def test_each_rule_names_file_and_line(code: str, rule: str, words: str) -> None:
    report = check_candidate(_with(code), TASK)
    matching = [v for v in report.violations if v.rule == rule]
    assert matching, report.reason()
    first = matching[0]
    assert first.file == "train.py"
    assert ANCHOR_LINE <= first.line < ANCHOR_LINE + code.count("\n")
    assert words in first.message
    assert str(first).startswith(f"train.py:{first.line}: {rule}: ")


def test_restating_a_protected_value_passes() -> None:
    code = "    cfg = GPTConfig()\n    cfg.n_layer = n_layer\n    cfg.n_head = 4\n"
    assert check_candidate(_with(code), TASK).ok


def test_a_models_own_fields_pass() -> None:
    files = _with(
        "        self.n_layer = config.n_layer + 1\n", "model.py", "        self.config = config\n"
    )
    assert check_candidate(files, TASK).ok


def test_protected_constant_with_another_value_or_type() -> None:
    files = dict(BASELINE)
    files["train.py"] = files["train.py"].replace("batch_size = 8\n", "batch_size = 8.0\n")
    line = BASELINE["train.py"][: BASELINE["train.py"].index("batch_size = 8\n")].count("\n") + 1
    assert ("protected-constant", "train.py", line) in _rules(check_candidate(files, TASK))


def test_protected_constant_missing() -> None:
    files = dict(BASELINE)
    files["train.py"] = files["train.py"].replace("eval_interval = 100\n", "")
    report = check_candidate(files, TASK)
    assert any("eval_interval" in v.message and v.line == 1 for v in report.violations)


def test_protected_constant_in_another_file() -> None:
    files = _with("batch_size = 8\n", "model.py", "class GPT(nn.Module):\n")
    report = check_candidate(files, TASK)
    assert any(v.rule == "protected-constant" and v.file == "model.py" for v in report.violations)


def test_missing_file_and_syntax_error() -> None:
    report = check_candidate({"train.py": BASELINE["train.py"]}, TASK)
    assert ("missing-file", "model.py", 1) in _rules(report)
    report = check_candidate({**BASELINE, "model.py": "def broken(:\n"}, TASK)
    assert ("syntax", "model.py", 1) in _rules(report)


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ("def train(", "def run(", "no top-level `def train(`"),
        (
            "    return best_vloss, elapsed_min\n",
            "    return best_vloss, elapsed_min, 0\n",
            "must return 2 values",
        ),
        ("    return best_vloss, elapsed_min\n", "    return None\n", "return a tuple"),
        ("    return best_vloss, elapsed_min\n", "    pass\n", "never returns"),
        ('seed=1337, device="cpu"', "seed=1337", "keyword argument 'device'"),
    ],
)
def test_contract_of_the_entry_point(old: str, new: str, words: str) -> None:
    files = dict(BASELINE)
    assert old in files["train.py"]
    files["train.py"] = files["train.py"].replace(old, new)
    report = check_candidate(files, TASK)
    assert any(v.rule == "contract" and words in v.message for v in report.violations), (
        report.reason()
    )


def test_contract_of_the_model_file() -> None:
    files = dict(BASELINE)
    files["model.py"] = files["model.py"].replace("class GPTConfig:", "class Config:")
    report = check_candidate(files, TASK)
    assert any(v.rule == "contract" and "GPTConfig" in v.message for v in report.violations)


def test_a_missing_model_class_names_its_task_toml_key() -> None:
    """A newcomer who never wrote a GPTConfig learns which key of task.toml asks for it."""
    files = dict(BASELINE)
    files["model.py"] = files["model.py"].replace("class GPTConfig:", "class Config:")
    (message,) = [v.message for v in check_candidate(files, TASK).violations]
    assert "[contract] config_class of task.toml" in message
    assert "GPT(GPTConfig(**model_args))" in message


def test_vars_is_refused_with_what_to_use_instead() -> None:
    report = check_candidate(_with("    args = vars(object())\n"), TASK)
    (message,) = [v.message for v in report.violations if v.rule == "forbidden-call"]
    assert "dataclasses.asdict" in message


def test_reason_summarises_the_first_violation() -> None:
    report = CheckReport((Violation("a", "f.py", 3, "m"), Violation("b", "f.py", 4, "n")))
    assert report.reason() == "f.py:3: a: m (+1 more)"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400), st.sampled_from(["train.py", "model.py"]))
def test_never_raises_on_arbitrary_text(text: str, file: str) -> None:
    report = check_candidate({**BASELINE, file: text}, TASK)
    assert isinstance(report, CheckReport)


_FRAGMENTS = [
    "x",
    "=",
    "(",
    ")",
    "[",
    "]",
    "'",
    '"',
    "f'{",
    "}",
    "+",
    ".",
    ":",
    "\n",
    "    ",
    "import ",
    "def ",
    "batch_size",
    "setattr",
    "getattr",
    "globals()",
    "os",
    "val.bin",
    "return ",
    ",",
    "1",
    "*",
    "lambda",
    "global ",
    "del ",
    "class ",
    "@",
    "\\",
]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(_FRAGMENTS), max_size=60), st.sampled_from(["train.py", "model.py"])
)
def test_never_raises_on_python_like_text(parts: list[str], file: str) -> None:
    source = BASELINE[file] + "".join(parts)
    assert isinstance(check_candidate({**BASELINE, file: source}, TASK), CheckReport)


def test_never_raises_on_deeply_nested_source() -> None:
    deep = "x = " + "(" * 5000 + "1" + ")" * 5000 + "\n"
    report = check_candidate({**BASELINE, "model.py": deep}, TASK)
    assert not report.ok
