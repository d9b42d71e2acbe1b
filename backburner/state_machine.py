"""The only code that decides a job's next state.

It elects the outcome of a run (Succeeded, a retry in Scheduled, Failed or
Deleted), builds the compare-and-set changes for manual actions, and applies
them through the storage. Backends apply each change atomically.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence
from typing import Any

from backburner import serialization, states
from backburner.records import HistoryEntry, JobRecord, StateChange
from backburner.retry import RetryPolicy
from backburner.storage.base import Storage

logger = logging.getLogger(__name__)

#: Maximum length of the exception message and traceback kept in a job's history, in characters.
MAX_MESSAGE_CHARS = 4_000
MAX_TRACEBACK_CHARS = 32_000
#: Results larger than this (encoded, in characters) are stored as a short repr.
MAX_RESULT_CHARS = 16_000


def safe_str(value: object) -> str:
    """Return ``str(value)`` as valid UTF-8 text: lone surrogates are escaped, and a
    placeholder replaces it when ``str`` raises (a hostile ``__str__``, an int too
    long to print)."""
    try:
        text = str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def exception_data(error: BaseException) -> dict[str, Any]:
    """Describe ``error`` for the state history: type, message and traceback."""
    kind = type(error)
    try:
        text = "".join(traceback.format_exception(error, limit=100))
    except Exception:
        text = "<traceback could not be formatted>"
    return {
        "exception_type": safe_str(f"{kind.__module__}.{kind.__qualname__}"),
        "exception_message": safe_str(error)[:MAX_MESSAGE_CHARS],
        "traceback": safe_str(text[-MAX_TRACEBACK_CHARS:]),
    }


def result_data(result: Any) -> dict[str, Any]:
    """Describe a job's return value for the Succeeded state."""
    if result is None:
        return {}
    try:
        encoded = serialization.dumps(result)
    except Exception:  # any value a job returns must not stop its outcome being stored
        encoded = None
    if encoded is not None and len(encoded) <= MAX_RESULT_CHARS:
        return {"result": encoded}
    try:
        return {"result_repr": repr(result)[:1_000]}
    except Exception:
        return {"result_repr": f"<unprintable {type(result).__name__}>"}


class StateMachine:
    """Elects and applies state changes; ``retention`` is how long final jobs are kept."""

    def __init__(self, storage: Storage, retention: float) -> None:
        self.storage = storage
        self.retention = retention

    def succeeded(self, job: JobRecord, duration: float, result: Any) -> StateChange:
        """Build the change that records a successful run."""
        data = {"duration": round(duration, 6), **result_data(result)}
        return StateChange(job.id, states.SUCCEEDED, None, data, expected=(states.PROCESSING,),
                           lease_token=job.lease_token, expire_in=self.retention)

    def failed(self, job: JobRecord, error: BaseException, policy: RetryPolicy | None,
               reason: str | None = None) -> StateChange:
        """Elect the outcome of a failed run: a retry, Failed, or Deleted.

        A retry records the Failed state in the history and then Scheduled, as
        Hangfire does, so the history shows every exception.
        """
        data = exception_data(error)
        reason = reason or f"{safe_str(type(error).__name__)}: {safe_str(error)[:200]}"
        failed = HistoryEntry(states.FAILED, reason, data)
        guard: dict[str, Any] = {"expected": (states.PROCESSING,), "lease_token": job.lease_token}

        if policy is not None and policy.should_retry(error, job.retry_count):
            number = job.retry_count + 1
            delay = policy.delay(number)
            return StateChange(job.id, states.SCHEDULED,
                               f"Retry attempt {number} of {policy.retries}: {reason}",
                               {"retry": number}, traversed=(failed,), delay=delay,
                               retry_count=number, **guard)
        if policy is not None and policy.on_exhausted == "delete" and policy.retries > 0:
            return StateChange(job.id, states.DELETED,
                               f"Retries exhausted ({policy.retries}); deleted as configured",
                               {}, traversed=(failed,), expire_in=self.retention, **guard)
        return StateChange(job.id, states.FAILED, reason, data, **guard)

    def released(self, job: JobRecord, reason: str) -> StateChange:
        """Build the change that puts an unfinished job back in its queue."""
        return StateChange(job.id, states.ENQUEUED, reason, {}, expected=(states.PROCESSING,),
                           lease_token=job.lease_token)

    def apply(self, changes: Sequence[StateChange]) -> list[bool]:
        """Apply changes in one storage transaction; True where each was applied."""
        return self.storage.change_states(changes)

    # -- manual actions ----------------------------------------------------

    def delete(self, job_id: str, reason: str = "Deleted by request") -> bool:
        """Move a job to Deleted from any other state."""
        change = StateChange(job_id, states.DELETED, reason,
                             expected=states.sources_of(states.DELETED),
                             expire_in=self.retention)
        return self.apply([change])[0]

    def requeue(self, job_id: str, reason: str = "Requeued by request") -> bool:
        """Move a job to Enqueued from any state, with fresh retry and crash counts.

        A running attempt's outcome is then discarded. The job gets its full
        number of automatic retries and crash requeues again, as a new job would.
        """
        change = StateChange(job_id, states.ENQUEUED, reason,
                             expected=states.sources_of(states.ENQUEUED),
                             retry_count=0, crash_count=0)
        return self.apply([change])[0]

    def enqueue_now(self, job_id: str, reason: str = "Enqueued by request") -> bool:
        """Move a Scheduled or Awaiting job to Enqueued at once."""
        change = StateChange(job_id, states.ENQUEUED, reason,
                             expected=(states.SCHEDULED, states.AWAITING))
        return self.apply([change])[0]
