"""What every command needs: settings from the environment, a console, shared options."""

from __future__ import annotations

import os

from rich.console import Console

from dreamteam.config import Settings, settings_from_env

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def settings() -> Settings:
    """Settings from this process's environment (the only place the library's env is read)."""
    return settings_from_env(os.environ)
