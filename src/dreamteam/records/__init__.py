"""The records that pass between stages, and their enums.

One package so that every stage speaks the same types: a candidate as proposed and stored, a
trial's result, a generation's allocation, what a change did (from its code), the run's
summary and statistics, its spend and the events a display is told. Pure data: nothing here
imports another dreamteam module outside this package.
"""

from dreamteam.records.core import (
    DISK_FULL,
    MODULE,
    AllocationPolicy,
    CandidateKind,
    CandidateRecord,
    ChangeKind,
    ChangeRecord,
    Edit,
    Event,
    Mode,
    Move,
    ObjectiveName,
    Spend,
    StatTest,
    Status,
    TrialRecord,
    TrialResult,
    mean_figures,
)
from dreamteam.records.run import (
    Allocation,
    GenerationRecord,
    KeptChange,
    RankCorrelation,
    Ranking,
    RunInfo,
    RunSummary,
    SeedPlan,
    SteeringVersion,
)

__all__ = [
    "DISK_FULL",
    "MODULE",
    "Allocation",
    "AllocationPolicy",
    "CandidateKind",
    "CandidateRecord",
    "ChangeKind",
    "ChangeRecord",
    "Edit",
    "Event",
    "GenerationRecord",
    "KeptChange",
    "Mode",
    "Move",
    "ObjectiveName",
    "RankCorrelation",
    "Ranking",
    "RunInfo",
    "RunSummary",
    "SeedPlan",
    "Spend",
    "StatTest",
    "Status",
    "SteeringVersion",
    "TrialRecord",
    "TrialResult",
    "mean_figures",
]
