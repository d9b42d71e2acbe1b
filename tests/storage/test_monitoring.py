"""Conformance: counters and monitoring queries."""

from __future__ import annotations

import random
import time

import pytest

from backburner import states
from backburner.records import HistoryEntry, StateChange
from backburner.storage.base import Storage

# -- counters -----------------------------------------------------------------


def history_total(storage: Storage, name: str, resolution: str) -> int:
    """Sum the counter history of the last two hours."""
    since = storage.now() - 7200.0
    return sum(count for _, count in storage.counter_history(name, resolution, since))


def test_counters_empty(storage: Storage) -> None:
    assert storage.counter_totals() == {"succeeded": 0, "failed": 0, "deleted": 0}
    assert storage.counter_history("succeeded", "minute", 0.0) == []


def test_counters_outcomes(storage: Storage, jobs) -> None:
    runs = [jobs.processing(queue=f"q{index}") for index in range(6)]
    storage.change_states([
        StateChange(runs[0].id, states.SUCCEEDED, lease_token=runs[0].lease_token),
        StateChange(runs[1].id, states.SUCCEEDED, lease_token=runs[1].lease_token),
        StateChange(runs[2].id, states.SUCCEEDED, lease_token=runs[2].lease_token),
        StateChange(runs[3].id, states.FAILED, lease_token=runs[3].lease_token),
        StateChange(runs[4].id, states.DELETED),
        StateChange(runs[5].id, states.SUCCEEDED, lease_token="not-the-lease"),
    ])

    assert storage.counter_totals() == {"succeeded": 3, "failed": 1, "deleted": 1}
    for resolution in ("minute", "hour"):
        assert history_total(storage, "succeeded", resolution) == 3
        assert history_total(storage, "failed", resolution) == 1
        assert history_total(storage, "deleted", resolution) == 1


def test_counters_retry_not_failed(storage: Storage, jobs) -> None:
    job = jobs.processing()
    failed = HistoryEntry(states.FAILED, "ValueError: boom")
    storage.change_states([StateChange(job.id, states.SCHEDULED, "Retry attempt 1",
                                       lease_token=job.lease_token, traversed=(failed,),
                                       delay=60.0, retry_count=1)])

    assert storage.counter_totals()["failed"] == 0
    assert history_total(storage, "failed", "minute") == 0


def test_counters_exhausted_delete(storage: Storage, jobs) -> None:
    job = jobs.processing()
    failed = HistoryEntry(states.FAILED, "ValueError: boom")
    storage.change_states([StateChange(job.id, states.DELETED, "Retries exhausted",
                                       lease_token=job.lease_token, traversed=(failed,))])

    assert storage.counter_totals() == {"succeeded": 0, "failed": 0, "deleted": 1}


def test_counters_rejected_change(storage: Storage, jobs) -> None:
    job_id = jobs.create()
    storage.change_states([StateChange(job_id, states.SUCCEEDED)])

    assert storage.counter_totals() == {"succeeded": 0, "failed": 0, "deleted": 0}


def test_counter_history_buckets(storage: Storage, jobs) -> None:
    job = jobs.processing()
    storage.change_states([StateChange(job.id, states.SUCCEEDED)])
    now = storage.now()
    minutes = storage.counter_history("succeeded", "minute", now - 120.0)
    hours = storage.counter_history("succeeded", "hour", now - 7200.0)

    assert len(minutes) == 1
    assert minutes[0][0] % 60 == 0
    assert now - 120.0 < minutes[0][0] <= now
    assert minutes[0][1] == 1
    assert len(hours) == 1
    assert hours[0][0] % 3600 == 0
    assert now - 7200.0 < hours[0][0] <= now
    assert hours[0][1] == 1
    assert storage.counter_history("succeeded", "minute", now + 60.0) == []


def test_counter_history_resolution(storage: Storage) -> None:
    with pytest.raises(ValueError, match="resolution"):
        storage.counter_history("succeeded", "day", 0.0)


# -- monitoring ---------------------------------------------------------------


def test_count_by_state_empty(storage: Storage) -> None:
    assert storage.count_jobs_by_state() == dict.fromkeys(states.ALL_STATES, 0)


def test_count_by_state(storage: Storage, jobs) -> None:
    for state in states.ALL_STATES:
        jobs.in_state(state)
    jobs.create()
    counts = storage.count_jobs_by_state()
    expected = dict.fromkeys(states.ALL_STATES, 1)
    # in_state(AWAITING) also creates an Enqueued parent, and create() one more.
    expected[states.ENQUEUED] = 3

    assert counts == expected


def listed_counts(storage: Storage) -> tuple[dict[str, int], dict[str, int]]:
    """Count jobs by state and Enqueued jobs by queue from the job lists themselves."""
    by_state = {state: len(storage.list_jobs(state, limit=10_000)) for state in states.ALL_STATES}
    by_queue: dict[str, int] = {}
    for record in storage.list_jobs(states.ENQUEUED, limit=10_000):
        by_queue[record.queue] = by_queue.get(record.queue, 0) + 1
    return by_state, by_queue


def test_counts_follow_every_change(storage: Storage, jobs) -> None:
    # Creates, claims in batches, outcomes, requeues, deletes, expiry and
    # continuations, with tidy() between rounds, must keep the counts exact.
    rng = random.Random(7)
    for round_number in range(4):
        queues = [f"q{index}" for index in range(3)]
        storage.create_jobs([jobs.new(queue=rng.choice(queues)) for _ in range(30)])
        jobs.create(states.SCHEDULED, queue="later", delay=3600.0)
        fetched = storage.fetch_jobs(queues, "server-a", 20)
        outcomes = [states.SUCCEEDED, states.FAILED, states.DELETED, states.ENQUEUED]
        storage.change_states([
            StateChange(job.id, rng.choice(outcomes), lease_token=job.lease_token,
                        expire_in=0.01 if round_number % 2 else None)
            for job in fetched])
        time.sleep(0.05)
        storage.expire(5)
        if round_number % 2:
            storage.tidy()

        by_state, by_queue = listed_counts(storage)
        assert storage.count_jobs_by_state() == by_state, f"round {round_number}"
        assert storage.queue_lengths() == by_queue, f"round {round_number}"


def test_queue_lengths(storage: Storage, jobs) -> None:
    storage.create_jobs([jobs.new(queue="critical") for _ in range(3)])
    storage.create_jobs([jobs.new(queue="default") for _ in range(2)])
    jobs.create(states.SCHEDULED, queue="later", delay=600.0)
    jobs.processing(queue="busy")

    assert storage.queue_lengths() == {"critical": 3, "default": 2}


def test_queue_lengths_empty(storage: Storage) -> None:
    assert storage.queue_lengths() == {}


def test_list_enqueued_fifo(storage: Storage, jobs) -> None:
    ids = [jobs.create() for _ in range(4)]
    listed = storage.list_jobs(states.ENQUEUED)

    assert [job.id for job in listed] == ids
    assert {job.state for job in listed} == {states.ENQUEUED}


def test_list_newest_first(storage: Storage, jobs) -> None:
    ids = []
    for index in range(4):
        job = jobs.processing(queue=f"q{index}")
        storage.change_states([StateChange(job.id, states.SUCCEEDED)])
        ids.append(job.id)
        time.sleep(0.002)
    listed = storage.list_jobs(states.SUCCEEDED)

    assert [job.id for job in listed] == ids[::-1]


def test_list_paging(storage: Storage, jobs) -> None:
    ids = [jobs.create() for _ in range(5)]

    assert [job.id for job in storage.list_jobs(states.ENQUEUED, limit=2)] == ids[:2]
    assert [job.id for job in storage.list_jobs(states.ENQUEUED, offset=2, limit=2)] == ids[2:4]
    assert [job.id for job in storage.list_jobs(states.ENQUEUED, offset=4, limit=2)] == ids[4:]
    assert storage.list_jobs(states.ENQUEUED, offset=5) == []


def test_list_queue_filter(storage: Storage, jobs) -> None:
    critical = [jobs.create(queue="critical") for _ in range(2)]
    jobs.create(queue="default")

    listed = storage.list_jobs(states.ENQUEUED, queue="critical")

    assert [job.id for job in listed] == critical
    assert storage.list_jobs(states.ENQUEUED, queue="unknown") == []


def test_list_other_states_excluded(storage: Storage, jobs) -> None:
    jobs.in_state(states.FAILED)

    assert storage.list_jobs(states.SUCCEEDED) == []
    assert len(storage.list_jobs(states.FAILED)) == 1


# -- retries and continuations ---------------------------------------------------


def test_list_retries(storage: Storage, jobs) -> None:
    later, sooner = jobs.processing(queue="a"), jobs.processing(queue="b")
    storage.change_states([
        StateChange(later.id, states.SCHEDULED, delay=100.0, retry_count=1,
                    lease_token=later.lease_token),
        StateChange(sooner.id, states.SCHEDULED, delay=50.0, retry_count=2,
                    lease_token=sooner.lease_token)])
    jobs.create(states.SCHEDULED, delay=10.0)  # delayed, not a retry

    assert [record.id for record in storage.list_retries()] == [sooner.id, later.id]
    assert [record.id for record in storage.list_retries(offset=1, limit=5)] == [later.id]
    assert storage.list_retries(limit=0) == []
    assert storage.count_retries() == 2


def test_retries_leave_the_list(storage: Storage, jobs) -> None:
    deleted, enqueued = jobs.processing(queue="a"), jobs.processing(queue="b")
    storage.change_states([
        StateChange(job.id, states.SCHEDULED, delay=100.0, retry_count=1,
                    lease_token=job.lease_token) for job in (deleted, enqueued)])
    storage.change_states([
        StateChange(deleted.id, states.DELETED, expected=(states.SCHEDULED,)),
        StateChange(enqueued.id, states.ENQUEUED, expected=(states.SCHEDULED,))])

    assert storage.list_retries() == []
    assert storage.count_retries() == 0


def test_list_continuations(storage: Storage, jobs) -> None:
    parent = jobs.create(queue="parents")
    other = jobs.create(queue="parents")
    children = []
    for _ in range(3):
        children.append(jobs.create(states.AWAITING, parent_id=parent, continue_on="deleted"))
        time.sleep(0.002)
    jobs.create(states.AWAITING, parent_id=other, continue_on="succeeded")
    storage.change_states([StateChange(parent, states.DELETED)])

    listed = storage.list_continuations(parent)

    assert [record.id for record in listed] == children
    assert {record.state for record in listed} == {states.ENQUEUED}
    assert [record.id for record in storage.list_continuations(parent, limit=2)] == children[:2]
    assert storage.list_continuations(children[0]) == []


def test_expired_continuation_leaves_the_list(storage: Storage, jobs) -> None:
    parent = jobs.processing(queue="parents")
    child = jobs.create(states.AWAITING, parent_id=parent.id, continue_on="succeeded")
    storage.change_states([StateChange(parent.id, states.FAILED, lease_token=parent.lease_token)])
    # A Failed parent does not trigger an on-success continuation: it is deleted.
    storage.change_states([StateChange(child, states.DELETED, expire_in=0.01)])
    time.sleep(0.1)
    storage.expire(100)

    assert storage.list_continuations(parent.id) == []
