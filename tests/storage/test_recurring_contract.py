"""Conformance: recurring job records, firing as compare-and-set, one job per occurrence."""

from __future__ import annotations

import threading

from backburner import states
from backburner.ids import new_job_id
from backburner.records import NewJob, RecurringRecord
from backburner.storage.base import Storage


def record(storage: Storage, recurring_id: str = "r", cron: str = "* * * * *",
           next_at: float | None = None, **fields: object) -> RecurringRecord:
    values: dict[str, object] = {
        "id": recurring_id, "cron": cron, "tz": "UTC", "function": "tests:report",
        "payload": '{"args":[],"kwargs":{}}', "queue": "default", "misfire": "relaxed",
        "next_at": storage.now() - 1 if next_at is None else next_at}
    values.update(fields)
    return RecurringRecord(**values)  # type: ignore[arg-type]


def occurrence_job(recurring_id: str, occurrence: float) -> NewJob:
    return NewJob(id=new_job_id(), function="tests:report", payload='{"args":[],"kwargs":{}}',
                  queue="default", state=states.ENQUEUED, reason="recurring",
                  recurring_id=recurring_id, occurrence=occurrence)


def test_save_and_read(storage: Storage) -> None:
    storage.save_recurring(record(storage, next_at=1000.0))
    saved = storage.get_recurring("r")

    assert saved is not None
    assert saved.cron == "* * * * *"
    assert saved.next_at == 1000.0
    assert saved.paused is False
    assert saved.created_at > 0
    assert [r.id for r in storage.list_recurring()] == ["r"]
    assert storage.get_recurring("missing") is None


def test_save_keeps_schedule_when_unchanged(storage: Storage) -> None:
    storage.save_recurring(record(storage, next_at=1000.0, queue="a"))
    storage.save_recurring(record(storage, next_at=2000.0, queue="b"))
    same = storage.get_recurring("r")
    storage.save_recurring(record(storage, cron="*/5 * * * *", next_at=3000.0))
    changed = storage.get_recurring("r")

    assert same is not None and same.next_at == 1000.0
    assert same.queue == "b"
    assert changed is not None and changed.next_at == 3000.0


def test_remove(storage: Storage) -> None:
    storage.save_recurring(record(storage))

    assert storage.remove_recurring("r") is True
    assert storage.remove_recurring("r") is False
    assert storage.get_recurring("r") is None


def test_pause_hides_from_due(storage: Storage) -> None:
    storage.save_recurring(record(storage))

    assert [r.id for r in storage.due_recurring(10, 5)] == ["r"]
    assert storage.set_recurring_paused("r", True, None) is True
    assert storage.due_recurring(10, 5) == []
    assert storage.set_recurring_paused("r", False, storage.now() - 1) is True
    assert [r.id for r in storage.due_recurring(10, 5)] == ["r"]
    assert storage.set_recurring_paused("missing", True, None) is False


def test_due_only_past(storage: Storage) -> None:
    storage.save_recurring(record(storage, "past"))
    storage.save_recurring(record(storage, "future", next_at=storage.now() + 3600))
    storage.save_recurring(RecurringRecord(**{**record(storage, "never").__dict__,
                                              "next_at": None}))

    assert [r.id for r in storage.due_recurring(10, 5)] == ["past"]


def test_fire_is_compare_and_set(storage: Storage) -> None:
    storage.save_recurring(record(storage, next_at=1000.0))
    job = occurrence_job("r", 1000.0)

    assert storage.fire_recurring("r", 999.0, [job], 1060.0) is False
    assert storage.get_job(job.id) is None
    assert storage.fire_recurring("r", 1000.0, [job], 1060.0) is True
    fired = storage.get_recurring("r")
    assert fired is not None
    assert fired.next_at == 1060.0
    assert fired.last_at == 1000.0
    assert fired.last_job_id == job.id
    created = storage.get_job(job.id)
    assert created is not None
    assert created.recurring_id == "r"
    assert created.occurrence == 1000.0


def test_one_job_per_occurrence(storage: Storage) -> None:
    storage.save_recurring(record(storage, next_at=1000.0))
    first = occurrence_job("r", 1000.0)
    storage.fire_recurring("r", 1000.0, [first], 1000.0)
    second = occurrence_job("r", 1000.0)

    assert storage.fire_recurring("r", 1000.0, [second], 1060.0) is True
    assert storage.get_job(second.id) is None
    assert storage.get_recurring("r").last_job_id == first.id  # type: ignore[union-attr]


def test_concurrent_fire_once(storage: Storage) -> None:
    storage.save_recurring(record(storage, next_at=1000.0))
    barrier = threading.Barrier(6)
    results: list[bool] = []

    def fire() -> None:
        barrier.wait()
        results.append(storage.fire_recurring("r", 1000.0, [occurrence_job("r", 1000.0)],
                                              1060.0))

    threads = [threading.Thread(target=fire) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    enqueued = [j for j in storage.list_jobs(states.ENQUEUED) if j.recurring_id == "r"]

    assert results.count(True) == 1
    assert len(enqueued) == 1


def test_fire_skips_paused(storage: Storage) -> None:
    storage.save_recurring(record(storage, next_at=1000.0))
    storage.set_recurring_paused("r", True, None)

    assert storage.fire_recurring("r", 1000.0, [occurrence_job("r", 1000.0)], 1060.0) is False


def test_trigger(storage: Storage) -> None:
    storage.save_recurring(record(storage, next_at=1000.0))
    job = NewJob(id=new_job_id(), function="tests:report", payload='{"args":[],"kwargs":{}}',
                 queue="default", state=states.ENQUEUED, recurring_id="r")

    assert storage.trigger_recurring("r", job) is True
    assert storage.get_job(job.id) is not None
    triggered = storage.get_recurring("r")
    assert triggered is not None
    assert triggered.next_at == 1000.0
    assert triggered.last_job_id == job.id
    other = NewJob(**{**job.__dict__, "id": new_job_id()})
    assert storage.trigger_recurring("missing", other) is False
    assert storage.get_job(other.id) is None


def test_errors_delay_and_disable(storage: Storage) -> None:
    storage.save_recurring(record(storage))
    storage.record_recurring_error("r", "boom", storage.now() + 3600)
    delayed = storage.get_recurring("r")

    assert delayed is not None
    assert delayed.error == "boom"
    assert delayed.error_count == 1
    assert storage.due_recurring(10, 5) == []
    storage.record_recurring_error("r", "boom", None)
    assert storage.due_recurring(10, 2) == []
    assert [r.id for r in storage.due_recurring(10, 5)] == ["r"]
    storage.save_recurring(record(storage))
    healed = storage.get_recurring("r")
    assert healed is not None
    assert healed.error is None
    assert healed.error_count == 0
