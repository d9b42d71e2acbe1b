"""The writes of one PostgreSQL transaction, batched into few statements.

``PostgresStorage`` opens the transaction and takes the row locks. A
``Transaction`` then applies state changes, continuations, recoveries and
history the same way the SQLite backend does. It sends state updates as one
``UPDATE ... FROM unnest(...)``, and history, counters and notifications at
``finish``.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Protocol

import psycopg

from backburner import states
from backburner.errors import JobNotFound
from backburner.records import HistoryEntry, NewJob, Recovery, StateChange
from backburner.storage import counters


class Executor(Protocol):
    """The part of a connection that a Transaction uses: ``execute``."""

    def execute(self, query: Any, params: Any = None) -> psycopg.Cursor[Any]: ...


class Transaction:
    """The writes of one transaction, in the same steps as the SQLite backend.

    Inserts are sent as they happen. State updates are collected and sent as
    one statement before the next read of the jobs table and at ``finish``, so
    every read still returns them. History rows, counter increments and
    notifications are collected and written by ``finish``.
    """

    def __init__(self, conn: Executor, schema: str, channel: str, now: float,
                 *, current: dict[str, tuple[str, str | None]] | None = None,
                 awaiting_parents: set[str] | None = None) -> None:
        self.conn = conn
        self.s = schema
        self.channel = channel
        self.now = now
        #: Locked jobs of a change_states batch: state and lease token as changed so far.
        self.current = current if current is not None else {}
        #: Among the locked jobs, those with awaiting continuations (None: ask the database).
        self.awaiting_parents = awaiting_parents
        self.history: list[tuple[str, str, str | None, str, float]] = []
        #: State updates not sent yet, by job id: (state, at, due_at, expire_at,
        #: retry_count, crash_count, crash increment).
        self.updates: dict[str, tuple[str, float, float | None, float | None, int | None,
                                      int | None, int]] = {}
        self.counts: Counter[tuple[str, str, float]] = Counter()
        self.count_expiry: dict[tuple[str, str, float], float | None] = {}
        self.enqueued: list[str] = []

    def insert_job(self, job: NewJob) -> str | None:
        """Insert ``job``; return the state it ends in, or None when its occurrence exists."""
        due_at = None
        if job.state == states.SCHEDULED:
            due_at = job.due_at if job.due_at is not None else self.now + (job.delay or 0.0)
        parent_state = None
        if job.state == states.AWAITING:
            parent_state = self._parent_state(job.parent_id)

        inserted = self.conn.execute(
            f"INSERT INTO {self.s}.jobs (id, function, payload, queue, state, created_at, "
            "state_at, enqueued_at, due_at, parent_id, continue_on, recurring_id, occurrence) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (recurring_id, occurrence) WHERE occurrence IS NOT NULL DO NOTHING "
            "RETURNING id",
            (job.id, job.function, job.payload, job.queue, job.state, self.now, self.now,
             self.now if job.state == states.ENQUEUED else None, due_at, job.parent_id,
             job.continue_on, job.recurring_id, job.occurrence))
        # Only a job with an occurrence can conflict, and reading the result
        # costs a round trip in pipeline mode.
        if job.occurrence is not None and inserted.fetchone() is None:
            return None
        self.add_history(job.id, HistoryEntry(job.state, job.reason, due_data(due_at)))

        if parent_state is not None and job.continue_on is not None:
            outcome = states.continuation_outcome(job.continue_on, parent_state)
            if outcome is not None:
                self.move_continuation(job.id, job.parent_id or "", parent_state, outcome,
                                       job.expire_in)
                return outcome
        if job.state == states.ENQUEUED:
            self.enqueued.append(job.id)
        return job.state

    def _parent_state(self, parent_id: str | None) -> str:
        # FOR KEY SHARE waits for a state change in progress on the parent and
        # blocks the next one until this transaction commits.
        row = None
        if parent_id is not None and storable(parent_id):
            self.send_updates()
            row = self.conn.execute(
                f"SELECT state FROM {self.s}.jobs WHERE id = %s FOR KEY SHARE",
                (parent_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"parent job {parent_id!r} not found; it may have expired")
        return str(row[0])

    def apply_change(self, change: StateChange) -> bool:
        found = self.current.get(change.job_id)
        if found is None:
            return False
        current, lease_token = found
        if not change.allowed(current, lease_token):
            return False

        due_at = None
        if change.state == states.SCHEDULED:
            due_at = change.due_at if change.due_at is not None else self.now + (change.delay
                                                                                   or 0.0)
        self.set_state(change.job_id, change.state, due_at=due_at, expire_in=change.expire_in,
                       retry_count=change.retry_count, crash_count=change.crash_count)
        for entry in change.traversed:
            self.add_history(change.job_id, entry)
        data = {**change.data, **due_data(due_at)}
        self.add_history(change.job_id, HistoryEntry(change.state, change.reason, data))
        self.after_state_entered(change.job_id, change.state, change.expire_in)
        return True

    def set_state(self, job_id: str, state: str, *, due_at: float | None = None,
                  expire_in: float | None = None, retry_count: int | None = None,
                  crash_count: int | None = None, crash: bool = False) -> None:
        expire_at = (self.now + expire_in
                     if state in states.FINAL_STATES and expire_in is not None else None)
        if job_id in self.updates:
            self.send_updates()  # one statement may change each row only once
        self.updates[job_id] = (state, self.now, due_at, expire_at, retry_count, crash_count,
                                int(crash))
        if job_id in self.current:
            self.current[job_id] = (state, None)
        if state == states.ENQUEUED:
            self.enqueued.append(job_id)

    def after_state_entered(self, job_id: str, state: str, expire_in: float | None) -> None:
        if state in counters.COUNTED_STATES:
            self.count(counters.COUNTED_STATES[state])
        if state in states.FINAL_STATES:
            self.release_continuations(job_id, state, expire_in)

    def release_continuations(self, job_id: str, state: str, expire_in: float | None) -> None:
        # A continuation deleted because its parent ended in the wrong state
        # releases its own continuations in turn, so walk the whole chain.
        pending = [(job_id, state)]
        while pending:
            parent_id, parent_state = pending.pop()
            if not self._may_have_continuations(parent_id):
                continue
            self.send_updates()
            children = self.conn.execute(
                f"SELECT id, continue_on FROM {self.s}.jobs "
                "WHERE parent_id = %s AND state = 'Awaiting' ORDER BY id FOR UPDATE",
                (parent_id,)).fetchall()
            for child_id, continue_on in children:
                outcome = states.continuation_outcome(continue_on or "succeeded", parent_state)
                if outcome is None:
                    continue
                self.move_continuation(child_id, parent_id, parent_state, outcome, expire_in)
                if outcome == states.DELETED:
                    pending.append((child_id, outcome))

    def _may_have_continuations(self, job_id: str) -> bool:
        # Jobs locked at the start cannot gain continuations while the lock is
        # held, so the set read after locking them stays true for them.
        if self.awaiting_parents is None or job_id not in self.current:
            return True
        return job_id in self.awaiting_parents

    def move_continuation(self, job_id: str, parent_id: str, parent_state: str, outcome: str,
                          expire_in: float | None) -> None:
        if outcome == states.ENQUEUED:
            reason = f"Parent job {parent_id} reached {parent_state}"
        else:
            reason = f"Continuation condition not met: parent job {parent_id} ended {parent_state}"
        self.set_state(job_id, outcome, expire_in=expire_in)
        self.add_history(job_id, HistoryEntry(outcome, reason, {"parent_id": parent_id}))
        if outcome == states.DELETED:
            self.count("deleted")

    def recover(self, job_id: str, server_id: str | None, crash_count: int,
                max_crash_requeues: int) -> Recovery:
        if crash_count >= max_crash_requeues:
            state = states.FAILED
            reason = (f"Server {server_id} stopped while performing the job, "
                      f"{crash_count + 1} times in all; giving up so it cannot crash servers "
                      "forever")
        else:
            state = states.ENQUEUED
            reason = f"Server {server_id} stopped heartbeating; job put back in its queue"
        self.set_state(job_id, state, crash=True)
        self.add_history(job_id, HistoryEntry(state, reason, {
            "server_id": server_id, "crash_count": crash_count + 1}))
        if state == states.FAILED:
            self.count("failed")
        return Recovery(job_id, server_id or "", state)

    def count(self, name: str) -> None:
        keys: list[tuple[tuple[str, str, float], float | None]] = [((name, "total", 0.0), None)]
        keys += [((name, resolution, start), expire_at)
                 for resolution, start, expire_at in counters.buckets(self.now)]
        for key, expire_at in keys:
            self.counts[key] += 1
            self.count_expiry.setdefault(key, expire_at)

    def add_history(self, job_id: str, entry: HistoryEntry) -> None:
        self.history.append((job_id, entry.state, encode_reason(entry.reason),
                             json.dumps(entry.data), self.now))

    def send_updates(self) -> None:
        """Send the collected state updates as one statement."""
        if not self.updates:
            return
        ids = list(self.updates)
        values = list(self.updates.values())
        self.updates = {}
        self.conn.execute(
            f"UPDATE {self.s}.jobs AS j SET state = u.state, state_at = u.at, "
            "enqueued_at = CASE WHEN u.state = 'Enqueued' THEN u.at END, due_at = u.due_at, "
            "expire_at = u.expire_at, lease_token = NULL, server_id = NULL, "
            "retry_count = coalesce(u.retry_count, j.retry_count), "
            "crash_count = coalesce(u.crash_count, j.crash_count) + u.crash "
            "FROM unnest(%s::text[], %s::text[], %s::float8[], %s::float8[], %s::float8[], "
            "%s::integer[], %s::integer[], %s::integer[]) AS u(id, state, at, due_at, "
            "expire_at, retry_count, crash_count, crash) WHERE j.id = u.id",
            (ids, *([value[index] for value in values] for index in range(7))))

    def finish(self) -> None:
        """Write the collected updates, history rows, counter increments and notifications."""
        self.send_updates()
        if self.history:
            self.conn.execute(
                f"INSERT INTO {self.s}.history (job_id, state, reason, data, at) "
                "SELECT job_id, state, reason, data, at FROM unnest(%s::text[], %s::text[], "
                "%s::text[], %s::text[], %s::float8[]) WITH ORDINALITY "
                "AS h(job_id, state, reason, data, at, ord) ORDER BY ord",
                tuple([row[index] for row in self.history] for index in range(5)))
        if self.counts:
            # Sorted keys: transactions take the shared counter rows in one order.
            keys = sorted(self.counts)
            self.conn.execute(
                f"INSERT INTO {self.s}.counters (name, resolution, bucket, value, expire_at) "
                "SELECT * FROM unnest(%s::text[], %s::text[], %s::float8[], %s::bigint[], "
                "%s::float8[]) ON CONFLICT (name, resolution, bucket) "
                "DO UPDATE SET value = counters.value + EXCLUDED.value",
                ([key[0] for key in keys], [key[1] for key in keys], [key[2] for key in keys],
                 [self.counts[key] for key in keys], [self.count_expiry[key] for key in keys]))
        if self.enqueued:
            self.conn.execute(
                f"SELECT pg_notify(%s, queue) FROM (SELECT DISTINCT queue FROM {self.s}.jobs "
                "WHERE id = ANY(%s::text[]) AND state = 'Enqueued') AS q",
                (self.channel, self.enqueued))


def storable(text: str) -> bool:
    """Return whether ``text`` can be a PostgreSQL text value (no NUL, valid Unicode)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def encode_reason(reason: str | None) -> str | None:
    # Reasons quote exception messages, which may hold NUL characters or lone
    # surrogates; as ASCII JSON strings they are stored exactly.
    return None if reason is None else json.dumps(reason)


def due_data(due_at: float | None) -> dict[str, Any]:
    return {} if due_at is None else {"due_at": due_at}


