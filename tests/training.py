"""Train a candidate's files in this process, for tests that check an edit still trains."""

from __future__ import annotations

import contextlib
import importlib
import io
import itertools
import sys
from pathlib import Path

_counter = itertools.count()


def train_in_process(
    files: dict[str, str], data_dir: Path, work: Path, iters: int, modules=("train", "model")
) -> float:
    """Import the candidate's train.py and call train(): what it returns first (its loss)."""
    work.mkdir(parents=True)
    for name, source in files.items():
        (work / name).write_text(source)
    tag = f"_cand{next(_counter)}"
    for name in modules:
        sys.modules.pop(name, None)
    sys.path.insert(0, str(work))
    try:
        module = importlib.import_module("train")
        with contextlib.redirect_stdout(io.StringIO()):
            first, _ = module.train(str(data_dir), str(work), iters, 1, "cpu")
    finally:
        sys.path.remove(str(work))
        for name in modules:  # keep the module alive under another name, out of the way
            sys.modules[f"{name}{tag}"] = sys.modules.pop(name, None)  # type: ignore[assignment]
    assert (work / "ckpt.pt").is_file()
    return first
