"""The harness's own faults, as one tree the CLI catches.

    DreamteamError
     ├── ConfigError    a config file, option or environment value is wrong
     ├── DataError      the data set is missing, corrupt or cannot be fetched
     ├── TaskError      a task cannot be found or is malformed
     ├── PersonaError   a persona file is malformed or unknown
     ├── AgentError     an LLM backend failed after its retries (its `fault` says how)
     │    ├── AgentSetupError   a model cannot be used at all (key, model name, URL)
     │    └── AgentOutageError  every agent call of a generation failed
     ├── SandboxError   the sandbox itself could not start a candidate
     ├── StoreError     the run store cannot be read or written
     │    └── DiskFullError   no space left for the run: free some, then resume
     └── OverwriteError a command would overwrite files the user did not ask it to

A candidate that fails is not an error: it is a Status (see dreamteam.records). Each message is one
line the user can act on.
"""

from enum import StrEnum


class DreamteamError(Exception):
    """Base of every error the harness reports to the user."""


class ConfigError(DreamteamError):
    """A config file, option or environment value is wrong."""


class DataError(DreamteamError):
    """The data set is missing, corrupt or cannot be fetched."""


class TaskError(DreamteamError):
    """A task cannot be found or is malformed."""


class PersonaError(DreamteamError):
    """A persona file is malformed or unknown."""


class AgentFault(StrEnum):
    """How an agent call failed, in one vocabulary across providers (runs count them by it)."""

    CREDENTIALS = "credentials"  # 401/403: the key is missing, wrong or not allowed
    NOT_FOUND = "not found"  # 404: the model name or the endpoint
    REJECTED = "rejected"  # another refusal that waiting will not cure (400, quota, ...)
    UNREACHABLE = "unreachable"  # no connection to the server
    TIMEOUT = "timeout"  # no complete answer in time
    RATE_LIMITED = "rate limited"  # 429 past every retry
    SERVER_ERROR = "server error"  # 5xx or a broken connection past every retry
    BAD_ANSWER = "bad answer"  # an answer came, but not one the backend can read
    OTHER = "other"


class AgentError(DreamteamError):
    """An LLM backend failed after its retries (bad key, unknown model, outage).

    `fault` says how; `raw` keeps the provider's answer (escaped) when one came but could not
    be read, so the run stores it and a resumed run does not ask again.
    """

    def __init__(self, message: str, fault: AgentFault = AgentFault.OTHER, raw: str = ""):
        super().__init__(message)
        self.fault = fault
        self.raw = raw


class AgentSetupError(AgentError):
    """A model cannot be used at all: found by a tiny request before the run spends compute."""


class AgentOutageError(AgentError):
    """Every agent call of a generation failed: a run that asked nobody is not a result."""


class SandboxError(DreamteamError):
    """The sandbox itself could not start a candidate."""


class StoreError(DreamteamError):
    """The run store cannot be read or written."""


class DiskFullError(StoreError):
    """The disk under a run is full: the run stops; it resumes once space is freed."""


class OverwriteError(DreamteamError):
    """A command would overwrite existing files without `--force`."""
