"""What the research loop tells a display while it runs."""

from __future__ import annotations

from dataclasses import dataclass

from dreamteam.budget import Spend


@dataclass(frozen=True)
class Event:
    """Progress for displays: what happened, to which candidate."""

    kind: str  # start | proposed | started | trial | generation | best | rescue | final
    candidate: str = ""
    persona: str = ""
    detail: str = ""
    loss: float | None = None
    generation: int = 0  # the generation under way (0: the baseline)
    spend: Spend | None = None  # the run's tokens, cost and minutes so far
