"""The public view of a job, as returned by ``Backburner.get_job``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from backburner import serialization
from backburner.errors import InvalidPayload
from backburner.records import JobRecord


@dataclass(frozen=True)
class StateRecord:
    """One entry of a job's state history."""

    state: str
    at: dt.datetime
    reason: str | None
    #: Details such as exception_type, exception_message and traceback for Failed.
    data: dict[str, Any]


@dataclass(frozen=True)
class Job:
    """A job: one call of a job function, with its current state and history."""

    id: str
    function: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    #: Current state name: "Enqueued", "Scheduled", "Awaiting", "Processing",
    #: "Succeeded", "Failed" or "Deleted".
    state: str
    created_at: dt.datetime
    state_changed_at: dt.datetime
    history: list[StateRecord]
    attempt: int
    retry_count: int
    crash_count: int
    server_id: str | None
    due_at: dt.datetime | None
    expire_at: dt.datetime | None
    parent_id: str | None
    continue_on: str | None
    #: The recurring job that created this job, and the occurrence it was
    #: created for (None when triggered by hand).
    recurring_id: str | None = None
    occurrence: dt.datetime | None = None
    #: Why the stored arguments could not be decoded, or None when they could.
    payload_error: str | None = None

    @classmethod
    def from_record(cls, record: JobRecord) -> Job:
        """Build the public job from a storage record, decoding its arguments."""
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        payload_error = None
        try:
            args, kwargs = decode_payload(record.payload)
        except InvalidPayload as exc:
            payload_error = str(exc)
        return cls(
            id=record.id, function=record.function, args=args, kwargs=kwargs,
            queue=record.queue, state=record.state, created_at=to_datetime(record.created_at),
            state_changed_at=to_datetime(record.state_at),
            history=[StateRecord(entry.state, to_datetime(entry.at or 0.0), entry.reason,
                                 dict(entry.data)) for entry in record.history],
            attempt=record.attempt, retry_count=record.retry_count,
            crash_count=record.crash_count, server_id=record.server_id,
            due_at=optional_datetime(record.due_at), expire_at=optional_datetime(record.expire_at),
            parent_id=record.parent_id, continue_on=record.continue_on,
            recurring_id=record.recurring_id, occurrence=optional_datetime(record.occurrence),
            payload_error=payload_error)


def encode_payload(args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> str:
    """Encode call arguments as the stored payload."""
    return serialization.dumps({"args": list(args), "kwargs": kwargs})


def decode_payload(payload: str) -> tuple[list[Any], dict[str, Any]]:
    """Decode a stored payload into (args, kwargs), raising InvalidPayload when malformed."""
    value = serialization.loads(payload)
    if not isinstance(value, dict) or set(value) != {"args", "kwargs"}:
        raise InvalidPayload("job data must be an object with exactly 'args' and 'kwargs'")
    args, kwargs = value["args"], value["kwargs"]
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise InvalidPayload("job data 'args' must be a list and 'kwargs' an object")
    return args, kwargs


#: Shown for a stored time that is not a valid timestamp (a row written by a
#: broken or hostile client), so that one bad row cannot break reading the rest.
INVALID_TIME = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def to_datetime(timestamp: float) -> dt.datetime:
    """Convert storage seconds to an aware UTC datetime (INVALID_TIME if out of range)."""
    try:
        return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return INVALID_TIME


def optional_datetime(timestamp: float | None) -> dt.datetime | None:
    """Like ``to_datetime``, passing None through."""
    return None if timestamp is None else to_datetime(timestamp)
