"""How the evaluation child hands logits to the harness: two slots of anonymous shared memory.

Each slot holds one chunk of windows, (chunk, T, vocab), sized for fp32. A model whose logits
are bf16 or fp16 sends them as they are, two bytes a value, so nothing is rounded on the way
and half the bytes move; any other dtype is sent as fp32. The child names the dtype of each
chunk in its reply, and the harness reads the slot as that dtype.
"""

from __future__ import annotations

import mmap
from typing import Any

WIRE_NAMES = ("fp32", "bf16", "fp16")


def _torch_dtypes() -> dict[str, Any]:
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def slots_bytes(chunk: int, context: int, vocab: int) -> int:
    """The size of the shared memory: two slots of fp32 logits."""
    return 2 * chunk * context * vocab * 4


def mapped(fd: int, chunk: int, context: int, vocab: int) -> Any:
    """The child's view of the shared memory behind `fd`, as a uint8 tensor (which keeps the
    mapping alive)."""
    import numpy as np
    import torch

    buffer = mmap.mmap(fd, slots_bytes(chunk, context, vocab))
    return torch.from_numpy(np.frombuffer(buffer, dtype=np.uint8))


def wire_name(dtype: Any) -> str:
    """How logits of `dtype` travel: as themselves if two-byte floats, else as fp32."""
    for name, candidate in _torch_dtypes().items():
        if dtype == candidate and name != "fp32":
            return name
    return "fp32"


def slot(memory: Any, index: int, wire: str, shape: tuple[int, int, int]) -> Any:
    """Slot `index` of `memory` (a uint8 tensor over the whole mapping) as a tensor of `shape`
    in the dtype named `wire`. Raises ValueError for a name that is not a wire dtype."""
    if wire not in WIRE_NAMES:
        raise ValueError(f"unknown logits dtype {wire!r}")
    dtype = _torch_dtypes()[wire]
    width = shape[0] * shape[1] * shape[2]
    per_slot = memory.numel() // 2
    start = index * per_slot
    return memory[start : start + width * dtype.itemsize].view(dtype).view(shape)
