"""PostgreSQL storage: the production backend, for many servers on many machines.

Connections come from a ``psycopg_pool.ConnectionPool`` in autocommit mode,
so a single-statement operation (fetch, create, heartbeat) costs one round
trip. Operations of several statements run in one transaction in pipeline
mode, so statements whose results are not needed at once travel together.

Behaviour matches the SQLite backend: the same compare-and-set rules, state
history entries, reasons, counters and continuation cascades. Concurrency
comes from row locks instead of one file lock:

- fetch claims with ``FOR NO KEY UPDATE SKIP LOCKED``, so servers never wait
  for each other's claims;
- a state change locks its jobs ``FOR UPDATE`` before it checks their state
  and lease, and creating a continuation locks the parent ``FOR KEY SHARE``,
  which conflicts with that lock, so a continuation cannot miss its parent's
  completion.

Idle fetches wait on LISTEN/NOTIFY, with a slow safety poll for lost
notifications. Every time is read from the database clock.
"""

from __future__ import annotations

import json
import logging
import select
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool, PoolTimeout

from backburner import states
from backburner.errors import ConfigurationError, StorageError
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
from backburner.storage.postgres_schema import MIGRATIONS, current_version, migrate, quote_schema
from backburner.storage.postgres_transaction import (
    Executor,
    Transaction,
    encode_reason,
    storable,
)

logger = logging.getLogger(__name__)

DEFAULT_SCHEMA = "backburner"
#: Connections per storage object (that is, per process).
DEFAULT_POOL_SIZE = 10
#: Seconds an operation waits for a pooled connection before it raises StorageError.
DEFAULT_POOL_TIMEOUT = 5.0
#: Seconds an idle fetch waits before it checks the queues without a notification.
DEFAULT_POLL_INTERVAL = 5.0
#: Seconds the pool keeps retrying a failed connection attempt, with pauses of
#: about 1, 2, 4... s, before it gives up. The next request for a connection then
#: starts a new attempt at once. With psycopg_pool's default of 300 s the pause
#: grows past a minute in a long outage, and work would resume that late.
RECONNECT_TIMEOUT = 3.0
#: Seconds a connection attempt may take, unless the URL sets ``connect_timeout``.
DEFAULT_CONNECT_TIMEOUT = 5
#: How often the listener thread looks up from its connection to check for close().
LISTEN_TICK = 0.2
#: Maximum pause between reconnection attempts of the listener (seconds).
MAX_LISTEN_BACKOFF = 5.0
#: Maximum attempts of a transaction that PostgreSQL aborts for a deadlock or a
#: serialization failure.
MAX_TRANSACTION_ATTEMPTS = 3

#: First key of the advisory lock taken while folding job count deltas; the
#: second is a hash of the schema name. The value spells "bbct" in ASCII.
COUNT_FOLD_LOCK_CLASS = 0x62626374

#: History reason of a job put back because the reply of the fetch that claimed it was lost.
LOST_FETCH_REASON = ("The reply to the fetch that claimed this job was lost (connection "
                     "failure); job put back in its queue")

#: URL query options read by backburner; every other option goes to libpq.
URL_OPTIONS = ("schema", "pool_size", "pool_timeout", "poll_interval")

#: libpq settings added unless the URL sets them: a name in pg_stat_activity,
#: and TCP keepalives so a connection to a vanished host fails instead of hanging.
_LIBPQ_DEFAULTS = {"application_name": "backburner", "keepalives": "1",
                   "keepalives_idle": "30", "keepalives_interval": "10",
                   "keepalives_count": "3", "tcp_user_timeout": "60000"}

#: The statement start time; only for operations of one statement.
_NOW = "extract(epoch FROM now())::float8"
#: The statement start time even inside a longer transaction (an application's,
#: in transactional enqueue), where ``now()`` is the time the transaction began.
_STATEMENT_NOW = "extract(epoch FROM statement_timestamp())::float8"
#: The current time; read once, after locks are taken, in multi-statement transactions.
_CLOCK = "SELECT extract(epoch FROM clock_timestamp())::float8"

_JOB_COLUMNS = ("id, function, payload, queue, state, created_at, state_at, attempt, "
                "retry_count, crash_count, lease_token, server_id, due_at, expire_at, "
                "parent_id, continue_on, recurring_id, occurrence")
_RECURRING_COLUMNS = ("id, cron, tz, function, payload, queue, misfire, next_at, created_at, "
                      "updated_at, paused, last_at, last_job_id, error, error_count, retry_at")

#: Jobs waiting for an automatic retry; the partial index jobs_retries covers it.
_RETRY_WHERE = "state = 'Scheduled' AND retry_count > 0"

_T = TypeVar("_T")


class PostgresStorage(Storage):
    """Storage in one schema of a PostgreSQL database (version 12 or newer)."""

    def __init__(self, conninfo: str, *, schema: str = DEFAULT_SCHEMA,
                 pool_size: int = DEFAULT_POOL_SIZE,
                 pool_timeout: float = DEFAULT_POOL_TIMEOUT,
                 poll_interval: float = DEFAULT_POLL_INTERVAL) -> None:
        self.schema = schema
        self._s = quote_schema(schema)
        self._channel = f"{schema}.enqueued"
        params = _parse_conninfo(conninfo)
        self._description = _describe(params, schema)
        self._pool_timeout = pool_timeout
        self._poll_interval = poll_interval
        self._connect_kwargs: dict[str, Any] = {
            key: value for key, value in _LIBPQ_DEFAULTS.items() if key not in params}
        if "connect_timeout" not in params:
            self._connect_kwargs["connect_timeout"] = DEFAULT_CONNECT_TIMEOUT
        self._conninfo = conninfo
        self._connect_error: str | None = None
        #: The storage's database name, read from a connection on first need.
        self._database: str | None = None
        self._closed = False
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._wakeups = _Wakeups()
        self._stopping = threading.Event()
        self._listener: threading.Thread | None = None
        self._listener_lock = threading.Lock()
        #: Lease tokens of claims whose reply was lost; the next fetch releases their jobs.
        self._lost_tokens: list[str] = []
        self._lost_lock = threading.Lock()
        self._pool: ConnectionPool[Any] = ConnectionPool(
            conninfo, connection_class=self._connection_class(),
            kwargs={"autocommit": True, **self._connect_kwargs}, min_size=1,
            max_size=pool_size, timeout=pool_timeout, reconnect_timeout=RECONNECT_TIMEOUT,
            open=False,
            check=_check_idle_connection, name=f"backburner:{schema}")
        self._pool.open(wait=False)

    @classmethod
    def from_url(cls, url: str) -> PostgresStorage:
        """Open the storage named by a ``postgresql://`` or ``postgres://`` URL.

        backburner reads the query options ``schema``, ``pool_size``,
        ``pool_timeout`` and ``poll_interval`` (seconds); every other option,
        such as ``sslmode``, goes to libpq unchanged.
        """
        conninfo, options = _split_options(url)
        schema = options.get("schema", DEFAULT_SCHEMA)
        try:
            quote_schema(schema)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{exc}; in {redact_url(url)!r}") from None
        return cls(
            conninfo, schema=schema,
            pool_size=_positive(options, "pool_size", DEFAULT_POOL_SIZE, int, url),
            pool_timeout=_positive(options, "pool_timeout", DEFAULT_POOL_TIMEOUT, float, url),
            poll_interval=_positive(options, "poll_interval", DEFAULT_POLL_INTERVAL, float, url))

    def describe(self) -> str:
        return self._description

    # -- connections and transactions ----------------------------------------

    def _connection_class(self) -> type[psycopg.Connection[Any]]:
        storage = self

        class RecordingConnection(psycopg.Connection[Any]):
            """A connection that remembers why the pool last failed to connect."""

            @classmethod
            def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
                try:
                    conn = super().connect(conninfo, **kwargs)
                except psycopg.OperationalError as exc:
                    storage._connect_error = _first_line(str(exc))
                    raise
                storage._connect_error = None
                return conn

        return RecordingConnection

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except PoolTimeout as exc:
            reason = self._connect_error or "every connection of the pool is in use"
            raise StorageError(
                f"PostgreSQL storage {self._description} failed to {action}: no connection "
                f"within {self._pool_timeout:g} s ({reason})") from exc
        except psycopg.Error as exc:
            raise StorageError(
                f"PostgreSQL storage {self._description} failed to {action}: {exc}") from exc
        except UnicodeEncodeError as exc:  # a lone surrogate in a text column
            raise StorageError(
                f"PostgreSQL storage {self._description} failed to {action}: a value is "
                f"not valid Unicode text ({exc})") from exc

    def _run(self, action: str, work: Callable[[psycopg.Connection[Any]], _T], *,
             transaction: bool = False) -> _T:
        """Run ``work`` on a pooled connection, in a pipelined transaction when asked.

        A transaction that PostgreSQL aborts for a deadlock or a serialization
        failure wrote nothing, so it is run again, up to a few times.
        """
        with self._errors(action):
            if self._closed:
                raise StorageError(f"storage {self._description} is closed")
            self._ensure_schema()
            attempt = 1
            while True:
                try:
                    with self._pool.connection() as conn:
                        if not transaction:
                            return work(conn)
                        with conn.pipeline(), conn.transaction():
                            return work(conn)
                except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure) as exc:
                    if attempt >= MAX_TRANSACTION_ATTEMPTS:
                        raise
                    logger.info("PostgreSQL storage %s: %s aborted (%s); trying again",
                                self._description, action, _first_line(str(exc)))
                    attempt += 1

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:
            if self._schema_ready:
                return
            with self._pool.connection() as conn:
                version = migrate(conn, self.schema)
            logger.debug("PostgreSQL storage %s: schema at version %d", self._description,
                         version)
            self._schema_ready = True

    def migrate(self, target: int | None = None) -> int:
        """Apply pending schema migrations up to ``target`` (default: all); return the version."""
        with self._errors("migrate the schema"), self._pool.connection() as conn:
            version = migrate(conn, self.schema, target)
        self._schema_ready = version == len(MIGRATIONS)
        return version

    def schema_version(self) -> int:
        """Return the installed schema version (0 when nothing is installed)."""
        with self._errors("read the schema version"), self._pool.connection() as conn:
            return current_version(conn, self.schema)

    def now(self) -> float:
        return self._run("read the clock", lambda conn: _scalar(conn, _CLOCK))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        self.interrupt()
        listener = self._listener
        if listener is not None:
            listener.join(timeout=5 * LISTEN_TICK)
        self._pool.close(timeout=5.0)

    # -- jobs ------------------------------------------------------------------

    def create_jobs(self, jobs: Sequence[NewJob], *, connection: object | None = None) -> None:
        """Create jobs, through the application's own psycopg connection when given one.

        With ``connection``, the rows and their notification are written in
        the application's open transaction and not committed: the jobs exist
        only if that transaction commits, and servers are notified on commit.
        """
        if connection is not None:
            self._create_in_transaction(_application_connection(connection), jobs)
            return
        if not jobs:
            return
        if any(job.state == states.AWAITING for job in jobs):
            self._run("create jobs", lambda conn: self._create_with_parents(conn, jobs),
                      transaction=True)
        else:
            self._run("create jobs", lambda conn: self._create_without_parents(conn, jobs))

    def _create_in_transaction(self, conn: psycopg.Connection[Any],
                               jobs: Sequence[NewJob]) -> None:
        if not jobs:
            return
        action = "create jobs in the application's transaction"
        with self._errors(action):
            if self._closed:
                raise StorageError(f"storage {self._description} is closed")
            self._ensure_schema()
            self._check_same_database(conn)
            try:
                self._create_through(conn, jobs)
            except pg_errors.UndefinedTable as exc:
                raise StorageError(
                    f"PostgreSQL storage {self._description} failed to {action}: the "
                    f"connection's database {conn.info.dbname!r} has no backburner schema "
                    f"{self.schema!r}; pass a connection to the database of the storage URL, "
                    "and roll back the application's transaction, which this error "
                    "aborted") from exc

    def _create_through(self, conn: psycopg.Connection[Any], jobs: Sequence[NewJob]) -> None:
        # No pipeline and no retry on deadlock here, because the transaction
        # is the application's and only the application can run it again.
        rows = _TupleRows(conn)
        if not any(job.state == states.AWAITING for job in jobs):
            self._create_without_parents(rows, jobs)
            return
        # Reading the clock first opens the implicit transaction of a
        # connection that is not in autocommit mode, so conn.transaction()
        # below is a savepoint: a missing parent undoes these rows only, and
        # leaves the application's transaction usable.
        now = _scalar(rows, _CLOCK)
        with conn.transaction():
            self._insert_with_parents(rows, jobs, now)

    def _check_same_database(self, conn: psycopg.Connection[Any]) -> None:
        if self._database is None:
            with self._pool.connection() as own:
                self._database = own.info.dbname
        if conn.info.dbname != self._database:
            raise ConfigurationError(
                f"the application's connection is to database {conn.info.dbname!r}, but "
                f"storage {self._description} is in database {self._database!r}: "
                "transactional enqueue needs a connection to the storage's database")

    def _create_without_parents(self, conn: Executor, jobs: Sequence[NewJob]) -> None:
        # One statement: jobs, their history and the notification. Job i is
        # stamped 1 µs after job i-1 so that the batch keeps its FIFO order. A
        # job whose recurring occurrence already exists is skipped.
        s = self._s
        conn.execute(
            f"WITH input AS ("
            f"  SELECT i.*, {_STATEMENT_NOW} + (i.ord - 1) * 1e-6::float8 AS at"
            f"  FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[],"
            f"              %s::text[], %s::float8[], %s::float8[], %s::text[], %s::float8[])"
            f"       WITH ORDINALITY AS i(id, function, payload, queue, state, reason, due_at,"
            f"                            delay, recurring_id, occurrence, ord)"
            f"), prepared AS ("
            f"  SELECT *, CASE WHEN state = 'Scheduled'"
            f"                 THEN coalesce(due_at, at + coalesce(delay, 0)) END AS due"
            f"  FROM input"
            f"), created AS ("
            f"  INSERT INTO {s}.jobs (id, function, payload, queue, state, created_at, state_at,"
            f"                        enqueued_at, due_at, recurring_id, occurrence)"
            f"  SELECT id, function, payload, queue, state, at, at,"
            f"         CASE WHEN state = 'Enqueued' THEN at END, due, recurring_id, occurrence"
            f"  FROM prepared ORDER BY ord"
            f"  ON CONFLICT (recurring_id, occurrence) WHERE occurrence IS NOT NULL DO NOTHING"
            f"  RETURNING id"
            f"), logged AS ("
            f"  INSERT INTO {s}.history (job_id, state, reason, data, at)"
            f"  SELECT id, state, reason, CASE WHEN due IS NULL THEN '{{}}'"
            f"                                 ELSE json_build_object('due_at', due)::text END,"
            f"         at"
            f"  FROM prepared JOIN created USING (id) ORDER BY ord"
            f") SELECT pg_notify(%s, queue)"
            f"  FROM (SELECT DISTINCT queue FROM prepared JOIN created USING (id)"
            f"        WHERE state = 'Enqueued') AS q",
            ([job.id for job in jobs], [job.function for job in jobs],
             [job.payload for job in jobs], [job.queue for job in jobs],
             [job.state for job in jobs], [encode_reason(job.reason) for job in jobs],
             [job.due_at for job in jobs], [job.delay for job in jobs],
             [job.recurring_id for job in jobs], [job.occurrence for job in jobs],
             self._channel))

    def _create_with_parents(self, conn: psycopg.Connection[Any],
                             jobs: Sequence[NewJob]) -> None:
        self._insert_with_parents(conn, jobs, _scalar(conn, _CLOCK))

    def _insert_with_parents(self, conn: Executor, jobs: Sequence[NewJob], now: float) -> None:
        tx = Transaction(conn, self._s, self._channel, now)
        start = tx.now
        for index, job in enumerate(jobs):
            tx.now = start + index * 1e-6
            tx.insert_job(job)
        tx.finish()

    def get_job(self, job_id: str, *, history: bool = True) -> JobRecord | None:
        if not storable(job_id):
            return None
        return self._run("read a job", lambda conn: self._get_job(conn, job_id, history))

    def _get_job(self, conn: psycopg.Connection[Any], job_id: str,
                 history: bool) -> JobRecord | None:
        with conn.pipeline():
            job = conn.execute(f"SELECT {_JOB_COLUMNS} FROM {self._s}.jobs WHERE id = %s",
                               (job_id,))
            entries = None
            if history:
                entries = conn.execute(
                    f"SELECT state, reason, data, at FROM {self._s}.history WHERE job_id = %s "
                    "ORDER BY id", (job_id,))
            row = job.fetchone()
            rows = entries.fetchall() if entries is not None else []
        if row is None:
            return None
        return _job_from_row(row, tuple(
            HistoryEntry(state, _decode_reason(reason), _load_data(data), at)
            for state, reason, data, at in rows))

    def fetch_jobs(self, queues: Sequence[str], server_id: str, limit: int,
                   wait: float = 0.0) -> list[JobRecord]:
        deadline = time.monotonic() + wait
        if wait > 0:
            self._start_listener()
        while True:
            mark = self._wakeups.mark(queues)
            jobs = self._claim(queues, server_id, limit)
            remaining = deadline - time.monotonic()
            if jobs or remaining <= 0 or self._closed:
                return jobs
            if self._wakeups.wait(mark, queues, min(remaining, self._poll_interval)):
                return []  # interrupted

    def _claim(self, queues: Sequence[str], server_id: str, limit: int) -> list[JobRecord]:
        if self._lost_tokens:
            self._release_lost_claims()
        if limit <= 0 or not queues:
            return []
        tokens = [uuid.uuid4().hex for _ in range(limit)]
        s = self._s
        try:
            # A claim is a sign of life: renewing the heartbeat in the same
            # statement keeps a server that was just frozen from taking jobs
            # that the watchdog would take back at once as a dead server's.
            rows = self._run("fetch jobs", lambda conn: conn.execute(
                f"WITH claimed AS (SELECT * FROM {s}.claim_jobs(%s::text[], %s, %s::text[])), "
                f"beat AS (UPDATE {s}.servers SET heartbeat_at = {_NOW} "
                "  WHERE id = %s AND EXISTS (SELECT 1 FROM claimed)) "
                f"SELECT {_JOB_COLUMNS} FROM claimed",
                (list(queues), server_id, tokens, server_id)).fetchall())
        except StorageError as exc:
            # A connection that failed during the claim may have failed after
            # the commit, so the claim may have taken jobs that no worker will perform.
            cause = exc.__cause__
            if isinstance(cause, psycopg.OperationalError) and not isinstance(cause, PoolTimeout):
                with self._lost_lock:
                    self._lost_tokens += tokens
            raise
        return [_job_from_row(row, ()) for row in rows]

    def _release_lost_claims(self) -> None:
        """Put back in their queues the jobs taken by claims whose reply was lost."""
        with self._lost_lock:
            tokens, self._lost_tokens = self._lost_tokens, []
        try:
            released = self._run("put back the jobs of a lost fetch reply",
                                 lambda conn: self._release_leases(conn, tokens),
                                 transaction=True)
        except StorageError:
            with self._lost_lock:
                self._lost_tokens[:0] = tokens  # try again on the next fetch
            raise
        for job_id in released:
            logger.warning("PostgreSQL storage %s: job %s was claimed by a fetch whose reply "
                           "was lost; put it back in its queue", self._description, job_id)

    def _release_leases(self, conn: psycopg.Connection[Any], tokens: list[str]) -> list[str]:
        locked = conn.execute(
            f"SELECT id FROM {self._s}.jobs WHERE state = 'Processing' "
            "AND lease_token = ANY(%s::text[]) ORDER BY id FOR UPDATE", (tokens,))
        tx = Transaction(conn, self._s, self._channel, _scalar(conn, _CLOCK))
        ids = [row[0] for row in locked.fetchall()]
        for job_id in ids:
            tx.set_state(job_id, states.ENQUEUED)
            tx.add_history(job_id, HistoryEntry(states.ENQUEUED, LOST_FETCH_REASON))
        tx.finish()
        return ids

    def interrupt(self) -> None:
        self._wakeups.interrupt()

    def change_states(self, changes: Sequence[StateChange]) -> list[bool]:
        if not changes:
            return []
        return self._run("change job states", lambda conn: self._change_states(conn, changes),
                         transaction=True)

    def _change_states(self, conn: psycopg.Connection[Any],
                       changes: Sequence[StateChange]) -> list[bool]:
        # Lock first, then look for awaiting continuations in a second
        # statement: its fresh snapshot includes every continuation whose creator
        # held the parent's key-share lock while this transaction waited.
        ids = sorted({change.job_id for change in changes if storable(change.job_id)})
        locked = conn.execute(
            f"SELECT id, state, lease_token FROM {self._s}.jobs WHERE id = ANY(%s::text[]) "
            "ORDER BY id FOR UPDATE", (ids,))
        parents = conn.execute(
            f"SELECT DISTINCT parent_id FROM {self._s}.jobs "
            "WHERE parent_id = ANY(%s::text[]) AND state = 'Awaiting'", (ids,))
        clock = conn.execute(_CLOCK)
        current = {row[0]: (row[1], row[2]) for row in locked.fetchall()}
        tx = Transaction(conn, self._s, self._channel, _first(clock), current=current,
                          awaiting_parents={row[0] for row in parents.fetchall()})
        results = [tx.apply_change(change) for change in changes]
        tx.finish()
        return results

    def enqueue_due_jobs(self, limit: int) -> list[str]:
        if limit <= 0:
            return []
        s = self._s
        rows = self._run("enqueue due jobs", lambda conn: conn.execute(
            f"WITH due AS MATERIALIZED ("
            f"  SELECT id, due_at FROM {s}.jobs"
            f"  WHERE state = 'Scheduled' AND due_at <= {_NOW}"
            f"  ORDER BY due_at, id LIMIT %s"
            f"  FOR NO KEY UPDATE SKIP LOCKED"
            f"), moved AS ("
            f"  UPDATE {s}.jobs AS j SET state = 'Enqueued', state_at = {_NOW},"
            f"      enqueued_at = {_NOW}, due_at = NULL, expire_at = NULL, lease_token = NULL,"
            f"      server_id = NULL"
            f"  FROM due WHERE j.id = due.id"
            f"  RETURNING j.id, j.queue"
            f"), logged AS ("
            f"  INSERT INTO {s}.history (job_id, state, reason, data, at)"
            f"  SELECT due.id, 'Enqueued', %s, '{{}}', {_NOW}"
            f"  FROM due JOIN moved USING (id) ORDER BY due.due_at, due.id"
            f"), notified AS ("
            f"  SELECT count(pg_notify(%s, queue)) FROM (SELECT DISTINCT queue FROM moved) AS q"
            f") SELECT due.id FROM due JOIN moved USING (id), notified"
            f"  ORDER BY due.due_at, due.id",
            (limit, encode_reason("Due time reached"), self._channel)).fetchall())
        return [row[0] for row in rows]

    def current_leases(self, tokens: Sequence[str]) -> set[str]:
        tokens = [token for token in tokens if storable(token)]
        if not tokens:
            return set()
        rows = self._run("check leases", lambda conn: conn.execute(
            f"SELECT lease_token FROM {self._s}.jobs "
            "WHERE state = 'Processing' AND lease_token = ANY(%s::text[])", (tokens,)).fetchall())
        return {row[0] for row in rows}

    def recover_jobs_of_dead_servers(self, server_timeout: float,
                                     max_crash_requeues: int) -> list[Recovery]:
        return self._run(
            "recover jobs of dead servers",
            lambda conn: self._recover(conn, server_timeout, max_crash_requeues),
            transaction=True)

    def _recover(self, conn: psycopg.Connection[Any], server_timeout: float,
                 max_crash_requeues: int) -> list[Recovery]:
        # Dead servers go first: a heartbeat racing with this transaction then
        # either lands before it (the server stays alive, with its jobs) or
        # finds its record gone and announces the server again.
        tx = Transaction(conn, self._s, self._channel, _scalar(conn, _CLOCK))
        cutoff = tx.now - server_timeout
        conn.execute(f"DELETE FROM {self._s}.servers WHERE heartbeat_at < %s", (cutoff,))
        stale = conn.execute(
            f"SELECT id, server_id, crash_count FROM {self._s}.jobs AS j "
            "WHERE state = 'Processing' AND (server_id IS NULL OR NOT EXISTS ("
            f"  SELECT 1 FROM {self._s}.servers AS s"
            "   WHERE s.id = j.server_id AND s.heartbeat_at >= %s)) "
            "ORDER BY id FOR UPDATE SKIP LOCKED", (cutoff,)).fetchall()
        recoveries = [tx.recover(job_id, server_id, crash_count, max_crash_requeues)
                      for job_id, server_id, crash_count in stale]
        tx.finish()
        return recoveries

    def expire(self, limit: int) -> int:
        s = self._s
        return self._run("expire jobs", lambda conn: int(_scalar(
            conn,
            f"WITH doomed AS MATERIALIZED ("
            f"  SELECT id FROM {s}.jobs WHERE expire_at <= {_NOW}"
            f"  ORDER BY expire_at LIMIT %s FOR UPDATE SKIP LOCKED"
            f"), removed AS ("
            f"  DELETE FROM {s}.jobs AS j USING doomed WHERE j.id = doomed.id RETURNING j.id"
            f"), removed_history AS ("
            f"  DELETE FROM {s}.history WHERE job_id IN (SELECT id FROM removed)"
            f"), removed_counters AS ("
            f"  DELETE FROM {s}.counters WHERE expire_at <= {_NOW}"
            f"), removed_locks AS ("
            f"  DELETE FROM {s}.locks WHERE expires_at <= {_NOW}"
            f") SELECT count(*) FROM removed", (max(limit, 0),))))

    # -- recurring jobs ----------------------------------------------------------

    def save_recurring(self, record: RecurringRecord) -> None:
        self._run("save a recurring job", lambda conn: conn.execute(
            f"INSERT INTO {self._s}.recurring (id, cron, tz, function, payload, queue, misfire, "
            f"next_at, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, {_NOW}, "
            f"{_NOW}) ON CONFLICT (id) DO UPDATE SET "
            "next_at = CASE WHEN recurring.cron = EXCLUDED.cron AND recurring.tz = EXCLUDED.tz "
            "  AND recurring.error_count = 0 THEN recurring.next_at ELSE EXCLUDED.next_at END, "
            "last_at = CASE WHEN recurring.cron = EXCLUDED.cron AND recurring.tz = EXCLUDED.tz "
            "  THEN recurring.last_at ELSE NULL END, "
            "cron = EXCLUDED.cron, tz = EXCLUDED.tz, function = EXCLUDED.function, "
            "payload = EXCLUDED.payload, queue = EXCLUDED.queue, misfire = EXCLUDED.misfire, "
            "updated_at = EXCLUDED.updated_at, error = NULL, error_count = 0, retry_at = NULL",
            (record.id, record.cron, record.tz, record.function, record.payload, record.queue,
             record.misfire, record.next_at)))

    def get_recurring(self, recurring_id: str) -> RecurringRecord | None:
        if not storable(recurring_id):
            return None
        row = self._run("read a recurring job", lambda conn: conn.execute(
            f"SELECT {_RECURRING_COLUMNS} FROM {self._s}.recurring WHERE id = %s",
            (recurring_id,)).fetchone())
        return None if row is None else _recurring_from_row(row)

    def list_recurring(self) -> list[RecurringRecord]:
        rows = self._run("list recurring jobs", lambda conn: conn.execute(
            f"SELECT {_RECURRING_COLUMNS} FROM {self._s}.recurring ORDER BY id").fetchall())
        return [_recurring_from_row(row) for row in rows]

    def remove_recurring(self, recurring_id: str) -> bool:
        if not storable(recurring_id):
            return False
        return self._run("remove a recurring job", lambda conn: conn.execute(
            f"DELETE FROM {self._s}.recurring WHERE id = %s", (recurring_id,)).rowcount == 1)

    def set_recurring_paused(self, recurring_id: str, paused: bool,
                             next_at: float | None) -> bool:
        if not storable(recurring_id):
            return False
        if paused:
            query = (f"UPDATE {self._s}.recurring SET paused = true, updated_at = {_NOW} "
                     "WHERE id = %s")
            params: tuple[Any, ...] = (recurring_id,)
        else:
            query = (f"UPDATE {self._s}.recurring SET paused = false, next_at = %s, "
                     f"updated_at = {_NOW} WHERE id = %s")
            params = (next_at, recurring_id)
        return self._run("pause or resume a recurring job",
                         lambda conn: conn.execute(query, params).rowcount == 1)

    def due_recurring(self, limit: int, max_errors: int) -> list[RecurringRecord]:
        rows = self._run("read due recurring jobs", lambda conn: conn.execute(
            f"SELECT {_RECURRING_COLUMNS} FROM {self._s}.recurring "
            f"WHERE NOT paused AND next_at <= {_NOW} AND error_count < %s "
            f"AND (retry_at IS NULL OR retry_at <= {_NOW}) ORDER BY next_at LIMIT %s",
            (max_errors, max(limit, 0))).fetchall())
        return [_recurring_from_row(row) for row in rows]

    def fire_recurring(self, recurring_id: str, expected_next_at: float,
                       jobs: Sequence[NewJob], next_at: float | None) -> bool:
        return self._run(
            "fire a recurring job",
            lambda conn: self._fire_recurring(conn, recurring_id, expected_next_at, jobs,
                                              next_at),
            transaction=True)

    def _fire_recurring(self, conn: psycopg.Connection[Any], recurring_id: str,
                        expected_next_at: float, jobs: Sequence[NewJob],
                        next_at: float | None) -> bool:
        # The row lock makes the compare-and-set on next_at safe: a second
        # scheduler waits here, then reads the next_at the first one wrote.
        row = conn.execute(
            f"SELECT next_at FROM {self._s}.recurring WHERE id = %s AND NOT paused FOR UPDATE",
            (recurring_id,)).fetchone()
        if row is None or row[0] != expected_next_at:
            return False
        tx = Transaction(conn, self._s, self._channel, _scalar(conn, _CLOCK))
        start = tx.now
        last = None
        for index, job in enumerate(jobs):
            tx.now = start + index * 1e-6
            if tx.insert_job(job) is not None:
                last = job
        conn.execute(
            f"UPDATE {self._s}.recurring SET next_at = %s, last_at = coalesce(%s, last_at), "
            "last_job_id = coalesce(%s, last_job_id), error = NULL, error_count = 0, "
            "retry_at = NULL WHERE id = %s",
            (next_at, last.occurrence if last else None, last.id if last else None,
             recurring_id))
        tx.finish()
        return True

    def trigger_recurring(self, recurring_id: str, job: NewJob) -> bool:
        if not storable(recurring_id):
            return False
        return self._run("trigger a recurring job",
                         lambda conn: self._trigger_recurring(conn, recurring_id, job),
                         transaction=True)

    def _trigger_recurring(self, conn: psycopg.Connection[Any], recurring_id: str,
                           job: NewJob) -> bool:
        tx = Transaction(conn, self._s, self._channel, _scalar(conn, _CLOCK))
        updated = conn.execute(
            f"UPDATE {self._s}.recurring SET last_at = %s, last_job_id = %s WHERE id = %s "
            "RETURNING id", (tx.now, job.id, recurring_id))
        if updated.fetchone() is None:
            return False
        tx.insert_job(job)
        tx.finish()
        return True

    def record_recurring_error(self, recurring_id: str, error: str,
                               retry_at: float | None) -> None:
        self._run("record a recurring job error", lambda conn: conn.execute(
            f"UPDATE {self._s}.recurring SET error = %s, error_count = error_count + 1, "
            "retry_at = %s WHERE id = %s", (encode_reason(error), retry_at, recurring_id)))

    # -- servers ---------------------------------------------------------------

    def announce_server(self, server_id: str, queues: Sequence[str], workers: int,
                        info: dict[str, Any]) -> None:
        self._run("announce a server", lambda conn: conn.execute(
            f"INSERT INTO {self._s}.servers (id, queues, workers, info, started_at, heartbeat_at)"
            f" VALUES (%s, %s, %s, %s, {_NOW}, {_NOW}) "
            "ON CONFLICT (id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at",
            (server_id, json.dumps(list(queues)), workers, json.dumps(info))))

    def heartbeat(self, server_id: str) -> bool:
        return self._run("record a heartbeat", lambda conn: conn.execute(
            f"UPDATE {self._s}.servers SET heartbeat_at = {_NOW} WHERE id = %s",
            (server_id,)).rowcount == 1)

    def remove_server(self, server_id: str) -> None:
        self._run("remove a server", lambda conn: conn.execute(
            f"DELETE FROM {self._s}.servers WHERE id = %s", (server_id,)))

    def list_servers(self) -> list[ServerRecord]:
        rows = self._run("list servers", lambda conn: conn.execute(
            "SELECT id, queues, workers, started_at, heartbeat_at, info "
            f"FROM {self._s}.servers ORDER BY started_at, id").fetchall())
        return [ServerRecord(id=row[0], queues=tuple(json.loads(row[1])), workers=row[2],
                             started_at=row[3], heartbeat_at=row[4], info=_load_data(row[5]))
                for row in rows]

    # -- locks -----------------------------------------------------------------

    def acquire_lock(self, name: str, owner: str, ttl: float) -> bool:
        return self._run("acquire a lock", lambda conn: conn.execute(
            f"INSERT INTO {self._s}.locks (name, owner, expires_at) VALUES (%s, %s, {_NOW} + %s) "
            "ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, "
            "expires_at = EXCLUDED.expires_at "
            f"WHERE locks.owner = EXCLUDED.owner OR locks.expires_at <= {_NOW}",
            (name, owner, float(ttl))).rowcount == 1)

    def release_lock(self, name: str, owner: str) -> None:
        self._run("release a lock", lambda conn: conn.execute(
            f"DELETE FROM {self._s}.locks WHERE name = %s AND owner = %s", (name, owner)))

    # -- monitoring ------------------------------------------------------------

    def count_jobs_by_state(self) -> dict[str, int]:
        counts = dict.fromkeys(states.ALL_STATES, 0)
        for state, _queue, count in self._job_counts("count jobs"):
            counts[state] = counts.get(state, 0) + count
        return counts

    def queue_lengths(self) -> dict[str, int]:
        return {queue: count for state, queue, count in self._job_counts("measure queues")
                if state == states.ENQUEUED and count}

    def _job_counts(self, action: str) -> list[tuple[str, str, int]]:
        """Return (state, queue, count) from the folded counts plus the pending deltas."""
        s = self._s
        return self._run(action, lambda conn: conn.execute(
            "SELECT state, queue, sum(n)::bigint FROM ("
            f"  SELECT state, queue, n FROM {s}.job_counts"
            f"  UNION ALL SELECT state, queue, delta FROM {s}.job_count_deltas"
            ") AS parts GROUP BY state, queue ORDER BY queue, state").fetchall())

    def tidy(self) -> None:
        """Fold the pending job count deltas into job_counts, unless another process is at it."""
        s = self._s

        def fold(conn: psycopg.Connection[Any]) -> None:
            taken = _scalar(conn, "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))",
                            (COUNT_FOLD_LOCK_CLASS, self.schema))
            if not taken:
                return
            conn.execute(
                f"WITH moved AS (DELETE FROM {s}.job_count_deltas RETURNING state, queue, delta) "
                f"INSERT INTO {s}.job_counts AS c (state, queue, n) "
                "SELECT state, queue, sum(delta) FROM moved GROUP BY state, queue "
                "ON CONFLICT (state, queue) DO UPDATE SET n = c.n + EXCLUDED.n")
            conn.execute(f"DELETE FROM {s}.job_counts WHERE n = 0")

        self._run("fold job counts", fold, transaction=True)

    def list_jobs(self, state: str, *, queue: str | None = None, offset: int = 0,
                  limit: int = 50) -> list[JobRecord]:
        if state == states.ENQUEUED and queue is None:
            return self._list_enqueued(max(offset, 0), max(limit, 0))
        if state == states.ENQUEUED:
            order = "enqueued_at, id"
        elif state == states.SCHEDULED:
            order = "due_at, id"
        else:
            order = "state_at DESC, id DESC"
        where, params = "state = %s", [state]
        if queue is not None:
            where += " AND queue = %s"
            params.append(queue)
        rows = self._run("list jobs", lambda conn: conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM {self._s}.jobs WHERE {where} ORDER BY {order} "
            "LIMIT %s OFFSET %s", (*params, max(limit, 0), max(offset, 0))).fetchall())
        return [_job_from_row(row, ()) for row in rows]

    def get_histories(self, job_ids: Sequence[str]) -> dict[str, tuple[HistoryEntry, ...]]:
        ids = [job_id for job_id in job_ids if storable(job_id)]
        if not ids:
            return {}
        rows = self._run("read job histories", lambda conn: conn.execute(
            f"SELECT job_id, state, reason, data, at FROM {self._s}.history "
            "WHERE job_id = ANY(%s::text[]) ORDER BY job_id, id", (ids,)).fetchall())
        found: dict[str, list[HistoryEntry]] = {}
        for job_id, state, reason, data, at in rows:
            found.setdefault(job_id, []).append(
                HistoryEntry(state, _decode_reason(reason), _load_data(data), at))
        return {job_id: tuple(entries) for job_id, entries in found.items()}

    def list_retries(self, *, offset: int = 0, limit: int = 50) -> list[JobRecord]:
        rows = self._run("list retries", lambda conn: conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM {self._s}.jobs WHERE {_RETRY_WHERE} "
            "ORDER BY due_at, id LIMIT %s OFFSET %s", (max(limit, 0), max(offset, 0))).fetchall())
        return [_job_from_row(row, ()) for row in rows]

    def count_retries(self) -> int:
        return int(self._run("count retries", lambda conn: _scalar(
            conn, f"SELECT count(*) FROM {self._s}.jobs WHERE {_RETRY_WHERE}")))

    def list_continuations(self, parent_id: str, *, limit: int = 100) -> list[JobRecord]:
        rows = self._run("list continuations", lambda conn: conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM {self._s}.jobs WHERE parent_id = %s "
            "ORDER BY created_at, id LIMIT %s", (parent_id, max(limit, 0))).fetchall())
        return [_job_from_row(row, ()) for row in rows]

    def _list_enqueued(self, offset: int, limit: int) -> list[JobRecord]:
        # The fetch index starts with the queue, so it cannot give FIFO order
        # over all queues, and sorting every enqueued job instead took 70 ms at
        # 125,000 of them. So walk the distinct queues on that index (a loose
        # index scan) and merge each queue's first offset + limit jobs.
        s = self._s
        rows = self._run("list jobs", lambda conn: conn.execute(
            f"WITH RECURSIVE queues AS ("
            f"  (SELECT queue FROM {s}.jobs WHERE state = 'Enqueued' ORDER BY queue LIMIT 1)"
            f"  UNION ALL"
            f"  SELECT (SELECT j.queue FROM {s}.jobs AS j"
            f"          WHERE j.state = 'Enqueued' AND j.queue > q.queue"
            f"          ORDER BY j.queue LIMIT 1)"
            f"  FROM queues AS q WHERE q.queue IS NOT NULL"
            f") SELECT page.* FROM queues AS q CROSS JOIN LATERAL ("
            f"  SELECT {_JOB_COLUMNS}, enqueued_at AS fifo_at FROM {s}.jobs AS j"
            f"  WHERE j.state = 'Enqueued' AND j.queue = q.queue"
            f"  ORDER BY j.enqueued_at, j.id LIMIT %s"
            f") AS page ORDER BY page.fifo_at, page.id LIMIT %s OFFSET %s",
            (offset + limit, limit, offset)).fetchall())
        return [_job_from_row(row, ()) for row in rows]

    def counter_totals(self) -> dict[str, int]:
        totals = dict.fromkeys(counters.COUNTED_STATES.values(), 0)
        rows = self._run("read counters", lambda conn: conn.execute(
            f"SELECT name, value FROM {self._s}.counters WHERE resolution = 'total'").fetchall())
        for name, value in rows:
            totals[name] = value
        return totals

    def counter_history(self, name: str, resolution: str, since: float) -> list[tuple[float, int]]:
        counters.check_resolution(resolution)
        rows = self._run("read counter history", lambda conn: conn.execute(
            f"SELECT bucket, value FROM {self._s}.counters WHERE name = %s AND resolution = %s "
            "AND bucket >= %s ORDER BY bucket", (name, resolution, float(since))).fetchall())
        return [(bucket, value) for bucket, value in rows]

    # -- waking idle fetches ---------------------------------------------------

    def _start_listener(self) -> None:
        with self._listener_lock:
            if self._closed or (self._listener is not None and self._listener.is_alive()):
                return
            self._listener = threading.Thread(
                target=self._listen, name=f"backburner-listener-{self.schema}", daemon=True)
            self._listener.start()

    def _listen(self) -> None:
        """Wake waiting fetches on each notification, reconnecting with backoff when cut off."""
        failures = 0
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True,
                                     **self._connect_kwargs) as conn:
                    conn.execute(f'LISTEN "{self._channel}"')
                    if failures:
                        logger.info("PostgreSQL storage %s: listener reconnected after %d "
                                    "failed attempt(s)", self._description, failures)
                    failures = 0
                    # Jobs enqueued before LISTEN took effect sent no notification here,
                    # so waiting fetches check the queues again.
                    self._wakeups.broadcast()
                    while not self._stopping.is_set():
                        for notification in conn.notifies(timeout=LISTEN_TICK):
                            self._wakeups.notify(notification.payload)
            except psycopg.Error as exc:
                failures += 1
                pause = min(MAX_LISTEN_BACKOFF, 0.1 * 2 ** failures)
                if failures == 1 or failures % 20 == 0:
                    logger.warning("PostgreSQL storage %s: listener connection failed (attempt "
                                   "%d): %s; idle fetches fall back to polling every %g s; "
                                   "reconnecting in %.1f s", self._description, failures,
                                   _first_line(str(exc)), self._poll_interval, pause)
                self._stopping.wait(pause)


class _Wakeups:
    """Wake-up counters of waiting fetches: notifications per queue, broadcasts, interrupts."""

    #: Distinct queue names remembered; more are forgotten with a broadcast.
    MAX_QUEUES = 1_000

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._queues: dict[str, int] = {}
        self._broadcasts = 0
        self._interrupts = 0

    def mark(self, queues: Sequence[str]) -> tuple[int, int, tuple[int, ...]]:
        """Return the current position, to pass to ``wait`` after checking the queues."""
        with self._condition:
            return self._mark(queues)

    def _mark(self, queues: Sequence[str]) -> tuple[int, int, tuple[int, ...]]:
        return (self._interrupts, self._broadcasts,
                tuple(self._queues.get(queue, 0) for queue in queues))

    def wait(self, mark: tuple[int, int, tuple[int, ...]], queues: Sequence[str],
             timeout: float) -> bool:
        """Wait until ``mark`` is out of date or ``timeout`` passes; True when interrupted."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                latest = self._mark(queues)
                if latest != mark:
                    return latest[0] != mark[0]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(remaining)

    def notify(self, queue: str) -> None:
        with self._condition:
            if queue not in self._queues and len(self._queues) >= self.MAX_QUEUES:
                self._queues.clear()
                self._broadcasts += 1
            self._queues[queue] = self._queues.get(queue, 0) + 1
            self._condition.notify_all()

    def broadcast(self) -> None:
        with self._condition:
            self._broadcasts += 1
            self._condition.notify_all()

    def interrupt(self) -> None:
        with self._condition:
            self._interrupts += 1
            self._condition.notify_all()


# -- the application's connection (transactional enqueue) -------------------------


class _TupleRows:
    """An application's connection, used with plain cursors.

    The application may have set a row factory (such as ``dict_row``) or
    client-side binding (Django's default cursor) on its connection, but
    statements run here get tuple rows and server-side parameters anyway.
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, query: Any, params: Any = None) -> psycopg.Cursor[Any]:
        return psycopg.Cursor(self._conn, row_factory=tuple_row).execute(query, params)


def _application_connection(connection: object) -> psycopg.Connection[Any]:
    """Return ``connection`` if jobs can be written through it, else raise ConfigurationError.

    It must be an open psycopg 3 (sync) connection in which a transaction is
    open or will open with the next statement. In autocommit mode outside a
    transaction block, each statement would commit at once.
    """
    if isinstance(connection, psycopg.AsyncConnection):
        raise ConfigurationError(
            "transactional enqueue needs a sync psycopg.Connection; an AsyncConnection is "
            "not supported")
    if not isinstance(connection, psycopg.Connection):
        raise ConfigurationError(
            f"invalid connection {type(connection).__name__!r}: pass a psycopg 3 Connection "
            "(from SQLAlchemy: session.connection().connection.driver_connection; from "
            "Django with the psycopg backend: django.db.connection.connection)")
    if connection.closed:
        raise ConfigurationError("the application's connection is closed")
    status = connection.info.transaction_status
    if connection.autocommit and status == TransactionStatus.IDLE:
        raise ConfigurationError(
            "the application's connection is in autocommit mode outside a transaction, so "
            "the job would be committed at once; enqueue inside a transaction ('with "
            "conn.transaction():' in psycopg, 'with transaction.atomic():' in Django)")
    return connection


# -- URLs ------------------------------------------------------------------------


def _split_options(url: str) -> tuple[str, dict[str, str]]:
    """Split backburner's query options off ``url``; the rest stays byte for byte for libpq."""
    parts = urlsplit(url)
    options: dict[str, str] = {}
    kept = []
    for item in parts.query.split("&") if parts.query else []:
        key, _, value = item.partition("=")
        if unquote(key) in URL_OPTIONS:
            options[unquote(key)] = unquote(value)
        else:
            kept.append(item)
    return urlunsplit(parts._replace(query="&".join(kept))), options


def _parse_conninfo(conninfo: str) -> dict[str, Any]:
    try:
        return conninfo_to_dict(conninfo)
    except psycopg.Error as exc:
        raise ConfigurationError(
            f"invalid PostgreSQL URL {redact_url(conninfo)!r}: {exc}; expected "
            "postgresql://user@host:port/database") from None


def _positive(options: dict[str, str], name: str, default: _T, kind: Callable[[str], _T],
              url: str) -> _T:
    if name not in options:
        return default
    try:
        value = kind(options[name])
    except ValueError:
        value = None
    if value is None or not value > 0:  # type: ignore[operator]
        raise ConfigurationError(
            f"invalid {name} {options[name]!r} in {redact_url(url)!r}: use a positive number")
    return value


def redact_url(url: str) -> str:
    """Return ``url`` with the password (in the user part or the query) replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{hostinfo}"
    query = "&".join(
        f"{item.partition('=')[0]}=***" if unquote(item.partition("=")[0]) == "password"
        else item
        for item in parts.query.split("&")) if parts.query else ""
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _describe(params: dict[str, Any], schema: str) -> str:
    user = f"{params['user']}@" if params.get("user") else ""
    host = params.get("host") or ""
    port = f":{params['port']}" if params.get("port") else ""
    database = params.get("dbname") or ""
    return f"postgresql://{user}{host}{port}/{database}?schema={schema}"


# -- connections -----------------------------------------------------------------


def _check_idle_connection(conn: psycopg.Connection[Any]) -> None:
    """Reject a pooled connection that the server closed while it sat idle.

    An idle connection receives nothing unless the server sent an error (such
    as the notice of ``pg_terminate_backend`` or a shutdown) or closed it, so
    a readable socket triggers a real check; otherwise this costs no round trip.
    """
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    if readable:
        ConnectionPool.check_connection(conn)


def _scalar(conn: Executor, query: str, params: Sequence[Any] = ()) -> Any:
    return _first(conn.execute(query, params or None))


def _first(cursor: psycopg.Cursor[Any]) -> Any:
    row = cursor.fetchone()
    if row is None:
        raise StorageError("PostgreSQL returned no row where one was expected")
    return row[0]


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


# -- rows ------------------------------------------------------------------------


def _decode_reason(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return text  # written by something other than backburner
    return value if isinstance(value, str) else text


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
        paused=bool(row[10]), last_at=row[11], last_job_id=row[12],
        error=_decode_reason(row[13]), error_count=row[14], retry_at=row[15])


def _load_data(text: str) -> dict[str, Any]:
    # History data is written by backburner itself, but rows may come from an
    # older or hostile client: anything that is not a JSON object is kept as text.
    try:
        value = json.loads(text)
    except ValueError:
        return {"raw": text}
    return value if isinstance(value, dict) else {"raw": value}
