"""The harness's own faults, as one tree the CLI catches.

    DreamteamError
     ├── ConfigError    a config file, option or environment value is wrong
     ├── DataError      the data set is missing, corrupt or cannot be fetched
     ├── TaskError      a task cannot be found or is malformed
     ├── PersonaError   a persona file is malformed or unknown
     ├── AgentError     an LLM backend failed after its retries
     ├── SandboxError   the sandbox itself could not start a candidate
     └── StoreError     the run store cannot be read or written
          └── DiskFullError   no space left for the run: free some, then resume

A candidate that fails is not an error: it is a Status (see records.py). Each message is one
line the user can act on.
"""


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


class AgentError(DreamteamError):
    """An LLM backend failed after its retries (bad key, unknown model, outage)."""


class SandboxError(DreamteamError):
    """The sandbox itself could not start a candidate."""


class StoreError(DreamteamError):
    """The run store cannot be read or written."""


class DiskFullError(StoreError):
    """The disk under a run is full: the run stops; it resumes once space is freed."""
