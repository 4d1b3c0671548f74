"""The rings task's harness side: its data and its score (never shown to candidates)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_CLASSES = 4  # rings, one class each
N_TRAIN = 4000
N_EVAL = 1000


def _rings(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, N_CLASSES, n)
    radius = (labels + rng.uniform(0.15, 0.85, n)) / N_CLASSES
    angle = rng.uniform(0, 2 * np.pi, n)
    points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    points += rng.normal(0.0, 0.02, points.shape)
    return points.astype(np.float32), labels.astype(np.int64)


def prepare(data_dir: Path, seed: int) -> None:
    """Write train.npz and eval.npz (x: float32 (n, 2), y: int64 (n,)) into data_dir."""
    rng = np.random.default_rng(seed)
    for name, n in (("train.npz", N_TRAIN), ("eval.npz", N_EVAL)):
        x, y = _rings(n, rng)
        np.savez(Path(data_dir) / name, x=x, y=y)


def load_eval(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The evaluation split: inputs and targets."""
    with np.load(Path(data_dir) / "eval.npz", allow_pickle=False) as f:
        return f["x"], f["y"]


def score(outputs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Cross-entropy of the class logits (the objective) and accuracy."""
    if outputs.ndim != 2 or outputs.shape[1] != N_CLASSES:
        raise ValueError(f"expected logits of shape (rows, {N_CLASSES}), got {outputs.shape}")
    logits = outputs.astype(np.float64)
    peak = logits.max(axis=1, keepdims=True)
    log_z = peak[:, 0] + np.log(np.exp(logits - peak).sum(axis=1))
    picked = logits[np.arange(len(targets)), targets]
    return {
        "loss": float(np.mean(log_z - picked)),
        "accuracy": float(np.mean(logits.argmax(axis=1) == targets)),
    }
