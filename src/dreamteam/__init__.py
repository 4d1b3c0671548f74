"""dreamteam: a team of persona agents doing machine-learning research, evaluated honestly."""

from dreamteam.errors import (
    AgentError,
    ConfigError,
    DataError,
    DreamteamError,
    PersonaError,
    SandboxError,
    StoreError,
    TaskError,
)
from dreamteam.records import Mode, Status

__version__ = "0.1.0"

__all__ = [
    "AgentError",
    "ConfigError",
    "DataError",
    "DreamteamError",
    "Mode",
    "PersonaError",
    "SandboxError",
    "Status",
    "StoreError",
    "TaskError",
    "__version__",
]
