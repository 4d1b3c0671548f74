"""The seeds of a run and the baseline's id: fixed by the config, so a resumed run, the
report and the tests all agree on them."""

from __future__ import annotations

from dreamteam.config import RunConfig
from dreamteam.records import SeedPlan

BASE_SEED = 1337


BASELINE_ID = "g0-baseline"


def seed_plan(config: RunConfig) -> SeedPlan:
    """The seeds of a run: one to screen, `seeds` to confirm, `seeds` fresh ones at the end,
    one more to recheck a parent before it leads a second generation, and then the extra
    seeds a close call may grow to (`max_seeds` in all; after the others, so that a run's
    other seeds do not depend on it)."""
    confirm = tuple(BASE_SEED + 1 + i for i in range(config.seeds))
    final = tuple(BASE_SEED + 1 + config.seeds + i for i in range(config.seeds))
    recheck = BASE_SEED + 1 + 2 * config.seeds
    extra = tuple(recheck + 1 + i for i in range(max(0, config.max_seeds - config.seeds)))
    return SeedPlan(BASE_SEED, confirm, final, recheck, extra)
