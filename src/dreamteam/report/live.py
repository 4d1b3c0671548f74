"""`<run>/report.html` kept current while the run goes on, for a browser left open on it.

The search calls `trial_stored()` each time a trial is in the store. Rebuilding the page of a
run of about forty candidates from nothing takes seconds on a small CPU, most of it drawing
each candidate's training curve and highlighting its diff: a live rebuild draws only the
curves and diffs it has not drawn yet (about 4x cheaper). A rebuild waits at least `interval` seconds after the last one and at least `COST_SHARE`
times as long as the last one took: the report takes at most about 1/COST_SHARE of the
run's time. The page is always rebuilt once more at the end (`final()`), without the reload.

A page that cannot be written (a read-only run folder, a full disk, a bug in rendering) costs
one warning line and never stops the run: the run's store, not its page, is the record.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dreamteam.report.build import Drawn, write_report
from dreamteam.store import RunStore

REPORT_NAME = "report.html"
INTERVAL = 30.0  # seconds between rebuilds at the least
COST_SHARE = 20  # a rebuild waits at least this many times as long as the last one took


class LiveReport:
    """Rebuilds one run's report.html as trials finish, throttled by its own cost."""

    def __init__(
        self,
        store: RunStore,
        warn: Callable[[str], None],
        *,
        interval: float | None = None,  # default: INTERVAL
        clock: Callable[[], float] = time.monotonic,
    ):
        self.store, self.warn, self.clock = store, warn, clock
        self.interval = INTERVAL if interval is None else interval
        self.path = store.run_dir / REPORT_NAME
        self.rebuilds = 0
        self._last = clock()  # the first page one interval into the run: a short run needs none
        self._took = 0.0
        self._warned = False
        self._drawn = Drawn()  # curve plots and highlighted diffs: each drawn once

    @property
    def due(self) -> bool:
        """Whether enough time has passed since the last rebuild (see the module's docstring)."""
        return self.clock() - self._last >= max(self.interval, COST_SHARE * self._took)

    def trial_stored(self) -> None:
        """A trial is in the store: rebuild the live page if one is due."""
        if self.due:
            self._rebuild(live=True)

    def final(self) -> None:
        """The run has ended: the last page, which no longer reloads itself."""
        self._rebuild(live=False)

    def _rebuild(self, *, live: bool) -> None:
        start = self.clock()
        try:
            write_report(self.store, self.path, live=live, drawn=self._drawn)
            self.rebuilds += 1
        except Exception as exc:  # a full disk or a bug in rendering: the run goes on
            if not self._warned:  # one line, not one per trial
                self._warned = True
                detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
                self.warn(
                    f"{self.path} not updated ({type(exc).__name__}: {detail}); the run goes on"
                )
        finally:
            self._last = self.clock()
            self._took = self._last - start
