"""The application object: job registration and the client API."""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

from backburner import states
from backburner.errors import ConfigurationError, PayloadTooLarge
from backburner.ids import new_job_id
from backburner.job import Job, encode_payload
from backburner.records import NewJob
from backburner.registry import (DEFAULT_QUEUE, JobCall, JobFunction, Registry,
                                 check_queue_name, default_name, to_seconds, to_timestamp)
from backburner.retry import DEFAULT_RETRIES, RetryPolicy
from backburner.state_machine import StateMachine
from backburner.storage import DEFAULT_STORAGE_URL, Storage, open_storage

if TYPE_CHECKING:
    from backburner.recurring import RecurringJobs
    from backburner.server import Server

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: Largest encoded argument payload accepted at enqueue, in bytes.
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
#: How long Succeeded and Deleted jobs are kept.
DEFAULT_JOB_RETENTION = dt.timedelta(hours=24)
CONTINUE_ON = ("succeeded", "finished", "deleted")


class Backburner:
    """A backburner application: registered job functions plus a storage.

    ``storage_url`` defaults to the ``BACKBURNER_STORAGE_URL`` environment
    variable, then ``sqlite:///backburner.db``. The storage is opened on first
    use, so importing a module that creates the app touches no files.
    """

    def __init__(self, storage_url: str | None = None, *,
                 max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
                 job_retention: float | dt.timedelta = DEFAULT_JOB_RETENTION) -> None:
        self.storage_url = (storage_url or os.environ.get("BACKBURNER_STORAGE_URL")
                            or DEFAULT_STORAGE_URL)
        if isinstance(max_payload_bytes, bool) or not isinstance(max_payload_bytes, int) or \
                max_payload_bytes <= 0:
            raise ConfigurationError(
                f"invalid max_payload_bytes {max_payload_bytes!r}: use a positive whole number")
        self.max_payload_bytes = max_payload_bytes
        self.job_retention = to_seconds(job_retention, "job_retention") or 0.0
        self.registry = Registry()
        self._storage: Storage | None = None
        self._storage_lock = threading.Lock()

    # -- storage -----------------------------------------------------------

    @property
    def storage(self) -> Storage:
        """The storage, opened on first use."""
        if self._storage is None:
            with self._storage_lock:
                if self._storage is None:
                    self._storage = open_storage(self.storage_url)
                    logger.info("opened storage %s", self._storage.describe())
        return self._storage

    def use_storage(self, storage_url: str) -> None:
        """Point the app at another storage URL; only before the storage is first used."""
        if self._storage is not None:
            raise ConfigurationError(
                "the storage is already open; call use_storage() before the first enqueue")
        self.storage_url = storage_url

    @property
    def recurring(self) -> RecurringJobs:
        """Recurring (cron) jobs: ``add_or_update``, ``trigger``, ``remove``, ``pause``, ..."""
        from backburner.recurring import RecurringJobs

        return RecurringJobs(self)

    @property
    def state_machine(self) -> StateMachine:
        """The state machine over this app's storage."""
        return StateMachine(self.storage, self.job_retention)

    def close(self) -> None:
        """Close the storage; the app reopens it if used again."""
        with self._storage_lock:
            storage, self._storage = self._storage, None
        if storage is not None:
            storage.close()

    # -- registration --------------------------------------------------------

    @overload
    def job(self, func: F, /) -> JobFunction[..., Any]: ...

    @overload
    def job(self, *, name: str | None = None, queue: str = DEFAULT_QUEUE,
            retries: int | RetryPolicy = DEFAULT_RETRIES,
            retry_delays: Sequence[float] | Callable[[int], float] | None = None,
            retry_on: Sequence[type[BaseException]] = (Exception,),
            dont_retry_on: Sequence[type[BaseException]] = (),
            on_exhausted: str = "fail",
            timeout: float | dt.timedelta | None = None,
            ) -> Callable[[F], JobFunction[..., Any]]: ...

    def job(self, func: Callable[..., Any] | None = None, *, name: str | None = None,
            queue: str = DEFAULT_QUEUE, retries: int | RetryPolicy = DEFAULT_RETRIES,
            retry_delays: Sequence[float] | Callable[[int], float] | None = None,
            retry_on: Sequence[type[BaseException]] = (Exception,),
            dont_retry_on: Sequence[type[BaseException]] = (),
            on_exhausted: str = "fail",
            timeout: float | dt.timedelta | None = None) -> Any:
        """Register a job function, as ``@app.job`` or ``@app.job(...)``.

        ``name`` defaults to ``module:qualname``; pass a stable name if the
        function may move. ``retries`` is the number of automatic retries
        (default 10) or a full RetryPolicy. ``timeout`` is in seconds.
        """
        if isinstance(retries, RetryPolicy):
            policy = retries
        else:
            policy = RetryPolicy(retries=retries, delays=retry_delays, retry_on=tuple(retry_on),
                                 dont_retry_on=tuple(dont_retry_on), on_exhausted=on_exhausted)
        timeout_seconds = to_seconds(timeout, "timeout")

        def register(target: Callable[..., Any]) -> JobFunction[..., Any]:
            if not callable(target):
                raise ConfigurationError(f"@app.job needs a function, got {target!r}")
            function: JobFunction[..., Any] = JobFunction(
                self, target, name=name or default_name(target), queue=queue, retry=policy,
                timeout=timeout_seconds)
            self.registry.add(function)
            if function.name.startswith("__main__:"):
                logger.warning(
                    "job function %s is defined in a script run as __main__, so a server that "
                    "imports your app cannot find it; define it in an importable module or "
                    "pass @app.job(name=...)", function.name)
            return function

        return register if func is None else register(func)

    # -- client ------------------------------------------------------------

    def enqueue(self, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> str:
        """Enqueue a call of a registered job function; return the job id."""
        return self.options().enqueue(fn, *args, **kwargs)

    def schedule(self, when: float | dt.timedelta | dt.datetime, fn: Callable[..., Any] | str,
                 /, *args: Any, **kwargs: Any) -> str:
        """Run a call later: ``when`` is a delay (seconds or timedelta) or an aware datetime."""
        if isinstance(when, dt.datetime):
            return self.options(at=when).enqueue(fn, *args, **kwargs)
        return self.options(delay=when).enqueue(fn, *args, **kwargs)

    def continue_with(self, parent_id: str, fn: Callable[..., Any] | str, /, *args: Any,
                      **kwargs: Any) -> str:
        """Run a call once job ``parent_id`` has Succeeded; see ``options(on=...)`` for others."""
        return self.options().continue_with(parent_id, fn, *args, **kwargs)

    def options(self, *, queue: str | None = None, delay: float | dt.timedelta | None = None,
                at: dt.datetime | None = None, on: str = "succeeded",
                connection: object | None = None) -> EnqueueOptions:
        """Return a client that applies these options to the calls made through it.

        ``queue`` overrides the function's queue; ``delay`` or ``at`` schedule
        the job; ``on`` chooses when a continuation runs: "succeeded" (the
        default), "finished" (Succeeded or Deleted) or "deleted".
        ``connection`` is the application's own psycopg 3 connection (PostgreSQL
        storage only). Jobs are written through it without a commit, so they
        exist only if the application's transaction commits.
        """
        return EnqueueOptions(self, queue=queue, delay=delay, at=at, on=on,
                              connection=connection)

    def enqueue_many(self, calls: Iterable[JobCall], *, queue: str | None = None) -> list[str]:
        """Enqueue many calls (from ``fn.call(...)``) in one transaction; return their ids."""
        return self.options(queue=queue).enqueue_many(calls)

    def get_job(self, job_id: str) -> Job | None:
        """Return the job with its state history, or None if it does not exist or expired."""
        record = self.storage.get_job(job_id)
        return None if record is None else Job.from_record(record)

    def delete(self, job_id: str) -> bool:
        """Move a job to Deleted; False if it does not exist or is already Deleted.

        A running job's cancellation token is set at its server's next heartbeat.
        """
        return self.state_machine.delete(job_id)

    def requeue(self, job_id: str) -> bool:
        """Put a job back in its queue from any state; False if it does not exist."""
        return self.state_machine.requeue(job_id)

    # -- server ------------------------------------------------------------

    def server(self, *, queues: Sequence[str] | None = None, workers: int | None = None,
               **settings: Any) -> Server:
        """Return an in-process server; use it as a context manager or call start() and stop()."""
        from backburner.server import Server

        return Server(self, queues=queues, workers=workers, **settings)

    # -- dashboard ---------------------------------------------------------

    def dashboard(self, **options: Any) -> Any:
        """Return the web dashboard as an ASGI application (a Starlette app) to serve or mount.

        Options: ``authorization`` (hooks; default local requests only),
        ``read_only``, ``secret`` (signs CSRF tokens, the same in every
        process), ``allowed_origins``, ``title``, ``poll_interval`` and
        ``server_aborted_threshold``; see ``backburner.dashboard.create_dashboard``.
        """
        from backburner.dashboard import create_dashboard

        return create_dashboard(self, **options)


class EnqueueOptions:
    """A client with per-call options; made by ``Backburner.options``."""

    def __init__(self, app: Backburner, *, queue: str | None,
                 delay: float | dt.timedelta | None, at: dt.datetime | None, on: str,
                 connection: object | None = None) -> None:
        if queue is not None:
            check_queue_name(queue)
        if delay is not None and at is not None:
            raise ConfigurationError("pass either delay or at, not both")
        self.due_at = None if at is None else to_timestamp(at, "at")
        if on not in CONTINUE_ON:
            raise ConfigurationError(
                f"invalid continuation option on={on!r}: use 'succeeded', 'finished' or 'deleted'")
        self.app = app
        self.queue = queue
        self.delay = to_seconds(delay, "delay")
        self.at = at
        self.on = on
        self.connection = connection

    def enqueue(self, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> str:
        """Enqueue (or schedule, if a delay or time was given) a call; return the job id."""
        job = self.build(fn, args, kwargs)
        self.app.storage.create_jobs([job], connection=self.connection)
        logger.debug("created job %s (%s) in state %s", job.id, job.function, job.state)
        return job.id

    def enqueue_many(self, calls: Iterable[JobCall]) -> list[str]:
        """Enqueue many calls (from ``fn.call(...)``) in one transaction; return their ids."""
        jobs = [self.build(call.function, call.args, call.kwargs) for call in calls]
        if jobs:
            self.app.storage.create_jobs(jobs, connection=self.connection)
        return [job.id for job in jobs]

    def continue_with(self, parent_id: str, fn: Callable[..., Any] | str, /, *args: Any,
                      **kwargs: Any) -> str:
        """Create a continuation of ``parent_id``; return the job id."""
        if not isinstance(parent_id, str) or not parent_id:
            raise ConfigurationError(f"invalid parent job id {parent_id!r}")
        job = self.build(fn, args, kwargs, parent_id=parent_id)
        self.app.storage.create_jobs([job], connection=self.connection)
        return job.id

    def build(self, fn: Callable[..., Any] | str, args: Sequence[Any], kwargs: dict[str, Any],
              parent_id: str | None = None) -> NewJob:
        """Check and encode a call as a NewJob, raising at once on bad input."""
        function = self.app.registry.resolve(fn)
        function.check_arguments(args, kwargs)
        payload = encode_payload(list(args), kwargs)
        if len(payload) > self.app.max_payload_bytes:
            raise PayloadTooLarge(
                f"{function.name}: encoded arguments are {len(payload)} bytes, over the "
                f"{self.app.max_payload_bytes}-byte limit; store large data elsewhere and pass "
                "its id, or raise max_payload_bytes")

        state, reason = states.ENQUEUED, None
        if parent_id is not None:
            state, reason = states.AWAITING, f"Waiting for job {parent_id} ({self.on})"
        elif self.delay is not None or self.at is not None:
            state, reason = states.SCHEDULED, "Scheduled by request"
        return NewJob(
            id=new_job_id(), function=function.name, payload=payload,
            queue=self.queue or function.queue, state=state, reason=reason,
            due_at=self.due_at, delay=self.delay,
            parent_id=parent_id, continue_on=self.on if parent_id else None,
            expire_in=self.app.job_retention)
