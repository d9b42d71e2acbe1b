"""What a running job can see: its ids, attempt number and cancellation token."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from backburner.errors import BackburnerError


class JobCancelled(BackburnerError):
    """Raised by ``CancellationToken.raise_if_cancelled`` once the job should stop."""


class CancellationToken:
    """Set when a job should stop: its server shuts down, its timeout passed,
    or the job was deleted or requeued while it ran."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None

    @property
    def cancelled(self) -> bool:
        """True once cancellation was requested."""
        return self._event.is_set()

    def cancel(self, reason: str) -> None:
        """Request cancellation; the first reason is kept."""
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def raise_if_cancelled(self) -> None:
        """Raise JobCancelled if cancellation was requested."""
        if self._event.is_set():
            raise JobCancelled(self.reason or "job cancelled")

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep up to ``timeout`` seconds, waking early on cancellation; return ``cancelled``."""
        return self._event.wait(timeout)


@dataclass(frozen=True)
class JobContext:
    """Passed to a job function that declares a parameter annotated ``JobContext``."""

    job_id: str
    #: 1 on the first run; raised by every fetch, including retries and recoveries.
    attempt: int
    #: Automatic retries scheduled before this run.
    retry_count: int
    queue: str
    function: str
    server_id: str
    cancellation: CancellationToken
    logger: logging.Logger
