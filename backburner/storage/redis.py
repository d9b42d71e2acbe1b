"""Redis storage: one Lua script per operation, so every multi-key change is atomic.

Each job is a hash with a list for its state history. Indexes are sorted sets:
one per queue for Enqueued jobs (FIFO by the time enqueued), one for Scheduled
jobs by due time, and one per other state by the time of the last change. The
Succeeded and Deleted sets keep only the newest ``max_listed_jobs`` ids, while
a hash keeps exact counts per state. ``redis_lua/common.lua`` lists every key.

Every script that changes jobs reads the clock with Redis ``TIME``, so leases,
heartbeats and due times use one clock, not the clocks of the machines that
run servers.
Redis 7 replicates the effects of a script, not the script itself, which is
what makes ``TIME`` inside a writing script safe.

An idle ``fetch_jobs`` blocks in ``BLPOP`` on one wake-up list per queue.
Each job that enters a queue pushes a token there (up to a cap), and the
claim script empties the list when the queue is empty and leaves a token when
jobs remain. A blocked fetcher therefore wakes on the first new job,
whichever process enqueued it. ``interrupt()`` pushes to a list of each
waiting call's own, which wakes it at once.

Durability is Redis's: without persistence (AOF with ``appendfsync everysec``
or ``always``) a Redis restart loses jobs. On Redis Cluster, every key of one
app must hash to one slot: give the prefix a hash tag such as
``{backburner}:``. That keeps each script's keys together, at the cost of
putting the whole app on one shard. Running on a cluster also needs a
cluster-aware client, which this module does not create yet.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

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

logger = logging.getLogger(__name__)

DEFAULT_PREFIX = "backburner:"
#: Seconds a command may wait for Redis before it fails, so an outage raises
#: StorageError instead of hanging. Must exceed the longest blocking wait.
DEFAULT_SOCKET_TIMEOUT = 5.0
DEFAULT_CONNECT_TIMEOUT = 5.0
#: Newest Succeeded and Deleted jobs kept in the monitoring lists (each state).
DEFAULT_MAX_LISTED_JOBS = 10_000
#: Maximum duration of one BLPOP of an idle fetch, in seconds. The fetch then
#: claims again, which bounds the delay if a wake-up token was ever missed.
MAX_BLOCK = 1.0
#: Maximum wake-up tokens kept per queue: enough to wake that many blocked fetchers at once.
WAKE_CAP = 1_000
#: Seconds an interrupt token outlives a fetch that returned before reading it.
INTERRUPT_TTL = 60
#: Lease tokens released per script call when putting back the jobs of lost fetch replies.
RELEASE_BATCH = 1_000
#: Maximum number of lease tokens of failed fetches kept until Redis answers again.
MAX_LOST_TOKENS = 10_000

#: URL query options this backend reads itself.
OWN_OPTIONS = {"prefix", "max_listed_jobs"}
#: URL query options passed on to redis-py.
CLIENT_OPTIONS = {"db", "username", "password", "socket_timeout", "socket_connect_timeout", "health_check_interval",
                  "max_connections", "client_name", "ssl_cert_reqs", "ssl_ca_certs",
                  "ssl_certfile", "ssl_keyfile", "ssl_check_hostname"}

#: Scripts that use common.lua. Each gets the generated constants and common.lua first.
_JOB_SCRIPTS = ("create_jobs", "fetch_jobs", "change_states", "enqueue_due_jobs",
                "recover_jobs", "expire", "release_leases", "save_recurring",
                "set_recurring_paused", "due_recurring", "fire_recurring", "trigger_recurring",
                "record_recurring_error")
#: Scripts that stand alone.
_PLAIN_SCRIPTS = ("announce_server", "heartbeat", "acquire_lock", "release_lock")

_LOST_FETCH_REASON = ("The reply to the fetch that claimed this job was lost (connection "
                      "failure); job put back in its queue")


def _import_redis() -> Any:
    try:
        import redis
        import redis.backoff
        import redis.retry
    except ImportError:
        raise ConfigurationError(
            "Redis storage needs the redis package; install it with "
            "pip install 'backburner[redis]'") from None
    return redis


def open_redis(url: str) -> RedisStorage:
    """Open Redis storage from a ``redis://``, ``rediss://`` or ``unix://`` URL.

    Query options: ``prefix`` (key prefix, default ``backburner:``),
    ``max_listed_jobs`` (newest Succeeded and Deleted jobs kept in the
    monitoring lists, default 10000), and the redis-py options in
    ``CLIENT_OPTIONS``. Connections are named ``default_client_name(prefix)``
    unless the URL sets ``client_name``. docs/redis.md describes them all.
    """
    parts = urlsplit(url)
    options = {key: values[-1]
               for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = set(options) - OWN_OPTIONS - CLIENT_OPTIONS
    if unknown:
        raise ConfigurationError(
            f"unknown Redis URL option(s) {sorted(unknown)} in {redact_url(url)!r}; "
            f"supported: {', '.join(sorted(OWN_OPTIONS | CLIENT_OPTIONS))}")
    prefix = options.pop("prefix", DEFAULT_PREFIX)
    max_listed = _positive_int(options.pop("max_listed_jobs", str(DEFAULT_MAX_LISTED_JOBS)),
                               "max_listed_jobs", url)
    for name in ("socket_timeout", "socket_connect_timeout"):
        if name in options:
            _positive_float(options[name], name, url)
    client_url = _with_query(url, options)
    return RedisStorage(client_url, prefix=prefix, max_listed_jobs=max_listed)


def redact_url(url: str) -> str:
    """Return ``url`` with any password (in the address or the query) replaced by ***."""
    parts = urlsplit(url)
    if parts.password is not None:
        url = url.replace(f":{parts.password}@", ":***@", 1)
    query = parse_qs(parts.query, keep_blank_values=True)
    if "password" in query:
        query["password"] = ["***"]
    return _with_query(url, {key: values[-1] for key, values in query.items()})


def default_client_name(prefix: str) -> str:
    """Return the connection name (CLIENT SETNAME) for storages under ``prefix``.

    Operators find the connections of one app with ``CLIENT LIST`` by this
    name. Redis accepts only printable ASCII without spaces in a name, so any
    other character becomes ``_``.
    """
    name = f"backburner[{prefix}]"
    return "".join(char if "!" <= char <= "~" else "_" for char in name)


def _with_query(url: str, options: dict[str, str]) -> str:
    # Rebuilt by hand: urlsplit(...).geturl() turns "unix:///path" into "unix:/path".
    base = url.split("?", 1)[0].split("#", 1)[0]
    if not options:
        return base
    return base + "?" + urlencode(options, safe="*:{}")


def _positive_int(text: str, name: str, url: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigurationError(
            f"invalid {name} {text!r} in {redact_url(url)!r}: use a positive whole number")
    return value


def _positive_float(text: str, name: str, url: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or math.isinf(value):
        raise ConfigurationError(
            f"invalid {name} {text!r} in {redact_url(url)!r}: use a positive number of seconds")
    return value


class RedisStorage(Storage):
    """Storage in one Redis database, every key under one prefix."""

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX,
                 max_listed_jobs: int = DEFAULT_MAX_LISTED_JOBS) -> None:
        redis = _import_redis()
        if not prefix:
            raise ConfigurationError(
                "the Redis key prefix is empty; use one such as backburner: so that "
                "backburner's keys stay apart from other data")
        self.prefix = prefix
        self.max_listed_jobs = max_listed_jobs
        self._redis = redis
        # No automatic retries: a script re-sent after a lost reply could run twice.
        # A client_name in the URL wins over the default, as redis-py lets URL options win.
        try:
            self._pool = redis.ConnectionPool.from_url(
                url, decode_responses=True, socket_timeout=DEFAULT_SOCKET_TIMEOUT,
                socket_connect_timeout=DEFAULT_CONNECT_TIMEOUT,
                client_name=default_client_name(prefix),
                # Bytes that are not UTF-8 (written behind the storage's back) decode to
                # lone surrogates and encode back to the same bytes, instead of failing
                # a fetch after its claim ran.
                encoding_errors="surrogateescape",
                retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0))
        except ValueError as exc:
            raise ConfigurationError(f"invalid Redis URL {redact_url(url)!r}: {exc}") from None
        self._client = redis.Redis(connection_pool=self._pool)
        socket_timeout = self._pool.connection_kwargs.get("socket_timeout") or MAX_BLOCK * 2
        self._block_slice = min(MAX_BLOCK, socket_timeout / 2)
        self._description = self._describe_connection(url)
        self._scripts = self._register_scripts()
        self._routing_key = prefix + "state-counts"
        self._closed = False
        self._waiters: set[str] = set()  # interrupt lists of the fetch calls now running
        self._interrupts = 0
        self._waiters_lock = threading.Lock()
        self._lost_tokens: list[str] = []  # lease tokens of fetches whose reply was lost
        self._lost_lock = threading.Lock()

    def _describe_connection(self, url: str) -> str:
        kwargs = self._pool.connection_kwargs
        query = urlencode({"prefix": self.prefix}, safe=":{}")
        if "path" in kwargs:
            return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}&{query}"
        scheme = "rediss" if urlsplit(url).scheme.lower() == "rediss" else "redis"
        user = quote(kwargs.get("username") or "", safe="")
        secret = ":***" if kwargs.get("password") else ""
        login = f"{user}{secret}@" if user or secret else ""
        return (f"{scheme}://{login}{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
                f"/{kwargs.get('db', 0)}?{query}")

    def _register_scripts(self) -> dict[str, Any]:
        folder = resources.files("backburner.storage").joinpath("redis_lua")
        common = _lua_constants(self.max_listed_jobs) + folder.joinpath("common.lua").read_text()
        scripts = {}
        for name in _JOB_SCRIPTS:
            text = common + "\n" + folder.joinpath(f"{name}.lua").read_text()
            scripts[name] = self._client.register_script(text)
        for name in _PLAIN_SCRIPTS:
            scripts[name] = self._client.register_script(folder.joinpath(f"{name}.lua").read_text())
        return scripts

    def describe(self) -> str:
        return self._description

    # -- connections and errors ------------------------------------------------

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        if self._closed:
            raise StorageError(f"storage {self.describe()} is closed")
        try:
            yield
        except (self._redis.ConnectionError, self._redis.TimeoutError) as exc:
            raise StorageError(
                f"Redis storage {self.describe()} failed to {action}: {exc} (check that Redis "
                "is running and reachable at this address)") from exc
        except self._redis.RedisError as exc:
            raise StorageError(
                f"Redis storage {self.describe()} failed to {action}: {exc}") from exc

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _run(self, name: str, args: Sequence[Any]) -> Any:
        return self._scripts[name](keys=[self._routing_key], args=[self.prefix, *args])

    def now(self) -> float:
        with self._errors("read the clock"):
            seconds, microseconds = self._client.time()
        return seconds + microseconds / 1_000_000

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.interrupt()
        self._pool.disconnect()

    # -- jobs ------------------------------------------------------------------

    def create_jobs(self, jobs: Sequence[NewJob], *, connection: object | None = None) -> None:
        if connection is not None:
            raise ConfigurationError("transactional enqueue needs PostgreSQL storage")
        if not jobs:
            return
        with self._errors("create jobs"):
            result = self._run("create_jobs", _new_job_args(jobs))
        self._check_created(result)

    def _check_created(self, result: Sequence[str]) -> None:
        """Raise JobNotFound or StorageError when a job-creating script rejected the jobs."""
        if result[0] == "missing":
            parent_id = result[1] or None
            raise JobNotFound(f"parent job {parent_id!r} not found; it may have expired")
        if result[0] == "duplicate":
            raise StorageError(f"Redis storage {self.describe()} failed to create jobs: "
                               f"a job with id {result[1]!r} already exists")

    def get_job(self, job_id: str, *, history: bool = True) -> JobRecord | None:
        with self._errors("read a job"):
            pipe = self._client.pipeline(transaction=True)
            pipe.hgetall(self._key("job", job_id))
            if history:
                pipe.lrange(self._key("history", job_id), 0, -1)
            results = pipe.execute()
        if not results[0]:
            return None
        entries = tuple(_history_entry(text) for text in results[1]) if history else ()
        return _job_record(job_id, results[0], entries)

    def fetch_jobs(self, queues: Sequence[str], server_id: str, limit: int,
                   wait: float = 0.0) -> list[JobRecord]:
        if wait <= 0:
            return self._claim(queues, server_id, limit)
        deadline = time.monotonic() + wait
        interrupt_key = self._key("interrupt", uuid.uuid4().hex)
        with self._waiters_lock:
            self._waiters.add(interrupt_key)
            interrupts = self._interrupts
        try:
            while True:
                jobs = self._claim(queues, server_id, limit)
                remaining = deadline - time.monotonic()
                if jobs or remaining <= 0 or self._closed or self._interrupts != interrupts:
                    return jobs
                self._block(queues, interrupt_key, min(remaining, self._block_slice))
        except StorageError:
            if self._closed:  # close() cut the connection of a waiting fetch
                return []
            raise
        finally:
            with self._waiters_lock:
                self._waiters.discard(interrupt_key)

    def _claim(self, queues: Sequence[str], server_id: str, limit: int) -> list[JobRecord]:
        if self._lost_tokens:
            self._release_lost_claims()
        if limit <= 0 or not queues:
            return []
        # One random value per call keeps the tokens unique at one system call per fetch.
        base = uuid.uuid4().hex
        tokens = [f"{base}{index:x}" for index in range(limit)]
        with self._errors("fetch jobs"):
            try:
                rows = self._run("fetch_jobs", [server_id, limit, len(queues), *queues, *tokens])
            except (self._redis.ConnectionError, self._redis.TimeoutError):
                # The claim may have run without its reply reaching us.
                # NOTE: during a long outage every failed fetch adds tokens, most of
                # them from calls that never reached Redis. The first ones are the
                # likely lost claims, so the list keeps those when it is full.
                with self._lost_lock:
                    room = MAX_LOST_TOKENS - len(self._lost_tokens)
                    self._lost_tokens += tokens[:max(0, room)]
                raise
        records = [json.loads(text) for text in rows]
        return [_job_record(row[0], _pairs(row[1:]), ()) for row in records]

    def _release_lost_claims(self) -> None:
        with self._lost_lock:
            tokens, self._lost_tokens = self._lost_tokens, []
        try:
            while tokens:
                batch = tokens[:RELEASE_BATCH]
                with self._errors("put back the jobs of a lost fetch reply"):
                    released = self._run("release_leases",
                                         [json.dumps(_LOST_FETCH_REASON), *batch])
                del tokens[:len(batch)]
                for job_id in released:
                    logger.warning("job %s was claimed by a fetch whose reply was lost; put it "
                                   "back in its queue", job_id)
        finally:
            if tokens:  # Redis failed again: keep the rest for the next fetch
                with self._lost_lock:
                    self._lost_tokens[:0] = tokens

    def _block(self, queues: Sequence[str], interrupt_key: str, timeout: float) -> None:
        # Redis reads a BLPOP timeout that rounds to 0 ms as "wait forever".
        timeout = max(0.01, round(timeout, 3))
        keys = [self._key("wakeup", queue) for queue in queues] + [interrupt_key]
        with self._errors("wait for jobs"):
            self._client.blpop(keys, timeout=timeout)

    def interrupt(self) -> None:
        with self._waiters_lock:
            self._interrupts += 1
            keys = list(self._waiters)
        if not keys:
            return
        try:
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.rpush(key, "1")
                pipe.expire(key, INTERRUPT_TTL)
            pipe.execute()
        except self._redis.RedisError as exc:
            logger.warning("could not wake %d waiting fetch(es) on %s: %s; they return within "
                           "%.1f s", len(keys), self.describe(), exc, self._block_slice)

    def change_states(self, changes: Sequence[StateChange]) -> list[bool]:
        if not changes:
            return []
        rows: list[list[str]] = []
        for change in changes:
            traversed = "\n".join(json.dumps([entry.state, entry.reason, entry.data])[:-1]
                                  for entry in change.traversed)
            rows.append([change.job_id, change.state, json.dumps(change.reason),
                         json.dumps(change.data), ",".join(change.expected),
                         change.lease_token or "", traversed, _optional(change.due_at),
                         _optional(change.delay),
                         "" if change.retry_count is None else str(int(change.retry_count)),
                         _optional(change.expire_in),
                         "" if change.crash_count is None else str(int(change.crash_count))])
        with self._errors("change job states"):
            results = self._run("change_states", [_json_argument(rows)])
        return [bool(result) for result in results]

    def enqueue_due_jobs(self, limit: int) -> list[str]:
        with self._errors("enqueue due jobs"):
            return list(self._run("enqueue_due_jobs", [limit]))

    def current_leases(self, tokens: Sequence[str]) -> set[str]:
        if not tokens:
            return set()
        with self._errors("check leases"):
            job_ids = self._client.hmget(self._key("leases"), list(tokens))
        return {token for token, job_id in zip(tokens, job_ids) if job_id is not None}

    def recover_jobs_of_dead_servers(self, server_timeout: float,
                                     max_crash_requeues: int) -> list[Recovery]:
        with self._errors("recover jobs of dead servers"):
            flat = self._run("recover_jobs", [repr(float(server_timeout)),
                                              int(max_crash_requeues)])
        return [Recovery(flat[index], flat[index + 1], flat[index + 2])
                for index in range(0, len(flat), 3)]

    def expire(self, limit: int) -> int:
        with self._errors("expire jobs"):
            return int(self._run("expire", [limit]))

    # -- recurring jobs ----------------------------------------------------------

    def save_recurring(self, record: RecurringRecord) -> None:
        with self._errors("save a recurring job"):
            self._run("save_recurring", [record.id, record.cron, record.tz, record.function,
                                         record.payload, record.queue, record.misfire,
                                         _optional(record.next_at)])

    def get_recurring(self, recurring_id: str) -> RecurringRecord | None:
        with self._errors("read a recurring job"):
            fields = self._client.hgetall(self._key("recurring", recurring_id))
        return _recurring_record(recurring_id, fields) if fields else None

    def list_recurring(self) -> list[RecurringRecord]:
        with self._errors("list recurring jobs"):
            ids = self._client.zrange(self._key("recurring-ids"), 0, -1)
            pipe = self._client.pipeline(transaction=True)
            for recurring_id in ids:
                pipe.hgetall(self._key("recurring", recurring_id))
            records = pipe.execute()
        return [_recurring_record(recurring_id, fields)
                for recurring_id, fields in zip(ids, records) if fields]

    def remove_recurring(self, recurring_id: str) -> bool:
        with self._errors("remove a recurring job"):
            pipe = self._client.pipeline(transaction=True)
            pipe.delete(self._key("recurring", recurring_id))
            pipe.zrem(self._key("recurring-ids"), recurring_id)
            pipe.zrem(self._key("recurring-due"), recurring_id)
            deleted = pipe.execute()[0]
        return bool(deleted)

    def set_recurring_paused(self, recurring_id: str, paused: bool,
                             next_at: float | None) -> bool:
        with self._errors("pause or resume a recurring job"):
            return bool(self._run("set_recurring_paused",
                                  [recurring_id, "1" if paused else "0", _optional(next_at)]))

    def due_recurring(self, limit: int, max_errors: int) -> list[RecurringRecord]:
        with self._errors("read due recurring jobs"):
            rows = self._run("due_recurring", [int(limit), int(max_errors)])
        return [_recurring_record(row[0], _pairs(row[1:])) for row in rows]

    def fire_recurring(self, recurring_id: str, expected_next_at: float,
                       jobs: Sequence[NewJob], next_at: float | None) -> bool:
        args = [recurring_id, repr(float(expected_next_at)), _optional(next_at),
                *_new_job_args(jobs)]
        with self._errors("fire a recurring job"):
            result = self._run("fire_recurring", args)
        if result[0] == "stale":
            return False
        self._check_created(result)
        return True

    def trigger_recurring(self, recurring_id: str, job: NewJob) -> bool:
        with self._errors("trigger a recurring job"):
            result = self._run("trigger_recurring", [recurring_id, *_new_job_args([job])])
        if result[0] == "stale":
            return False
        self._check_created(result)
        return True

    def record_recurring_error(self, recurring_id: str, error: str,
                               retry_at: float | None) -> None:
        with self._errors("record a recurring job error"):
            self._run("record_recurring_error", [recurring_id, error, _optional(retry_at)])

    # -- servers ---------------------------------------------------------------

    def announce_server(self, server_id: str, queues: Sequence[str], workers: int,
                        info: dict[str, Any]) -> None:
        with self._errors("announce a server"):
            self._scripts["announce_server"](
                keys=[self._key("servers"), self._key("server", server_id)],
                args=[server_id, json.dumps(list(queues)), int(workers), json.dumps(info)])

    def heartbeat(self, server_id: str) -> bool:
        with self._errors("record a heartbeat"):
            return bool(self._scripts["heartbeat"](keys=[self._key("servers")],
                                                   args=[server_id]))

    def remove_server(self, server_id: str) -> None:
        with self._errors("remove a server"):
            pipe = self._client.pipeline(transaction=True)
            pipe.delete(self._key("server", server_id))
            pipe.zrem(self._key("servers"), server_id)
            pipe.execute()

    def list_servers(self) -> list[ServerRecord]:
        with self._errors("list servers"):
            heartbeats = self._client.zrange(self._key("servers"), 0, -1, withscores=True)
            pipe = self._client.pipeline(transaction=True)
            for server_id, _ in heartbeats:
                pipe.hgetall(self._key("server", server_id))
            records = pipe.execute()
        servers = [
            ServerRecord(id=server_id, queues=tuple(_load_json(record.get("queues"), [])),
                         workers=int(record.get("workers", 0)),
                         started_at=float(record.get("started_at", heartbeat)),
                         heartbeat_at=heartbeat, info=_load_data(record.get("info", "{}")))
            for (server_id, heartbeat), record in zip(heartbeats, records) if record]
        return sorted(servers, key=lambda server: (server.started_at, server.id))

    # -- locks -----------------------------------------------------------------

    def acquire_lock(self, name: str, owner: str, ttl: float) -> bool:
        milliseconds = max(0, math.ceil(ttl * 1000))
        with self._errors("acquire a lock"):
            return bool(self._scripts["acquire_lock"](keys=[self._key("lock", name)],
                                                      args=[owner, milliseconds]))

    def release_lock(self, name: str, owner: str) -> None:
        with self._errors("release a lock"):
            self._scripts["release_lock"](keys=[self._key("lock", name)], args=[owner])

    # -- monitoring ------------------------------------------------------------

    def count_jobs_by_state(self) -> dict[str, int]:
        counts = dict.fromkeys(states.ALL_STATES, 0)
        with self._errors("count jobs"):
            stored = self._client.hgetall(self._key("state-counts"))
        for state, value in stored.items():
            if state in counts or int(value) > 0:
                counts[state] = int(value)
        return counts

    def queue_lengths(self) -> dict[str, int]:
        with self._errors("measure queues"):
            names = sorted(self._client.smembers(self._key("queues")))
            pipe = self._client.pipeline(transaction=True)
            for name in names:
                pipe.zcard(self._key("queue", name))
            lengths = pipe.execute()
        return {name: length for name, length in zip(names, lengths) if length}

    def list_jobs(self, state: str, *, queue: str | None = None, offset: int = 0,
                  limit: int = 50) -> list[JobRecord]:
        offset = max(0, offset)
        if limit < 0:  # as in SQL, a negative limit means no limit
            limit = 2 ** 62
        if limit == 0:
            return []
        with self._errors("list jobs"):
            if state == states.ENQUEUED and queue is not None:
                ids = self._client.zrange(self._key("queue", queue), offset, offset + limit - 1)
            elif state == states.ENQUEUED:
                ids = self._enqueued_ids(offset, limit)
            elif queue is not None:
                ids = self._ids_in_queue(state, queue, offset, limit)
            else:
                ids = self._client.zrange(self._index_key(state), offset, offset + limit - 1,
                                          desc=state != states.SCHEDULED)
            pipe = self._client.pipeline(transaction=True)
            for job_id in ids:
                pipe.hgetall(self._key("job", job_id))
            records = pipe.execute()
        # A job may change state between the two reads; leave it out then.
        return [_job_record(job_id, record, ()) for job_id, record in zip(ids, records)
                if record and record.get("state") == state]

    def get_histories(self, job_ids: Sequence[str]) -> dict[str, tuple[HistoryEntry, ...]]:
        with self._errors("read job histories"):
            pipe = self._client.pipeline(transaction=False)
            for job_id in job_ids:
                pipe.lrange(self._key("history", job_id), 0, -1)
            found = pipe.execute()
        return {job_id: tuple(_history_entry(text) for text in texts)
                for job_id, texts in zip(job_ids, found) if texts}

    def list_retries(self, *, offset: int = 0, limit: int = 50) -> list[JobRecord]:
        offset, limit = max(0, offset), max(0, limit)
        if limit == 0:
            return []
        with self._errors("list retries"):
            ids = self._client.zrange(self._key("retries"), offset, offset + limit - 1)
        return [record for record in self._read_jobs("list retries", ids)
                if record.state == states.SCHEDULED]

    def count_retries(self) -> int:
        with self._errors("count retries"):
            return int(self._client.zcard(self._key("retries")))

    def list_continuations(self, parent_id: str, *, limit: int = 100) -> list[JobRecord]:
        # Job ids begin with their creation time, so the first ids are the oldest jobs.
        with self._errors("list continuations"):
            ids = sorted(self._client.smembers(self._key("children", parent_id)))
        records = self._read_jobs("list continuations", ids[:max(0, limit)])
        return sorted(records, key=lambda record: (record.created_at, record.id))

    def _read_jobs(self, action: str, ids: Sequence[str]) -> list[JobRecord]:
        """Return the jobs of ``ids`` that still exist, without history, in the order given."""
        with self._errors(action):
            pipe = self._client.pipeline(transaction=False)
            for job_id in ids:
                pipe.hgetall(self._key("job", job_id))
            found = pipe.execute()
        return [_job_record(job_id, fields, ()) for job_id, fields in zip(ids, found) if fields]

    def _index_key(self, state: str) -> str:
        if state == states.SCHEDULED:
            return self._key("scheduled")
        return self._key("state", state)

    def _enqueued_ids(self, offset: int, limit: int) -> list[str]:
        # Each queue is its own sorted set, so merge the heads of all of them.
        names = self._client.smembers(self._key("queues"))
        stop = min(offset + limit, 2 ** 62) - 1
        pipe = self._client.pipeline(transaction=True)
        for name in names:
            pipe.zrange(self._key("queue", name), 0, stop, withscores=True)
        merged = sorted((score, job_id) for heads in pipe.execute() for job_id, score in heads)
        return [job_id for _, job_id in merged[offset:offset + limit]]

    def _ids_in_queue(self, state: str, queue: str, offset: int, limit: int) -> list[str]:
        # No per-queue index outside Enqueued: walk the state's index in pages.
        # NOTE: this reads every job of the state in the worst case.
        key, descending = self._index_key(state), state != states.SCHEDULED
        matched: list[str] = []
        start, page = 0, 500
        while len(matched) < offset + limit:
            ids = self._client.zrange(key, start, start + page - 1, desc=descending)
            if not ids:
                break
            pipe = self._client.pipeline(transaction=False)
            for job_id in ids:
                pipe.hget(self._key("job", job_id), "queue")
            matched += [job_id for job_id, job_queue in zip(ids, pipe.execute())
                        if job_queue == queue]
            start += page
        return matched[offset:offset + limit]

    def counter_totals(self) -> dict[str, int]:
        names = list(counters.COUNTED_STATES.values())
        with self._errors("read counters"):
            values = self._client.mget([self._key("counter", name) for name in names])
        return {name: int(value or 0) for name, value in zip(names, values)}

    def counter_history(self, name: str, resolution: str, since: float) -> list[tuple[float, int]]:
        counters.check_resolution(resolution)
        width, keep = counters.RESOLUTIONS[resolution]
        now = self.now()
        # Buckets older than this have outlived their TTL.
        first = math.ceil(max(since, now - keep - width) / width) * width
        starts = range(int(first), int(now - now % width) + 1, width)
        if not starts:
            return []
        with self._errors("read counter history"):
            values = self._client.mget(
                [self._key("counter", name, resolution, str(start)) for start in starts])
        return [(float(start), int(value)) for start, value in zip(starts, values)
                if value is not None]


# -- helpers -----------------------------------------------------------------


def _lua_constants(list_cap: int) -> str:
    """Return Lua definitions of the state tables, generated from backburner.states."""
    def lua_set(values: Sequence[str] | frozenset[str]) -> str:
        return "{" + ", ".join(f"[{_lua_string(value)}] = true" for value in sorted(values)) + "}"

    transitions = ", ".join(f"[{_lua_string(source)}] = {lua_set(targets)}"
                            for source, targets in states.TRANSITIONS.items())
    triggers = ", ".join(f"[{_lua_string(on)}] = {lua_set(parents)}"
                         for on, parents in states.CONTINUATION_TRIGGERS.items())
    counted = ", ".join(f"[{_lua_string(state)}] = {_lua_string(name)}"
                        for state, name in counters.COUNTED_STATES.items())
    resolutions = ", ".join(f"{{{_lua_string(name)}, {int(width)}, {int(keep)}}}"
                            for name, (width, keep) in counters.RESOLUTIONS.items())
    return "\n".join([
        "-- Generated by backburner/storage/redis.py from backburner.states and",
        "-- backburner.storage.counters.",
        f"local TRANSITIONS = {{{transitions}}}",
        f"local FINAL_STATES = {lua_set(states.FINAL_STATES)}",
        f"local CONTINUATION_TRIGGERS = {{{triggers}}}",
        f"local COUNTED_STATES = {{{counted}}}",
        f"local RESOLUTIONS = {{{resolutions}}}",
        f"local CAPPED_LISTS = {lua_set(states.FINAL_STATES)}",
        f"local LIST_CAP = {int(list_cap)}",
        f"local WAKE_CAP = {int(WAKE_CAP)}",
        "",
    ])


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _optional(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _new_job_args(jobs: Sequence[NewJob]) -> list[str]:
    """Encode jobs as the one script argument that ``decode_jobs`` in common.lua reads."""
    rows = [[job.id, job.function, job.payload, job.queue, job.state,
             json.dumps(job.reason), _optional(job.due_at), _optional(job.delay),
             job.parent_id or "", job.continue_on or "", _optional(job.expire_in),
             job.recurring_id or "", _optional(job.occurrence)] for job in jobs]
    return [_json_argument(rows)]


def _json_argument(rows: list[list[str]]) -> str:
    # Text other than ASCII goes to Redis as UTF-8, exactly as a plain argument would.
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":"))


def _pairs(flat: Sequence[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2]))


def _job_record(job_id: str, fields: dict[str, str],
                history: tuple[HistoryEntry, ...]) -> JobRecord:
    # A field that is not a number (written behind the storage's back) reads as
    # unset, so that one damaged job cannot fail a fetch that claimed others too.
    def number(name: str) -> float | None:
        try:
            return float(fields[name])
        except (KeyError, ValueError):
            return None

    def whole(name: str) -> int:
        try:
            return int(fields.get(name, 0))
        except ValueError:
            return 0

    return JobRecord(
        id=job_id, function=fields.get("function", ""), payload=fields.get("payload", ""),
        queue=fields.get("queue", ""), state=fields.get("state", ""),
        created_at=number("created_at") or 0.0, state_at=number("state_at") or 0.0,
        attempt=whole("attempt"), retry_count=whole("retry_count"),
        crash_count=whole("crash_count"), lease_token=fields.get("lease_token"),
        server_id=fields.get("server_id"), due_at=number("due_at"),
        expire_at=number("expire_at"), parent_id=fields.get("parent_id"),
        continue_on=fields.get("continue_on"), recurring_id=fields.get("recurring_id"),
        occurrence=number("occurrence"), history=history)


def _recurring_record(recurring_id: str, fields: dict[str, str]) -> RecurringRecord:
    def number(name: str) -> float | None:
        value = fields.get(name)
        return None if value is None else float(value)

    return RecurringRecord(
        id=recurring_id, cron=fields.get("cron", ""), tz=fields.get("tz", ""),
        function=fields.get("function", ""), payload=fields.get("payload", ""),
        queue=fields.get("queue", ""), misfire=fields.get("misfire", ""),
        next_at=number("next_at"), created_at=number("created_at") or 0.0,
        updated_at=number("updated_at") or 0.0, paused=fields.get("paused") == "1",
        last_at=number("last_at"), last_job_id=fields.get("last_job_id"),
        error=fields.get("error"), error_count=int(fields.get("error_count", 0)),
        retry_at=number("retry_at"))


def _history_entry(text: str) -> HistoryEntry:
    # The scripts write entries as JSON arrays [state, reason, data, at]. Anything
    # else (from an older or hostile writer) is kept as raw text.
    try:
        state, reason, data, at = json.loads(text)
        return HistoryEntry(str(state), None if reason is None else str(reason),
                            data if isinstance(data, dict) else {"raw": data}, float(at))
    except (ValueError, TypeError):
        return HistoryEntry("", None, {"raw": text}, None)


def _load_json(text: str | None, default: Any) -> Any:
    if text is None:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def _load_data(text: str) -> dict[str, Any]:
    value = _load_json(text, text)
    return value if isinstance(value, dict) else {"raw": value}
