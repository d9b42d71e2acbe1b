"""Automatic retries: which failures are retried, and after how long."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from backburner.errors import ConfigurationError

#: Retries after the first failed run, as in Hangfire.
DEFAULT_RETRIES = 10

ON_EXHAUSTED = ("fail", "delete")
#: Maximum retry delay accepted: 100 years, in seconds.
MAX_DELAY = 100 * 365.25 * 24 * 3600


def default_delay(retry_number: int) -> float:
    """Return the delay in seconds before retry ``retry_number`` (1-based).

    ``(n - 1)**4 + 15 + random(0..29) * n``: 15 to 44 s before the first
    retry, growing to about 1 h 55 min before the tenth.
    """
    return float((retry_number - 1) ** 4 + 15 + random.randint(0, 29) * retry_number)


@dataclass(frozen=True)
class RetryPolicy:
    """How a job function's failures are retried.

    ``delays`` is a list of seconds (the last value repeats) or a function of
    the 1-based retry number; None uses ``default_delay``. An exception is
    retried when it is an instance of ``retry_on`` and not of ``dont_retry_on``.
    When retries run out the job stays Failed, or is Deleted with
    ``on_exhausted="delete"``.
    """

    retries: int = DEFAULT_RETRIES
    delays: Sequence[float] | Callable[[int], float] | None = None
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    dont_retry_on: tuple[type[BaseException], ...] = ()
    on_exhausted: str = "fail"

    def __post_init__(self) -> None:
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ConfigurationError(
                f"invalid retries {self.retries!r}: use a whole number of retries, 0 or more")
        if self.on_exhausted not in ON_EXHAUSTED:
            raise ConfigurationError(
                f"invalid on_exhausted {self.on_exhausted!r}: use 'fail' or 'delete'")
        if isinstance(self.delays, Sequence) and (not self.delays or any(
                isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 <= d <= MAX_DELAY
                for d in self.delays)):
            raise ConfigurationError(
                f"invalid retry delays {self.delays!r}: use a non-empty list of seconds "
                "from 0 to 100 years")

    def should_retry(self, error: BaseException, retries_done: int) -> bool:
        """Return True when ``error`` after ``retries_done`` retries earns another retry."""
        if retries_done >= self.retries:
            return False
        return isinstance(error, self.retry_on) and not isinstance(error, self.dont_retry_on)

    def delay(self, retry_number: int) -> float:
        """Return the delay in seconds before retry ``retry_number`` (1-based)."""
        if self.delays is None:
            return default_delay(retry_number)
        if callable(self.delays):
            delay = float(self.delays(retry_number))
            if not 0 <= delay <= MAX_DELAY:
                raise ValueError(f"retry delay function returned {delay!r}; expected seconds "
                                 "from 0 to 100 years")
            return delay
        return float(self.delays[min(retry_number, len(self.delays)) - 1])
