"""Run the `dreamteam` command in this process, through its real entry point (`main`, which
turns a DreamteamError into one line on stderr and exit 1): what a user sees, without the
seconds a fresh interpreter takes to import torch."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest

from dreamteam.cli import main


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str


def dreamteam(capsys: pytest.CaptureFixture[str], *args: str) -> Done:
    """`dreamteam ARGS` in-process: its exit code, stdout and stderr."""
    capsys.readouterr()
    argv = sys.argv
    sys.argv = ["dreamteam", *args]
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return Done(code, captured.out, captured.err)
