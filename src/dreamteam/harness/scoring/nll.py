"""The harness's cross-entropy kernel: each position's -log p(target), from its logits.

A compiled (numba) loop instead of torch's log-softmax: the exponentials of the whole split
(36,058 x 50,257 of them for the LM task) are most of the harness's own work, and torch's
`exp` is accurate to 1 ulp at about 0.6 ns a value on a 2-core CPU. Here `exp` is a
degree-7 polynomial after a range reduction by powers of two, accurate to a few ulp, which
LLVM vectorizes: about 0.2 ns a value, and no output is written (only the sums are needed).

Per scored position, over a row of fp32 or bf16 logits:
  1. one read of the row into a private fp32 row that stays in the CPU's cache (the logits
     may be shared memory that the child still writes: every figure comes from this copy),
     with its maximum, taken in integers (a float's bits, reordered, compare as the float
     does, and integer maxima vectorize where float ones with NaN semantics do not), and
     whether it holds a NaN or +inf (then the figure is NaN, as torch's would be);
  2. sum exp(x - max) in fp32 blocks of 1,024 values, the blocks added in fp64;
  3. -log p = (max - x[target]) + log(sum), in fp64.
Values more than 87 below the row's maximum count as exp(-87) ~ 1.6e-38 instead of less: at
most 50,257 of them move the log-sum by under 1e-33. A -inf target gives +inf.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from numba import njit, types
from numba.extending import intrinsic

_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)  # ln 2 in two parts: k * _LN2_HI is exact for |k| < 2^9
_LN2_LO = np.float32(-2.12194440e-4)
_FLOOR = np.float32(-87.0)  # exp(-87) is still a normal fp32 number
# exp(r) ~ 1 + r + r^2 (c5 + c4 r + ... + c0 r^5) for |r| <= ln(2)/2 (Cephes' expf)
_C0, _C1, _C2 = (
    np.float32(1.9875691500e-4),
    np.float32(1.3981999507e-3),
    np.float32(8.3334519073e-3),
)
_C3, _C4, _C5 = (
    np.float32(4.1665795894e-2),
    np.float32(1.6666665459e-1),
    np.float32(5.0000001201e-1),
)
# the integer type whose bits each dtype's values are read as (a bf16 value's bits are the
# top half of the fp32 of the same value: the shift drops an int16's extended sign)
READS_SHARED = {torch.float32: torch.int32, torch.bfloat16: torch.int16}
_BLOCK = 1024
_INF = np.int32(0x7F800000)  # +inf's bits
_NEG_INF = np.int32(-8388608)  # -inf's bits, 0xFF800000
# reassociation lets LLVM vectorize the sums (only theirs: see _exp); no flag that assumes
# finite values
_FAST = {"reassoc", "contract", "nsz", "arcp"}


def _bitcast(typingctx: Any, bits: Any) -> Any:
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], context.get_value_type(types.float32))

    return types.float32(types.int32), codegen


# _bits_as_float(bits): the fp32 whose bits are the int32 `bits` (numba has no scalar view)
_bits_as_float: Any = intrinsic(_bitcast)


@njit(nogil=True)
def _ordered(bits: Any) -> Any:
    """A float's int32 bits mapped to an int32 that orders as the float does (-0 < +0)."""
    return bits ^ ((bits >> np.int32(31)) & np.int32(0x7FFFFFFF))


@njit(nogil=True)
def _load(src: Any, row_bits: Any, shift: Any) -> Any:
    """Copy one row's values into `row_bits` as fp32 bits; their maximum, or NaN if they hold
    a NaN or +inf or are all -inf."""
    top = np.int32(-(2**31))
    low = np.int32(2**31 - 1)
    for i in range(np.uint64(src.shape[0])):  # unsigned: no negative-index check per value
        b = np.int32(src[i]) << shift
        row_bits[i] = b
        key = _ordered(b)
        top = max(top, key)
        low = min(low, key)
    # +inf and NaNs with the sign bit clear order above every number, the others below -inf
    if top >= _INF or top == _ordered(_NEG_INF) or low < _ordered(_NEG_INF):
        return np.float32(np.nan)
    return _bits_as_float(_ordered(top))


@njit(nogil=True)
def _exp(y: Any) -> Any:
    """exp(y) for y <= 0, to a few ulp; below -87, exp(-87). IEEE arithmetic throughout:
    reassociated, the range reduction would lose its precision."""
    y = y if y > _FLOOR else _FLOOR
    k = np.int32(y * _LOG2E - np.float32(0.5))  # round to nearest, y <= 0
    kf = np.float32(k)
    r = y - kf * _LN2_HI - kf * _LN2_LO
    p = ((((_C0 * r + _C1) * r + _C2) * r + _C3) * r + _C4) * r + _C5
    return (p * r * r + r + np.float32(1.0)) * _bits_as_float((k + np.int32(127)) << np.int32(23))


@njit(nogil=True, fastmath=_FAST)
def _exp_sum(row: Any, peak: Any) -> float:
    """sum(exp(row - peak)) for a row whose values are all <= peak."""
    n = row.shape[0]
    total = 0.0
    for start in range(0, n, _BLOCK):
        block = np.float32(0.0)
        for i in range(np.uint64(start), np.uint64(min(start + _BLOCK, n))):
            block += _exp(_minus(row[i], peak))
        total += np.float64(block)
    return total


@njit(nogil=True)
def _minus(a: Any, b: Any) -> Any:
    return a - b  # outside _exp_sum: its reassociation may not fold this into _exp's products


@njit(nogil=True)
def _nll_rows(bits: Any, targets: Any, out: Any, row: Any) -> None:
    # each scored row is read once, into `row`, and everything after comes from that copy:
    # `bits` may be shared memory that its writer changes while it is read
    shift = np.int32(32 - 8 * bits.itemsize)  # bf16 is the top half of an fp32
    row_bits = row.view(np.int32)
    for t in range(bits.shape[0]):
        if targets[t] < 0:
            out[t] = 0.0
            continue
        peak = _load(bits[t], row_bits, shift)
        if np.isnan(peak):
            out[t] = np.nan
            continue
        # the gap first: added to the log-sum, a large logit would swallow its digits
        gap = np.float64(peak) - np.float64(row[targets[t]])
        out[t] = gap + math.log(_exp_sum(row, peak))


def nll_rows(logits: torch.Tensor, targets: np.ndarray) -> np.ndarray:
    """-log softmax(logits[t])[targets[t]] for each row t of a C-contiguous fp32 or bf16
    (rows, vocab) tensor on the CPU, in fp64; 0 where targets[t] < 0 (not scored), NaN where
    the row holds a NaN or +inf or only -inf. Targets must be below the vocabulary size.
    Reads each scored value once, so `logits` may be memory that another process writes.
    Releases the GIL."""
    if logits.dtype not in READS_SHARED or logits.dim() != 2 or not logits.is_contiguous():
        raise ValueError("nll_rows needs a contiguous 2-D fp32 or bf16 tensor")
    bits = logits.view(READS_SHARED[logits.dtype]).numpy()
    out = np.empty(logits.shape[0], dtype=np.float64)
    row = np.empty(logits.shape[1], dtype=np.float32)
    _nll_rows(bits, np.ascontiguousarray(targets, dtype=np.int64), out, row)
    return out
