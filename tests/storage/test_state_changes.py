"""Conformance: compare-and-set state changes and continuations."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from backburner import states
from backburner.records import HistoryEntry, StateChange
from backburner.storage.base import Storage

#: Every state but Processing, which only fetch_jobs enters.
CHANGE_TARGETS = [state for state in states.ALL_STATES if state != states.PROCESSING]


# -- compare-and-set ----------------------------------------------------------


@pytest.mark.parametrize("target", CHANGE_TARGETS)
@pytest.mark.parametrize("source", states.ALL_STATES)
def test_change_transition_table(storage: Storage, jobs, source: str, target: str) -> None:
    job_id = jobs.in_state(source)
    history = jobs.history(job_id)
    applied = storage.change_states([StateChange(job_id, target, "table")])
    legal = target in states.TRANSITIONS[source]

    assert applied == [legal]
    if legal:
        assert jobs.get(job_id).state == target
        assert jobs.history(job_id) == [*history, target]
    else:
        assert jobs.get(job_id).state == source
        assert jobs.history(job_id) == history


def test_change_expected_match(storage: Storage, jobs) -> None:
    job_id = jobs.create()
    change = StateChange(job_id, states.DELETED, "by test", {"who": "test"},
                         expected=(states.SCHEDULED, states.ENQUEUED))

    assert storage.change_states([change]) == [True]

    job = jobs.get(job_id)
    assert job.state == states.DELETED
    assert job.history[-1].state == states.DELETED
    assert job.history[-1].reason == "by test"
    assert job.history[-1].data == {"who": "test"}


def test_change_expected_mismatch(storage: Storage, jobs) -> None:
    job_id = jobs.create()
    change = StateChange(job_id, states.DELETED, expected=(states.SCHEDULED,))

    assert storage.change_states([change]) == [False]
    assert jobs.get(job_id).state == states.ENQUEUED
    assert jobs.history(job_id) == [states.ENQUEUED]


def test_change_missing_job(storage: Storage) -> None:
    assert storage.change_states([StateChange("no-such-job", states.DELETED)]) == [False]


def test_change_lease_match(storage: Storage, jobs) -> None:
    job = jobs.processing()
    change = StateChange(job.id, states.SUCCEEDED, expected=(states.PROCESSING,),
                         lease_token=job.lease_token)

    assert storage.change_states([change]) == [True]

    stored = jobs.get(job.id)
    assert stored.state == states.SUCCEEDED
    assert stored.lease_token is None
    assert storage.current_leases([job.lease_token]) == set()


def test_change_lease_mismatch(storage: Storage, jobs) -> None:
    job = jobs.processing()
    change = StateChange(job.id, states.SUCCEEDED, expected=(states.PROCESSING,),
                         lease_token="not-the-lease")

    assert storage.change_states([change]) == [False]
    assert jobs.get(job.id).state == states.PROCESSING
    assert jobs.get(job.id).lease_token == job.lease_token


def test_change_stale_lease(storage: Storage, jobs) -> None:
    first = jobs.processing()
    storage.change_states([StateChange(first.id, states.ENQUEUED, "requeued")])
    second = storage.fetch_jobs(["default"], "server-b", 1)[0]
    late = StateChange(first.id, states.SUCCEEDED, lease_token=first.lease_token)

    assert second.id == first.id
    assert storage.change_states([late]) == [False]
    assert jobs.get(first.id).state == states.PROCESSING
    assert jobs.get(first.id).lease_token == second.lease_token


def test_change_lease_not_processing(storage: Storage, jobs) -> None:
    job = jobs.processing()
    storage.change_states([StateChange(job.id, states.ENQUEUED, "requeued")])
    late = StateChange(job.id, states.DELETED, lease_token=job.lease_token)

    assert storage.change_states([late]) == [False]
    assert jobs.get(job.id).state == states.ENQUEUED


def test_change_traversed(storage: Storage, jobs) -> None:
    job = jobs.processing()
    failed = HistoryEntry(states.FAILED, "ValueError: boom", {"exception_type": "ValueError"})
    change = StateChange(job.id, states.SCHEDULED, "Retry attempt 1 of 3", {"retry": 1},
                         expected=(states.PROCESSING,), lease_token=job.lease_token,
                         traversed=(failed,), delay=30.0, retry_count=1)

    assert storage.change_states([change]) == [True]

    stored = jobs.get(job.id)
    assert [entry.state for entry in stored.history] == [
        states.ENQUEUED, states.PROCESSING, states.FAILED, states.SCHEDULED]
    assert stored.history[2].reason == "ValueError: boom"
    assert stored.history[2].data == {"exception_type": "ValueError"}
    assert stored.history[3].reason == "Retry attempt 1 of 3"
    assert stored.history[3].data.get("retry") == 1
    assert stored.retry_count == 1


def test_change_retry_count_kept(storage: Storage, jobs) -> None:
    job = jobs.processing()
    storage.change_states([StateChange(job.id, states.SCHEDULED, delay=0.0, retry_count=2)])
    storage.change_states([StateChange(job.id, states.ENQUEUED)])

    assert jobs.get(job.id).retry_count == 2


def test_change_crash_count_set_and_kept(storage: Storage, jobs) -> None:
    job = jobs.processing(server_id="dead-server")
    time.sleep(0.05)
    storage.recover_jobs_of_dead_servers(0.01, 3)
    crashed = jobs.get(job.id).crash_count
    storage.change_states([StateChange(job.id, states.DELETED)])
    kept = jobs.get(job.id).crash_count
    storage.change_states([StateChange(job.id, states.ENQUEUED, crash_count=0, retry_count=0)])

    assert (crashed, kept) == (1, 1)
    assert (jobs.get(job.id).crash_count, jobs.get(job.id).retry_count) == (0, 0)


def test_change_scheduled_delay(storage: Storage, jobs) -> None:
    job_id = jobs.create()
    before = storage.now()
    storage.change_states([StateChange(job_id, states.SCHEDULED, delay=90.0)])
    after = storage.now()
    job = jobs.get(job_id)

    assert job.state == states.SCHEDULED
    assert job.due_at is not None
    assert before + 90.0 <= job.due_at <= after + 90.0


def test_change_scheduled_due_at(storage: Storage, jobs) -> None:
    job_id = jobs.create()
    due_at = storage.now() + 4321.0
    storage.change_states([StateChange(job_id, states.SCHEDULED, due_at=due_at)])

    assert jobs.get(job_id).due_at == pytest.approx(due_at, abs=1e-6)


@pytest.mark.parametrize("state", [states.SUCCEEDED, states.DELETED])
def test_change_expire_in(storage: Storage, jobs, state: str) -> None:
    job = jobs.processing()
    before = storage.now()
    storage.change_states([StateChange(job.id, state, expire_in=300.0)])
    expire_at = jobs.get(job.id).expire_at

    assert expire_at is not None
    assert before + 300.0 <= expire_at <= storage.now() + 300.0


def test_change_expire_in_failed(storage: Storage, jobs) -> None:
    job = jobs.processing()
    storage.change_states([StateChange(job.id, states.FAILED, expire_in=300.0)])

    assert jobs.get(job.id).expire_at is None


def test_change_expire_in_none(storage: Storage, jobs) -> None:
    job = jobs.processing()
    storage.change_states([StateChange(job.id, states.SUCCEEDED)])

    assert jobs.get(job.id).expire_at is None


def test_change_requeue_clears_expiry(storage: Storage, jobs) -> None:
    job = jobs.processing()
    storage.change_states([StateChange(job.id, states.SUCCEEDED, expire_in=300.0)])
    storage.change_states([StateChange(job.id, states.ENQUEUED, "requeued")])

    assert jobs.get(job.id).expire_at is None


def test_change_batch_mixed(storage: Storage, jobs) -> None:
    enqueued = jobs.create()
    scheduled = jobs.create(states.SCHEDULED, delay=600.0)
    running = jobs.processing(queue="running")
    changes = [
        StateChange(enqueued, states.DELETED, expected=(states.ENQUEUED,)),
        StateChange(scheduled, states.DELETED, expected=(states.ENQUEUED,)),
        StateChange("no-such-job", states.DELETED),
        StateChange(running.id, states.SUCCEEDED, lease_token="not-the-lease"),
        StateChange(running.id, states.SUCCEEDED, lease_token=running.lease_token),
    ]

    assert storage.change_states(changes) == [True, False, False, False, True]
    assert jobs.get(enqueued).state == states.DELETED
    assert jobs.get(scheduled).state == states.SCHEDULED
    assert jobs.get(running.id).state == states.SUCCEEDED


def test_change_batch_same_job(storage: Storage, jobs) -> None:
    job = jobs.processing()
    changes = [
        StateChange(job.id, states.SUCCEEDED, lease_token=job.lease_token),
        StateChange(job.id, states.FAILED, lease_token=job.lease_token),
    ]

    assert storage.change_states(changes) == [True, False]
    assert jobs.get(job.id).state == states.SUCCEEDED


def test_change_empty_batch(storage: Storage) -> None:
    assert storage.change_states([]) == []


# -- continuations ------------------------------------------------------------


@pytest.mark.parametrize(("on", "parent_state", "expected"), [
    ("succeeded", states.SUCCEEDED, states.ENQUEUED),
    ("succeeded", states.DELETED, states.DELETED),
    ("finished", states.SUCCEEDED, states.ENQUEUED),
    ("finished", states.DELETED, states.ENQUEUED),
    ("deleted", states.SUCCEEDED, states.DELETED),
    ("deleted", states.DELETED, states.ENQUEUED),
])
def test_continuation_released(storage: Storage, jobs, on: str, parent_state: str,
                               expected: str) -> None:
    parent = jobs.processing()
    child_id = jobs.create(states.AWAITING, parent_id=parent.id, continue_on=on)
    storage.change_states([StateChange(parent.id, parent_state, lease_token=parent.lease_token)])
    child = jobs.get(child_id)

    assert child.state == expected
    assert jobs.history(child_id) == [states.AWAITING, expected]
    assert parent.id in (child.history[-1].reason or "")


def test_continuation_waits_for_failed(storage: Storage, jobs) -> None:
    parent = jobs.processing()
    child_id = jobs.create(states.AWAITING, parent_id=parent.id, continue_on="finished")
    storage.change_states([StateChange(parent.id, states.FAILED, lease_token=parent.lease_token)])

    assert jobs.get(child_id).state == states.AWAITING


def test_continuation_many_children(storage: Storage, jobs) -> None:
    parent = jobs.processing()
    children = [jobs.create(states.AWAITING, parent_id=parent.id, continue_on="succeeded")
                for _ in range(5)]
    storage.change_states([StateChange(parent.id, states.SUCCEEDED)])

    assert [jobs.get(child).state for child in children] == [states.ENQUEUED] * 5
    assert storage.queue_lengths() == {"default": 5}


def test_continuation_deleted_expiry(storage: Storage, jobs) -> None:
    parent = jobs.processing()
    child_id = jobs.create(states.AWAITING, parent_id=parent.id, continue_on="succeeded")
    before = storage.now()
    storage.change_states([StateChange(parent.id, states.DELETED, expire_in=300.0)])
    child = jobs.get(child_id)

    assert child.state == states.DELETED
    assert child.expire_at is not None
    assert before + 300.0 <= child.expire_at <= storage.now() + 300.0


def test_continuation_counts_deleted(storage: Storage, jobs) -> None:
    parent = jobs.processing()
    jobs.create(states.AWAITING, parent_id=parent.id, continue_on="succeeded")
    storage.change_states([StateChange(parent.id, states.DELETED)])

    assert storage.counter_totals()["deleted"] == 2


@pytest.mark.parametrize(("parent_state", "chain", "expected"), [
    # Deleting the root deletes the "succeeded" links, which releases "deleted" ones.
    (states.DELETED, ["succeeded", "succeeded", "deleted", "succeeded"],
     [states.DELETED, states.DELETED, states.ENQUEUED, states.AWAITING]),
    (states.SUCCEEDED, ["deleted", "finished", "succeeded"],
     [states.DELETED, states.ENQUEUED, states.AWAITING]),
    (states.SUCCEEDED, ["deleted", "succeeded", "deleted"],
     [states.DELETED, states.DELETED, states.ENQUEUED]),
])
def test_continuation_chain(storage: Storage, jobs, parent_state: str, chain: list[str],
                            expected: list[str]) -> None:
    root = jobs.processing()
    links = []
    parent_id = root.id
    for on in chain:
        parent_id = jobs.create(states.AWAITING, parent_id=parent_id, continue_on=on)
        links.append(parent_id)
    storage.change_states([StateChange(root.id, parent_state)])

    assert [jobs.get(link).state for link in links] == expected
    for link, state in zip(links, expected):
        released = [] if state == states.AWAITING else [state]
        assert jobs.history(link) == [states.AWAITING, *released]


def test_continuation_enqueued_later(storage: Storage, jobs) -> None:
    # A continuation released from its chain is a normal job: when it
    # succeeds, its own continuation runs.
    root = jobs.processing()
    middle = jobs.create(states.AWAITING, parent_id=root.id, continue_on="succeeded")
    leaf = jobs.create(states.AWAITING, parent_id=middle, continue_on="succeeded")
    storage.change_states([StateChange(root.id, states.SUCCEEDED)])
    fetched = storage.fetch_jobs(["default"], "server-a", 1)
    storage.change_states([StateChange(middle, states.SUCCEEDED,
                                       lease_token=fetched[0].lease_token)])

    assert [job.id for job in fetched] == [middle]
    assert jobs.get(leaf).state == states.ENQUEUED


def test_continuation_race(storage: Storage, jobs) -> None:
    parent = jobs.processing(queue="parents")
    created: list[str] = []
    created_lock = threading.Lock()
    stop = threading.Event()

    def add_continuations() -> None:
        while not stop.is_set():
            child_id = jobs.create(states.AWAITING, parent_id=parent.id,
                                   continue_on="succeeded")
            with created_lock:
                created.append(child_id)

    threads = [threading.Thread(target=add_continuations) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        _wait_for(lambda: len(created) >= 20)
        storage.change_states([StateChange(parent.id, states.SUCCEEDED,
                                           lease_token=parent.lease_token)])
        count_at_completion = len(created)
        _wait_for(lambda: len(created) >= count_at_completion + 20)
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    histories = {child_id: jobs.history(child_id) for child_id in created}
    wrong = {child_id: history for child_id, history in histories.items()
             if history != [states.AWAITING, states.ENQUEUED]}
    assert wrong == {}
    assert storage.queue_lengths() == {"default": len(created)}


def _wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)
