"""Stateful property test: the state machine on a real SQLite storage against a model.

Hypothesis drives random sequences of client, worker and watchdog operations
(create, fetch, succeed, fail, release, delete, requeue, enqueue now, due
jobs, recovery) and compares every job with a plain Python model after each
step. Outcomes are written with lease tokens that may be current or stale.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (Bundle, MultipleResults, RuleBasedStateMachine, consumes,
                                 invariant, multiple, precondition, rule)

from backburner import states
from backburner.errors import JobNotFound
from backburner.ids import new_job_id
from backburner.records import JobRecord, NewJob, StateChange
from backburner.retry import RetryPolicy
from backburner.state_machine import StateMachine
from backburner.storage.sqlite import SQLiteStorage

QUEUES = ["default", "low"]
#: A server that heartbeats for the whole test, and one that never announced
#: itself, so the watchdog treats it as dead.
LIVE_SERVER = "live-server"
DEAD_SERVER = "dead-server"
MAX_CRASH_REQUEUES = 1

POLICIES = {
    "none": None,
    "retry": RetryPolicy(retries=1, delays=[0.0]),
    "retry-then-delete": RetryPolicy(retries=1, delays=[0.0], on_exhausted="delete"),
}
POLICY_NAMES = sorted(POLICIES)
OUTCOMES = ["succeed", "fail", "release"]
COUNTED = {states.SUCCEEDED: "succeeded", states.FAILED: "failed", states.DELETED: "deleted"}


@dataclass
class ModelJob:
    """What the storage should hold for one job."""

    queue: str
    state: str
    history: list[str]
    #: Key in POLICIES: how the job's failures are retried.
    policy: str = "none"
    parent_id: str | None = None
    continue_on: str | None = None
    attempt: int = 0
    retry_count: int = 0
    crash_count: int = 0
    lease_token: str | None = None
    server_id: str | None = None
    #: Scheduled jobs only: whether the due time has already passed.
    due: bool = False
    #: FIFO position while Enqueued: (storage call number, job id), as
    #: jobs entering Enqueued in one storage call share one timestamp.
    position: tuple[int, str] = (0, "")


class StorageModel(RuleBasedStateMachine):
    """Drives StateMachine and SQLiteStorage and checks them against ModelJob records."""

    jobs = Bundle("jobs")
    #: Lease tokens not yet used to write an outcome, and tokens already used.
    tokens = Bundle("tokens")
    used_tokens = Bundle("used_tokens")

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="backburner-model-"))
        self.storage = SQLiteStorage(str(self.directory / "jobs.db"))
        self.machine = StateMachine(self.storage, retention=3600.0)
        self.storage.announce_server(LIVE_SERVER, QUEUES, 1, {})
        self.model: dict[str, ModelJob] = {}
        self.fetched: dict[str, JobRecord] = {}
        self.counters: Counter[str] = Counter()
        self.observed: dict[str, tuple[int, list[str]]] = {}
        self.calls = itertools.count(1)
        self.call = 0

    def teardown(self) -> None:
        self.storage.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- model ---------------------------------------------------------------

    def enter(self, job_id: str, state: str, entries: list[str]) -> None:
        """Move a model job to ``state``, appending ``entries`` to its history."""
        job = self.model[job_id]
        job.state = state
        job.history += entries
        job.lease_token = None
        job.server_id = None
        job.due = False
        if state == states.ENQUEUED:
            job.position = (self.call, job_id)
        if state in COUNTED:
            self.counters[COUNTED[state]] += 1
        if state in states.FINAL_STATES:
            self.release_children(job_id, state)

    def release_children(self, parent_id: str, parent_state: str) -> None:
        for child_id, child in self.model.items():
            if child.state == states.AWAITING and child.parent_id == parent_id:
                outcome = states.continuation_outcome(child.continue_on or "succeeded",
                                                      parent_state)
                assert outcome is not None
                self.enter(child_id, outcome, [outcome])

    def expected_claims(self, limit: int) -> set[str]:
        claims: list[str] = []
        for queue in QUEUES:
            waiting = sorted((job.position, job_id) for job_id, job in self.model.items()
                             if job.state == states.ENQUEUED and job.queue == queue)
            claims += [job_id for _, job_id in waiting[:limit - len(claims)]]
        return set(claims)

    def is_current(self, token: str) -> bool:
        job = self.model[self.fetched[token].id]
        return job.state == states.PROCESSING and job.lease_token == token

    def next_call(self) -> None:
        self.call = next(self.calls)

    # -- client operations ---------------------------------------------------

    @rule(target=jobs, state=st.sampled_from([states.ENQUEUED, states.SCHEDULED]),
          queue=st.sampled_from(QUEUES), due=st.booleans(), policy=st.sampled_from(POLICY_NAMES))
    def create(self, state: str, queue: str, due: bool, policy: str) -> str:
        self.next_call()
        job_id = new_job_id()
        delay = 0.0 if due else 3600.0
        self.storage.create_jobs([NewJob(job_id, "tests:job", "[[],{}]", queue, state,
                                         delay=delay)])

        self.model[job_id] = ModelJob(queue, state, [state], policy, due=due,
                                      position=(self.call, job_id))
        return job_id

    @rule(target=jobs, parent_id=jobs, on=st.sampled_from(["succeeded", "finished", "deleted"]),
          queue=st.sampled_from(QUEUES))
    def create_continuation(self, parent_id: str, on: str, queue: str) -> str:
        self.next_call()
        job_id = new_job_id()
        self.storage.create_jobs([NewJob(job_id, "tests:job", "[[],{}]", queue,
                                         states.AWAITING, parent_id=parent_id,
                                         continue_on=on)])

        self.model[job_id] = ModelJob(queue, states.AWAITING, [states.AWAITING],
                                      parent_id=parent_id, continue_on=on)
        outcome = states.continuation_outcome(on, self.model[parent_id].state)
        if outcome is not None:
            self.enter(job_id, outcome, [outcome])
        return job_id

    @rule(parent_id=jobs)
    def create_orphan_batch(self, parent_id: str) -> None:
        self.next_call()
        batch = [NewJob(new_job_id(), "tests:job", "[[],{}]", "default", states.ENQUEUED),
                 NewJob(new_job_id(), "tests:job", "[[],{}]", "default", states.AWAITING,
                        parent_id=parent_id, continue_on="succeeded"),
                 NewJob(new_job_id(), "tests:job", "[[],{}]", "default", states.AWAITING,
                        parent_id="no-such-job", continue_on="succeeded")]
        try:
            self.storage.create_jobs(batch)
        except JobNotFound:
            pass
        else:
            raise AssertionError("a batch with a missing parent was created")

        for job in batch:
            assert self.storage.get_job(job.id) is None

    @rule(job_id=jobs, action=st.sampled_from(["delete", "requeue", "enqueue_now"]))
    def manual(self, job_id: str, action: str) -> None:
        self.next_call()
        state = self.model[job_id].state
        if action == "delete":
            applied = self.machine.delete(job_id)
            expected, target = state != states.DELETED, states.DELETED
        elif action == "requeue":
            applied = self.machine.requeue(job_id)
            expected, target = True, states.ENQUEUED
        else:
            applied = self.machine.enqueue_now(job_id)
            expected, target = state in (states.SCHEDULED, states.AWAITING), states.ENQUEUED

        assert applied == expected
        if applied:
            self.enter(job_id, target, [target])
        if applied and action == "requeue":
            # A manual requeue starts the retry and crash allowances afresh.
            self.model[job_id].retry_count = self.model[job_id].crash_count = 0

    # -- server operations ---------------------------------------------------

    @rule(target=tokens, limit=st.integers(1, 3),
          server_id=st.sampled_from([LIVE_SERVER, DEAD_SERVER]))
    def fetch(self, limit: int, server_id: str) -> MultipleResults[str]:
        self.next_call()
        expected = self.expected_claims(limit)
        fetched = self.storage.fetch_jobs(QUEUES, server_id, limit)

        assert {record.id for record in fetched} == expected
        for record in fetched:
            job = self.model[record.id]
            assert record.lease_token is not None
            assert record.lease_token not in self.fetched
            assert record.attempt == job.attempt + 1
            job.attempt += 1
            self.enter(record.id, states.PROCESSING, [states.PROCESSING])
            job.lease_token = record.lease_token
            job.server_id = server_id
            self.fetched[record.lease_token] = record
        return multiple(*[record.lease_token for record in fetched])

    @rule(target=used_tokens, token=consumes(tokens), action=st.sampled_from(OUTCOMES))
    def finish(self, token: str, action: str) -> str:
        self.next_call()
        record = self.fetched[token]
        current = self.is_current(token)
        applied = self.machine.apply([self.outcome(action, record)])

        assert applied == [current]
        if current:
            self.record_outcome(action, record.id)
        return token

    @rule(token=used_tokens, action=st.sampled_from(OUTCOMES))
    def finish_again(self, token: str, action: str) -> None:
        # A token that was already used, or whose job moved on, is stale for good.
        self.next_call()
        record = self.fetched[token]
        applied = self.machine.apply([self.outcome(action, record)])

        assert not self.is_current(token)
        assert applied == [False]

    def outcome(self, action: str, record: JobRecord) -> StateChange:
        """Build the change a worker writes at the end of a run."""
        if action == "succeed":
            return self.machine.succeeded(record, 0.01, {"n": 1})
        if action == "fail":
            policy = POLICIES[self.model[record.id].policy]
            return self.machine.failed(record, ValueError("boom"), policy)
        return self.machine.released(record, "server stopping")

    def record_outcome(self, action: str, job_id: str) -> None:
        """Apply an outcome to the model, electing retries as the state machine does."""
        job = self.model[job_id]
        policy = POLICIES[job.policy]
        if action == "succeed":
            self.enter(job_id, states.SUCCEEDED, [states.SUCCEEDED])
        elif action == "release":
            self.enter(job_id, states.ENQUEUED, [states.ENQUEUED])
        elif policy is not None and job.retry_count < policy.retries:
            job.retry_count += 1
            self.enter(job_id, states.SCHEDULED, [states.FAILED, states.SCHEDULED])
            job.due = True
        elif policy is not None and policy.on_exhausted == "delete":
            self.enter(job_id, states.DELETED, [states.FAILED, states.DELETED])
        else:
            self.enter(job_id, states.FAILED, [states.FAILED])

    @rule()
    def enqueue_due(self) -> None:
        self.next_call()
        expected = {job_id for job_id, job in self.model.items()
                    if job.state == states.SCHEDULED and job.due}
        moved = self.storage.enqueue_due_jobs(1000)

        assert sorted(moved) == sorted(expected)
        for job_id in sorted(moved):
            self.enter(job_id, states.ENQUEUED, [states.ENQUEUED])

    @precondition(lambda self: any(job.server_id == DEAD_SERVER for job in self.model.values()))
    @rule()
    def recover(self) -> None:
        self.next_call()
        expected = {}
        for job_id, job in self.model.items():
            if job.state == states.PROCESSING and job.server_id == DEAD_SERVER:
                crashed_out = job.crash_count >= MAX_CRASH_REQUEUES
                expected[job_id] = states.FAILED if crashed_out else states.ENQUEUED
        recoveries = self.storage.recover_jobs_of_dead_servers(3600.0, MAX_CRASH_REQUEUES)

        assert {recovery.job_id: recovery.state for recovery in recoveries} == expected
        for job_id, state in sorted(expected.items()):
            self.model[job_id].crash_count += 1
            self.enter(job_id, state, [state])

    # -- invariants ----------------------------------------------------------

    @invariant()
    def jobs_match_model(self) -> None:
        for job_id, job in self.model.items():
            record = self.storage.get_job(job_id)
            assert record is not None, job_id
            assert record.state == job.state, job_id
            assert record.lease_token == job.lease_token, job_id
            assert record.attempt == job.attempt, job_id
            assert record.retry_count == job.retry_count, job_id
            assert record.crash_count == job.crash_count, job_id

    @invariant()
    def history_matches(self) -> None:
        for job_id, job in self.model.items():
            record = self.storage.get_job(job_id)
            assert record is not None, job_id
            history = [entry.state for entry in record.history]
            attempt, seen = self.observed.get(job_id, (0, []))

            assert history == job.history, job_id
            assert history[:len(seen)] == seen, job_id
            assert record.attempt >= attempt, job_id
            assert history[0] in states.INITIAL_STATES, job_id
            for source, target in itertools.pairwise(history):
                assert target in states.TRANSITIONS[source], (job_id, source, target)
            self.observed[job_id] = (record.attempt, history)

    @invariant()
    def counters_match(self) -> None:
        expected = {name: self.counters[name] for name in COUNTED.values()}

        assert self.storage.counter_totals() == expected


TestStorageModel = StorageModel.TestCase
TestStorageModel.settings = settings(
    max_examples=150, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
