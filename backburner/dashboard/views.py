"""What the dashboard pages show, built from the storage's monitoring queries.

Nothing here changes state. Functions return plain dataclasses and dicts that
the templates and the JSON API render. Times and durations are formatted here
too, so both show the same values.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from backburner import states
from backburner.job import Job
from backburner.records import HistoryEntry, JobRecord, RecurringRecord, ServerRecord
from backburner.recurring import MAX_ERRORS
from backburner.storage.base import Storage

#: A server whose last heartbeat is older than this may have died (seconds).
SERVER_ABORTED_THRESHOLD = 60.0
#: Maximum length of an argument preview in job lists, in characters.
PREVIEW_CHARS = 120
#: Maximum length of argument JSON shown on a job page before "Show all", in characters.
DETAIL_ARGS_CHARS = 10_000
#: Most continuations listed on a job's page.
CONTINUATIONS_SHOWN = 100

#: Page sizes offered in lists, and the default.
PAGE_SIZES = (10, 20, 50, 100, 500)
DEFAULT_PAGE_SIZE = 20

#: List pages by URL slug, in navigation order.
STATE_PAGES = {
    "enqueued": states.ENQUEUED, "scheduled": states.SCHEDULED,
    "processing": states.PROCESSING, "succeeded": states.SUCCEEDED,
    "failed": states.FAILED, "deleted": states.DELETED, "awaiting": states.AWAITING,
}
#: Actions that may be offered for jobs in each state.
STATE_ACTIONS = {
    states.ENQUEUED: ("requeue", "delete"),
    states.SCHEDULED: ("enqueue-now", "delete"),
    states.AWAITING: ("enqueue-now", "delete"),
    states.PROCESSING: ("requeue", "delete"),
    states.SUCCEEDED: ("requeue", "delete"),
    states.FAILED: ("requeue", "delete"),
    states.DELETED: ("requeue",),
}


# -- formatting ---------------------------------------------------------------------


def format_time(timestamp: float | None) -> str:
    """Format storage seconds as ``YYYY-MM-DD HH:MM:SS`` in UTC."""
    if timestamp is None:
        return ""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso_time(timestamp: float | None) -> str:
    """Format storage seconds as ISO 8601 in UTC, for ``<time datetime>`` and the API."""
    if timestamp is None:
        return ""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat()


def format_duration(seconds: float | None) -> str:
    """Format a duration for people: ``850 ms``, ``4.2 s``, ``3 min 5 s``, ``2 h 10 min``."""
    if seconds is None:
        return ""
    seconds = max(seconds, 0.0)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} d {hours % 24} h"


def format_relative(timestamp: float | None, now: float) -> str:
    """Format a time relative to ``now``: ``5 s ago`` or ``in 3 min 2 s``."""
    if timestamp is None:
        return ""
    delta = timestamp - now
    if abs(delta) < 1:
        return "just now"
    text = format_duration(abs(delta))
    return f"in {text}" if delta > 0 else f"{text} ago"


def display_value(value: Any) -> Any:
    """Return a JSON-friendly stand-in for a decoded argument JSON cannot hold."""
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, decimal.Decimal)):
        return str(value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return repr(value)


def arguments_json(job: Job, *, indent: int | None = 2) -> str:
    """Return the job's arguments as JSON text for display (tagged values as strings)."""
    if job.payload_error is not None:
        return ""
    value: dict[str, Any] = {"args": job.args}
    if job.kwargs:
        value["kwargs"] = job.kwargs
    return json.dumps(value, indent=indent, ensure_ascii=False, default=display_value)


def arguments_preview(job: Job) -> str:
    """Return a one-line call preview such as ``(1, "a", x=2)``, cut at PREVIEW_CHARS."""
    if job.payload_error is not None:
        return "(arguments do not decode)"
    parts = [json.dumps(arg, ensure_ascii=False, default=display_value) for arg in job.args]
    parts += [f"{key}={json.dumps(value, ensure_ascii=False, default=display_value)}"
              for key, value in job.kwargs.items()]
    text = "(" + ", ".join(parts) + ")"
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS - 1] + "…"


# -- job lists ----------------------------------------------------------------------


@dataclass
class JobRow:
    """One row of a job list."""

    id: str
    function: str
    queue: str
    state: str
    arguments: str
    created_at: float
    state_at: float
    retry_count: int
    attempt: int
    due_at: float | None = None
    parent_id: str | None = None
    continue_on: str | None = None
    server_id: str | None = None
    #: Why the Processing job's server may be gone, or None when it heartbeats.
    server_warning: str | None = None
    duration: float | None = None
    latency: float | None = None
    exception: str | None = None
    reason: str | None = None


def job_rows(storage: Storage, records: Sequence[JobRecord], now: float,
             servers: Sequence[ServerRecord] | None = None,
             threshold: float = SERVER_ABORTED_THRESHOLD) -> list[JobRow]:
    """Build list rows; the histories of final and failed jobs are read in one query."""
    heartbeats = {server.id: server.heartbeat_at for server in servers or ()}
    wanted = [record.id for record in records
              if record.state in (states.SUCCEEDED, states.FAILED, states.DELETED)
              and not record.history]
    histories = storage.get_histories(wanted) if wanted else {}
    return [_row(dataclasses.replace(record, history=histories[record.id])
                 if record.id in histories else record, now, heartbeats, threshold)
            for record in records]


def _row(record: JobRecord, now: float, heartbeats: dict[str, float],
         threshold: float) -> JobRow:
    job = Job.from_record(record)
    row = JobRow(id=record.id, function=record.function, queue=record.queue,
                 state=record.state, arguments=arguments_preview(job),
                 created_at=record.created_at, state_at=record.state_at,
                 retry_count=record.retry_count, attempt=record.attempt,
                 due_at=record.due_at, parent_id=record.parent_id,
                 continue_on=record.continue_on, server_id=record.server_id)
    current = _current_entry(record)
    if current is not None:
        row.reason = current.reason
        row.exception = _exception_line(current.data)
        duration = current.data.get("duration")
        row.duration = duration if isinstance(duration, (int, float)) else None
    if record.state == states.SUCCEEDED:
        row.latency = _latency(record)
    if record.state == states.PROCESSING:
        row.server_warning = server_warning(record.server_id, heartbeats, now, threshold)
    return row


def _current_entry(record: JobRecord) -> HistoryEntry | None:
    for entry in reversed(record.history):
        if entry.state == record.state:
            return entry
    return None


def _exception_line(data: dict[str, Any]) -> str | None:
    kind = data.get("exception_type")
    if not kind:
        return None
    message = str(data.get("exception_message") or "")
    line = f"{kind}: {message}" if message else str(kind)
    return line if len(line) <= 300 else line[:299] + "…"


def _latency(record: JobRecord) -> float | None:
    """Time from creation to the start of the last run."""
    for entry in reversed(record.history):
        if entry.state == states.PROCESSING and entry.at is not None:
            return entry.at - record.created_at
    return None


def server_warning(server_id: str | None, heartbeats: dict[str, float], now: float,
                   threshold: float = SERVER_ABORTED_THRESHOLD) -> str | None:
    """Return why a Processing job's server may have died, or None."""
    if server_id is None:
        return None
    heartbeat = heartbeats.get(server_id)
    if heartbeat is None:
        return "server is gone; the watchdog will requeue this job"
    if now - heartbeat > threshold:
        return f"no heartbeat for {format_duration(now - heartbeat)}; the server may have died"
    return None


def continuations_of(storage: Storage, job_id: str) -> tuple[list[JobRecord], bool]:
    """Return the first CONTINUATIONS_SHOWN continuations of ``job_id`` in any state,
    and whether there are more."""
    found = storage.list_continuations(job_id, limit=CONTINUATIONS_SHOWN + 1)
    return found[:CONTINUATIONS_SHOWN], len(found) > CONTINUATIONS_SHOWN


# -- job details --------------------------------------------------------------------


@dataclass
class TimelineEntry:
    """One state in a job's timeline, with how long the job stayed in it."""

    state: str
    at: float
    reason: str | None
    #: Seconds until the next state, or until now for the current one.
    duration: float | None
    current: bool
    exception_type: str | None = None
    exception_message: str | None = None
    traceback: str | None = None
    #: Other state data as (name, JSON text) pairs.
    details: list[tuple[str, str]] = field(default_factory=list)


EXCEPTION_KEYS = ("exception_type", "exception_message", "traceback")
TIME_KEYS = ("due_at",)


def timeline(record: JobRecord, now: float) -> list[TimelineEntry]:
    """Return the state history, newest first, with the time spent in each state."""
    entries = []
    history = list(record.history)
    for index, entry in enumerate(history):
        at = entry.at or 0.0
        is_last = index == len(history) - 1
        if not is_last:
            duration: float | None = (history[index + 1].at or at) - at
        else:
            duration = None if record.state in states.FINAL_STATES else now - at
        data = entry.data
        details = [(key, _detail_text(key, value)) for key, value in data.items()
                   if key not in EXCEPTION_KEYS]
        reason = entry.reason
        if reason and _repeats_exception(reason, data):
            reason = None
        entries.append(TimelineEntry(
            state=entry.state, at=at, reason=reason, duration=duration, current=is_last,
            exception_type=_text_or_none(data.get("exception_type")),
            exception_message=_text_or_none(data.get("exception_message")),
            traceback=_text_or_none(data.get("traceback")), details=details))
    entries.reverse()
    return entries


def _repeats_exception(reason: str, data: dict[str, Any]) -> bool:
    """Tell whether a reason only repeats the exception shown below it."""
    kind = str(data.get("exception_type") or "").rsplit(".", 1)[-1]
    message = str(data.get("exception_message") or "")
    return bool(kind) and reason.startswith(f"{kind}: {message[:200]}")


def _detail_text(key: str, value: Any) -> str:
    if key in TIME_KEYS and isinstance(value, (int, float)):
        return f"{format_time(value)} UTC"
    if key == "duration" and isinstance(value, (int, float)):
        return format_duration(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=repr)


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


# -- overview -----------------------------------------------------------------------


@dataclass
class Chart:
    """A history chart: succeeded and failed counts per bucket, as SVG polylines."""

    title: str
    labels: list[str]
    succeeded: list[int]
    failed: list[int]
    width: int = 460
    height: int = 150
    top: int = 0

    @property
    def succeeded_points(self) -> str:
        """SVG points of the succeeded line."""
        return self._points(self.succeeded)

    @property
    def failed_points(self) -> str:
        """SVG points of the failed line."""
        return self._points(self.failed)

    @property
    def axis_labels(self) -> list[tuple[float, str]]:
        """Up to seven (x, label) pairs for the time axis."""
        count = len(self.labels)
        step = max(1, count // 6)
        return [(self._x(index), self.labels[index]) for index in range(0, count, step)]

    def _x(self, index: int) -> float:
        count = max(len(self.labels) - 1, 1)
        return round(index * self.width / count, 1)

    def _points(self, values: list[int]) -> str:
        top = max(self.top, 1)
        return " ".join(f"{self._x(index)},{round(self.height - value * self.height / top, 1)}"
                        for index, value in enumerate(values))


def history_chart(storage: Storage, now: float, *, days: int) -> Chart:
    """Build the hourly chart of the last 24 hours (days=1) or the daily one of 7 days."""
    hour = 3600.0
    if days == 1:
        start = now - now % hour - 23 * hour
        starts = [start + index * hour for index in range(24)]
        width, label_format, title = hour, "%H:00", "Last 24 hours"
    else:
        day = 24 * hour
        start = now - now % day - (days - 1) * day
        starts = [start + index * day for index in range(days)]
        width, label_format, title = day, "%b %d", f"Last {days} days"

    series = {}
    for name in ("succeeded", "failed"):
        values = [0] * len(starts)
        for bucket, count in storage.counter_history(name, "hour", start):
            index = int((bucket - start) // width)
            if 0 <= index < len(values):
                values[index] += count
        series[name] = values

    labels = [dt.datetime.fromtimestamp(s, dt.UTC).strftime(label_format)
              for s in starts]
    top = max(series["succeeded"] + series["failed"] + [1])
    return Chart(title=title, labels=labels, succeeded=series["succeeded"],
                 failed=series["failed"], top=top)


def stats(storage: Storage) -> dict[str, Any]:
    """Return the numbers the overview shows and refreshes: states, queues, totals, servers,
    retries and recurring jobs by status."""
    records = storage.list_recurring()
    return {
        "now": storage.now(),
        "states": storage.count_jobs_by_state(),
        "queues": storage.queue_lengths(),
        "totals": storage.counter_totals(),
        "servers": len(storage.list_servers()),
        "retries": storage.count_retries(),
        "recurring": recurring_counts(records),
    }


# -- recurring jobs -----------------------------------------------------------------

#: Recurring job statuses, which partition all recurring jobs. "failing": the last
#: attempt to create its job failed and the scheduler will try again. "disabled":
#: it failed MAX_ERRORS times in a row and stays off until add_or_update is called.
RECURRING_STATUSES = ("active", "paused", "failing", "disabled")


def recurring_records(storage: Storage) -> list[RecurringRecord]:
    """Return every recurring job."""
    # NOTE: the storage contract has no count or paginated query for recurring
    # jobs, so counts and pages read them all. Applications rarely have more
    # than a few hundred.
    return storage.list_recurring()


def recurring_status(record: RecurringRecord) -> str:
    """Return one of RECURRING_STATUSES; disabled wins over paused, paused over failing."""
    if record.error_count >= MAX_ERRORS:
        return "disabled"
    if record.paused:
        return "paused"
    if record.error:
        return "failing"
    return "active"


def recurring_counts(records: Sequence[RecurringRecord]) -> dict[str, int]:
    """Count recurring jobs: ``total`` and one count per status."""
    counts = dict.fromkeys(RECURRING_STATUSES, 0)
    for record in records:
        counts[recurring_status(record)] += 1
    return {"total": len(records), **counts}
