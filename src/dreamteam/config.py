"""Configuration as plain values: where things live, and how a run is set up.

Only the CLI reads the environment; it builds these dataclasses and passes them down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs

DEFAULT_HOME = Path(platformdirs.user_data_dir("dreamteam", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """Where caches and runs live, and where data comes from."""

    home: Path  # data cache and, by default, runs
    mirror: Path | None  # a local copy of the data (DREAMTEAM_DATA_MIRROR): no network

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"


def settings_from_env(environ: Mapping[str, str]) -> Settings:
    """Settings from DREAMTEAM_HOME and DREAMTEAM_DATA_MIRROR."""
    home = (
        Path(environ["DREAMTEAM_HOME"]).expanduser()
        if environ.get("DREAMTEAM_HOME")
        else DEFAULT_HOME
    )
    mirror = environ.get("DREAMTEAM_DATA_MIRROR")
    return Settings(home=home, mirror=Path(mirror).expanduser().resolve() if mirror else None)
