"""Walls a sandboxed child raises around itself before it imports candidate code.

Runs inside the child process (see runner.py). Two layers live here because they can only
be applied from inside: Landlock (the kernel's unprivileged access control: file access
confined to the work directory plus read-only system and Python directories, no TCP, no
signals to processes outside) and an audit hook (a tripwire for sockets, subprocesses and
writes outside the work directory). Both are probed, not assumed: what was applied is
reported back to the harness and stored with the candidate.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from collections.abc import Iterable
from pathlib import Path

# Syscall numbers are shared by x86_64 and aarch64 for Landlock.
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1, 2, 4, 8
_FS_ALL_V1 = (1 << 13) - 1  # execute .. make_sym
_FS_REFER, _FS_TRUNCATE = 1 << 13, 1 << 14
_FS_READ = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1, 2

SYSTEM_READ_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/proc", "/sys")


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, or 0 where Landlock is unavailable."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "aarch64"):
        return 0
    try:
        abi = _libc().syscall(_SYS_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
    except (OSError, AttributeError):
        return 0
    return max(int(abi), 0)


def _fs_rights(abi: int) -> int:
    rights = _FS_ALL_V1
    if abi >= 2:
        rights |= _FS_REFER
    if abi >= 3:
        rights |= _FS_TRUNCATE
    return rights


def apply_landlock(write_dirs: Iterable[Path], read_dirs: Iterable[Path]) -> list[str]:
    """Confine this process: read+write below write_dirs, read below read_dirs, nothing else.

    Returns the names of the layers applied (empty where Landlock is unavailable).
    """
    abi = landlock_abi()
    if abi < 1:
        return []
    libc = _libc()
    fs_all = _fs_rights(abi)
    attr = _RulesetAttr(handled_access_fs=fs_all)
    size = 8
    layers = ["landlock-fs"]
    if abi >= 4:
        attr.handled_access_net = _NET_BIND_TCP | _NET_CONNECT_TCP
        size = 16
        layers.append("landlock-net")
    if abi >= 6:
        attr.scoped = _SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL
        size = 24
        layers.append("landlock-scope")
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), size, 0)
    if ruleset < 0:
        return []
    try:
        rules = [(Path(p), fs_all) for p in write_dirs]
        rules += [(Path(p), _FS_READ) for p in read_dirs]
        rules += [(Path("/dev"), _FS_READ | _FS_WRITE_FILE)]
        for path, rights in rules:
            _add_rule(libc, ruleset, path, rights if path.is_dir() else rights & ~_FS_READ_DIR)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return []
        if libc.syscall(_SYS_RESTRICT_SELF, ruleset, 0) != 0:
            return []
    finally:
        os.close(ruleset)
    return layers


def _add_rule(libc: ctypes.CDLL, ruleset: int, path: Path, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # a directory this machine does not have
    try:
        rule = _PathBeneath(allowed_access=rights, parent_fd=fd)
        libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0)
    finally:
        os.close(fd)


def python_read_dirs() -> list[Path]:
    """Directories the interpreter and its packages are imported from."""
    dirs = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix)}
    dirs |= {Path(p) for p in sys.path if p and Path(p).is_dir()}
    return sorted(d.resolve() for d in dirs)


_BLOCKED_EVENTS = (
    "socket.connect",
    "socket.bind",
    "socket.sendto",
    "subprocess.Popen",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "pty.spawn",
    "os.kill",
    "os.killpg",
    "shutil.rmtree",
)


def install_audit_hook(work_dir: Path) -> None:
    """A tripwire: refuse network, processes and writes outside work_dir from Python code.

    ctypes can step around it (blocking ctypes would break torch), which is why Landlock,
    namespaces and the static checks stand beside it.
    """
    root = str(work_dir.resolve())

    def hook(event: str, args: tuple) -> None:
        if event.startswith(_BLOCKED_EVENTS):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open" and len(args) >= 2 and isinstance(args[0], (str, bytes)):
            mode = args[1]
            writing = isinstance(mode, str) and any(c in mode for c in "wax+")
            if isinstance(mode, int):
                writing = bool(mode & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC))
            path = os.path.abspath(os.fsdecode(args[0]))
            if writing and not (path == root or path.startswith(root + os.sep) or path == "/dev/null"):
                raise PermissionError(f"sandbox: writing {path} is not allowed")
        if event in ("os.remove", "os.rmdir", "os.rename", "os.unlink"):
            path = os.path.abspath(os.fsdecode(args[0])) if args else ""
            if not path.startswith(root + os.sep):
                raise PermissionError(f"sandbox: {event} on {path} is not allowed")

    sys.addaudithook(hook)
