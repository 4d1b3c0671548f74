"""How the evaluation child hands logits to the harness: two slots of anonymous shared memory.

Each slot holds one chunk of windows, (chunk, T, vocab), sized for fp32. A model whose logits
are bf16 or fp16 sends them as they are, two bytes a value, so nothing is rounded on the way
and half the bytes move; any other dtype is sent as fp32. The child names the dtype of each
chunk in its reply, and the harness reads the slot as that dtype.
"""

from __future__ import annotations

import mmap
from enum import StrEnum
from typing import Any


class Wire(StrEnum):
    """The dtype a chunk of logits travels in, named in the child's reply."""

    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"

    def torch_dtype(self) -> Any:
        """The torch dtype of this wire format."""
        import torch

        return getattr(torch, _TORCH_NAMES[self.value])


_TORCH_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def slots_bytes(chunk: int, context: int, vocab: int) -> int:
    """The size of the shared memory: two slots of fp32 logits."""
    return 2 * chunk * context * vocab * 4


def mapped(fd: int, chunk: int, context: int, vocab: int) -> tuple[mmap.mmap, Any]:
    """The shared memory behind `fd`, mapped: (the mapping, a uint8 tensor over all of it),
    as both sides see it; the tensor keeps the mapping alive until it is released."""
    import numpy as np
    import torch

    buffer = mmap.mmap(fd, slots_bytes(chunk, context, vocab))
    return buffer, torch.from_numpy(np.frombuffer(buffer, dtype=np.uint8))


def wire_of(dtype: Any) -> Wire:
    """How logits of `dtype` travel: as themselves if two-byte floats, else as fp32."""
    return next((w for w in (Wire.BF16, Wire.FP16) if dtype == w.torch_dtype()), Wire.FP32)


def slot(memory: Any, index: int, name: str, shape: tuple[int, int, int]) -> Any:
    """Slot `index` of `memory` (a uint8 tensor over the whole mapping) as a tensor of `shape`
    in the wire dtype `name`. Raises ValueError for a name that is not a wire dtype."""
    if name not in set(Wire):
        raise ValueError(f"unknown logits dtype {name!r}")
    dtype = Wire(name).torch_dtype()
    width = shape[0] * shape[1] * shape[2]
    start = index * width * 4  # slots are sized for fp32
    return memory[start : start + width * dtype.itemsize].view(dtype).view(shape)
