"""Hostile candidates: each is the baseline with a small modification that attacks the harness.

A candidate is built by `patch(files, file, old, new)`: the baseline's text `old` must be there
(so that a change to the baseline breaks the test loudly, not silently), and is replaced.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping

# Where the hostile code goes: the top of train(), the eval-time forward of the model.
TRAIN_START = "    torch.manual_seed(seed)\n"
EVAL_FORWARD = "            return F.linear(x.to(dtype), self.wte.weight.to(dtype)), None\n"
BEFORE_LOOP = "    start = time.time()\n"
TRAIN_RETURN = "    return best_vloss, elapsed_min\n"
CAUSAL = "q, k, v, is_causal=True,"


def patch(files: Mapping[str, str], file: str, old: str, new: str) -> dict[str, str]:
    """The files with `old` replaced by `new` in `file` (exactly once)."""
    assert files[file].count(old) == 1, f"the baseline's {file} no longer contains {old!r}"
    out = dict(files)
    out[file] = files[file].replace(old, new)
    return out


def at_train_start(files: Mapping[str, str], code: str) -> dict[str, str]:
    """Hostile code run first thing in train(), indented to the function body."""
    lines = textwrap.dedent(code).strip("\n").splitlines()
    body = "".join(f"    {line}\n" if line else "\n" for line in lines)
    return patch(files, "train.py", TRAIN_START, body + TRAIN_START)


def at_eval_forward(files: Mapping[str, str], code: str) -> dict[str, str]:
    """Hostile code that replaces the logits-only forward (what the evaluator calls)."""
    lines = textwrap.dedent(code).strip("\n").splitlines()
    body = "".join(f"            {line}\n" for line in lines)
    return patch(files, "model.py", EVAL_FORWARD, body)


# A model that reads every window the harness will ask about from its own input file, then
# raises the logit of the token that follows each prefix: causal in form, a lookup in fact.
LOOKUP_TABLE = '''

_TABLE: dict = {}


def _lookup_table() -> dict:
    """Every window of this process's input file, as prefix -> next token."""
    if not _TABLE:
        import numpy as np

        for row in np.load("inputs.npy").tolist():
            for t in range(len(row) - 1):
                _TABLE.setdefault(tuple(row[: t + 1]), row[t + 1])
    return _TABLE
'''
LOOKUP_FORWARD = """
logits = F.linear(x, self.wte.weight)
table = _lookup_table()
for b, row in enumerate(idx.tolist()):
    for t in range(len(row)):
        nxt = table.get(tuple(row[: t + 1]))
        if nxt is not None:
            logits[b, t, nxt] += 30.0
return logits, None
"""

# Escape attempts through ctypes, which steps around the audit hook: the kernel's walls
# (seccomp, Landlock, namespaces) must hold. Each attempt prints one JSON line.
CTYPES_ATTACKS = r"""
import ctypes, json, os, struct

libc = ctypes.CDLL(None, use_errno=True)


def outcome(name, ret):
    err = ctypes.get_errno()
    print(json.dumps({"attack": name, "ret": ret, "errno": err if ret < 0 else 0}), flush=True)


def connect(family, address):
    fd = libc.socket(family, 1, 0)
    if fd < 0:
        return fd
    return libc.connect(fd, address, len(address))


def train(data_dir=".", out_dir=".", iters=1, seed=0, device="cpu"):
    cfg = json.load(open(os.path.join(out_dir, "attack.json")))
    tcp = struct.pack("=H", 2) + struct.pack(">H", cfg["port"]) + bytes([127, 0, 0, 1]) + bytes(8)
    outcome("tcp-connect", connect(2, tcp))
    outcome("unix-connect", connect(1, struct.pack("=H", 1) + cfg["unix"].encode() + b"\0"))
    outcome("shell", -1 if libc.system(cfg["shell"].encode()) != 0 else 0)
    forks = [libc.fork() for _ in range(64)]
    if 0 in forks:  # a child that got through: it must not live on
        libc.pause()
    outcome("fork-bomb", max(forks))
    for name, path in cfg["write"].items():  # the test's own files: truncate, write, delete
        fd = libc.open(path.encode(), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        if fd >= 0:
            libc.write(fd, b"pwned", 5)
        outcome("write-" + name, fd)
        outcome("unlink-" + name, libc.unlink(path.encode()))
    for name, path in cfg["open-for-writing"].items():  # shared files: an open is proof enough
        outcome("write-" + name, libc.open(path.encode(), os.O_WRONLY))
    for name, path in cfg["read"].items():
        outcome("read-" + name, libc.open(path.encode(), os.O_RDONLY))
    outcome("raw-disk", libc.open(b"/dev/vda", os.O_RDONLY))
    outcome("reboot", libc.reboot(0))  # LINUX_REBOOT_CMD_CAD_OFF: harmless should it pass
    return 0.0, 0.0
"""

# A model whose two evaluation processes try to find each other (the probe and the scoring
# pass may run at the same time): through a file in a shared temporary directory, or an
# abstract Unix socket name, via ctypes around the audit hook. A peer seen turns the logits
# into NaN, so that a channel that opens shows as a status other than ok.
COLLUDE_CHANNELS = '''

_SOCKETS: list = []


def _peer_seen() -> bool:
    """Whether another evaluation process of this model is within reach."""
    import ctypes
    import os
    import struct

    libc = ctypes.CDLL(None, use_errno=True)
    seen = False
    for place in (b"/tmp/dreamteam-collude", b"/dev/shm/dreamteam-collude"):
        fd = libc.open(place, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        seen |= fd < 0 and ctypes.get_errno() == 17  # EEXIST: the other process made it
    fd = libc.socket(1, 1, 0)
    if fd >= 0:
        _SOCKETS.append(fd)  # held open: the name stays taken while this process lives
        name = struct.pack("=H", 1) + b"\\0dreamteam-collude"
        seen |= libc.bind(fd, name, len(name)) < 0 and ctypes.get_errno() == 98  # EADDRINUSE
    return seen
'''
COLLUDE_FORWARD = """
logits = F.linear(x, self.wte.weight)
return (logits * float("nan") if _peer_seen() else logits), None
"""
