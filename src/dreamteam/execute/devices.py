"""Choosing where tensors live, which GPU each worker gets, and how many CPU threads a process
uses."""

from __future__ import annotations

import os

from dreamteam.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "mps")


def select_device(requested: str = "auto") -> str:
    """cuda, then mps, then cpu; or the device asked for, if this machine has it."""
    import torch

    if requested not in DEVICES and not requested.startswith("cuda:"):
        raise ConfigError(f"unknown device {requested!r}: use one of {', '.join(DEVICES)}")
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda asked for, but torch sees no CUDA device: use --device cpu"
        )
    if requested == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps asked for, but this machine has no MPS: use --device cpu")
    return requested


def cpu_threads(workers: int = 1) -> int:
    """Threads per worker so that workers together use each core once.

    A 32-wide model gains nothing from more than a few threads; more only adds contention.
    """
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    return max(1, min(8, cores // max(workers, 1)))


def worker_devices(device: str, workers: int) -> list[str]:
    """One device per worker slot: `cuda` spreads the workers over the visible GPUs in turn
    (cuda:0, cuda:1, ...); any other device (a pinned cuda:N, mps, cpu) is shared by all."""
    workers = max(1, workers)
    if device != "cuda":
        return [device] * workers
    import torch

    count = max(1, torch.cuda.device_count())
    return [f"cuda:{i % count}" for i in range(workers)]
