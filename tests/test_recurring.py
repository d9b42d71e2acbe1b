"""Recurring jobs on each storage backend: the API, misfire modes and
once-per-occurrence firing."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from backends import BACKENDS, StorageSpace, storage_space

from backburner import Backburner, ConfigurationError, JobNotFound
from backburner.recurring import MAX_ERRORS, RecurringScheduler, choose_occurrences


@pytest.fixture(params=BACKENDS)
def space(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorageSpace]:
    """A fresh storage of each backend in turn, removed afterwards."""
    with storage_space(request.param, tmp_path) as fresh:
        yield fresh


@pytest.fixture
def app(space: StorageSpace) -> Iterator[Backburner]:
    application = Backburner(space.url)

    @application.job(name="report")
    def report(kind: str = "daily") -> None: ...

    yield application
    application.close()


def jobs_of(app: Backburner, recurring_id: str) -> list:
    records = app.storage.list_jobs("Enqueued", limit=10_000)
    return [r for r in records if r.recurring_id == recurring_id]


def overwrite_recurring(space: StorageSpace, recurring_id: str, **fields: Any) -> None:
    """Overwrite stored fields of a recurring job behind the storage's back, as a broken
    client would; None clears a field."""
    if space.backend == "redis":
        key = f"{space.prefix}recurring:{recurring_id}"
        with space.connect_redis() as client:
            for name, value in fields.items():
                if value is None:
                    client.hdel(key, name)
                else:
                    client.hset(key, name, value)
        return
    assignments = ", ".join(f"{name} = ?" for name in fields)
    values = [*fields.values(), recurring_id]
    if space.backend == "postgres":
        with space.connect_postgres() as pg:
            pg.execute(f"UPDATE recurring SET {assignments.replace('?', '%s')} WHERE id = %s",
                       values)
        return
    conn = space.connect_sqlite()
    try:
        conn.execute(f"UPDATE recurring SET {assignments} WHERE id = ?", values)
    finally:
        conn.close()


def rewind(app: Backburner, recurring_id: str, seconds: float) -> float:
    """Simulate downtime: move the next occurrence into the past, onto the schedule."""
    job = app.recurring.get(recurring_id)
    assert job.next_at is not None
    past = job.next_at.timestamp() - seconds
    app.storage.set_recurring_paused(recurring_id, False, past)
    return past


def test_first_occurrence_after_creation(app: Backburner) -> None:
    before = dt.datetime.now(dt.timezone.utc)
    job = app.recurring.add_or_update("hourly", "report", "0 * * * *")

    assert job.next_at is not None
    assert job.next_at > before
    assert job.next_at.minute == 0
    assert job.next_at - before <= dt.timedelta(hours=1)
    assert job.description


def test_add_or_update_keeps_schedule(app: Backburner) -> None:
    first = app.recurring.add_or_update("r", "report", "*/5 * * * *", args=["a"])
    rewind(app, "r", 300)
    kept = app.recurring.add_or_update("r", "report", "*/5 * * * *", args=["b"])
    changed = app.recurring.add_or_update("r", "report", "*/10 * * * *")

    assert kept.next_at == first.next_at - dt.timedelta(seconds=300)
    assert changed.next_at is not None and changed.next_at > dt.datetime.now(dt.timezone.utc)
    assert changed.cron == "*/10 * * * *"


def test_time_zone_names(app: Backburner) -> None:
    windows = app.recurring.add_or_update("w", "report", "0 9 * * *",
                                          tz="W. Europe Standard Time")

    assert windows.tz == "Europe/Berlin"
    assert windows.next_at is not None
    assert windows.next_at.astimezone(dt.timezone.utc).hour in (7, 8)
    with pytest.raises(ConfigurationError, match="Mars/Olympus"):
        app.recurring.add_or_update("x", "report", "0 9 * * *", tz="Mars/Olympus")


@pytest.mark.parametrize("cron,field", [("61 * * * *", "minute"), ("* 25 * * *", "hour"),
                                        ("* * * * MOO", "day-of-week"), ("* * *", "5 fields")])
def test_invalid_cron_rejected(app: Backburner, cron: str, field: str) -> None:
    with pytest.raises(ConfigurationError, match=field):
        app.recurring.add_or_update("bad", "report", cron)
    with pytest.raises(JobNotFound):
        app.recurring.get("bad")


def test_invalid_inputs_rejected(app: Backburner) -> None:
    with pytest.raises(ConfigurationError, match="misfire"):
        app.recurring.add_or_update("r", "report", "* * * * *", misfire="sometimes")
    with pytest.raises(ConfigurationError, match="recurring job id"):
        app.recurring.add_or_update("", "report", "* * * * *")
    with pytest.raises(LookupError, match="no job function is registered"):
        app.recurring.add_or_update("r", "missing", "* * * * *")
    with pytest.raises(ConfigurationError, match="invalid queue name"):
        app.recurring.add_or_update("r", "report", "* * * * *", queue="Bad Queue")


def test_never_firing_expression_accepted(app: Backburner) -> None:
    job = app.recurring.add_or_update("feb30", "report", "0 0 30 2 *")

    assert job.next_at is None
    assert RecurringScheduler(app.storage, "test").run_once() == 0


def test_trigger_leaves_schedule(app: Backburner) -> None:
    before = app.recurring.add_or_update("r", "report", "0 0 1 1 *", kwargs={"kind": "yearly"})
    job_id = app.recurring.trigger("r")
    after = app.recurring.get("r")
    job = app.get_job(job_id)

    assert job is not None and job.state == "Enqueued"
    assert job.kwargs == {"kind": "yearly"}
    assert job.recurring_id == "r"
    assert after.next_at == before.next_at
    assert after.last_job_id == job_id
    with pytest.raises(JobNotFound):
        app.recurring.trigger("missing")


def test_remove_keeps_created_jobs(app: Backburner) -> None:
    app.recurring.add_or_update("r", "report", "* * * * *")
    job_id = app.recurring.trigger("r")

    assert app.recurring.remove("r") is True
    assert app.recurring.remove("r") is False
    assert app.get_job(job_id) is not None
    assert app.recurring.list() == []


def test_pause_and_resume(app: Backburner) -> None:
    app.recurring.add_or_update("r", "report", "* * * * * *")
    rewind(app, "r", 60)
    app.recurring.pause("r")
    scheduler = RecurringScheduler(app.storage, "test")

    assert scheduler.run_once() == 0
    assert app.recurring.get("r").paused is True
    app.recurring.resume("r")
    resumed = app.recurring.get("r")
    assert resumed.paused is False
    assert resumed.next_at is not None and resumed.next_at > dt.datetime.now(dt.timezone.utc)
    with pytest.raises(JobNotFound):
        app.recurring.pause("missing")


def test_preview(app: Backburner) -> None:
    app.recurring.add_or_update("r", "report", "0 9 * * MON-FRI", tz="Europe/Berlin")
    occurrences = app.recurring.preview("r", 5)

    assert len(occurrences) == 5
    assert all(o.weekday() < 5 and o.hour == 9 for o in occurrences)
    assert occurrences == sorted(occurrences)


@pytest.mark.parametrize("misfire,expected", [("relaxed", 1), ("strict", 10), ("ignore", 0)])
def test_misfire_modes_after_downtime(app: Backburner, misfire: str, expected: int) -> None:
    # Hourly, half an hour away from now, so the latest missed run is long past.
    minute = (dt.datetime.now(dt.timezone.utc).minute + 30) % 60
    app.recurring.add_or_update("r", "report", f"{minute} * * * *", misfire=misfire)
    rewind(app, "r", 10 * 3600)  # ten missed hours

    RecurringScheduler(app.storage, "test").run_once()
    created = jobs_of(app, "r")
    after = app.recurring.get("r")

    assert len(created) == expected
    assert len({job.occurrence for job in created}) == expected
    assert after.next_at is not None and after.next_at > dt.datetime.now(dt.timezone.utc)


@pytest.mark.parametrize("misfire", ["relaxed", "ignore"])
def test_late_pass_fires_every_occurrence(app: Backburner, misfire: str) -> None:
    app.recurring.add_or_update("r", "report", "* * * * * *", misfire=misfire)
    start = rewind(app, "r", 5)
    scheduler = RecurringScheduler(app.storage, "test")
    scheduler.last_pass_at = start - 0.5  # the previous pass was slow, not down

    scheduler.run_once()
    occurrences = sorted(job.occurrence for job in jobs_of(app, "r"))

    assert occurrences[0] == start
    assert len(occurrences) >= 5
    assert all(b - a == 1 for a, b in zip(occurrences, occurrences[1:]))


def test_choose_occurrences_by_mode() -> None:
    now = 1_000_000.0
    missed = [now - 3600, now - 1800, now - 1]
    late_since = now - 1.5
    on_time = [now - 1.2, now - 1]

    assert choose_occurrences(missed, late_since, "relaxed") == [now - 1]
    assert choose_occurrences(missed, late_since, "strict") == missed
    assert choose_occurrences(missed, late_since, "ignore") == [now - 1]
    assert choose_occurrences(missed[:2], late_since, "ignore") == []
    assert choose_occurrences(on_time, late_since, "relaxed") == on_time
    assert choose_occurrences([], late_since, "strict") == []


def test_short_schedule_after_downtime(app: Backburner) -> None:
    app.recurring.add_or_update("fast", "report", "* * * * * *", misfire="relaxed")
    app.recurring.add_or_update("quiet", "report", "* * * * * *", misfire="ignore")
    rewind(app, "fast", 30)
    rewind(app, "quiet", 30)

    RecurringScheduler(app.storage, "fresh").run_once()  # a server that just started

    assert len(jobs_of(app, "fast")) == 1
    assert len(jobs_of(app, "quiet")) <= 2


def test_unknown_function_records_error(app: Backburner) -> None:
    app.recurring.add_or_update("r", "report", "* * * * *")
    rewind(app, "r", 60)
    other = Backburner(app.storage_url)  # a server app that lacks "report"

    RecurringScheduler(other.storage, "test", other.registry).run_once()
    broken = app.recurring.get("r")
    other.close()

    assert "not registered" in (broken.error or "")
    assert jobs_of(app, "r") == []


def test_strict_jobs_stamped_with_occurrence(app: Backburner) -> None:
    app.recurring.add_or_update("r", "report", "*/15 * * * *", misfire="strict")
    start = rewind(app, "r", 3600)

    RecurringScheduler(app.storage, "test").run_once()
    occurrences = sorted(job.occurrence for job in jobs_of(app, "r"))

    assert occurrences[0] == start
    assert all(b - a == 900 for a, b in zip(occurrences, occurrences[1:]))


def test_concurrent_schedulers_fire_once(app: Backburner) -> None:
    app.recurring.add_or_update("r", "report", "* * * * * *", misfire="strict")
    rewind(app, "r", 30)
    barrier = threading.Barrier(8)

    def run() -> None:
        barrier.wait()
        RecurringScheduler(app.storage, f"s{threading.get_ident()}").run_once()

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    occurrences = [job.occurrence for job in jobs_of(app, "r")]

    assert len(occurrences) >= 30
    assert len(occurrences) == len(set(occurrences))


def test_occurrence_unique_in_storage(app: Backburner) -> None:
    app.recurring.add_or_update("r", "report", "* * * * *")
    past = rewind(app, "r", 60)
    RecurringScheduler(app.storage, "test").run_once()
    # A scheduler that read the schedule before the first one fired, then
    # wrote after the schedule was reset: the occurrence must not repeat.
    app.storage.set_recurring_paused("r", False, past)
    RecurringScheduler(app.storage, "test").run_once()

    assert [job.occurrence for job in jobs_of(app, "r")] == [past]


def test_scheduling_errors_disable(app: Backburner, space: StorageSpace) -> None:
    app.recurring.add_or_update("r", "report", "* * * * *")
    rewind(app, "r", 60)
    overwrite_recurring(space, "r", tz="Nowhere/Atlantis")
    scheduler = RecurringScheduler(app.storage, "test")

    for _ in range(MAX_ERRORS):
        scheduler.run_once()
        overwrite_recurring(space, "r", retry_at=None)  # skip the retry delay
    broken = app.recurring.get("r")

    assert broken.disabled is True
    assert "Nowhere/Atlantis" in (broken.error or "")
    assert jobs_of(app, "r") == []
    healed = app.recurring.add_or_update("r", "report", "* * * * *")
    assert healed.disabled is False
    assert healed.error is None
    assert healed.tz == "UTC"
