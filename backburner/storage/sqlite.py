"""SQLite storage: the embedded default, safe for several processes on one file.

The file runs in WAL mode so readers never block the single writer. Every
write is one short ``BEGIN IMMEDIATE`` transaction, which takes the write
lock up front (waiting up to the busy timeout) so that two processes can
never both read a job as Enqueued and then both claim it. SQLite has no
server clock, so ``now()`` is this machine's clock, shared by every process
that can open the file.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from backburner import states
from backburner.errors import ConfigurationError, JobNotFound, StorageError
from backburner.records import (
    HistoryEntry,
    JobRecord,
    NewJob,
    Recovery,
    RecurringRecord,
    ServerRecord,
    StateChange,
)
from backburner.storage import counters
from backburner.storage.base import Storage
from backburner.storage.sqlite_schema import migrate

logger = logging.getLogger(__name__)

#: How often an idle fetcher checks the file for commits by other processes (seconds).
DEFAULT_POLL_INTERVAL = 0.005
#: How long a write waits for another process's write lock (milliseconds).
DEFAULT_BUSY_TIMEOUT_MS = 10_000

_JOB_COLUMNS = ("id, function, payload, queue, state, created_at, state_at, attempt, "
                "retry_count, crash_count, lease_token, server_id, due_at, expire_at, "
                "parent_id, continue_on, recurring_id, occurrence")
_RECURRING_COLUMNS = ("id, cron, tz, function, payload, queue, misfire, next_at, created_at, "
                      "updated_at, paused, last_at, last_job_id, error, error_count, retry_at")


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced, so ``close()`` can reach it
    while threads that exit still free their own."""


class SQLiteStorage(Storage):
    """Storage in one SQLite database file."""

    def __init__(self, path: str, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
                 synchronous: str = "FULL",
                 poll_interval: float = DEFAULT_POLL_INTERVAL) -> None:
        if path in ("", ":memory:") or path.startswith("file::memory:"):
            raise ConfigurationError(
                f"SQLite path {path!r} is an in-memory database, which server processes "
                "cannot share; use a file path such as sqlite:///backburner.db")
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ConfigurationError(
                f"invalid SQLite synchronous mode {synchronous!r}; use normal, full or extra")
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._synchronous = synchronous.upper()
        self._poll_interval = poll_interval
        self._local = threading.local()
        self._connections: weakref.WeakSet[sqlite3.Connection] = weakref.WeakSet()
        self._connections_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._change = threading.Condition()
        self._generation = 0  # raised by local commits that enqueue jobs, and by interrupt()
        self._interrupts = 0
        self._closed = False
        with self._errors("open the database"):
            migrate(self._connection())

    def describe(self) -> str:
        return f"sqlite:///{self.path}"

    # -- connections and transactions ----------------------------------------

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise StorageError(f"storage {self.describe()} is closed")
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_ms / 1000,
                               isolation_level=None, check_same_thread=False,
                               factory=_Connection)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        self._local.conn = conn
        with self._connections_lock:
            self._connections.add(conn)
        return conn

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StorageError(f"SQLite storage {self.path!r} failed to {action}: {exc}") from exc

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        # Threads of one process queue on a Python lock, which wakes the next
        # writer at once; only other processes meet SQLite's busy handler,
        # which sleeps in steps of up to 100 ms.
        with self._errors(action), self._write_lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def now(self) -> float:
        return time.time()

    def close(self) -> None:
        self._closed = True
        self.interrupt()
        with self._connections_lock:
            connections, self._connections = list(self._connections), weakref.WeakSet()
        for conn in connections:
            try:
                conn.close()
            except sqlite3.Error:  # closing from another thread may fail; it is released at exit
                pass

    # -- jobs ------------------------------------------------------------------

    def create_jobs(self, jobs: Sequence[NewJob], *, connection: object | None = None) -> None:
        if connection is not None:
            raise ConfigurationError("transactional enqueue needs PostgreSQL storage")
        enqueued = False
        with self._write("create jobs") as conn:
            now = self.now()
            for index, job in enumerate(jobs):
                state = self._insert_job(conn, job, now + index * 1e-6)
                enqueued |= state == states.ENQUEUED
        if enqueued:
            self._notify_local()

    def _insert_job(self, conn: sqlite3.Connection, job: NewJob, now: float) -> str | None:
        """Insert ``job``; return the state it ends in, or None when its occurrence exists."""
        due_at = None
        if job.state == states.SCHEDULED:
            due_at = job.due_at if job.due_at is not None else now + (job.delay or 0.0)
        parent_state = None
        if job.state == states.AWAITING:
            row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job.parent_id,)).fetchone()
            if row is None:
                raise JobNotFound(f"parent job {job.parent_id!r} not found; it may have expired")
            parent_state = row[0]

        cursor = conn.execute(
            "INSERT INTO jobs (id, function, payload, queue, state, created_at, state_at, "
            "enqueued_at, due_at, parent_id, continue_on, recurring_id, occurrence) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT (recurring_id, occurrence) WHERE occurrence IS NOT NULL DO NOTHING",
            (job.id, job.function, job.payload, job.queue, job.state, now, now,
             now if job.state == states.ENQUEUED else None, due_at, job.parent_id,
             job.continue_on, job.recurring_id, job.occurrence))
        if cursor.rowcount == 0:
            return None
        self._add_history(conn, job.id, HistoryEntry(job.state, job.reason, _due_data(due_at)), now)

        if parent_state is not None and job.continue_on is not None:
            outcome = states.continuation_outcome(job.continue_on, parent_state)
            if outcome is not None:
                self._move_continuation(conn, job.id, job.parent_id or "", parent_state,
                                        outcome, now, job.expire_in)
                return outcome
        return job.state

    def get_job(self, job_id: str, *, history: bool = True) -> JobRecord | None:
        with self._errors("read a job"):
            conn = self._connection()
            row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?",
                               (job_id,)).fetchone()
            if row is None:
                return None
            entries: tuple[HistoryEntry, ...] = ()
            if history:
                entries = tuple(
                    HistoryEntry(state, reason, _load_data(data), at)
                    for state, reason, data, at in conn.execute(
                        "SELECT state, reason, data, at FROM history WHERE job_id = ? ORDER BY id",
                        (job_id,)))
        return _job_from_row(row, entries)

    def fetch_jobs(self, queues: Sequence[str], server_id: str, limit: int,
                   wait: float = 0.0) -> list[JobRecord]:
        deadline = time.monotonic() + wait
        interrupts = self._interrupts
        while True:
            generation = self._generation
            version = self._data_version()
            jobs = self._claim(queues, server_id, limit)
            remaining = deadline - time.monotonic()
            if jobs or remaining <= 0 or self._closed or self._interrupts != interrupts:
                return jobs
            self._wait_for_change(version, generation, remaining)

    def _has_enqueued(self, queues: Sequence[str]) -> bool:
        marks = ",".join("?" * len(queues))
        with self._errors("check queues"):
            row = self._connection().execute(
                f"SELECT 1 FROM jobs WHERE state = 'Enqueued' AND queue IN ({marks}) "
                "AND id IS NOT NULL LIMIT 1",
                tuple(queues)).fetchone()
        return row is not None

    def _claim(self, queues: Sequence[str], server_id: str, limit: int) -> list[JobRecord]:
        if limit <= 0 or not self._has_enqueued(queues):
            return []
        claimed: list[JobRecord] = []
        with self._write("fetch jobs") as conn:
            now = self.now()
            # A claim is a sign of life: renewing the heartbeat in the same
            # transaction keeps a server that was just frozen from taking
            # jobs that the watchdog would take back at once as a dead
            # server's.
            conn.execute("UPDATE servers SET heartbeat_at = ? WHERE id = ?", (now, server_id))
            for queue in queues:
                ids = [row[0] for row in conn.execute(
                    # A NULL id can only come from a crafted row; skip it, or it
                    # would stay at the head of the queue.
                    "SELECT id FROM jobs WHERE state = 'Enqueued' AND queue = ? "
                    "AND id IS NOT NULL ORDER BY enqueued_at, id LIMIT ?",
                    (queue, limit - len(claimed)))]
                for job_id in ids:
                    row = conn.execute(
                        "UPDATE jobs SET state = 'Processing', state_at = ?, enqueued_at = NULL, "
                        "lease_token = ?, server_id = ?, attempt = attempt + 1 "
                        f"WHERE id = ? RETURNING {_JOB_COLUMNS}",
                        (now, uuid.uuid4().hex, server_id, job_id)).fetchone()
                    claimed.append(_job_from_row(row, ()))
                if len(claimed) >= limit:
                    break
            conn.executemany(
                "INSERT INTO history (job_id, state, reason, data, at) VALUES (?,?,?,?,?)",
                [(job.id, states.PROCESSING, None,
                  json.dumps({"server_id": server_id, "attempt": job.attempt}), now)
                 for job in claimed])
        return claimed

    def _data_version(self) -> int:
        with self._errors("check for changes"):
            return int(self._connection().execute("PRAGMA data_version").fetchone()[0])

    def _wait_for_change(self, version: int, generation: int, timeout: float) -> None:
        # PRAGMA data_version changes when another connection commits, so this
        # notices other processes; jobs created in this process notify at once.
        deadline = time.monotonic() + timeout
        with self._change:
            while self._generation == generation and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._change.wait(min(remaining, self._poll_interval))
                if self._data_version() != version:
                    return

    def _notify_local(self) -> None:
        with self._change:
            self._generation += 1
            self._change.notify_all()

    def interrupt(self) -> None:
        with self._change:
            self._interrupts += 1
            self._generation += 1
            self._change.notify_all()

    def change_states(self, changes: Sequence[StateChange]) -> list[bool]:
        results = []
        with self._write("change job states") as conn:
            now = self.now()
            for change in changes:
                results.append(self._apply_change(conn, change, now))
        if any(ok and change.state == states.ENQUEUED for ok, change in zip(results, changes)):
            self._notify_local()
        return results

    def _apply_change(self, conn: sqlite3.Connection, change: StateChange, now: float) -> bool:
        row = conn.execute("SELECT state, lease_token FROM jobs WHERE id = ?",
                           (change.job_id,)).fetchone()
        if row is None:
            return False
        current, lease_token = row
        if not change.allowed(current, lease_token):
            return False

        due_at = None
        if change.state == states.SCHEDULED:
            due_at = change.due_at if change.due_at is not None else now + (change.delay or 0.0)
        self._set_state(conn, change.job_id, change.state, now, due_at=due_at,
                        expire_in=change.expire_in, retry_count=change.retry_count,
                        crash_count=change.crash_count)
        for entry in change.traversed:
            self._add_history(conn, change.job_id, entry, now)
        data = {**change.data, **_due_data(due_at)}
        self._add_history(conn, change.job_id, HistoryEntry(change.state, change.reason, data), now)
        self._after_state_entered(conn, change.job_id, change.state, now, change.expire_in)
        return True

    def _set_state(self, conn: sqlite3.Connection, job_id: str, state: str, now: float, *,
                   due_at: float | None = None, expire_in: float | None = None,
                   retry_count: int | None = None, crash_count: int | None = None,
                   crash: bool = False) -> None:
        expire_at = now + expire_in if state in states.FINAL_STATES and expire_in is not None else None
        conn.execute(
            "UPDATE jobs SET state = ?, state_at = ?, enqueued_at = ?, due_at = ?, "
            "expire_at = ?, lease_token = NULL, server_id = NULL, "
            "retry_count = COALESCE(?, retry_count), crash_count = COALESCE(?, crash_count) + ? "
            "WHERE id = ?",
            (state, now, now if state == states.ENQUEUED else None, due_at, expire_at,
             retry_count, crash_count, int(crash), job_id))

    def _after_state_entered(self, conn: sqlite3.Connection, job_id: str, state: str,
                             now: float, expire_in: float | None) -> None:
        if state in counters.COUNTED_STATES:
            self._count(conn, counters.COUNTED_STATES[state], now)
        if state in states.FINAL_STATES:
            self._release_continuations(conn, job_id, state, now, expire_in)

    def _release_continuations(self, conn: sqlite3.Connection, job_id: str, state: str,
                               now: float, expire_in: float | None) -> None:
        # A continuation deleted because its parent ended in the wrong state
        # releases its own continuations in turn, so walk the whole chain.
        pending = [(job_id, state)]
        while pending:
            parent_id, parent_state = pending.pop()
            children = conn.execute(
                "SELECT id, continue_on FROM jobs WHERE parent_id = ? AND state = 'Awaiting'",
                (parent_id,)).fetchall()
            for child_id, continue_on in children:
                outcome = states.continuation_outcome(continue_on or "succeeded", parent_state)
                if outcome is None:
                    continue
                self._move_continuation(conn, child_id, parent_id, parent_state, outcome, now,
                                        expire_in)
                if outcome == states.DELETED:
                    pending.append((child_id, outcome))

    def _move_continuation(self, conn: sqlite3.Connection, job_id: str, parent_id: str,
                           parent_state: str, outcome: str, now: float,
                           expire_in: float | None) -> None:
        if outcome == states.ENQUEUED:
            reason = f"Parent job {parent_id} reached {parent_state}"
        else:
            reason = f"Continuation condition not met: parent job {parent_id} ended {parent_state}"
        self._set_state(conn, job_id, outcome, now, expire_in=expire_in)
        self._add_history(conn, job_id, HistoryEntry(outcome, reason, {"parent_id": parent_id}),
                          now)
        if outcome == states.DELETED:
            self._count(conn, "deleted", now)

    def _count(self, conn: sqlite3.Connection, name: str, now: float) -> None:
        rows: list[tuple[str, str, float, float | None]] = [(name, "total", 0.0, None)]
        rows += [(name, resolution, start, expire_at)
                 for resolution, start, expire_at in counters.buckets(now)]
        conn.executemany(
            "INSERT INTO counters (name, resolution, bucket, value, expire_at) "
            "VALUES (?, ?, ?, 1, ?) ON CONFLICT (name, resolution, bucket) "
            "DO UPDATE SET value = value + 1", rows)

    def _add_history(self, conn: sqlite3.Connection, job_id: str, entry: HistoryEntry,
                     now: float) -> None:
        conn.execute("INSERT INTO history (job_id, state, reason, data, at) VALUES (?,?,?,?,?)",
                     (job_id, entry.state, entry.reason, json.dumps(entry.data), now))

    def enqueue_due_jobs(self, limit: int) -> list[str]:
        with self._errors("check scheduled jobs"):
            due = self._connection().execute(
                "SELECT 1 FROM jobs WHERE state = 'Scheduled' AND due_at <= ? LIMIT 1",
                (self.now(),)).fetchone()
        if due is None:
            return []
        with self._write("enqueue due jobs") as conn:
            now = self.now()
            ids = [row[0] for row in conn.execute(
                "SELECT id FROM jobs WHERE state = 'Scheduled' AND due_at <= ? "
                "ORDER BY due_at LIMIT ?", (now, limit))]
            for job_id in ids:
                self._set_state(conn, job_id, states.ENQUEUED, now)
                self._add_history(conn, job_id,
                                  HistoryEntry(states.ENQUEUED, "Due time reached"), now)
        if ids:
            self._notify_local()
        return ids

    def current_leases(self, tokens: Sequence[str]) -> set[str]:
        if not tokens:
            return set()
        marks = ",".join("?" * len(tokens))
        with self._errors("check leases"):
            rows = self._connection().execute(
                f"SELECT lease_token FROM jobs WHERE state = 'Processing' "
                f"AND lease_token IN ({marks})", tuple(tokens)).fetchall()
        return {row[0] for row in rows}

    def recover_jobs_of_dead_servers(self, server_timeout: float,
                                     max_crash_requeues: int) -> list[Recovery]:
        query = ("SELECT id, server_id, crash_count FROM jobs WHERE state = 'Processing' AND "
                 "(server_id IS NULL OR server_id NOT IN "
                 " (SELECT id FROM servers WHERE heartbeat_at >= ?))")
        with self._errors("look for dead servers"):
            conn = self._connection()
            cutoff = self.now() - server_timeout
            stale = conn.execute(query, (cutoff,)).fetchall()
            dead = conn.execute("SELECT 1 FROM servers WHERE heartbeat_at < ? LIMIT 1",
                                (cutoff,)).fetchone()
        if not stale and dead is None:
            return []

        recoveries = []
        with self._write("recover jobs of dead servers") as conn:
            now = self.now()
            cutoff = now - server_timeout
            for job_id, server_id, crash_count in conn.execute(query, (cutoff,)).fetchall():
                recoveries.append(self._recover(conn, job_id, server_id, crash_count,
                                                max_crash_requeues, now))
            conn.execute("DELETE FROM servers WHERE heartbeat_at < ?", (cutoff,))
        if recoveries:
            self._notify_local()
        return recoveries

    def _recover(self, conn: sqlite3.Connection, job_id: str, server_id: str | None,
                 crash_count: int, max_crash_requeues: int, now: float) -> Recovery:
        if crash_count >= max_crash_requeues:
            state = states.FAILED
            reason = (f"Server {server_id} stopped while performing the job, "
                      f"{crash_count + 1} times in all; giving up so it cannot crash servers "
                      "forever")
        else:
            state = states.ENQUEUED
            reason = f"Server {server_id} stopped heartbeating; job put back in its queue"
        self._set_state(conn, job_id, state, now, crash=True)
        self._add_history(conn, job_id, HistoryEntry(state, reason, {
            "server_id": server_id, "crash_count": crash_count + 1}), now)
        if state == states.FAILED:
            self._count(conn, "failed", now)
        return Recovery(job_id, server_id or "", state)

    def expire(self, limit: int) -> int:
        with self._write("expire jobs") as conn:
            now = self.now()
            ids = [row[0] for row in conn.execute(
                "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE expire_at <= ? "
                "LIMIT ?) RETURNING id", (now, limit))]
            conn.executemany("DELETE FROM history WHERE job_id = ?", [(i,) for i in ids])
            conn.execute("DELETE FROM counters WHERE expire_at <= ?", (now,))
            conn.execute("DELETE FROM locks WHERE expires_at <= ?", (now,))
        return len(ids)

    # -- recurring jobs ----------------------------------------------------------

    def save_recurring(self, record: RecurringRecord) -> None:
        with self._write("save a recurring job") as conn:
            now = self.now()
            conn.execute(
                "INSERT INTO recurring (id, cron, tz, function, payload, queue, misfire, "
                "next_at, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (id) DO UPDATE SET "
                "next_at = CASE WHEN recurring.cron = excluded.cron AND recurring.tz = excluded.tz "
                "  AND recurring.error_count = 0 THEN recurring.next_at ELSE excluded.next_at END, "
                "last_at = CASE WHEN recurring.cron = excluded.cron AND recurring.tz = excluded.tz "
                "  THEN recurring.last_at ELSE NULL END, "
                "cron = excluded.cron, tz = excluded.tz, function = excluded.function, "
                "payload = excluded.payload, queue = excluded.queue, misfire = excluded.misfire, "
                "updated_at = excluded.updated_at, error = NULL, error_count = 0, retry_at = NULL",
                (record.id, record.cron, record.tz, record.function, record.payload,
                 record.queue, record.misfire, record.next_at, now, now))

    def get_recurring(self, recurring_id: str) -> RecurringRecord | None:
        with self._errors("read a recurring job"):
            row = self._connection().execute(
                f"SELECT {_RECURRING_COLUMNS} FROM recurring WHERE id = ?",
                (recurring_id,)).fetchone()
        return None if row is None else _recurring_from_row(row)

    def list_recurring(self) -> list[RecurringRecord]:
        with self._errors("list recurring jobs"):
            rows = self._connection().execute(
                f"SELECT {_RECURRING_COLUMNS} FROM recurring ORDER BY id").fetchall()
        return [_recurring_from_row(row) for row in rows]

    def remove_recurring(self, recurring_id: str) -> bool:
        with self._write("remove a recurring job") as conn:
            cursor = conn.execute("DELETE FROM recurring WHERE id = ?", (recurring_id,))
            return cursor.rowcount == 1

    def set_recurring_paused(self, recurring_id: str, paused: bool,
                             next_at: float | None) -> bool:
        with self._write("pause or resume a recurring job") as conn:
            if paused:
                cursor = conn.execute(
                    "UPDATE recurring SET paused = 1, updated_at = ? WHERE id = ?",
                    (self.now(), recurring_id))
            else:
                cursor = conn.execute(
                    "UPDATE recurring SET paused = 0, next_at = ?, updated_at = ? WHERE id = ?",
                    (next_at, self.now(), recurring_id))
            return cursor.rowcount == 1

    def due_recurring(self, limit: int, max_errors: int) -> list[RecurringRecord]:
        with self._errors("read due recurring jobs"):
            now = self.now()
            rows = self._connection().execute(
                f"SELECT {_RECURRING_COLUMNS} FROM recurring WHERE paused = 0 AND next_at <= ? "
                "AND error_count < ? AND (retry_at IS NULL OR retry_at <= ?) "
                "ORDER BY next_at LIMIT ?", (now, max_errors, now, limit)).fetchall()
        return [_recurring_from_row(row) for row in rows]

    def fire_recurring(self, recurring_id: str, expected_next_at: float,
                       jobs: Sequence[NewJob], next_at: float | None) -> bool:
        with self._write("fire a recurring job") as conn:
            row = conn.execute("SELECT next_at FROM recurring WHERE id = ? AND paused = 0",
                               (recurring_id,)).fetchone()
            if row is None or row[0] != expected_next_at:
                return False
            now = self.now()
            last = None
            for index, job in enumerate(jobs):
                if self._insert_job(conn, job, now + index * 1e-6) is not None:
                    last = job
            conn.execute(
                "UPDATE recurring SET next_at = ?, last_at = COALESCE(?, last_at), "
                "last_job_id = COALESCE(?, last_job_id), error = NULL, error_count = 0, "
                "retry_at = NULL WHERE id = ?",
                (next_at, last.occurrence if last else None, last.id if last else None,
                 recurring_id))
        if last is not None:
            self._notify_local()
        return True

    def trigger_recurring(self, recurring_id: str, job: NewJob) -> bool:
        with self._write("trigger a recurring job") as conn:
            now = self.now()
            cursor = conn.execute(
                "UPDATE recurring SET last_at = ?, last_job_id = ? WHERE id = ?",
                (now, job.id, recurring_id))
            if cursor.rowcount == 0:
                return False
            self._insert_job(conn, job, now)
        self._notify_local()
        return True

    def record_recurring_error(self, recurring_id: str, error: str,
                               retry_at: float | None) -> None:
        with self._write("record a recurring job error") as conn:
            conn.execute(
                "UPDATE recurring SET error = ?, error_count = error_count + 1, retry_at = ? "
                "WHERE id = ?", (error, retry_at, recurring_id))

    # -- servers ---------------------------------------------------------------

    def announce_server(self, server_id: str, queues: Sequence[str], workers: int,
                        info: dict[str, Any]) -> None:
        with self._write("announce a server") as conn:
            now = self.now()
            conn.execute(
                "INSERT INTO servers (id, queues, workers, info, started_at, heartbeat_at) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET heartbeat_at = ?",
                (server_id, json.dumps(list(queues)), workers, json.dumps(info), now, now, now))

    def heartbeat(self, server_id: str) -> bool:
        with self._write("record a heartbeat") as conn:
            cursor = conn.execute("UPDATE servers SET heartbeat_at = ? WHERE id = ?",
                                  (self.now(), server_id))
            return cursor.rowcount == 1

    def remove_server(self, server_id: str) -> None:
        with self._write("remove a server") as conn:
            conn.execute("DELETE FROM servers WHERE id = ?", (server_id,))

    def list_servers(self) -> list[ServerRecord]:
        with self._errors("list servers"):
            rows = self._connection().execute(
                "SELECT id, queues, workers, started_at, heartbeat_at, info FROM servers "
                "ORDER BY started_at").fetchall()
        return [ServerRecord(id=row[0], queues=tuple(json.loads(row[1])), workers=row[2],
                             started_at=row[3], heartbeat_at=row[4], info=_load_data(row[5]))
                for row in rows]

    # -- locks -----------------------------------------------------------------

    def acquire_lock(self, name: str, owner: str, ttl: float) -> bool:
        with self._write("acquire a lock") as conn:
            now = self.now()
            cursor = conn.execute(
                "INSERT INTO locks (name, owner, expires_at) VALUES (?,?,?) "
                "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
                "expires_at = excluded.expires_at "
                "WHERE locks.owner = excluded.owner OR locks.expires_at <= ?",
                (name, owner, now + ttl, now))
            return cursor.rowcount == 1

    def release_lock(self, name: str, owner: str) -> None:
        with self._write("release a lock") as conn:
            conn.execute("DELETE FROM locks WHERE name = ? AND owner = ?", (name, owner))

    # -- monitoring ------------------------------------------------------------

    def count_jobs_by_state(self) -> dict[str, int]:
        counts = dict.fromkeys(states.ALL_STATES, 0)
        with self._errors("count jobs"):
            for state, count in self._connection().execute(
                    "SELECT state, SUM(n) FROM job_counts GROUP BY state"):
                counts[state] = count
        return counts

    def queue_lengths(self) -> dict[str, int]:
        with self._errors("measure queues"):
            rows = self._connection().execute(
                "SELECT queue, n FROM job_counts WHERE state = 'Enqueued' AND n > 0 "
                "ORDER BY queue").fetchall()
        return dict(rows)

    def list_jobs(self, state: str, *, queue: str | None = None, offset: int = 0,
                  limit: int = 50) -> list[JobRecord]:
        index = ""
        if state == states.ENQUEUED and queue is not None:
            order = "enqueued_at, id"
        elif state == states.ENQUEUED:
            # While a job is Enqueued its enqueued_at equals its state_at (one
            # write sets both), so jobs_state gives FIFO order over every
            # queue without sorting the whole backlog.
            order = "state_at, id"
        elif state == states.SCHEDULED:
            order, index = "due_at, id", "INDEXED BY jobs_scheduled"
        else:
            order = "state_at DESC, id DESC"
        if state in states.ALL_STATES:
            # A known state name is safe to inline. As a literal it lets SQLite
            # use that state's partial index, which a bound parameter cannot match.
            where, params = f"state = '{state}'", []
        else:
            where, params = "state = ?", [state]
        if queue is not None:
            where += " AND queue = ?"
            params.append(queue)
        with self._errors("list jobs"):
            rows = self._connection().execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs {index} WHERE {where} ORDER BY {order} "
                "LIMIT ? OFFSET ?", (*params, limit, offset)).fetchall()
        return [_job_from_row(row, ()) for row in rows]

    def get_histories(self, job_ids: Sequence[str]) -> dict[str, tuple[HistoryEntry, ...]]:
        found: dict[str, list[HistoryEntry]] = {}
        with self._errors("read job histories"):
            conn = self._connection()
            for start in range(0, len(job_ids), _IN_CHUNK):
                chunk = list(job_ids[start:start + _IN_CHUNK])
                marks = ",".join("?" * len(chunk))
                for job_id, state, reason, data, at in conn.execute(
                        "SELECT job_id, state, reason, data, at FROM history "
                        f"WHERE job_id IN ({marks}) ORDER BY job_id, id", chunk):
                    found.setdefault(job_id, []).append(
                        HistoryEntry(state, reason, _load_data(data), at))
        return {job_id: tuple(entries) for job_id, entries in found.items()}

    def list_retries(self, *, offset: int = 0, limit: int = 50) -> list[JobRecord]:
        with self._errors("list retries"):
            rows = self._connection().execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs INDEXED BY jobs_retries WHERE {_RETRY_WHERE} "
                "ORDER BY due_at, id "
                "LIMIT ? OFFSET ?", (max(limit, 0), max(offset, 0))).fetchall()
        return [_job_from_row(row, ()) for row in rows]

    def count_retries(self) -> int:
        with self._errors("count retries"):
            row = self._connection().execute(
                f"SELECT COUNT(*) FROM jobs INDEXED BY jobs_retries WHERE {_RETRY_WHERE}"
            ).fetchone()
        return int(row[0])

    def list_continuations(self, parent_id: str, *, limit: int = 100) -> list[JobRecord]:
        with self._errors("list continuations"):
            rows = self._connection().execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE parent_id = ? ORDER BY created_at, id "
                "LIMIT ?", (parent_id, max(limit, 0))).fetchall()
        return [_job_from_row(row, ()) for row in rows]

    def counter_totals(self) -> dict[str, int]:
        totals = dict.fromkeys(counters.COUNTED_STATES.values(), 0)
        with self._errors("read counters"):
            for name, value in self._connection().execute(
                    "SELECT name, value FROM counters WHERE resolution = 'total'"):
                totals[name] = value
        return totals

    def counter_history(self, name: str, resolution: str, since: float) -> list[tuple[float, int]]:
        counters.check_resolution(resolution)
        with self._errors("read counter history"):
            rows = self._connection().execute(
                "SELECT bucket, value FROM counters WHERE name = ? AND resolution = ? "
                "AND bucket >= ? ORDER BY bucket", (name, resolution, since)).fetchall()
        return [(bucket, value) for bucket, value in rows]


#: Jobs waiting for an automatic retry; the partial index jobs_retries covers it.
_RETRY_WHERE = "state = 'Scheduled' AND retry_count > 0"
#: Maximum number of ids in one IN (...) list, below SQLite's limit on bound parameters.
_IN_CHUNK = 500


def _job_from_row(row: Sequence[Any], history: tuple[HistoryEntry, ...]) -> JobRecord:
    return JobRecord(
        id=row[0], function=row[1], payload=row[2], queue=row[3], state=row[4],
        created_at=row[5], state_at=row[6], attempt=row[7], retry_count=row[8],
        crash_count=row[9], lease_token=row[10], server_id=row[11], due_at=row[12],
        expire_at=row[13], parent_id=row[14], continue_on=row[15], recurring_id=row[16],
        occurrence=row[17], history=history)


def _recurring_from_row(row: Sequence[Any]) -> RecurringRecord:
    return RecurringRecord(
        id=row[0], cron=row[1], tz=row[2], function=row[3], payload=row[4], queue=row[5],
        misfire=row[6], next_at=row[7], created_at=row[8], updated_at=row[9],
        paused=bool(row[10]), last_at=row[11], last_job_id=row[12], error=row[13],
        error_count=row[14], retry_at=row[15])


def _due_data(due_at: float | None) -> dict[str, Any]:
    return {} if due_at is None else {"due_at": due_at}


def _load_data(text: str) -> dict[str, Any]:
    # History data is written by backburner itself, but rows may come from an
    # older or hostile client: anything that is not a JSON object is kept as text.
    try:
        value = json.loads(text)
    except ValueError:
        return {"raw": text}
    return value if isinstance(value, dict) else {"raw": value}
