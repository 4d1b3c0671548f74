"""The spirals task's harness side: the data it generates, and how it scores a model.

This file is the task author's, not the candidate's: it is not in ``[files] editable``, never
copied into a candidate's work directory, and only the harness process imports it.

- ``prepare(data_dir, seed)`` writes ``train.npz`` (the candidate's) and ``eval.npz`` (the
  harness's): points on interleaved spiral arms, labelled by arm, drawn from ``seed``.
- ``load_eval(data_dir)`` returns the evaluation inputs and targets.
- ``score(outputs, targets)`` turns the model's outputs (one row of class logits per input
  row) into figures; the task's ``objective`` (``loss``) is the one minimised.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_CLASSES = 5  # spiral arms, one class each
N_TRAIN = 4000
N_EVAL = 4000
TURNS = 2.0  # how far each arm winds: more turns, a harder boundary
NOISE = 0.03  # Gaussian jitter of each point, relative to the outer radius


def _spirals(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n points in the unit disc, on N_CLASSES interleaved arms, with their arm's label."""
    labels = rng.integers(0, N_CLASSES, n)
    t = np.sqrt(rng.uniform(0.02, 1.0, n))  # uniform in area: the outer coils are not sparse
    angle = 2 * np.pi * (labels / N_CLASSES + TURNS * t)
    points = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
    points += rng.normal(0.0, NOISE, points.shape)
    return points.astype(np.float32), labels.astype(np.int64)


def prepare(data_dir: Path, seed: int) -> None:
    """Write train.npz and eval.npz (arrays x: float32 (n, 2), y: int64 (n,)) into data_dir."""
    rng = np.random.default_rng(seed)
    for name, n in (("train.npz", N_TRAIN), ("eval.npz", N_EVAL)):
        x, y = _spirals(n, rng)
        np.savez(Path(data_dir) / name, x=x, y=y)


def load_eval(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The evaluation split: inputs (what the model sees) and targets (what only we see)."""
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
