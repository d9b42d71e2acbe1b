"""Background loops that keep running whatever the storage does."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

#: Maximum pause after repeated errors, in seconds.
MAX_BACKOFF = 10.0


class Loop(threading.Thread):
    """Run ``step`` every ``interval`` seconds until stopped.

    A step that raises is logged and retried with exponential backoff, so a
    storage outage never ends the loop. The backoff never exceeds
    ``interval``: after an outage every loop runs again within its interval,
    so a live server heartbeats well before others may judge it dead. ``step``
    may return a number of seconds to wait instead of ``interval`` (0 to run
    again at once).
    """

    def __init__(self, name: str, step: Callable[[], float | None], interval: float,
                 server_id: str, stopping: threading.Event) -> None:
        super().__init__(name=f"backburner-{name}", daemon=True)
        self.component = name
        self.step = step
        self.interval = interval
        self.server_id = server_id
        self.stopping = stopping

    def run(self) -> None:
        logger.debug("server %s: %s started", self.server_id, self.component)
        failures = 0
        while not self.stopping.is_set():
            try:
                pause = self.step()
                if failures:
                    logger.info("server %s: %s recovered after %d failed attempt(s)",
                                self.server_id, self.component, failures)
                failures = 0
            except Exception:
                failures += 1
                pause = min(backoff(failures), self.interval)
                # The traceback once per run of failures: an outage repeats the same one.
                logger.error("server %s: %s failed (attempt %d); retrying in %.1f s",
                             self.server_id, self.component, failures, pause,
                             exc_info=failures == 1)
            self.stopping.wait(self.interval if pause is None else pause)
        logger.debug("server %s: %s stopped", self.server_id, self.component)


def backoff(failures: int) -> float:
    """Return the pause after ``failures`` consecutive errors: 0.1 s doubling to 10 s, jittered."""
    return min(MAX_BACKOFF, 0.1 * 2 ** (failures - 1)) * random.uniform(0.5, 1.0)
