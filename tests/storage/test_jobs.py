"""Conformance: creating, reading and fetching jobs."""

from __future__ import annotations

import threading
import time

import pytest

from backburner import states
from backburner.errors import BackburnerError, JobNotFound
from backburner.records import StateChange
from backburner.storage import open_storage
from backburner.storage.base import Storage

#: Upper bound for waits that should end early; generous for a busy machine.
LONG_WAIT = 20.0


# -- create and get -----------------------------------------------------------


def test_create_enqueued(storage: Storage, jobs) -> None:
    before = storage.now()
    new = jobs.new(queue="emails")
    storage.create_jobs([new])
    job = jobs.get(new.id)

    assert job.state == states.ENQUEUED
    assert job.queue == "emails"
    assert job.function == new.function
    assert job.payload == new.payload
    assert job.attempt == 0
    assert job.retry_count == 0
    assert job.crash_count == 0
    assert job.lease_token is None
    assert before <= job.created_at <= storage.now()
    assert [entry.state for entry in job.history] == [states.ENQUEUED]
    assert job.history[0].reason == new.reason
    assert job.history[0].at is not None


def test_create_scheduled_delay(storage: Storage, jobs) -> None:
    before = storage.now()
    job_id = jobs.create(states.SCHEDULED, delay=600.0)
    after = storage.now()
    job = jobs.get(job_id)

    assert job.state == states.SCHEDULED
    assert job.due_at is not None
    assert before + 600.0 <= job.due_at <= after + 600.0
    assert jobs.history(job_id) == [states.SCHEDULED]


def test_create_scheduled_due_at(storage: Storage, jobs) -> None:
    due_at = storage.now() + 1234.5
    job_id = jobs.create(states.SCHEDULED, due_at=due_at)

    assert jobs.get(job_id).due_at == pytest.approx(due_at, abs=1e-6)


def test_create_awaiting(storage: Storage, jobs) -> None:
    parent_id = jobs.create()
    child_id = jobs.create(states.AWAITING, parent_id=parent_id, continue_on="finished")
    child = jobs.get(child_id)

    assert child.state == states.AWAITING
    assert child.parent_id == parent_id
    assert child.continue_on == "finished"
    assert jobs.history(child_id) == [states.AWAITING]


def test_create_bulk(storage: Storage, jobs) -> None:
    batch = [jobs.new(), jobs.new(states.SCHEDULED, delay=60.0), jobs.new(queue="other")]
    storage.create_jobs(batch)

    assert [jobs.get(job.id).state for job in batch] == [
        states.ENQUEUED, states.SCHEDULED, states.ENQUEUED]


def test_create_bulk_missing_parent(storage: Storage, jobs) -> None:
    batch = [jobs.new(), jobs.new(),
             jobs.new(states.AWAITING, parent_id="no-such-job", continue_on="succeeded")]

    with pytest.raises(JobNotFound):
        storage.create_jobs(batch)

    for job in batch:
        assert storage.get_job(job.id) is None
    assert sum(storage.count_jobs_by_state().values()) == 0


def test_create_bulk_duplicate_id(storage: Storage, jobs) -> None:
    first = jobs.new()
    batch = [first, jobs.new(), jobs.new(id=first.id)]

    with pytest.raises(BackburnerError):
        storage.create_jobs(batch)

    assert storage.get_job(first.id) is None
    assert storage.get_job(batch[1].id) is None


def test_create_missing_parent(storage: Storage, jobs) -> None:
    child = jobs.new(states.AWAITING, parent_id="no-such-job", continue_on="succeeded")

    with pytest.raises(JobNotFound):
        storage.create_jobs([child])

    assert storage.get_job(child.id) is None


def test_create_parent_in_same_batch(storage: Storage, jobs) -> None:
    parent = jobs.new()
    child = jobs.new(states.AWAITING, parent_id=parent.id, continue_on="succeeded")
    storage.create_jobs([parent, child])

    assert jobs.get(child.id).state == states.AWAITING


@pytest.mark.parametrize(("on", "parent_state", "expected"), [
    ("succeeded", states.SUCCEEDED, states.ENQUEUED),
    ("succeeded", states.DELETED, states.DELETED),
    ("finished", states.SUCCEEDED, states.ENQUEUED),
    ("finished", states.DELETED, states.ENQUEUED),
    ("deleted", states.SUCCEEDED, states.DELETED),
    ("deleted", states.DELETED, states.ENQUEUED),
])
def test_create_parent_already_final(storage: Storage, jobs, on: str, parent_state: str,
                                     expected: str) -> None:
    parent_id = jobs.in_state(parent_state)
    child_id = jobs.create(states.AWAITING, parent_id=parent_id, continue_on=on)
    child = jobs.get(child_id)

    assert child.state == expected
    assert jobs.history(child_id) == [states.AWAITING, expected]
    assert child.history[-1].data.get("parent_id") == parent_id


def test_create_parent_already_final_expiry(storage: Storage, jobs) -> None:
    parent_id = jobs.in_state(states.SUCCEEDED)
    before = storage.now()
    child_id = jobs.create(states.AWAITING, parent_id=parent_id, continue_on="deleted",
                           expire_in=600.0)
    child = jobs.get(child_id)

    assert child.state == states.DELETED
    assert child.expire_at is not None
    assert before + 600.0 <= child.expire_at <= storage.now() + 600.0


@pytest.mark.parametrize("parent_state", [states.ENQUEUED, states.SCHEDULED, states.AWAITING,
                                          states.PROCESSING, states.FAILED])
def test_create_parent_not_final(storage: Storage, jobs, parent_state: str) -> None:
    parent_id = jobs.in_state(parent_state)
    child_id = jobs.create(states.AWAITING, parent_id=parent_id, continue_on="finished")

    assert jobs.get(child_id).state == states.AWAITING


def test_get_missing(storage: Storage) -> None:
    assert storage.get_job("no-such-job") is None


def test_get_without_history(storage: Storage, jobs) -> None:
    job_id = jobs.create()
    job = storage.get_job(job_id, history=False)

    assert job is not None
    assert job.state == states.ENQUEUED
    assert job.history == ()


# -- fetch --------------------------------------------------------------------


def test_fetch_fifo(storage: Storage, jobs) -> None:
    first = jobs.create()
    bulk = [jobs.new(), jobs.new(), jobs.new()]
    storage.create_jobs(bulk)
    last = jobs.create()
    expected = [first, *[job.id for job in bulk], last]

    fetched = [storage.fetch_jobs(["default"], "server-a", 1)[0].id for _ in expected]

    assert fetched == expected


def test_fetch_oldest_first(storage: Storage, jobs) -> None:
    ids = [jobs.create() for _ in range(4)]
    fetched = storage.fetch_jobs(["default"], "server-a", 2)

    assert {job.id for job in fetched} == set(ids[:2])


def test_fetch_queue_priority(storage: Storage, jobs) -> None:
    low = [jobs.create(queue="low") for _ in range(2)]
    high = [jobs.create(queue="high") for _ in range(2)]
    fetched = storage.fetch_jobs(["high", "low"], "server-a", 3)

    assert {job.id for job in fetched} == {*high, low[0]}


def test_fetch_listed_queues_only(storage: Storage, jobs) -> None:
    jobs.create(queue="other")

    assert storage.fetch_jobs(["default"], "server-a", 5) == []
    assert storage.queue_lengths() == {"other": 1}


def test_fetch_limit(storage: Storage, jobs) -> None:
    storage.create_jobs([jobs.new() for _ in range(5)])

    assert len(storage.fetch_jobs(["default"], "server-a", 2)) == 2
    assert len(storage.fetch_jobs(["default"], "server-a", 10)) == 3
    assert storage.fetch_jobs(["default"], "server-a", 10) == []


def test_fetch_limit_zero(storage: Storage, jobs) -> None:
    jobs.create()

    assert storage.fetch_jobs(["default"], "server-a", 0) == []
    assert storage.queue_lengths() == {"default": 1}


def test_fetch_claims(storage: Storage, jobs) -> None:
    job_id = jobs.create()
    fetched = storage.fetch_jobs(["default"], "server-a", 1)[0]
    stored = jobs.get(job_id)

    assert fetched.id == job_id
    assert fetched.state == states.PROCESSING
    assert fetched.attempt == 1
    assert fetched.server_id == "server-a"
    assert fetched.lease_token
    assert stored.state == states.PROCESSING
    assert stored.lease_token == fetched.lease_token
    assert stored.server_id == "server-a"
    assert stored.attempt == 1
    assert jobs.history(job_id) == [states.ENQUEUED, states.PROCESSING]


def test_fetch_attempt_increments(storage: Storage, jobs) -> None:
    job_id = jobs.create()
    tokens = []
    for attempt in (1, 2, 3):
        fetched = storage.fetch_jobs(["default"], "server-a", 1)[0]
        tokens.append(fetched.lease_token)

        assert fetched.attempt == attempt

        requeue = StateChange(job_id, states.ENQUEUED, "again", expected=(states.PROCESSING,))
        assert storage.change_states([requeue]) == [True]

    assert len(set(tokens)) == 3


def test_fetch_distinct_tokens(storage: Storage, jobs) -> None:
    storage.create_jobs([jobs.new() for _ in range(6)])
    fetched = storage.fetch_jobs(["default"], "server-a", 3)
    fetched += storage.fetch_jobs(["default"], "server-b", 3)
    tokens = [job.lease_token for job in fetched]

    assert len(fetched) == 6
    assert None not in tokens
    assert len(set(tokens)) == 6


@pytest.mark.parametrize("state", [states.SCHEDULED, states.AWAITING, states.SUCCEEDED,
                                   states.FAILED, states.DELETED])
def test_fetch_skips_state(storage: Storage, jobs, state: str) -> None:
    job_id = jobs.in_state(state)
    queue = jobs.get(job_id).queue

    assert storage.fetch_jobs([queue, "default"], "server-a", 5) == []


def test_fetch_empty_no_wait(storage: Storage) -> None:
    assert storage.fetch_jobs(["default"], "server-a", 1) == []


def test_fetch_wait_same_storage(storage: Storage, jobs) -> None:
    creator = threading.Timer(0.2, jobs.create)
    started = time.monotonic()
    creator.start()
    try:
        fetched = storage.fetch_jobs(["default"], "server-a", 1, wait=LONG_WAIT)
    finally:
        creator.join()

    assert len(fetched) == 1
    assert time.monotonic() - started < LONG_WAIT / 2, "fetch waited for its whole timeout"


def test_fetch_wait_other_storage(backend, jobs) -> None:
    other = open_storage(backend.url)
    try:
        creator = threading.Timer(0.2, lambda: other.create_jobs([jobs.new()]))
        started = time.monotonic()
        creator.start()
        fetched = backend.storage.fetch_jobs(["default"], "server-a", 1, wait=LONG_WAIT)
        creator.join()
    finally:
        other.close()

    assert len(fetched) == 1
    assert time.monotonic() - started < LONG_WAIT / 2, "fetch waited for its whole timeout"


def test_fetch_wait_times_out(storage: Storage) -> None:
    assert storage.fetch_jobs(["default"], "server-a", 1, wait=0.1) == []


def test_interrupt_wakes_fetch(storage: Storage) -> None:
    results: list[list] = []
    waiter = threading.Thread(
        target=lambda: results.append(storage.fetch_jobs(["default"], "server-a", 1,
                                                         wait=LONG_WAIT)))
    deadline = time.monotonic() + LONG_WAIT / 2
    waiter.start()

    # The interrupt may come before the fetch starts waiting, so repeat it.
    while waiter.is_alive() and time.monotonic() < deadline:
        storage.interrupt()
        waiter.join(0.05)
    woke = not waiter.is_alive()
    waiter.join()

    assert woke, "interrupt() did not wake the waiting fetch"
    assert results == [[]]


def test_get_histories(storage: Storage, jobs) -> None:
    done = jobs.processing(queue="a")
    storage.change_states([StateChange(done.id, states.SUCCEEDED, "done",
                                       lease_token=done.lease_token)])
    waiting = jobs.create(queue="b")

    histories = storage.get_histories([done.id, waiting, "missing-job"])

    assert {job_id: [entry.state for entry in entries]
            for job_id, entries in histories.items()} == {
        done.id: [states.ENQUEUED, states.PROCESSING, states.SUCCEEDED],
        waiting: [states.ENQUEUED]}
    assert histories[done.id] == jobs.get(done.id).history
    assert storage.get_histories([]) == {}
