"""Enums shared by several stages."""

from enum import StrEnum


class Status(StrEnum):
    """How a candidate's evaluation ended: exactly one per candidate."""

    OK = "ok"
    INVALID = "invalid"  # rejected by a static check or the run contract
    CRASHED = "crashed"  # raised, exited non-zero, or died by a signal
    TIMEOUT = "timeout"
    OOM = "oom"
    NAN = "nan"
    CHEATING = "cheating"  # failed an integrity probe


class Mode(StrEnum):
    """The three kinds of persona."""

    SAVANT = "savant"  # historical scientists and thinkers
    COLLABORATOR = "collaborator"  # research roles
    SPECIALIST = "specialist"  # mathematical fields
