"""Walls a sandboxed child raises around itself before it imports candidate code.

Runs inside the child process (see child.py). Three layers live here because they can only
be applied from inside:
  - Landlock (the kernel's unprivileged access control): files confined to the work directory
    plus read-only system and Python directories, nothing executable, no TCP, no signals to
    processes outside;
  - a seccomp filter: no sockets (Landlock does not cover Unix sockets that are files), no
    new programs, no new processes (threads only): it holds against ctypes too;
  - an audit hook: a tripwire with readable errors for sockets, subprocesses and writes
    outside the work directory (ctypes and C++ file writers step around it).
Each is probed, not assumed: what was applied is reported back to the harness and stored.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
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
# No execute right anywhere: the child needs no program but the interpreter it already runs
# (shared libraries are mapped, not executed), and a candidate must not start a shell.
_FS_READ = _FS_READ_FILE | _FS_READ_DIR
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1, 2

SYSTEM_READ_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/proc", "/sys")
# Device files the child may read and write. Not all of /dev: it holds the raw disks, from
# which a root process could read the validation split or overwrite anything.
DEVICE_FILES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")


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
        rules += [(Path(p), _FS_READ_FILE | _FS_WRITE_FILE) for p in DEVICE_FILES]
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


# --- capabilities -------------------------------------------------------------------------
_PR_CAPBSET_DROP = 24
_CAP_LAST = 63  # above the kernel's last capability: PR_CAPBSET_DROP then fails harmlessly
_CAPABILITY_VERSION_3 = 0x20080522
_SYS_CAPSET = {"x86_64": 126, "aarch64": 91}.get(platform.machine(), -1)


def drop_capabilities() -> list[str]:
    """Give up every capability (root keeps its uid but loses its powers: no mount, reboot,
    module loading, raw devices or ignoring file modes). Returns the layer's name if it held."""
    if platform.system() != "Linux":
        return []
    libc = _libc()
    for cap in range(_CAP_LAST + 1):  # the bounding set first: needs CAP_SETPCAP, dropped last
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable x 2 words, all zero
    if libc.syscall(_SYS_CAPSET, header, data) != 0:
        return []
    return ["no-capabilities"]


# --- seccomp -------------------------------------------------------------------------------
# A classic-BPF program over struct seccomp_data {int nr; u32 arch; u64 ip; u64 args[6]}.
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2
_RET_ALLOW, _RET_ERRNO = 0x7FFF0000, 0x00050000
_LD_W_ABS, _JEQ_K, _JSET_K, _RET_K = 0x20, 0x15, 0x45, 0x06
_CLONE_THREAD = 0x00010000
_X32_SYSCALL_BIT = 0x40000000
_IO_URING = (425, 426, 427)  # io_uring runs socket and exec operations outside seccomp
# audit arch, syscalls refused with EACCES, clone, clone3
_SECCOMP_ARCH: dict[str, tuple[int, dict[str, int], int, int]] = {
    "x86_64": (
        0xC000003E,
        {"socket": 41, "execve": 59, "execveat": 322, "fork": 57, "vfork": 58},
        56,
        435,
    ),
    "aarch64": (0xC00000B7, {"socket": 198, "execve": 221, "execveat": 281}, 220, 435),
}


def _seccomp_program(machine: str) -> list[tuple[int, int, int, int]] | None:
    """The filter as (code, jt, jf, k) tuples, or None on an architecture it does not know."""
    if machine not in _SECCOMP_ARCH:
        return None
    arch, refused, clone, clone3 = _SECCOMP_ARCH[machine]
    denied = [*refused.values(), *_IO_URING]
    # (code, k, jump-if-true label, jump-if-false label); labels name the returns at the end
    body: list[tuple[int, int, str | None, str | None]] = [
        (_LD_W_ABS, 4, None, None),
        (_JEQ_K, arch, None, "eperm"),  # another ABI (i386 via int 0x80) has other numbers
        (_LD_W_ABS, 0, None, None),
        (_JSET_K, _X32_SYSCALL_BIT, "eperm", None),
        *[(_JEQ_K, nr, "eacces", None) for nr in denied],
        (_JEQ_K, clone3, "enosys", None),  # flags hidden in memory: glibc falls back to clone
        (_JEQ_K, clone, None, "allow"),
        (_LD_W_ABS, 16, None, None),  # clone's flags (low word of args[0])
        (_JSET_K, _CLONE_THREAD, "allow", "eperm"),  # threads yes, processes no
    ]
    returns = {
        "allow": _RET_ALLOW,
        "eacces": _RET_ERRNO | errno.EACCES,
        "enosys": _RET_ERRNO | errno.ENOSYS,
        "eperm": _RET_ERRNO | errno.EPERM,
    }
    at = {label: len(body) + i for i, label in enumerate(returns)}
    program = [
        (code, at[jt] - i - 1 if jt else 0, at[jf] - i - 1 if jf else 0, k)
        for i, (code, k, jt, jf) in enumerate(body)
    ]
    program += [(_RET_K, 0, 0, value) for value in returns.values()]
    return program


def apply_seccomp() -> list[str]:
    """Refuse sockets, exec and new processes to this process and its threads, ctypes included.

    Needs no_new_privs (apply_landlock sets it; set again here for platforms without
    Landlock). Returns the layer's name if it was applied.
    """
    if platform.system() != "Linux":
        return []
    program = _seccomp_program(platform.machine())
    if program is None:
        return []
    filters = b"".join(struct.pack("=HBBI", *ins) for ins in program)
    buffer = ctypes.create_string_buffer(filters)
    fprog = struct.pack("=HxxxxxxQ", len(program), ctypes.addressof(buffer))
    libc = _libc()
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return []
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.c_char_p(fprog), 0, 0) != 0:
        return []
    return ["seccomp"]


def python_read_dirs() -> list[Path]:
    """Directories the interpreter and its packages are imported from."""
    dirs = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix)}
    dirs |= {Path(p) for p in sys.path if p and Path(p).is_dir()}
    return sorted(d.resolve() for d in dirs)


_BLOCKED_EVENTS = (
    "socket.connect",
    "socket.bind",
    "socket.sendto",
    "socket.sendmsg",
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
)
# Events that change the file system, and which of their arguments are paths.
_PATH_EVENTS = {
    "os.remove": (0,),
    "os.rmdir": (0,),
    "os.mkdir": (0,),
    "os.truncate": (0,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.utime": (0,),
    "os.chflags": (0,),
    "os.lchflags": (0,),
    "os.setxattr": (0,),
    "os.removexattr": (0,),
    "os.rename": (0, 1),
    "os.link": (1,),
    "os.symlink": (1,),
    "shutil.copyfile": (1,),
    "shutil.copymode": (1,),
    "shutil.copystat": (1,),
    "shutil.copytree": (1,),
    "shutil.move": (0, 1),
    "shutil.rmtree": (0,),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _writes(args: tuple) -> bool:
    """Whether an `open` event's (path, mode, flags) asks for writing."""
    mode = args[1] if len(args) > 1 else None
    flags = args[2] if len(args) > 2 else None
    if isinstance(mode, str) and any(c in mode for c in "wax+"):
        return True
    # os.open reports mode None and only the flags: they are what decides
    return isinstance(flags, int) and bool(flags & _WRITE_FLAGS)


def install_audit_hook(work_dir: Path) -> None:
    """A tripwire: refuse network, processes and file changes outside work_dir from Python.

    ctypes and C++ file writers (torch.save) step around it: Landlock and seccomp are the
    walls, this gives a readable error for the common case.
    """
    root = os.path.realpath(work_dir)
    allowed = {"/dev/null"}

    def inside(target: object) -> bool:
        if isinstance(target, int):
            return True  # an fd the process already holds
        if not isinstance(target, (str, bytes, os.PathLike)):
            return False
        # realpath: a symlink inside the work dir may point anywhere
        path = os.path.realpath(os.fsdecode(target))
        return path == root or path.startswith(root + os.sep) or path in allowed

    def hook(event: str, args: tuple) -> None:
        if event.startswith(_BLOCKED_EVENTS):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open" and args and _writes(args) and not inside(args[0]):
            raise PermissionError(f"sandbox: writing {os.fsdecode(args[0])} is not allowed")
        for i in _PATH_EVENTS.get(event, ()):
            if i < len(args) and not inside(args[i]):
                raise PermissionError(f"sandbox: {event} on {os.fsdecode(args[i])} is not allowed")

    sys.addaudithook(hook)
