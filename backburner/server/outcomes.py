"""Writes job outcomes in batches: one transaction for the runs that finish together."""

from __future__ import annotations

import logging
import queue
import threading

from backburner import states
from backburner.errors import StorageError
from backburner.records import StateChange
from backburner.server.loops import backoff
from backburner.state_machine import StateMachine, safe_str

logger = logging.getLogger(__name__)

#: Most outcomes written in one transaction.
MAX_BATCH = 256


class OutcomeWriter(threading.Thread):
    """A thread that applies state changes handed over by workers.

    While one transaction runs, the next outcomes queue up and go in the
    next one, so batches form without waiting on a timer. A storage error is
    retried until the write succeeds or the server stops: an outcome is never
    dropped, and if the process dies first the job's lease expires and it runs
    again.
    """

    def __init__(self, state_machine: StateMachine, server_id: str) -> None:
        super().__init__(name="backburner-outcomes", daemon=True)
        self.state_machine = state_machine
        self.server_id = server_id
        self._queue: queue.SimpleQueue[StateChange | threading.Event | None] = queue.SimpleQueue()
        self._abandon = threading.Event()

    def submit(self, change: StateChange) -> None:
        """Queue a change for the next batch."""
        self._queue.put(change)

    def flush(self, timeout: float) -> bool:
        """Wait until everything submitted so far is written; False on timeout."""
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def stop(self, timeout: float) -> None:
        """Write what is queued, then end the thread; give up after ``timeout``."""
        self._queue.put(None)
        self.join(timeout)
        if self.is_alive():
            self._abandon.set()
            logger.error("server %s: outcomes not written within %.1f s; those jobs will run "
                         "again after their lease expires", self.server_id, timeout)

    def run(self) -> None:
        running = True
        while running:
            batch, events, running = self._next_batch()
            if batch:
                self._write(batch)
            for event in events:
                event.set()

    def _next_batch(self) -> tuple[list[StateChange], list[threading.Event], bool]:
        batch: list[StateChange] = []
        events: list[threading.Event] = []
        item = self._queue.get()
        while True:
            if item is None:
                return batch, events, False
            if isinstance(item, threading.Event):
                events.append(item)
            else:
                batch.append(item)
            if len(batch) >= MAX_BATCH:
                return batch, events, True
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, events, True

    def _write(self, batch: list[StateChange]) -> None:
        failures = 0
        while not self._abandon.is_set():
            try:
                results = self.state_machine.apply(batch)
                break
            except StorageError:
                failures += 1
                pause = backoff(failures)
                logger.error("server %s: writing %d job outcome(s) failed (attempt %d); "
                             "retrying in %.1f s", self.server_id, len(batch), failures, pause,
                             exc_info=failures == 1)
                self._abandon.wait(pause)
            except Exception:
                # Not an outage but a change the storage cannot take: write the
                # changes one by one so that one bad outcome holds up no other.
                logger.exception("server %s: a batch of %d job outcome(s) was rejected; "
                                 "writing them one by one", self.server_id, len(batch))
                try:
                    results = [self._write_alone(change) for change in batch]
                    break
                except StorageError:
                    failures += 1
                    self._abandon.wait(backoff(failures))
        else:
            return

        for change, applied in zip(batch, results):
            if not applied and not (failures and self._written_before(change)):
                logger.warning(
                    "server %s: outcome %s of job %s discarded: the job was deleted, requeued "
                    "or recovered by another server while it ran", self.server_id, change.state,
                    change.job_id)

    def _written_before(self, change: StateChange) -> bool:
        """Return True if a failed attempt whose reply was lost did write ``change``."""
        try:
            job = self.state_machine.storage.get_job(change.job_id, history=False)
        except StorageError:
            return False
        if job is None or job.state != change.state or job.lease_token is not None:
            return False
        logger.info("server %s: outcome %s of job %s was written by an attempt whose reply "
                    "was lost", self.server_id, change.state, change.job_id)
        return True

    def _write_alone(self, change: StateChange) -> bool:
        try:
            return self.state_machine.apply([change])[0]
        except StorageError:
            raise
        except Exception as error:
            logger.exception("server %s: outcome %s of job %s cannot be stored; marking the "
                             "job Failed instead", self.server_id, change.state, change.job_id)
            fallback = StateChange(change.job_id, states.FAILED,
                                   "Outcome could not be stored: "
                                   f"{type(error).__name__}: {safe_str(error)[:500]}",
                                   expected=change.expected, lease_token=change.lease_token)
            return self.state_machine.apply([fallback])[0]
