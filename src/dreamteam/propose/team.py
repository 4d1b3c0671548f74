"""The team of a run: the personas named, or a representative draw across the modes."""

from __future__ import annotations

import random

from dreamteam.config import RunConfig
from dreamteam.errors import ConfigError
from dreamteam.personas import Persona, PersonaLibrary
from dreamteam.records import Mode


def pick_team(library: PersonaLibrary, config: RunConfig) -> list[Persona]:
    """The run's personas: the ones named, or a representative draw across the modes.

    The seeds' two personas lead a drawn team, then the modes take turns.
    """
    if config.personas:
        return [library.get(slug) for slug in config.personas]
    modes = [Mode(m) for m in config.modes]
    rng = random.Random(config.seed)
    pools = {m: list(library.select(modes=[m])) for m in modes}
    for pool in pools.values():
        rng.shuffle(pool)
    team: list[Persona] = []
    if Mode.SAVANT in pools:
        for slug in ("archimedes", "aristotle"):
            if slug in library and len(team) < config.team_size:
                team.append(library.get(slug))
    cycle = [m for m in modes if m is not Mode.SAVANT] + (
        [Mode.SAVANT] if Mode.SAVANT in modes else []
    )
    while len(team) < config.team_size and any(pools.values()):
        for mode in cycle:
            pool = [p for p in pools[mode] if p not in team]
            if pool and len(team) < config.team_size:
                team.append(pool[0])
                pools[mode] = pool[1:]
    if not team:
        raise ConfigError("the team is empty: name personas with --personas or widen --modes")
    return team
