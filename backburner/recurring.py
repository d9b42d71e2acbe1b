"""Recurring jobs: cron schedules that create one job per occurrence.

``RecurringJobs`` is the API (``app.recurring``); ``RecurringScheduler`` is
the server component that fires due occurrences. Every server runs the
scheduler. They never fire an occurrence twice because each firing is a
compare-and-set on the stored next occurrence, and because storage admits
one job per (recurring id, occurrence).
"""

from __future__ import annotations

import builtins
import datetime as dt
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from backburner import states
from backburner.cron import CronSchedule, InvalidCronExpression, InvalidTimeZone
from backburner.errors import ConfigurationError, JobNotFound, JobNotRegistered
from backburner.ids import new_job_id
from backburner.job import optional_datetime
from backburner.records import NewJob, RecurringRecord
from backburner.registry import Registry
from backburner.storage.base import Storage

if TYPE_CHECKING:
    from backburner.app import Backburner

logger = logging.getLogger(__name__)

MISFIRE_MODES = ("relaxed", "strict", "ignore")
RECURRING_ID = re.compile(r"[^\x00-\x1f\x7f]{1,200}")

#: Occurrences that came due since this scheduler's previous pass began are
#: late, not missed, so they fire in every misfire mode: a slow pass never drops
#: a run. After a gap between passes longer than MAX_PASS_GAP seconds (the
#: server was frozen, or has just started), only occurrences at most
#: FRESH_WINDOW seconds old count as late; older ones were missed.
FRESH_WINDOW = 1.5
MAX_PASS_GAP = 15.0
#: Most occurrences one pass looks at for one recurring job.
MAX_CATCH_UP = 1_000
#: Scheduling errors in a row before a recurring job is disabled, and the
#: pause between attempts, in seconds.
MAX_ERRORS = 5
ERROR_RETRY_DELAY = 15.0


@dataclass(frozen=True)
class RecurringJob:
    """The public view of a recurring job."""

    id: str
    cron: str
    tz: str
    function: str
    queue: str
    misfire: str
    paused: bool
    next_at: dt.datetime | None
    last_at: dt.datetime | None
    last_job_id: str | None
    created_at: dt.datetime | None
    error: str | None
    #: True once scheduling failed MAX_ERRORS times in a row; add_or_update re-enables it.
    disabled: bool
    description: str

    @classmethod
    def from_record(cls, record: RecurringRecord) -> RecurringJob:
        """Build the public view from a storage record."""
        try:
            description = CronSchedule(record.cron, record.tz).describe()
        except (InvalidCronExpression, InvalidTimeZone) as exc:
            description = f"invalid: {exc}"
        return cls(
            id=record.id, cron=record.cron, tz=record.tz, function=record.function,
            queue=record.queue, misfire=record.misfire, paused=record.paused,
            next_at=optional_datetime(record.next_at), last_at=optional_datetime(record.last_at),
            last_job_id=record.last_job_id, created_at=optional_datetime(record.created_at),
            error=record.error, disabled=record.error_count >= MAX_ERRORS,
            description=description)


def parse_schedule(cron: str, tz: str) -> CronSchedule:
    """Return the schedule, raising ConfigurationError that names the bad value."""
    if not isinstance(cron, str) or not isinstance(tz, str):
        raise ConfigurationError(f"cron {cron!r} and tz {tz!r} must be strings")
    try:
        return CronSchedule(cron, tz)
    except (InvalidCronExpression, InvalidTimeZone) as exc:
        raise ConfigurationError(str(exc)) from None


class RecurringJobs:
    """Adds, triggers, pauses and removes recurring jobs; available as ``app.recurring``."""

    def __init__(self, app: Backburner) -> None:
        self.app = app

    def add_or_update(self, recurring_id: str, fn: Callable[..., Any] | str, cron: str, *,
                      args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
                      tz: str = "UTC", queue: str | None = None,
                      misfire: str = "relaxed") -> RecurringJob:
        """Create or update a recurring job that calls ``fn(*args, **kwargs)`` on ``cron``.

        ``tz`` is an IANA name (Windows ids such as "W. Europe Standard Time"
        are stored as their IANA equivalent). The first occurrence is the
        first one strictly after now. Calling this again with the same cron
        expression and time zone keeps the schedule; changing either
        recomputes the next occurrence. ``misfire`` decides what happens to
        occurrences missed while no server ran: "relaxed" (one job for all
        of them), "strict" (one job each) or "ignore" (none).
        """
        _check_id(recurring_id)
        schedule = parse_schedule(cron, tz)
        if misfire not in MISFIRE_MODES:
            raise ConfigurationError(
                f"invalid misfire mode {misfire!r}: use 'relaxed', 'strict' or 'ignore'")
        template = self.app.options(queue=queue).build(fn, list(args), dict(kwargs or {}))

        storage = self.app.storage
        next_at = _next_timestamp(schedule, storage.now())
        storage.save_recurring(RecurringRecord(
            id=recurring_id, cron=cron, tz=schedule.tz, function=template.function,
            payload=template.payload, queue=template.queue, misfire=misfire, next_at=next_at))
        logger.info("recurring job %s saved: %r in %s calls %s", recurring_id, cron, schedule.tz,
                    template.function)
        return self.get(recurring_id)

    def get(self, recurring_id: str) -> RecurringJob:
        """Return the recurring job, raising JobNotFound if there is none."""
        record = self.app.storage.get_recurring(recurring_id)
        if record is None:
            raise JobNotFound(f"recurring job {recurring_id!r} not found")
        return RecurringJob.from_record(record)

    def list(self) -> list[RecurringJob]:
        """Return every recurring job, ordered by id."""
        return [RecurringJob.from_record(r) for r in self.app.storage.list_recurring()]

    def trigger(self, recurring_id: str) -> str:
        """Enqueue the recurring job's call now and return the job id; the schedule is unchanged."""
        storage = self.app.storage
        record = storage.get_recurring(recurring_id)
        if record is None:
            raise JobNotFound(f"recurring job {recurring_id!r} not found")
        job = NewJob(id=new_job_id(), function=record.function, payload=record.payload,
                     queue=record.queue, state=states.ENQUEUED,
                     reason=f"Triggered by request from recurring job {recurring_id}",
                     recurring_id=recurring_id)
        if not storage.trigger_recurring(recurring_id, job):
            raise JobNotFound(f"recurring job {recurring_id!r} not found")
        return job.id

    def remove(self, recurring_id: str) -> bool:
        """Remove a recurring job; jobs it already created are unaffected. No error if absent."""
        return self.app.storage.remove_recurring(recurring_id)

    def pause(self, recurring_id: str) -> None:
        """Stop creating jobs until ``resume``; raises JobNotFound if absent."""
        if not self.app.storage.set_recurring_paused(recurring_id, True, None):
            raise JobNotFound(f"recurring job {recurring_id!r} not found")

    def resume(self, recurring_id: str) -> None:
        """Create jobs again from the next occurrence after now; occurrences missed while
        paused do not fire. Raises JobNotFound if absent."""
        storage = self.app.storage
        record = storage.get_recurring(recurring_id)
        if record is None:
            raise JobNotFound(f"recurring job {recurring_id!r} not found")
        next_at = _next_timestamp(parse_schedule(record.cron, record.tz), storage.now())
        if not storage.set_recurring_paused(recurring_id, False, next_at):
            raise JobNotFound(f"recurring job {recurring_id!r} not found")

    def preview(self, recurring_id: str, count: int = 5) -> builtins.list[dt.datetime]:
        """Return the next ``count`` occurrences from now, in the job's time zone."""
        job = self.get(recurring_id)
        now = dt.datetime.fromtimestamp(self.app.storage.now(), dt.timezone.utc)
        return parse_schedule(job.cron, job.tz).occurrences(now, count)


class RecurringScheduler:
    """Fires due occurrences of recurring jobs; one per server."""

    def __init__(self, storage: Storage, server_id: str,
                 registry: Registry | None = None) -> None:
        self.storage = storage
        self.server_id = server_id
        self.registry = registry
        #: Storage time at which the previous pass began.
        self.last_pass_at: float | None = None

    def run_once(self) -> int:
        """Fire every due recurring job once; return the number of jobs created."""
        started = self.storage.now()
        late_since = started - FRESH_WINDOW
        if self.last_pass_at is not None and started - self.last_pass_at <= MAX_PASS_GAP:
            late_since = min(late_since, self.last_pass_at)

        created = 0
        for record in self.storage.due_recurring(limit=100, max_errors=MAX_ERRORS):
            try:
                created += self._fire(record, late_since)
            except Exception as exc:  # one bad recurring job must not stop the others
                self._record_error(record, exc)
        self.last_pass_at = started
        return created

    def _fire(self, record: RecurringRecord, late_since: float) -> int:
        assert record.next_at is not None
        if self.registry is not None and self.registry.get(record.function) is None:
            raise JobNotRegistered(
                f"job function {record.function!r} is not registered in this server's app")
        schedule = CronSchedule(record.cron, record.tz)
        now = self.storage.now()
        due, next_at = _due_occurrences(schedule, record.next_at, now, record.misfire)
        chosen = choose_occurrences(due, late_since, record.misfire)

        jobs = [NewJob(id=new_job_id(), function=record.function, payload=record.payload,
                       queue=record.queue, state=states.ENQUEUED,
                       reason=f"Recurring job {record.id}: occurrence "
                              f"{dt.datetime.fromtimestamp(at, dt.timezone.utc).isoformat()}",
                       recurring_id=record.id, occurrence=at)
                for at in chosen]
        if not self.storage.fire_recurring(record.id, record.next_at, jobs, next_at):
            return 0  # another server fired it first, or it was paused or removed
        if len(due) > len(chosen):
            logger.info("recurring job %s: %d occurrence(s) missed, %d fired (%s misfire mode)",
                        record.id, len(due), len(chosen), record.misfire)
        for job in jobs:
            logger.info("recurring job %s created job %s on server %s", record.id, job.id,
                        self.server_id)
        return len(jobs)

    def _record_error(self, record: RecurringRecord, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}"
        disabled = record.error_count + 1 >= MAX_ERRORS
        logger.error("recurring job %s failed to schedule on server %s (%s)%s", record.id,
                     self.server_id, message,
                     "; disabled until add_or_update is called again" if disabled
                     else f"; retrying in {ERROR_RETRY_DELAY:.0f} s")
        self.storage.record_recurring_error(record.id, message[:2_000],
                                            self.storage.now() + ERROR_RETRY_DELAY)


def _due_occurrences(schedule: CronSchedule, next_at: float, now: float,
                     misfire: str) -> tuple[list[float], float | None]:
    """Return the occurrences from ``next_at`` up to ``now`` and the next one to fire.

    At most MAX_CATCH_UP are returned. In strict mode the rest fire in the
    next passes; in the other modes the schedule skips to after ``now``.
    """
    due: list[float] = []
    cursor: float | None = next_at
    while cursor is not None and cursor <= now:
        if len(due) == MAX_CATCH_UP:
            return due, cursor if misfire == "strict" else _next_timestamp(schedule, now)
        due.append(cursor)
        cursor = _next_timestamp(schedule, cursor)
    return due, cursor


def choose_occurrences(due: list[float], late_since: float, misfire: str) -> list[float]:
    """Pick which due occurrences get a job, by misfire mode.

    Occurrences after ``late_since`` are merely late and always fire. Older
    ones were missed: "strict" fires all of them, "relaxed" fires one job in
    place of all the due occurrences (stamped with the latest), and "ignore"
    drops them.
    """
    late = [at for at in due if at > late_since]
    if misfire == "strict" or len(late) == len(due):
        return list(due)
    if misfire == "relaxed":
        return [due[-1]]
    return late


def _next_timestamp(schedule: CronSchedule, after: float) -> float | None:
    found = schedule.next_after(dt.datetime.fromtimestamp(after, dt.timezone.utc))
    return None if found is None else found.timestamp()


def _check_id(recurring_id: object) -> None:
    if not isinstance(recurring_id, str) or not RECURRING_ID.fullmatch(recurring_id):
        raise ConfigurationError(
            f"invalid recurring job id {recurring_id!r}: use 1 to 200 printable characters")
