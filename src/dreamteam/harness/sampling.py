"""Text from a trained candidate: its own model code, its kept weights, in the sandbox."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dreamteam.errors import SandboxError
from dreamteam.harness.sandbox.launcher import Isolation, Limits, run_sandboxed
from dreamteam.harness.scoring.common import process_failure
from dreamteam.tasks import Task


@dataclass(frozen=True)
class SamplingSettings:
    """How to draw tokens."""

    max_new_tokens: int = 200
    temperature: float = 0.8
    top_k: int = 200  # 0: off
    top_p: float = 1.0  # 1.0: off
    seed: int = 1337


def sample_tokens(
    task: Task,
    files: Mapping[str, str],
    checkpoint: Path,
    prompt: list[int],
    settings: SamplingSettings,
    isolation: Isolation,
    threads: int = 1,
) -> list[int]:
    """Prompt + generated token ids, computed by the candidate's model in a sandboxed child."""
    with tempfile.TemporaryDirectory(prefix="dreamteam-sample-") as tmp:
        work = Path(tmp)
        for name, source in files.items():
            (work / name).write_text(source, encoding="utf-8")
        shutil.copyfile(checkpoint, work / "ckpt.pt")
        config = {
            "model_file": task.contract.model_file,
            "model_class": task.contract.model_class,
            "config_class": task.contract.config_class,
            "vocab_size": task.vocab_size,
            "context": task.context,
            "prompt": prompt,
            "max_new_tokens": settings.max_new_tokens,
            "temperature": settings.temperature,
            "top_k": settings.top_k,
            "top_p": settings.top_p,
            "seed": settings.seed,
        }
        process = run_sandboxed(
            "sample", config, work, Limits(wall_seconds=300, threads=threads), isolation
        )
    tokens = process.report.get("tokens")
    if not isinstance(tokens, list):
        _, reason = process_failure(process, process.report.get("error", ""))
        raise SandboxError(f"sampling failed: {reason}")
    return [int(t) for t in tokens]
