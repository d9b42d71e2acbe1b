"""The server: one process's workers and background components."""

from __future__ import annotations

import logging
import os
import queue
import secrets
import signal
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from backburner.context import CancellationToken
from backburner.errors import ConfigurationError
from backburner.records import JobRecord
from backburner.recurring import RecurringScheduler
from backburner.registry import DEFAULT_QUEUE, check_queue_name
from backburner.server.loops import Loop, backoff
from backburner.server.outcomes import OutcomeWriter
from backburner.server.performer import SHUTDOWN_REASON, Performer

if TYPE_CHECKING:
    from backburner.app import Backburner

logger = logging.getLogger(__name__)

#: Server timings, in seconds.
HEARTBEAT_INTERVAL = 5.0
SERVER_TIMEOUT = 20.0
SHUTDOWN_TIMEOUT = 15.0
SCHEDULE_POLL_INTERVAL = 1.0
#: Every second, so that 6-field (seconds) cron expressions work.
RECURRING_POLL_INTERVAL = 1.0
EXPIRATION_INTERVAL = 300.0
#: How long one fetch call waits for work before checking for shutdown.
FETCH_WAIT = 1.0
#: Maximum pause between failed fetches, in seconds.
FETCH_MAX_BACKOFF = 2.0
#: Times a job is put back after its server died while running it, before it is Failed.
MAX_CRASH_REQUEUES = 3
EXPIRATION_BATCH = 1_000


def default_workers() -> int:
    """Return the default worker count: 5 per CPU, at most 20."""
    return min(5 * (os.cpu_count() or 1), 20)


@dataclass
class _Running:
    job: JobRecord
    token: CancellationToken
    deadline: float | None


class Server:
    """Runs jobs from the app's storage until stopped.

    Use it as a context manager, call ``start()`` and ``stop()``, or call
    ``run()`` to block until SIGTERM or SIGINT (as ``backburner server`` does).
    """

    def __init__(self, app: Backburner, *, queues: Sequence[str] | None = None,
                 workers: int | None = None, shutdown_timeout: float = SHUTDOWN_TIMEOUT,
                 heartbeat_interval: float = HEARTBEAT_INTERVAL,
                 server_timeout: float = SERVER_TIMEOUT,
                 schedule_poll_interval: float = SCHEDULE_POLL_INTERVAL,
                 recurring_poll_interval: float = RECURRING_POLL_INTERVAL,
                 expiration_interval: float = EXPIRATION_INTERVAL,
                 max_crash_requeues: int = MAX_CRASH_REQUEUES) -> None:
        self.app = app
        self.queues = tuple(check_queue_name(q) for q in (queues or [DEFAULT_QUEUE]))
        self.workers = default_workers() if workers is None else workers
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or \
                not 1 <= self.workers <= 1000:
            raise ConfigurationError(f"invalid workers {workers!r}: use a number from 1 to 1000")
        for name, value in (("shutdown_timeout", shutdown_timeout),
                            ("heartbeat_interval", heartbeat_interval),
                            ("server_timeout", server_timeout),
                            ("schedule_poll_interval", schedule_poll_interval),
                            ("recurring_poll_interval", recurring_poll_interval),
                            ("expiration_interval", expiration_interval)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not 0 <= value <= 86_400 or (value == 0 and name != "shutdown_timeout"):
                raise ConfigurationError(
                    f"invalid {name} {value!r}: use a number of seconds above 0 and at most "
                    "a day")
        if isinstance(max_crash_requeues, bool) or not isinstance(max_crash_requeues, int) or \
                max_crash_requeues < 0:
            raise ConfigurationError(
                f"invalid max_crash_requeues {max_crash_requeues!r}: use a whole number >= 0")
        if server_timeout <= heartbeat_interval:
            raise ConfigurationError(
                f"server_timeout ({server_timeout} s) must be longer than heartbeat_interval "
                f"({heartbeat_interval} s), or live servers would be declared dead")
        self.shutdown_timeout = shutdown_timeout
        self.heartbeat_interval = heartbeat_interval
        self.server_timeout = server_timeout
        self.schedule_poll_interval = schedule_poll_interval
        self.recurring_poll_interval = recurring_poll_interval
        self.expiration_interval = expiration_interval
        self.max_crash_requeues = max_crash_requeues
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"

        self._stopping = threading.Event()
        self._components_stopping = threading.Event()
        self._started = False
        self._stopped = False
        self._idle = 0
        self._idle_changed = threading.Condition()
        self._work: queue.SimpleQueue[JobRecord | None] = queue.SimpleQueue()
        self._running: dict[str, _Running] = {}
        self._running_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._last_heartbeat = time.monotonic()
        #: When heartbeats last began to succeed after failing; the start counts
        #: as such a time, and None means the storage is unreachable now.
        self._storage_back_at: float | None = time.monotonic() - server_timeout
        self._worker_threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Announce the server and start its workers and components."""
        if self._started:
            raise RuntimeError(f"server {self.id} was already started")
        self._started = True
        storage = self.app.storage
        self.state_machine = self.app.state_machine
        self.writer = OutcomeWriter(self.state_machine, self.id)
        self.performer = Performer(self.app.registry, self.state_machine, self.id)
        self.recurring_scheduler = RecurringScheduler(storage, self.id, self.app.registry)
        storage.announce_server(self.id, self.queues, self.workers,
                                {"pid": os.getpid(), "host": socket.gethostname()})
        logger.info("server %s starting: %d workers, queues %s, storage %s", self.id,
                    self.workers, ",".join(self.queues), storage.describe())

        self.writer.start()
        self._idle = self.workers
        for index in range(self.workers):
            thread = threading.Thread(target=self._work_loop, name=f"backburner-worker-{index}",
                                      daemon=True)
            thread.start()
            self._worker_threads.append(thread)
        fetcher = threading.Thread(target=self._fetch_loop, name="backburner-fetcher",
                                   daemon=True)
        fetcher.start()
        self._threads.append(fetcher)
        self._start_components()

    def _start_components(self) -> None:
        components = [
            ("heartbeat", self._heartbeat, self.heartbeat_interval),
            ("watchdog", self._watchdog, self.heartbeat_interval),
            ("delayed-scheduler", self._enqueue_due, self.schedule_poll_interval),
            ("recurring-scheduler", self._fire_recurring, self.recurring_poll_interval),
            ("expiration", self._expire, self.expiration_interval),
            ("timeouts", self._enforce_timeouts, 0.25),
        ]
        for name, step, interval in components:
            loop = Loop(name, step, interval, self.id, self._components_stopping)
            loop.start()
            self._threads.append(loop)

    def stop(self, timeout: float | None = None) -> None:
        """Stop gracefully: stop fetching, cancel running jobs, wait up to ``timeout``
        (default ``shutdown_timeout``) seconds, then put unfinished jobs back in their queues."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        timeout = self.shutdown_timeout if timeout is None else timeout
        with self._running_lock:
            running = list(self._running.values())
        logger.info("server %s stopping: waiting up to %.1f s for %d running job(s)", self.id,
                    timeout, len(running))

        self._stopping.set()
        self.app.storage.interrupt()
        with self._idle_changed:
            self._idle_changed.notify_all()
        self._threads[0].join()  # the fetcher: no new claims after this
        for item in running:
            item.token.cancel(SHUTDOWN_REASON)
        for _ in self._worker_threads:
            self._work.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._worker_threads:
            thread.join(max(0.0, deadline - time.monotonic()))

        self._release_unfinished()
        self._components_stopping.set()
        for thread in self._threads[1:]:
            thread.join()
        self.writer.stop(timeout=30.0)
        self.performer.close()
        try:
            self.app.storage.remove_server(self.id)
        except Exception:
            logger.exception("server %s: could not remove its record; the watchdog of another "
                             "server will remove it", self.id)
        logger.info("server %s stopped", self.id)

    def _release_unfinished(self) -> None:
        with self._running_lock:
            unfinished = list(self._running.values())
        for item in unfinished:
            logger.warning("job %s (%s) still running on server %s at shutdown; putting it "
                           "back in queue %s", item.job.id, item.job.function, self.id,
                           item.job.queue)
            self.writer.submit(self.state_machine.released(
                item.job, f"Server {self.id} shut down before the job finished"))

    def run(self) -> int:
        """Run until SIGTERM or SIGINT, then stop gracefully; return the exit code.

        A second signal exits at once; the jobs then still running keep their
        leases until the watchdog of a live server puts them back.
        """
        signals: list[int] = []

        def on_signal(signum: int, frame: FrameType | None) -> None:
            # Only record the signal: the handler runs between two bytecodes
            # of the main thread, which may hold a lock that Event.set needs.
            signals.append(signum)
            if len(signals) > 1:
                logger.warning("server %s: second %s, exiting now; running jobs are recovered "
                               "once the server timeout passes", self.id,
                               signal.Signals(signum).name)
                os._exit(1)

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not signals:
                time.sleep(0.1)
            logger.info("server %s: %s received, shutting down", self.id,
                        signal.Signals(signals[0]).name)
            self.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    # -- fetching and performing ---------------------------------------------

    def _fetch_loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            with self._idle_changed:
                while self._idle == 0 and not self._stopping.is_set():
                    self._idle_changed.wait()
                limit = self._idle
            if self._stopping.is_set():
                break
            try:
                self._ensure_alive()
                jobs = self.app.storage.fetch_jobs(self.queues, self.id, limit, wait=FETCH_WAIT)
                failures = 0
            except Exception:
                failures += 1
                # Each failed fetch already waited for the storage to answer, so
                # keep the pause short: work resumes soon after an outage ends.
                pause = min(backoff(failures), FETCH_MAX_BACKOFF)
                logger.error("server %s: fetching jobs failed (attempt %d); retrying in %.1f s",
                             self.id, failures, pause, exc_info=failures == 1)
                self._stopping.wait(pause)
                continue
            with self._idle_changed:
                self._idle -= len(jobs)
            for job in jobs:
                self._work.put(job)

    def _work_loop(self) -> None:
        while True:
            job = self._work.get()
            if job is None:
                return
            if self._stopping.is_set():
                self.writer.submit(self.state_machine.released(
                    job, f"Server {self.id} shut down before the job started"))
            else:
                self._perform(job)
            with self._idle_changed:
                self._idle += 1
                self._idle_changed.notify()

    def _perform(self, job: JobRecord) -> None:
        assert job.lease_token is not None
        token = CancellationToken()
        function = self.app.registry.get(job.function)
        timeout = function.timeout if function is not None else None
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._running_lock:
            self._running[job.lease_token] = _Running(job, token, deadline)
        try:
            change = self.performer.perform(job, token)
        except Exception as error:
            # A bug in backburner itself: still record an outcome, so the job
            # does not stay Processing while this server heartbeats.
            logger.exception("job %s (%s): recording its outcome failed on server %s", job.id,
                             job.function, self.id)
            change = self.state_machine.failed(job, error, None,
                                               reason="Internal error while recording the outcome")
        finally:
            with self._running_lock:
                self._running.pop(job.lease_token, None)
        self.writer.submit(change)

    # -- background components -----------------------------------------------

    def _ensure_alive(self) -> None:
        # After a freeze (SIGSTOP, a paused VM) the fetcher may run before the
        # heartbeat thread; a server the watchdog declared dead must announce
        # itself again before it claims jobs, or they would be taken back at once.
        if time.monotonic() - self._last_heartbeat > self.heartbeat_interval * 2:
            self._beat()

    def _beat(self) -> None:
        storage = self.app.storage
        try:
            alive = storage.heartbeat(self.id)
        except Exception:
            self._storage_back_at = None
            raise
        if self._storage_back_at is None:
            self._storage_back_at = time.monotonic()
        if not alive:
            logger.warning("server %s missed heartbeats for over %.0f s and was declared dead; "
                           "announcing it again (jobs it was running were put back)", self.id,
                           self.server_timeout)
            storage.announce_server(self.id, self.queues, self.workers, {"pid": os.getpid()})
        self._last_heartbeat = time.monotonic()

    def _heartbeat(self) -> None:
        self._beat()
        self._cancel_lost_jobs()
        self.app.storage.tidy()

    def _cancel_lost_jobs(self) -> None:
        with self._running_lock:
            running = dict(self._running)
        if not running:
            return
        current = self.app.storage.current_leases(list(running))
        for token, item in running.items():
            if token not in current:
                logger.info("job %s (%s) was deleted, requeued or recovered elsewhere while "
                            "running on server %s; cancelling it", item.job.id,
                            item.job.function, self.id)
                item.token.cancel("job was deleted, requeued or recovered elsewhere")

    def _watchdog(self) -> None:
        # After an outage every server's last heartbeat is old, this one's too.
        # Judge others dead only once the storage has been reachable for a full
        # server timeout, so that live servers have had time to heartbeat again.
        back_at = self._storage_back_at
        if back_at is None or time.monotonic() - back_at < self.server_timeout:
            return
        self._ensure_alive()  # after a freeze, renew this server's own heartbeat first
        recoveries = self.app.storage.recover_jobs_of_dead_servers(self.server_timeout,
                                                                   self.max_crash_requeues)
        for recovery in recoveries:
            logger.warning("server %s: job %s taken back from dead server %s and moved to %s",
                           self.id, recovery.job_id, recovery.server_id, recovery.state)

    def _enqueue_due(self) -> float | None:
        ids = self.app.storage.enqueue_due_jobs(limit=1_000)
        if ids:
            logger.debug("server %s: enqueued %d due job(s)", self.id, len(ids))
        return 0.0 if len(ids) == 1_000 else None

    def _fire_recurring(self) -> float | None:
        # Run again at once while a pass finds work, so a catch-up is not paced by the interval.
        return 0.0 if self.recurring_scheduler.run_once() else None

    def _expire(self) -> float | None:
        removed = self.app.storage.expire(EXPIRATION_BATCH)
        if removed:
            logger.info("server %s: removed %d expired job(s)", self.id, removed)
        return 0.0 if removed == EXPIRATION_BATCH else None

    def _enforce_timeouts(self) -> None:
        now = time.monotonic()
        with self._running_lock:
            late = [item for item in self._running.values()
                    if item.deadline is not None and item.deadline <= now]
        for item in late:
            if not item.token.cancelled:
                logger.warning("job %s (%s) on server %s passed its timeout; cancelling it",
                               item.job.id, item.job.function, self.id)
                item.token.cancel("timeout")

    def status(self) -> dict[str, Any]:
        """Return the server id, worker count and number of running jobs."""
        with self._running_lock:
            running = len(self._running)
        return {"id": self.id, "workers": self.workers, "running": running,
                "queues": list(self.queues)}
