"""Conformance: due scheduled jobs, leases, recovery from dead servers and expiry."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from backburner import states
from backburner.records import Recovery, StateChange
from backburner.storage.base import Storage

T = TypeVar("T")

#: Server timeout for recovery tests, in seconds: long enough that a server
#: announced just before the check is alive even on a busy machine.
SERVER_TIMEOUT = 1.0


def poll(action: Callable[[], T], timeout: float = 20.0) -> T:
    """Call ``action`` until it returns a truthy value, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = action()
        if result:
            return result
        assert time.monotonic() < deadline, f"{action} returned nothing for {timeout} s"
        time.sleep(0.02)


def wait_until_dead(storage: Storage, server_id: str, timeout: float) -> None:
    """Sleep until ``server_id``'s last heartbeat is more than ``timeout`` seconds old."""
    heartbeats = [server.heartbeat_at for server in storage.list_servers()
                  if server.id == server_id]
    assert len(heartbeats) == 1, f"server {server_id} is not announced"
    while storage.now() - heartbeats[0] <= timeout:
        time.sleep(0.02)


# -- scheduled jobs -----------------------------------------------------------


def test_due_jobs_enqueued(storage: Storage, jobs) -> None:
    now = storage.now()
    past = jobs.create(states.SCHEDULED, due_at=now - 10.0)
    ready = jobs.create(states.SCHEDULED, delay=0.0)
    future = jobs.create(states.SCHEDULED, due_at=now + 3600.0)
    moved = storage.enqueue_due_jobs(100)

    assert sorted(moved) == sorted([past, ready])
    assert jobs.get(past).state == states.ENQUEUED
    assert jobs.get(ready).state == states.ENQUEUED
    assert jobs.get(future).state == states.SCHEDULED
    assert jobs.history(past) == [states.SCHEDULED, states.ENQUEUED]
    assert jobs.get(past).due_at is None


def test_due_jobs_limit(storage: Storage, jobs) -> None:
    now = storage.now()
    ids = [jobs.create(states.SCHEDULED, due_at=now - 100.0 + index) for index in range(5)]

    first = storage.enqueue_due_jobs(3)
    second = storage.enqueue_due_jobs(3)

    assert len(first) == 3
    assert sorted(first + second) == sorted(ids)
    assert storage.enqueue_due_jobs(3) == []


def test_due_jobs_none(storage: Storage, jobs) -> None:
    jobs.create(states.SCHEDULED, delay=3600.0)

    assert storage.enqueue_due_jobs(10) == []


def test_due_jobs_by_storage_clock(storage: Storage, jobs) -> None:
    job_id = jobs.create(states.SCHEDULED, delay=0.3)
    due_at = jobs.get(job_id).due_at
    assert due_at is not None
    early = storage.enqueue_due_jobs(10)
    checked_before_due = storage.now() < due_at

    if checked_before_due:
        assert early == []
    if not early:
        assert poll(lambda: storage.enqueue_due_jobs(10)) == [job_id]
    enqueued_at = jobs.get(job_id).history[-1].at
    assert enqueued_at is not None
    assert enqueued_at >= due_at


def test_due_jobs_fetchable(storage: Storage, jobs) -> None:
    job_id = jobs.create(states.SCHEDULED, delay=0.0)
    storage.enqueue_due_jobs(10)

    assert [job.id for job in storage.fetch_jobs(["default"], "server-a", 1)] == [job_id]


def test_due_jobs_skip_other_states(storage: Storage, jobs) -> None:
    job_id = jobs.create(states.SCHEDULED, delay=0.0)
    storage.change_states([StateChange(job_id, states.DELETED)])

    assert storage.enqueue_due_jobs(10) == []
    assert jobs.get(job_id).state == states.DELETED


# -- leases -------------------------------------------------------------------


def test_current_leases(storage: Storage, jobs) -> None:
    first = jobs.processing(queue="first")
    second = jobs.processing(queue="second")
    third = jobs.processing(queue="third")
    storage.change_states([StateChange(first.id, states.SUCCEEDED, lease_token=first.lease_token),
                           StateChange(third.id, states.ENQUEUED, "requeued")])
    tokens = [first.lease_token, second.lease_token, third.lease_token, "not-a-lease"]

    assert storage.current_leases(tokens) == {second.lease_token}


def test_current_leases_empty(storage: Storage) -> None:
    assert storage.current_leases([]) == set()


# -- recovery -----------------------------------------------------------------


def test_recover_requeues(storage: Storage, jobs) -> None:
    storage.announce_server("dead", ["default"], 1, {})
    job = jobs.processing(server_id="dead")
    wait_until_dead(storage, "dead", SERVER_TIMEOUT)

    recoveries = storage.recover_jobs_of_dead_servers(SERVER_TIMEOUT, 3)
    stored = jobs.get(job.id)

    assert recoveries == [Recovery(job.id, "dead", states.ENQUEUED)]
    assert stored.state == states.ENQUEUED
    assert stored.crash_count == 1
    assert stored.lease_token is None
    assert [entry.state for entry in stored.history] == [
        states.ENQUEUED, states.PROCESSING, states.ENQUEUED]
    assert "dead" in (stored.history[-1].reason or "")
    assert storage.current_leases([job.lease_token]) == set()


def test_recover_gives_up(storage: Storage, jobs) -> None:
    job_id = jobs.create()
    outcomes = []
    for round_number in range(3):
        server_id = f"dead-{round_number}"
        storage.announce_server(server_id, ["default"], 1, {})
        fetched = storage.fetch_jobs(["default"], server_id, 1)
        assert [job.id for job in fetched] == [job_id]
        wait_until_dead(storage, server_id, 0.1)
        outcomes += storage.recover_jobs_of_dead_servers(0.1, 2)
    stored = jobs.get(job_id)

    assert [recovery.state for recovery in outcomes] == [
        states.ENQUEUED, states.ENQUEUED, states.FAILED]
    assert stored.state == states.FAILED
    assert stored.crash_count == 3
    assert stored.attempt == 3
    assert stored.expire_at is None
    assert "dead-2" in (stored.history[-1].reason or "")
    assert storage.counter_totals()["failed"] == 1


def test_recover_zero_requeues(storage: Storage, jobs) -> None:
    storage.announce_server("dead", ["default"], 1, {})
    job = jobs.processing(server_id="dead")
    wait_until_dead(storage, "dead", 0.1)
    storage.recover_jobs_of_dead_servers(0.1, 0)

    assert jobs.get(job.id).state == states.FAILED


def test_recover_spares_live(storage: Storage, jobs) -> None:
    storage.announce_server("dead", ["default"], 1, {})
    storage.announce_server("live", ["default"], 1, {})
    dead_job = jobs.processing(queue="dead-queue", server_id="dead")
    live_job = jobs.processing(queue="live-queue", server_id="live")
    wait_until_dead(storage, "dead", SERVER_TIMEOUT)

    assert storage.heartbeat("live")
    recoveries = storage.recover_jobs_of_dead_servers(SERVER_TIMEOUT, 3)

    assert [recovery.job_id for recovery in recoveries] == [dead_job.id]
    assert jobs.get(live_job.id).state == states.PROCESSING
    assert jobs.get(live_job.id).lease_token == live_job.lease_token
    assert storage.current_leases([live_job.lease_token]) == {live_job.lease_token}
    assert [server.id for server in storage.list_servers()] == ["live"]


def test_recover_removes_dead_servers(storage: Storage) -> None:
    storage.announce_server("dead", ["default"], 1, {})
    wait_until_dead(storage, "dead", 0.1)

    assert storage.recover_jobs_of_dead_servers(0.1, 3) == []
    assert storage.list_servers() == []
    assert storage.heartbeat("dead") is False


def test_recover_nothing_dead(storage: Storage, jobs) -> None:
    storage.announce_server("live", ["default"], 1, {})
    job = jobs.processing(server_id="live")

    assert storage.recover_jobs_of_dead_servers(3600.0, 3) == []
    assert jobs.get(job.id).state == states.PROCESSING


def test_recover_then_refetch(storage: Storage, jobs) -> None:
    storage.announce_server("dead", ["default"], 1, {})
    first = jobs.processing(server_id="dead")
    wait_until_dead(storage, "dead", 0.1)
    storage.recover_jobs_of_dead_servers(0.1, 3)
    second = storage.fetch_jobs(["default"], "server-b", 1)

    assert [job.id for job in second] == [first.id]
    assert second[0].attempt == 2
    assert second[0].lease_token != first.lease_token


# -- expiry -------------------------------------------------------------------


def test_expire_removes(storage: Storage, jobs) -> None:
    job = jobs.processing()
    storage.change_states([StateChange(job.id, states.SUCCEEDED, expire_in=0.05)])

    assert poll(lambda: storage.expire(100)) == 1
    assert storage.get_job(job.id) is None


def test_expire_removes_history(storage: Storage, jobs) -> None:
    # Without reading tables, history left behind shows up when the id is reused.
    job = jobs.processing()
    storage.change_states([StateChange(job.id, states.DELETED, expire_in=0.05)])
    poll(lambda: storage.expire(100))
    storage.create_jobs([jobs.new(id=job.id)])

    assert jobs.history(job.id) == [states.ENQUEUED]


def test_expire_limit(storage: Storage, jobs) -> None:
    runs = [jobs.processing(queue=queue) for queue in ("a", "b", "c")]
    storage.change_states([StateChange(job.id, states.SUCCEEDED, expire_in=0.01) for job in runs])
    # A backend may stamp each job with its own statement's clock, so wait
    # until all three have surely expired.
    time.sleep(0.2)

    assert storage.expire(2) == 2
    assert storage.expire(2) == 1
    assert storage.expire(2) == 0


def test_expire_keeps_others(storage: Storage, jobs) -> None:
    failed = jobs.processing(queue="failed")
    kept = jobs.processing(queue="kept")
    forever = jobs.processing(queue="forever")
    gone = jobs.processing(queue="gone")
    storage.change_states([
        StateChange(failed.id, states.FAILED, expire_in=0.01),
        StateChange(kept.id, states.SUCCEEDED, expire_in=3600.0),
        StateChange(forever.id, states.SUCCEEDED),
        StateChange(gone.id, states.SUCCEEDED, expire_in=0.01),
    ])
    waiting = jobs.create(states.SCHEDULED, delay=3600.0)
    queued = jobs.create()

    assert poll(lambda: storage.expire(100)) == 1
    assert storage.get_job(gone.id) is None
    for job_id in (failed.id, kept.id, forever.id, waiting, queued):
        assert storage.get_job(job_id) is not None, job_id


def test_expire_requeued(storage: Storage, jobs) -> None:
    job = jobs.processing()
    storage.change_states([StateChange(job.id, states.SUCCEEDED, expire_in=0.01)])
    storage.change_states([StateChange(job.id, states.ENQUEUED, "requeued")])
    time.sleep(0.05)

    assert storage.expire(100) == 0
    assert jobs.get(job.id).state == states.ENQUEUED
