"""Running a hostile train.py straight through the sandbox, without the static checks."""

from __future__ import annotations

from pathlib import Path

from dreamteam.harness.sandbox.launcher import Isolation, Limits, ProcessResult, run_sandboxed


def sandboxed_train(source: str, work: Path, isolation: Isolation, **limits) -> ProcessResult:
    """Run `source` as train.py's train() in a sandboxed child (one step allowed)."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "train.py").write_text(source)
    config = {
        "entry_file": "train.py",
        "entry_point": "train",
        "data_dir": str(work),
        "iters": 1,
        "seed": 0,
        "device": "cpu",
    }
    return run_sandboxed("train", config, work, Limits(**{"wall_seconds": 60, **limits}), isolation)
