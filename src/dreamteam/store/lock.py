"""One writer per run: the process running a run holds an exclusive lock on `<run>/run.lock`.

The lock is `flock(2)` on a file holding the holder's pid. The kernel drops it when the holder
dies, `kill -9` included, so a lock left by a killed run is simply taken by the next one; a
live holder makes a second `dreamteam run` (or `--resume`) fail at once, naming its pid. The
descriptor is not inherited by trial processes (Python opens files close-on-exec), so a
sandboxed child that outlives its run cannot keep the run locked. Readers (`show`, `report`,
`steer`) never take it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from dreamteam.errors import StoreError
from dreamteam.store.faults import os_fault

LOCK_NAME = "run.lock"


class RunLock:
    """The exclusive right to write one run, held until `release()` or the process's end."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK_NAME
        self._fd: int | None = None
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise os_fault(run_dir, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"process {holder}" if holder else "another process"
            raise StoreError(
                f"{run_dir} is being run by {who}: wait for it to end, or stop it "
                "(`dreamteam show` and `dreamteam report` read a run in progress)"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise os_fault(run_dir, exc) from exc
        self._fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:
            self.release()
            raise os_fault(run_dir, exc) from exc

    def release(self) -> None:
        """Give the run up (closing the descriptor drops the lock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
