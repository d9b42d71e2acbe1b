"""Rows and previews for the recurring jobs pages and API, built from the storage's queries.

Nothing here changes state. Times are storage seconds. The templates and the
API format them, and ``local_time`` writes them on the recurring job's own
wall clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from backburner.cron import CronSchedule, InvalidCronExpression, InvalidTimeZone
from backburner.dashboard.views import recurring_status
from backburner.records import RecurringRecord
from backburner.recurring import RecurringJob
from backburner.storage.base import Storage

#: Occurrences listed on a recurring job's page.
PREVIEW_COUNT = 5


@dataclass
class RecurringRow:
    """One recurring job as the list, the details page and the API show it."""

    id: str
    cron: str
    #: The cron expression in plain English, or why it is invalid.
    description: str
    tz: str
    function: str
    queue: str
    misfire: str
    #: One of views.RECURRING_STATUSES.
    status: str
    paused: bool
    disabled: bool
    error: str | None
    next_at: float | None
    last_at: float | None
    created_at: float
    last_job_id: str | None
    #: State of the last job created, or None when there is none or it expired.
    last_job_state: str | None

    @property
    def never_fires(self) -> bool:
        """True when the expression has no future occurrence and nothing pauses it."""
        return self.next_at is None and not self.paused and not self.disabled

    @property
    def next_local(self) -> str:
        """The next run on the recurring job's wall clock."""
        return local_time(self.next_at, self.tz)

    @property
    def last_local(self) -> str:
        """The last run on the recurring job's wall clock."""
        return local_time(self.last_at, self.tz)


def recurring_rows(storage: Storage, records: Sequence[RecurringRecord]) -> list[RecurringRow]:
    """Build rows; each row reads its last job's state (one query per row)."""
    rows = []
    for record in records:
        last_state = None
        if record.last_job_id:
            last_job = storage.get_job(record.last_job_id, history=False)
            last_state = None if last_job is None else last_job.state
        rows.append(_row(record, last_state))
    return rows


def _row(record: RecurringRecord, last_job_state: str | None) -> RecurringRow:
    public = RecurringJob.from_record(record)
    return RecurringRow(
        id=record.id, cron=record.cron, description=public.description, tz=record.tz,
        function=record.function, queue=record.queue, misfire=record.misfire,
        status=recurring_status(record), paused=record.paused, disabled=public.disabled,
        error=record.error, next_at=record.next_at, last_at=record.last_at,
        created_at=record.created_at, last_job_id=record.last_job_id,
        last_job_state=last_job_state)


def local_time(timestamp: float | None, tz: str) -> str:
    """Format storage seconds on the wall clock of ``tz``, such as ``2025-03-30 09:00:00 CEST``.

    An unknown zone falls back to UTC, labelled as such.
    """
    if timestamp is None:
        return ""
    return dt.datetime.fromtimestamp(timestamp, _zone(tz)).strftime("%Y-%m-%d %H:%M:%S %Z")


def local_iso(timestamp: float, tz: str) -> str:
    """Format storage seconds as ISO 8601 with the UTC offset of ``tz`` (UTC if unknown)."""
    return dt.datetime.fromtimestamp(timestamp, _zone(tz)).isoformat()


def _zone(tz: str) -> dt.tzinfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder, a long name
        return dt.UTC


@dataclass
class Occurrence:
    """One upcoming run in a preview."""

    at: float
    #: On the recurring job's wall clock, with the UTC offset.
    local: str


def preview(row: RecurringRow, now: float,
            count: int = PREVIEW_COUNT) -> tuple[list[Occurrence], str | None]:
    """Return the next ``count`` occurrences after ``now``, or an empty list and why."""
    try:
        schedule = CronSchedule(row.cron, row.tz)
    except (InvalidCronExpression, InvalidTimeZone) as exc:
        return [], str(exc)
    after = dt.datetime.fromtimestamp(now, dt.UTC)
    found = schedule.occurrences(after, count)
    return [Occurrence(at=when.timestamp(), local=when.strftime("%Y-%m-%d %H:%M:%S %Z (UTC%z)"))
            for when in found], None
