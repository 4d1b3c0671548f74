"""The hostile suite: candidates that attack the harness must be contained and labelled.

Each candidate is the baseline with a small modification (tests/hostile/candidates.py). Most go
through `run_trial`, the path a real candidate takes; those the static checks already stop
cost no process. Attacks the static checks would stop are also run straight through
`run_sandboxed` with the checks stepped around (ctypes, computed names), to prove the
runtime walls on their own. After the suite, the data files and the canary files outside the
work dirs must be byte-for-byte unchanged, and no process of the suite may be left.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from dreamteam.harness.sandbox.launcher import Isolation, Limits
from dreamteam.harness.scoring.common import process_failure
from dreamteam.harness.scoring.lm import evaluate_checkpoint
from dreamteam.harness.scoring.passes import passes_may_overlap
from dreamteam.harness.trial import TrialBudget, run_trial
from dreamteam.records import Status, TrialResult
from dreamteam.tasks import Task, load_task
from dreamteam.tasks.data import DataPaths, resolve_data

sys.path.insert(0, str(Path(__file__).parent))
from hostile.candidates import (
    BEFORE_LOOP,
    CAUSAL,
    COLLUDE_CHANNELS,
    COLLUDE_FORWARD,
    CTYPES_ATTACKS,
    LOOKUP_FORWARD,
    LOOKUP_TABLE,
    TRAIN_RETURN,
    at_eval_forward,
    at_train_start,
    patch,
)
from hostile.sandboxed import sandboxed_train

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux", reason="the sandbox's walls are Linux's"
)

MIRROR = Path(
    os.environ.get("DREAMTEAM_DATA_MIRROR", Path(__file__).resolve().parents[2] / "shared" / "data")
)
FAST = TrialBudget(base_seconds=20, seconds_per_iter=0.5, eval_seconds=60)
SHORT = TrialBudget(base_seconds=4, seconds_per_iter=0.05, eval_seconds=20)  # timeouts
EVAL_WINDOWS = 24  # validation windows for the evaluation-only cases: enough for every probe


# --- fixtures ----------------------------------------------------------------------------------


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def task() -> Task:
    return load_task("shakespeare")


@pytest.fixture(scope="module")
def data() -> DataPaths:
    if not (MIRROR / "shakespeare" / "val.bin").is_file():
        pytest.skip(f"no data mirror at {MIRROR}")
    return resolve_data(mirror=MIRROR)


@pytest.fixture(scope="module")
def isolation(sandbox: Isolation) -> Isolation:
    return sandbox


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory, data: DataPaths) -> Iterator[dict[str, Path]]:
    """Files no candidate may change: a canary, a fake run store, the data mirror's files.

    Their hashes are taken before the suite and compared after it, in test_zz_nothing_changed.
    """
    root = tmp_path_factory.mktemp("outside")
    (root / "canary.txt").write_text("the candidate must not touch this\n")
    (root / "runs.sqlite").write_bytes(b"SQLite format 3\0" + bytes(4080))
    files = {
        "canary": root / "canary.txt",
        "store": root / "runs.sqlite",
        "train": data.train,
        "val": data.val,
        "text": data.text,
    }
    yield files


@pytest.fixture(scope="module", autouse=True)
def hashes(outside: dict[str, Path]) -> dict[str, str]:
    return {name: _sha(path) for name, path in outside.items()}


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory, data: DataPaths) -> DataPaths:
    """The real training split with a short validation split: a whole trial in seconds."""
    root = tmp_path_factory.mktemp("data")
    (root / "shakespeare").mkdir()
    os.symlink(data.train, root / "shakespeare" / "train.bin")
    os.symlink(data.text, root / "shakespeare" / "input.txt")
    val = np.fromfile(data.val, dtype=np.uint16)[: 64 * EVAL_WINDOWS + 1]
    val.tofile(root / "shakespeare" / "val.bin")
    return DataPaths(root)


def _trial(
    task: Task,
    files: dict[str, str],
    data: DataPaths,
    tmp_path: Path,
    isolation: Isolation,
    budget: TrialBudget = FAST,
) -> TrialResult:
    return run_trial(task, files, data, "smoke", 1337, tmp_path, budget, isolation)


def _leftovers(marker: str) -> list[int]:
    """Processes whose command line or working directory mentions marker (a work dir): there
    must be none. A stage forked from the template has the template's command line."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes() or os.readlink(
                    entry / "cwd"
                ).startswith(marker):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _baseline_checkpoint(task: Task, path: Path, scale_nan: bool = False) -> None:
    """A randomly initialised baseline model, saved the way train.py saves it."""
    import torch

    spec = importlib.util.spec_from_file_location("baseline_model", task.root / "model.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    args = dict(block_size=64, vocab_size=50257, n_layer=4, n_head=4, n_embd=32, dropout=0.0)
    state = module.GPT(module.GPTConfig(**args)).state_dict()
    if scale_nan:
        state["ln_f.weight"].fill_(float("nan"))
    torch.save({"model_args": args, "state_dict": state}, path)


def _evaluate(
    task: Task,
    files: dict[str, str],
    data: DataPaths,
    tmp_path: Path,
    isolation: Isolation,
    nan_weights: bool = False,
):
    _baseline_checkpoint(task, tmp_path / "ckpt.pt", nan_weights)
    val = np.fromfile(data.val, dtype=np.uint16)[: 64 * EVAL_WINDOWS + 1]
    limits = Limits(wall_seconds=90, threads=2)
    return evaluate_checkpoint(
        task, files, tmp_path / "ckpt.pt", val, 10_000, tmp_path / "eval", limits, isolation
    )


# --- caught by the static checks: no process ---------------------------------------------------

STATIC_CASES = {
    "fork-bomb": ("    while True:\n        os.fork()\n", "forbidden-attribute", ".fork"),
    "fork-bomb-computed-name": ("    getattr(os, 'fo' + 'rk')()\n", "forbidden-attribute", "fork"),
    "spawn-shell": ("    os.system('sh -c id')\n", "forbidden-attribute", ".system"),
    "open-socket": (
        "    import socket\n    socket.create_connection(('127.0.0.1', 80))\n",
        "import",
        "'socket'",
    ),
    "protected-constant": ("    batch_size = 32\n", "protected-constant", "batch_size"),
    "protected-via-globals": ("    globals()['batch_size'] = 32\n", "forbidden-call", "globals()"),
    "protected-via-module": (
        "    import train as me\n    me.batch_size = 32\n",
        "protected-constant",
        "batch_size",
    ),
    "protected-via-setattr": (
        "    import train as module\n    setattr(module, 'block_size', 128)\n",
        "forbidden-call",
        "setattr",
    ),
    "protected-via-sys-modules": (
        "    import sys\n    sys.modules['train'].n_layer = 8\n",
        "import",
        "'sys'",
    ),
    "protected-via-os-sys": (
        "    os.sys.modules['train'].n_layer = 8\n",
        "forbidden-attribute",
        ".modules",
    ),
    "protected-via-dict": (
        "    import train\n    train.__dict__['n_embd'] = 64\n",
        "forbidden-attribute",
        "__dict__",
    ),
    "read-val-split": (
        "    np.fromfile(os.path.join(data_dir, '..', 'val.bin'))\n",
        "file-access",
        "validation split",
    ),
    "read-val-split-pieces": (
        "    np.fromfile('/work/shared/data/shakespeare/' + 'val' + '.bin')\n",
        "file-access",
        "validation split",
    ),
    "write-outside": (
        "    open('/tmp/dreamteam-canary', 'w').write('x')\n",
        "file-access",
        "outside the work directory",
    ),
    "delete-outside": (
        "    os.remove(os.path.join(data_dir, 'train.bin'))\n",
        "forbidden-attribute",
        ".remove",
    ),
    "os-exit": ("    os._exit(0)\n", "forbidden-attribute", "._exit"),
    "sys-exit": ("    import sys\n    sys.exit(0)\n", "import", "'sys'"),
    "ctypes": ("    import ctypes\n    ctypes.string_at(0)\n", "import", "'ctypes'"),
}


@pytest.mark.parametrize("name", sorted(STATIC_CASES))
def test_static_checks_reject(
    name: str, task: Task, data: DataPaths, isolation: Isolation, tmp_path: Path
) -> None:
    code, rule, words = STATIC_CASES[name]
    files = at_train_start(task.baseline_files(), code)
    result = _trial(task, files, data, tmp_path, isolation)
    assert result.status is Status.INVALID
    assert rule in result.reason and words in result.reason
    assert "train.py:" in result.reason
    assert not (tmp_path / "train").exists()  # rejected before anything ran


# --- the runtime walls, through run_trial --------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    ["while True:\n    pass", "time.sleep(10**6)"],
    ids=["loop-forever", "sleep-past-timeout"],
)
def test_timeout(
    code: str, task: Task, data: DataPaths, isolation: Isolation, tmp_path: Path
) -> None:
    files = at_train_start(task.baseline_files(), code)
    result = _trial(task, files, data, tmp_path, isolation, SHORT)
    assert result.status is Status.TIMEOUT, result.reason
    assert "time limit" in result.reason
    assert not _leftovers(str(tmp_path))


def test_a_failed_training_ends_the_early_started_scoring_processes(
    task: Task, data: DataPaths, isolation: Isolation, tmp_path: Path
) -> None:
    # the scoring processes start with the training and wait for its checkpoint: a training
    # that never writes one must leave none of them behind, and none of their files
    files = at_train_start(task.baseline_files(), "raise RuntimeError('boom')")
    result = _trial(task, files, data, tmp_path, isolation)
    assert result.status is Status.CRASHED, result.reason
    assert "boom" in result.reason
    assert not _leftovers(str(tmp_path))
    assert not list((tmp_path / "eval").rglob("ckpt.pt"))


def test_out_of_memory(task: Task, data: DataPaths, isolation: Isolation, tmp_path: Path) -> None:
    code = "hog = []\nwhile True:\n    hog.append(np.ones(8 << 20))"  # 64 MiB at a time, touched
    files = at_train_start(task.baseline_files(), code)
    budget = TrialBudget(base_seconds=60, seconds_per_iter=0.5, memory_bytes=768 << 20)
    result = _trial(task, files, data, tmp_path, isolation, budget)
    assert result.status is Status.OOM, result.reason
    assert "memory" in result.reason


@pytest.mark.parametrize(
    ("name", "code", "words"),
    [
        (
            "fork-computed-name",
            "getattr(os, ''.join(reversed('krof')))()",
            "os.fork is not allowed",
        ),
        (
            "shell-computed-name",
            "getattr(os, 'sys' + 'tem'[::1])('id')",
            "os.system is not allowed",
        ),
        ("write-outside", "open(os.path.join(CANARY), 'w')", "canary.txt is not allowed"),
        ("delete-outside", "getattr(os, 'un' + 'link'[::1])(os.path.join(STORE))", "os.remove on"),
        (
            "read-mirror-val",
            "np.fromfile(os.path.join(MIRROR, 'shakespeare', 'nib.lav'[::-1]))",
            "Permission denied",
        ),
        ("exit", "exit(3)", "called sys.exit(3)"),
        ("os-exit", "getattr(os, '_'.join(['', 'exit']))(0)", "exited without reporting a result"),
        ("deep-recursion", "def down(n):\n    return down(n + 1)\ndown(0)", "RecursionError"),
    ],
)
def test_runtime_walls(
    name: str,
    code: str,
    words: str,
    task: Task,
    data: DataPaths,
    outside: dict[str, Path],
    isolation: Isolation,
    tmp_path: Path,
) -> None:
    for placeholder, path in (
        ("MIRROR", MIRROR),
        ("CANARY", outside["canary"]),
        ("STORE", outside["store"]),
    ):
        code = code.replace(placeholder, repr(str(path)))
    files = at_train_start(task.baseline_files(), code)
    result = _trial(task, files, data, tmp_path, isolation)
    assert result.status is Status.CRASHED, (result.status, result.reason)
    assert words in result.reason, result.reason


def test_output_flood_keeps_the_log_bounded(
    task: Task, data: DataPaths, isolation: Isolation, tmp_path: Path
) -> None:
    code = "for _ in range(400):\n    print('x' * 65536)\nraise RuntimeError('flooded')"
    files = at_train_start(task.baseline_files(), code)
    result = _trial(task, files, data, tmp_path, isolation)
    assert result.status is Status.CRASHED and "flooded" in result.reason
    assert len(result.log) < Limits().max_log_bytes + 1024
    assert "bytes of output dropped" in result.log


def test_exceeding_the_iteration_budget(
    task: Task, data: DataPaths, isolation: Isolation, tmp_path: Path
) -> None:
    # optimizer steps without the cost of a forward pass: the counter sees them all the same
    files = patch(
        task.baseline_files(),
        "train.py",
        BEFORE_LOOP,
        "    for _ in range(iters + 1):\n        optimizer.step()\n" + BEFORE_LOOP,
    )
    result = _trial(task, files, data, tmp_path, isolation, TrialBudget())
    assert result.status is Status.INVALID, result.reason
    assert "exceeded the budget of 40 optimizer steps" in result.reason


def test_protected_constant_changed_at_runtime(
    task: Task, data: DataPaths, isolation: Isolation, tmp_path: Path
) -> None:
    # a computed name on a variable the checks allow: only the batch hook sees it
    code = (
        "module = inspect.getmodule(get_batch)\n"
        "setattr(module, ''.join(['batch', '_size']), 12)\n"
        "iters = 1"
    )
    files = at_train_start(task.baseline_files(), code)
    files = patch(files, "train.py", "import time\n", "import inspect\nimport time\n")
    result = _trial(task, files, data, tmp_path, isolation, TrialBudget())
    assert result.status is Status.INVALID, result.reason
    assert "12x64" in result.reason and "protected 8x64" in result.reason


def test_fake_self_reported_loss(
    task: Task, small_data: DataPaths, isolation: Isolation, tmp_path: Path
) -> None:
    files = patch(task.baseline_files(), "train.py", TRAIN_RETURN, "    return 0.0, elapsed_min\n")
    files = at_train_start(files, "iters = 1")  # its own choice; the harness scores what it gets
    result = _trial(task, files, small_data, tmp_path, isolation, TrialBudget())
    assert result.status is Status.OK, result.reason
    assert result.self_loss == 0.0 and result.self_loss_gap
    assert result.val_loss is not None and result.val_loss > 5.0  # the harness's own number


def test_segfault(isolation: Isolation, tmp_path: Path) -> None:
    source = "import ctypes\n\n\ndef train(**kwargs):\n    ctypes.string_at(0)\n"
    result = sandboxed_train(source, tmp_path / "work", isolation)
    status, reason = process_failure(result, result.report.get("error", ""))
    assert (status, result.signal) == ("crashed", 11)
    assert "killed by signal 11" in reason


# --- the evaluator's integrity probes -------------------------------------------------------------


def test_non_causal_model(
    task: Task, data: DataPaths, isolation: Isolation, tmp_path: Path
) -> None:
    files = patch(task.baseline_files(), "model.py", CAUSAL, CAUSAL.replace("True", "False"))
    outcome = _evaluate(task, files, data, tmp_path, isolation)
    assert outcome.status == "cheating"
    assert "causality" in outcome.reason


def test_lookup_of_the_evaluation_inputs(
    task: Task, data: DataPaths, isolation: Isolation, tmp_path: Path
) -> None:
    files = at_eval_forward(task.baseline_files(), LOOKUP_FORWARD)
    files["model.py"] += LOOKUP_TABLE
    outcome = _evaluate(task, files, data, tmp_path, isolation)
    assert outcome.status == "cheating", (outcome.status, outcome.score)
    assert "causality" in outcome.reason


def test_nan_logits(task: Task, data: DataPaths, isolation: Isolation, tmp_path: Path) -> None:
    files = at_eval_forward(
        task.baseline_files(), "return F.linear(x, self.wte.weight) * float('nan'), None"
    )
    outcome = _evaluate(task, files, data, tmp_path, isolation)
    assert outcome.status == "nan"
    assert "not finite" in outcome.reason


def test_the_two_evaluation_processes_cannot_reach_each_other(
    task: Task, data: DataPaths, isolation: Isolation, tmp_path: Path
) -> None:
    if not passes_may_overlap(isolation):
        pytest.skip("the passes run one after the other here: no namespaces or no Landlock")
    files = at_eval_forward(task.baseline_files(), COLLUDE_FORWARD)
    files["model.py"] += COLLUDE_CHANNELS
    try:
        outcome = _evaluate(task, files, data, tmp_path, isolation)
    finally:
        leftovers = [p for p in ("/tmp", "/dev/shm") if Path(p, "dreamteam-collude").exists()]
        for place in leftovers:
            Path(place, "dreamteam-collude").unlink()
    assert outcome.status == "ok", (outcome.status, outcome.reason)
    assert not leftovers


# --- ctypes around the audit hook: the kernel's walls hold ------------------------------------------


class _Listener:
    """A TCP and a Unix server the candidate tries to reach; they count what connects."""

    def __init__(self, root: Path):
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.unix_path = str(root / "harness.sock")
        self.unix = socket.socket(socket.AF_UNIX)
        self.unix.bind(self.unix_path)
        self.unix.listen()
        self.accepted: list[str] = []
        for server in (self.tcp, self.unix):
            server.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            for server in (self.tcp, self.unix):
                try:
                    conn, _ = server.accept()
                except OSError:
                    continue
                self.accepted.append(str(server.family))
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.tcp.close()
        self.unix.close()


def test_ctypes_attacks_are_contained(
    outside: dict[str, Path], hashes: dict[str, str], isolation: Isolation, tmp_path: Path
) -> None:
    listener = _Listener(outside["canary"].parent)
    marker = outside["canary"].parent / "shell-ran"
    work = tmp_path / "work"
    work.mkdir()
    (work / "attack.json").write_text(
        json.dumps(
            {
                "port": listener.tcp.getsockname()[1],
                "unix": listener.unix_path,
                "shell": f"touch {marker} {work / 'shell-ran'}",
                "write": {name: str(outside[name]) for name in ("canary", "store")},
                "open-for-writing": {name: str(outside[name]) for name in ("val", "train")},
                "read": {"mirror-val": str(outside["val"])},
            }
        )
    )
    try:
        result = sandboxed_train(CTYPES_ATTACKS, work, isolation)
    finally:
        listener.close()
    outcomes = {}
    for line in result.log.splitlines():
        if line.startswith('{"attack"'):
            entry = json.loads(line)
            outcomes[entry["attack"]] = entry
    assert result.returncode == 0 and "returned" in result.report, result.log[-2000:]
    assert "seccomp" in result.layers
    expected = {
        "tcp-connect",
        "unix-connect",
        "shell",
        "fork-bomb",
        "raw-disk",
        "reboot",
        "read-mirror-val",
    }
    expected |= {
        "write-canary",
        "unlink-canary",
        "write-store",
        "unlink-store",
        "write-val",
        "write-train",
    }
    assert set(outcomes) == expected
    escaped = {name: entry for name, entry in outcomes.items() if entry["ret"] >= 0}
    assert not escaped
    assert listener.accepted == []
    assert not marker.exists() and not (work / "shell-ran").exists()
    assert not _leftovers(str(work))
    assert {name: _sha(path) for name, path in outside.items()} == hashes


def test_zz_nothing_outside_changed(outside: dict[str, Path], hashes: dict[str, str]) -> None:
    """After every hostile candidate: the mirror, the canary and the store are as they were."""
    assert {name: _sha(path) for name, path in outside.items()} == hashes
    assert not Path("/tmp/dreamteam-canary").exists()


def test_zz_the_suite_ran_on_the_default_start(isolation: Isolation) -> None:
    """Unless DREAMTEAM_SANDBOX_START=spawn, the stages above were forked from the template."""
    if isolation.forks is not None:
        assert not isolation.forks.refused
        assert isolation.forks.forked > 0  # type: ignore[attr-defined]
