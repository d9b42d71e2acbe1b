"""Plain records that cross the storage contract.

Times are float seconds since the Unix epoch, on the storage's clock where it
has one. Job arguments stay encoded (``payload``) below the client and the
worker, so storage never decodes user data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backburner import states


@dataclass(frozen=True)
class HistoryEntry:
    """One state in a job's history; ``at`` is filled in by the storage."""

    state: str
    reason: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    at: float | None = None


@dataclass(frozen=True)
class NewJob:
    """A job to create, with its first state."""

    id: str
    function: str
    payload: str
    queue: str
    state: str
    reason: str | None = None
    #: Scheduled jobs: absolute due time, or a delay added to the storage clock.
    due_at: float | None = None
    delay: float | None = None
    #: Awaiting jobs: the parent and when to run ("succeeded", "finished", "deleted").
    parent_id: str | None = None
    continue_on: str | None = None
    #: Expiry applied if a continuation is deleted at once because its parent
    #: already ended in a state that does not trigger it.
    expire_in: float | None = None
    #: Jobs created by a recurring job: its id and the occurrence (None when
    #: triggered by hand). Storage admits one job per (recurring_id, occurrence).
    recurring_id: str | None = None
    occurrence: float | None = None


@dataclass(frozen=True)
class StateChange:
    """A compare-and-set request to move one job to ``state``.

    The change applies only if the job's current state is in ``expected``
    (any state when empty) and, when ``lease_token`` is set, only if the job is
    Processing under exactly that lease. ``traversed`` states are written to
    the history first, for example the Failed state that a retry replaced.
    """

    job_id: str
    state: str
    reason: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    expected: tuple[str, ...] = ()
    lease_token: str | None = None
    traversed: tuple[HistoryEntry, ...] = ()
    #: Scheduled: absolute due time, or a delay added to the storage clock.
    due_at: float | None = None
    delay: float | None = None
    #: Set the job's automatic retry count (None keeps it).
    retry_count: int | None = None
    #: Set the job's count of crash requeues (None keeps it).
    crash_count: int | None = None
    #: Final states: seconds until the job is removed (None: never).
    expire_in: float | None = None

    def allowed(self, current: str, lease_token: str | None) -> bool:
        """Return True if this change applies to a job in ``current`` state holding
        ``lease_token``: the compare-and-set check every backend makes."""
        if self.expected and current not in self.expected:
            return False
        if self.lease_token is not None and (
                current != states.PROCESSING or lease_token != self.lease_token):
            return False
        return self.state in states.TRANSITIONS[current]

    def __post_init__(self) -> None:
        if self.state == states.PROCESSING:
            raise ValueError(f"job {self.job_id}: only fetch_jobs moves a job to Processing, "
                             "because only a fetch gives it a lease")


@dataclass(frozen=True)
class JobRecord:
    """A job as stored."""

    id: str
    function: str
    payload: str
    queue: str
    state: str
    created_at: float
    state_at: float
    #: Times the job was fetched for performing (1 on its first run).
    attempt: int = 0
    #: Automatic retries scheduled so far.
    retry_count: int = 0
    #: Times the job was put back because its server died while performing it.
    crash_count: int = 0
    lease_token: str | None = None
    server_id: str | None = None
    due_at: float | None = None
    expire_at: float | None = None
    parent_id: str | None = None
    continue_on: str | None = None
    recurring_id: str | None = None
    occurrence: float | None = None
    history: tuple[HistoryEntry, ...] = ()


@dataclass(frozen=True)
class ServerRecord:
    """A server as announced, with its last heartbeat."""

    id: str
    queues: tuple[str, ...]
    workers: int
    started_at: float
    heartbeat_at: float
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recovery:
    """A job taken back from a dead server by the watchdog."""

    job_id: str
    server_id: str
    state: str


@dataclass(frozen=True)
class RecurringRecord:
    """A recurring job: a cron schedule in a time zone and the call it makes."""

    id: str
    cron: str
    #: IANA time zone name.
    tz: str
    function: str
    payload: str
    queue: str
    #: What happens to occurrences missed while no scheduler ran: "relaxed"
    #: (one job for all of them), "strict" (one job each) or "ignore" (none).
    misfire: str
    #: Next occurrence to fire; None when the expression has no future occurrence.
    next_at: float | None
    created_at: float = 0.0
    updated_at: float = 0.0
    paused: bool = False
    last_at: float | None = None
    last_job_id: str | None = None
    #: The last scheduling error; the job is disabled once ``error_count``
    #: reaches the scheduler's limit, until ``add_or_update`` is called again.
    error: str | None = None
    error_count: int = 0
    #: After an error: the scheduler tries again no earlier than this.
    retry_at: float | None = None
