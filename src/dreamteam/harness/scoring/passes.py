"""The sandboxed logits passes of the language-model score: one fresh process each.

A pass stages the candidate's files and weights in its own work dir, starts child.py in mode
``eval`` and feeds it chunks of windows; the logits come back through anonymous shared memory,
two slots wide, so that the child computes one chunk while the harness reduces the other
(sandbox/logits_wire.py: two-byte logits travel as they are).
The probe and the scoring pass run at the same time only where the walls keep them apart.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from dreamteam.harness.sandbox import logits_wire
from dreamteam.harness.sandbox.launcher import Isolation, Limits, ProcessResult, run_sandboxed
from dreamteam.harness.scoring.common import model_config, stage_model
from dreamteam.tasks import Task

CHUNK = 16  # windows per round trip: 16 x 64 x 50,257 fp32 logits = 206 MB per slot


def _converse(
    rows: int,
    memory: torch.Tensor,
    shape: tuple[int, int, int],
    on_chunk: Callable[[int, torch.Tensor], None],
    ready: dict[str, Any],
    stop: threading.Event,
) -> Callable[[IO[bytes], IO[bytes]], None]:
    n_chunks = math.ceil(rows / CHUNK)

    def talk(stdin: IO[bytes], results: IO[bytes]) -> None:
        first = json.loads(results.readline() or b"{}")
        ready.update(first)
        if not first.get("ready"):
            return
        stdin.write(b"0\n")
        stdin.flush()
        for i in range(n_chunks):
            if stop.is_set():  # the other pass failed: this one's figures are not needed
                return
            reply = json.loads(results.readline() or b"{}")
            if reply.get("chunk") != i:
                ready.update(reply)
                return
            try:
                chunk = logits_wire.slot(memory, i % 2, str(reply.get("dtype")), shape)
            except ValueError as exc:
                ready["error"] = f"the evaluation child sent {exc}"
                return
            if i + 1 < n_chunks:  # the child fills the other slot while this one is reduced
                stdin.write(f"{i + 1}\n".encode())
                stdin.flush()
            # the child may write to both slots at any time: on_chunk reads each value once
            on_chunk(i * CHUNK, chunk[: min(CHUNK, rows - i * CHUNK)])
        ready["done"] = True

    return talk


def logits_pass(
    task: Task,
    files: dict[str, str],
    checkpoint: Path,
    inputs: np.ndarray,
    work_dir: Path,
    limits: Limits,
    isolation: Isolation,
    on_chunk: Callable[[int, torch.Tensor], None],
    stop: threading.Event,
    device: str,
    gate: Callable[[], bool] | None,
) -> tuple[ProcessResult, dict]:
    """One fresh sandboxed process computing the logits of `inputs`, fed to on_chunk;
    it stops early once `stop` is set. With a `gate`, the process starts at once and its
    files are staged when the gate opens (the checkpoint is written); a closed gate ends it."""

    def stage() -> None:
        stage_model(work_dir, files, checkpoint)
        np.save(work_dir / "inputs.npy", inputs)

    def go(stdin: IO[bytes]) -> bool:
        if gate is None or not gate():
            return False
        stage()
        stdin.write(b"go\n")
        stdin.flush()
        return True

    work_dir.mkdir(parents=True, exist_ok=True)
    if gate is None:
        stage()
    # logits travel through anonymous shared memory, new for each pass: no disk, no copy
    # through a pipe, and nothing a pass leaves behind for the next one
    memfd = os.memfd_create("dreamteam-logits")
    os.ftruncate(memfd, logits_wire.slots_bytes(CHUNK, task.context, task.vocab_size))
    buffer, memory = logits_wire.mapped(memfd, CHUNK, task.context, task.vocab_size)
    ready: dict[str, Any] = {}
    config = {
        **model_config(task),
        "vocab_size": task.vocab_size,
        "chunk": CHUNK,
        "logits_fd": memfd,
        "device": device,
        "wait_for_go": gate is not None,
    }
    talk = _converse(
        len(inputs), memory, (CHUNK, task.context, task.vocab_size), on_chunk, ready, stop
    )
    try:
        process = run_sandboxed(
            "eval", config, work_dir, limits, isolation, converse=talk, pass_fds=(memfd,),
            prepare=None if gate is None else go,
        )  # fmt: skip
    finally:
        del talk, memory  # release the views before the mapping closes
        buffer.close()
        os.close(memfd)
    (work_dir / "inputs.npy").unlink(missing_ok=True)
    return process, ready


def passes_may_overlap(isolation: Isolation) -> bool:
    """Whether the probe and the scoring pass may run at the same time.

    Only where they cannot reach each other while both live: each in a network namespace of
    its own (no sockets between them) and under Landlock (no files outside its own work
    dir). Elsewhere the probe pass runs first and ends before the scoring pass starts, so
    that it cannot learn from it what the original windows gave.
    """
    return isolation.namespaces and isolation.landlock > 0


def _stop_unless_done(done: Future[tuple[ProcessResult, dict]], stop: threading.Event) -> None:
    if done.exception() is not None or not done.result()[1].get("done"):
        stop.set()


def both_passes(
    run: Callable[[str, threading.Event], tuple[ProcessResult, dict]], overlap: bool
) -> tuple[tuple[ProcessResult, dict], tuple[ProcessResult, dict]]:
    """The probe and the scoring pass: (probe, score). Overlapped, a failed probe pass stops
    the scoring pass; in turn, the short probe pass first, and a crash there saves the long one.
    """
    stop = threading.Event()
    if not overlap:
        probe = run("probe", stop)
        if not probe[1].get("done"):
            return probe, probe
        return probe, run("score", stop)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(run, "probe", stop)
        pending.add_done_callback(lambda done: _stop_unless_done(done, stop))
        score = run("score", stop)
        probe = pending.result()
    return probe, score
