"""The storage contract: every backend implements this class in full.

The methods are domain operations, not a key-value layer, so that each
backend can do each one in a single atomic step (one transaction, one
statement or one script). The conformance suite in ``tests/storage`` runs
the same tests against every backend.

Rules every backend follows:

- Every state change is a compare-and-set: on the current state and, for
  changes guarded by a lease token, on the lease. A change that loses the race
  returns False and writes nothing.
- A change that enters a state appends a history entry in the same step.
  Entering Succeeded, Failed or Deleted adds one to that counter (totals and
  the per-minute and per-hour history). A retry elected from a failure
  enters Scheduled, so it is not counted as failed.
- A job entering a final state releases its awaiting continuations in the
  same step, as ``states.continuation_outcome`` decides, and so on down the
  chain.
- Times come from ``now()``: the database clock where there is one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from backburner.records import (
    HistoryEntry,
    JobRecord,
    NewJob,
    Recovery,
    RecurringRecord,
    ServerRecord,
    StateChange,
)


class Storage(ABC):
    """Abstract storage; see the module docstring for the rules."""

    # -- clock and lifecycle ---------------------------------------------

    @abstractmethod
    def now(self) -> float:
        """Return the storage clock as seconds since the Unix epoch."""

    @abstractmethod
    def close(self) -> None:
        """Release connections. Safe to call twice."""

    def describe(self) -> str:
        """Return a short description for logs, without secrets."""
        return type(self).__name__

    # -- jobs --------------------------------------------------------------

    @abstractmethod
    def create_jobs(self, jobs: Sequence[NewJob], *, connection: object | None = None) -> None:
        """Create jobs with their first state and history entry, all or none.

        An Awaiting job whose parent is already final is moved on at once;
        a missing parent raises JobNotFound and creates nothing.
        ``connection`` is an application's own database connection to write
        through, uncommitted (transactional enqueue). Backends without it
        raise ConfigurationError when one is given.
        """

    @abstractmethod
    def get_job(self, job_id: str, *, history: bool = True) -> JobRecord | None:
        """Return the job, with its state history when asked, or None."""

    @abstractmethod
    def fetch_jobs(self, queues: Sequence[str], server_id: str, limit: int,
                   wait: float = 0.0) -> list[JobRecord]:
        """Claim up to ``limit`` enqueued jobs for ``server_id``.

        Queues are searched in the given order and each queue in FIFO order.
        Each claimed job moves to Processing with a fresh lease token and its
        attempt number raised by one. The claim renews the heartbeat of
        ``server_id`` if that server is registered, in the same step. When nothing is enqueued, waits up to
        ``wait`` seconds for a job to arrive (or for ``interrupt``).
        """

    @abstractmethod
    def interrupt(self) -> None:
        """Wake every ``fetch_jobs`` call that is waiting in this process."""

    @abstractmethod
    def change_states(self, changes: Sequence[StateChange]) -> list[bool]:
        """Apply compare-and-set changes in one transaction; True where applied."""

    @abstractmethod
    def enqueue_due_jobs(self, limit: int) -> list[str]:
        """Move Scheduled jobs whose due time has passed to Enqueued; return their ids."""

    @abstractmethod
    def current_leases(self, tokens: Sequence[str]) -> set[str]:
        """Return the tokens among ``tokens`` that still hold their job."""

    @abstractmethod
    def recover_jobs_of_dead_servers(self, server_timeout: float,
                                     max_crash_requeues: int) -> list[Recovery]:
        """Take back Processing jobs whose server has not heartbeated for ``server_timeout``.

        A job is put back in its queue, or marked Failed once it was already
        put back ``max_crash_requeues`` times. Dead servers are removed.
        """

    @abstractmethod
    def expire(self, limit: int) -> int:
        """Delete up to ``limit`` jobs past their expiry and old counter buckets."""

    # -- recurring jobs ------------------------------------------------------

    @abstractmethod
    def save_recurring(self, record: RecurringRecord) -> None:
        """Create a recurring job, or update one with the same id.

        An update replaces the call, queue and misfire mode, clears errors and
        keeps ``paused``. It keeps the stored ``next_at`` and ``last_at`` when
        the cron expression and time zone are unchanged and the job was not
        disabled by errors, so an application may call it at every start
        without shifting the schedule; otherwise it takes ``record.next_at``.
        ``created_at`` and ``updated_at`` are set from the storage clock.
        """

    @abstractmethod
    def get_recurring(self, recurring_id: str) -> RecurringRecord | None:
        """Return the recurring job, or None."""

    @abstractmethod
    def list_recurring(self) -> list[RecurringRecord]:
        """Return all recurring jobs, ordered by id."""

    @abstractmethod
    def remove_recurring(self, recurring_id: str) -> bool:
        """Remove a recurring job (jobs it created stay); False if it did not exist."""

    @abstractmethod
    def set_recurring_paused(self, recurring_id: str, paused: bool,
                             next_at: float | None) -> bool:
        """Pause or resume; resuming also sets ``next_at``. False if it does not exist."""

    @abstractmethod
    def due_recurring(self, limit: int, max_errors: int) -> list[RecurringRecord]:
        """Return unpaused recurring jobs whose ``next_at`` and ``retry_at`` have
        passed, with fewer than ``max_errors`` errors, earliest first."""

    @abstractmethod
    def fire_recurring(self, recurring_id: str, expected_next_at: float,
                       jobs: Sequence[NewJob], next_at: float | None) -> bool:
        """Create the jobs of due occurrences and advance the schedule, atomically.

        A compare-and-set on ``next_at``: when another scheduler already
        advanced it, or the job was paused or removed, nothing is written and
        the result is False. Jobs whose (recurring_id, occurrence) already
        exists are skipped. ``last_at`` becomes the last job's occurrence and
        ``last_job_id`` its id; errors are cleared.
        """

    @abstractmethod
    def trigger_recurring(self, recurring_id: str, job: NewJob) -> bool:
        """Create ``job`` now and record it as the last job, leaving ``next_at`` alone.

        False, creating nothing, when the recurring job does not exist.
        """

    @abstractmethod
    def record_recurring_error(self, recurring_id: str, error: str,
                               retry_at: float | None) -> None:
        """Store a scheduling error and count it; the job is not due again before ``retry_at``."""

    # -- servers -----------------------------------------------------------

    @abstractmethod
    def announce_server(self, server_id: str, queues: Sequence[str], workers: int,
                        info: dict[str, Any]) -> None:
        """Register a server (or refresh its record) with a heartbeat of now."""

    @abstractmethod
    def heartbeat(self, server_id: str) -> bool:
        """Record a heartbeat; False when the server was removed as dead meanwhile."""

    @abstractmethod
    def remove_server(self, server_id: str) -> None:
        """Remove a server record (on shutdown)."""

    @abstractmethod
    def list_servers(self) -> list[ServerRecord]:
        """Return all announced servers, oldest first."""

    def tidy(self) -> None:
        """Do cheap housekeeping that keeps reads fast; every server calls it each heartbeat.

        The default does nothing. PostgreSQL folds its pending job count deltas here.
        """

    # -- locks -------------------------------------------------------------

    @abstractmethod
    def acquire_lock(self, name: str, owner: str, ttl: float) -> bool:
        """Take or extend the named lock for ``ttl`` seconds; False if another owner holds it."""

    @abstractmethod
    def release_lock(self, name: str, owner: str) -> None:
        """Release the lock if ``owner`` holds it."""

    # -- monitoring --------------------------------------------------------

    @abstractmethod
    def count_jobs_by_state(self) -> dict[str, int]:
        """Return the number of jobs in each state (every state present)."""

    @abstractmethod
    def queue_lengths(self) -> dict[str, int]:
        """Return the number of enqueued jobs per queue, for queues that have any."""

    @abstractmethod
    def list_jobs(self, state: str, *, queue: str | None = None, offset: int = 0,
                  limit: int = 50) -> list[JobRecord]:
        """Return jobs in ``state``: Enqueued in FIFO order, Scheduled by due time,
        the others newest state change first."""

    @abstractmethod
    def get_histories(self, job_ids: Sequence[str]) -> dict[str, tuple[HistoryEntry, ...]]:
        """Return the state history of each of ``job_ids``, oldest entry first, in one read.

        Jobs that do not exist are left out.
        """

    @abstractmethod
    def list_retries(self, *, offset: int = 0, limit: int = 50) -> list[JobRecord]:
        """Return Scheduled jobs waiting for an automatic retry (retry_count > 0), due first."""

    @abstractmethod
    def count_retries(self) -> int:
        """Return the number of jobs that ``list_retries`` lists."""

    @abstractmethod
    def list_continuations(self, parent_id: str, *, limit: int = 100) -> list[JobRecord]:
        """Return the jobs created as continuations of ``parent_id``, in any state, oldest first."""

    @abstractmethod
    def counter_totals(self) -> dict[str, int]:
        """Return the all-time succeeded, failed and deleted counts."""

    @abstractmethod
    def counter_history(self, name: str, resolution: str, since: float) -> list[tuple[float, int]]:
        """Return (bucket start, count) pairs for ``name`` at "minute" or "hour" resolution."""
