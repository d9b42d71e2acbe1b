"""Performs one fetched job and elects its outcome."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Coroutine
from typing import Any

from backburner import states
from backburner.context import CancellationToken, JobCancelled, JobContext
from backburner.errors import InvalidArguments, InvalidPayload, JobNotRegistered, JobTimeout
from backburner.job import decode_payload
from backburner.records import JobRecord, StateChange
from backburner.registry import JobFunction, Registry
from backburner.state_machine import StateMachine, safe_str

logger = logging.getLogger(__name__)
job_logger = logging.getLogger("backburner.jobs")

#: Cancellation reason used when the server stops; such runs go back to their queue.
SHUTDOWN_REASON = "server is shutting down"


class Performer:
    """Runs job functions for one server: sync ones in the calling worker
    thread, async ones on a shared event loop thread."""

    def __init__(self, registry: Registry, state_machine: StateMachine, server_id: str) -> None:
        self.registry = registry
        self.state_machine = state_machine
        self.server_id = server_id
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_lock = threading.Lock()

    def perform(self, job: JobRecord, token: CancellationToken) -> StateChange:
        """Run ``job`` and return the change that records its outcome."""
        function = self.registry.get(job.function)
        if function is None:
            error = JobNotRegistered(
                f"job function {job.function!r} is not registered in this server's app; "
                "deploy the code that defines it or delete the job")
            return self._reject(job, error)
        try:
            args, kwargs = decode_payload(job.payload)
            function.check_arguments(args, kwargs)
        except (InvalidPayload, InvalidArguments) as error:
            return self._reject(job, error)

        if function.context_parameter is not None:
            kwargs[function.context_parameter] = JobContext(
                job_id=job.id, attempt=job.attempt, retry_count=job.retry_count, queue=job.queue,
                function=job.function, server_id=self.server_id, cancellation=token,
                logger=job_logger)
        logger.info("job %s (%s) started on server %s, attempt %d", job.id, job.function,
                    self.server_id, job.attempt)
        return self._run(job, function, args, kwargs, token)

    def _run(self, job: JobRecord, function: JobFunction[..., Any], args: list[Any],
             kwargs: dict[str, Any], token: CancellationToken) -> StateChange:
        started = time.monotonic()
        try:
            if function.is_async:
                result = self._run_async(function.func(*args, **kwargs), function.timeout)
            else:
                result = function.func(*args, **kwargs)
        except BaseException as error:  # noqa: BLE001: any job error is recorded, never fatal
            return self._failed(job, function, error, token, time.monotonic() - started)

        duration = time.monotonic() - started
        if function.timeout is not None and duration > function.timeout:
            late = JobTimeout(f"job ran {duration:.1f} s, over its {function.timeout:g} s timeout")
            return self._failed(job, function, late, token, duration)
        logger.info("job %s (%s) succeeded on server %s in %.3f s", job.id, job.function,
                    self.server_id, duration)
        return self.state_machine.succeeded(job, duration, result)

    def _failed(self, job: JobRecord, function: JobFunction[..., Any], error: BaseException,
                token: CancellationToken, duration: float) -> StateChange:
        if token.cancelled and token.reason == SHUTDOWN_REASON:
            logger.info("job %s (%s) stopped by shutdown on server %s after %.3f s; "
                        "putting it back in queue %s", job.id, job.function, self.server_id,
                        duration, job.queue)
            return self.state_machine.released(job, f"Server {self.server_id} shut down")
        timed_out = function.timeout is not None and duration >= function.timeout
        if timed_out and isinstance(error, (TimeoutError, JobCancelled)):
            error = JobTimeout(f"job exceeded its {function.timeout:g} s timeout")

        change = self.state_machine.failed(job, error, function.retry)
        if change.state == states.SCHEDULED:
            logger.warning("job %s (%s) failed on server %s (%s: %s); retry %d of %d in %.1f s",
                           job.id, job.function, self.server_id, type(error).__name__,
                           safe_str(error),
                           change.retry_count, function.retry.retries, change.delay or 0)
        else:
            logger.error("job %s (%s) failed on server %s; moving it to %s: %s: %s", job.id,
                         job.function, self.server_id, change.state, type(error).__name__,
                         safe_str(error))
        return change

    def _reject(self, job: JobRecord, error: Exception) -> StateChange:
        logger.error("job %s (%s) cannot run on server %s: %s", job.id, job.function,
                     self.server_id, error)
        return self.state_machine.failed(job, error, None, reason=str(error)[:500])

    # -- async jobs --------------------------------------------------------

    def _run_async(self, coroutine: Coroutine[Any, Any, Any], timeout: float | None) -> Any:
        loop = self._event_loop()
        if timeout is not None:
            coroutine = asyncio.wait_for(coroutine, timeout)
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._loop_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="backburner-async",
                                          daemon=True)
                thread.start()
                self._loop = loop
            return self._loop

    def close(self) -> None:
        """Stop the event loop of async jobs, if one was started."""
        with self._loop_lock:
            loop, self._loop = self._loop, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
