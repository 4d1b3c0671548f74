"""Shared fixtures: the data mirror beside the repository, and an isolated DREAMTEAM_HOME."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from dreamteam.config import settings_from_env
from dreamteam.harness.sandbox.forks import ForkServer
from dreamteam.harness.sandbox.launcher import probe_isolation
from dreamteam.harness.sandbox.limits import Isolation, StartMethod

REPO = Path(__file__).resolve().parents[1]


def _mirror() -> Path | None:
    env = os.environ.get("DREAMTEAM_DATA_MIRROR")
    for candidate in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if (candidate / "shakespeare" / "val.bin").is_file():
            return candidate.resolve()
    return None


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The local data mirror (../shared/data, or DREAMTEAM_DATA_MIRROR)."""
    path = _mirror()
    if path is None:
        pytest.skip("no data mirror: set DREAMTEAM_DATA_MIRROR to a copy of shared/data")
    return path


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Isolation]:
    """This machine's isolation as a run uses it: stages forked from a template unless
    DREAMTEAM_SANDBOX_START=spawn (so the hostile suite runs on the product's default)."""
    isolation = probe_isolation()
    if settings_from_env(os.environ).sandbox_start is not StartMethod.FORK:
        yield isolation
        return
    forks = ForkServer(isolation)
    yield replace(isolation, forks=forks)
    forks.close()


@pytest.fixture
def dt_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mirror: Path) -> Path:
    """A fresh DREAMTEAM_HOME and the mirror, for commands run in this process."""
    home = tmp_path / "home"
    monkeypatch.setenv("DREAMTEAM_HOME", str(home))
    monkeypatch.setenv("DREAMTEAM_DATA_MIRROR", str(mirror))
    return home


@contextmanager
def tmpfs(point: Path, size: str) -> Iterator[Path]:
    """A tmpfs of our own at `point` (root only; the test is skipped where mounting is not
    allowed), unmounted afterwards."""
    point.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()[:200]}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)
