"""Client API: registration, enqueue options and the checks made at enqueue.

Tests that store jobs take ``app`` and run on each storage backend. Checks
that reject a call before it reaches storage take ``sqlite_app``: they run
once, since the backend plays no part in them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from backends import BACKENDS, storage_space

from backburner import (Backburner, ConfigurationError, InvalidArguments, JobContext,
                        JobNotRegistered, PayloadTooLarge)
from backburner.records import StateChange


@pytest.fixture(params=BACKENDS)
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh storage of each backend in turn, removed afterwards."""
    with storage_space(request.param, tmp_path) as space:
        yield space.url


@pytest.fixture
def app(storage_url: str) -> Iterator[Backburner]:
    application = Backburner(storage_url)
    yield application
    application.close()


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[Backburner]:
    """An app on a SQLite file, for checks that reject a call before it reaches storage."""
    application = Backburner(f"sqlite:///{tmp_path / 'jobs.db'}")
    yield application
    application.close()


def test_decorated_function_stays_callable(sqlite_app: Backburner) -> None:
    @sqlite_app.job
    def add(a: int, b: int) -> int:
        return a + b

    assert add(2, 3) == 5
    assert add.name == f"{__name__}:test_decorated_function_stays_callable.<locals>.add"


def test_enqueue_returns_id_and_stores_call(app: Backburner) -> None:
    @app.job(name="add", queue="math")
    def add(a: int, b: int) -> int:
        return a + b

    job_id = app.enqueue(add, 1, b=2)
    job = app.get_job(job_id)

    assert job is not None
    assert job.function == "add"
    assert job.args == [1]
    assert job.kwargs == {"b": 2}
    assert job.queue == "math"
    assert job.state == "Enqueued"
    assert job.created_at.tzinfo is not None
    assert [entry.state for entry in job.history] == ["Enqueued"]


def test_enqueue_by_name_and_plain_function(app: Backburner) -> None:
    def plain(x: int) -> int:
        return x

    registered = app.job(name="plain")(plain)

    by_name = app.get_job(app.enqueue("plain", 1))
    by_function = app.get_job(app.enqueue(plain, 2))

    assert by_name is not None and by_name.function == "plain"
    assert by_function is not None and by_function.args == [2]
    assert registered.name == "plain"


def test_unregistered_function_rejected(sqlite_app: Backburner) -> None:
    def stray() -> None: ...

    with pytest.raises(JobNotRegistered, match="not a registered job function"):
        sqlite_app.enqueue(stray)
    with pytest.raises(JobNotRegistered, match="no job function is registered as 'missing'"):
        sqlite_app.enqueue("missing")


def test_duplicate_name_rejected(sqlite_app: Backburner) -> None:
    sqlite_app.job(name="same")(lambda: None)

    with pytest.raises(ConfigurationError, match="already registered"):
        sqlite_app.job(name="same")(lambda: 1)


def test_signature_mismatch_rejected(app: Backburner) -> None:
    @app.job
    def one(a: int) -> None: ...

    with pytest.raises(InvalidArguments, match="do not match"):
        one.enqueue(1, 2)
    assert app.storage.count_jobs_by_state()["Enqueued"] == 0


def test_unsupported_argument_rejected(sqlite_app: Backburner) -> None:
    @sqlite_app.job
    def take(value: object) -> None: ...

    with pytest.raises(InvalidArguments, match="cannot be stored as a job argument"):
        take.enqueue(object())
    with pytest.raises(InvalidArguments, match="only string keys"):
        take.enqueue({1: "a"})


def test_payload_limit(storage_url: str) -> None:
    app = Backburner(storage_url, max_payload_bytes=1000)

    @app.job
    def take(value: str) -> None: ...

    take.enqueue("x" * 900)
    with pytest.raises(PayloadTooLarge, match="over the 1000-byte limit"):
        take.enqueue("x" * 1000)
    assert app.storage.count_jobs_by_state()["Enqueued"] == 1
    app.close()


@pytest.mark.parametrize("queue", ["", "Upper", "with space", "x" * 51, "dots.no", 7])
def test_invalid_queue_names(sqlite_app: Backburner, queue: object) -> None:
    @sqlite_app.job
    def noop() -> None: ...

    with pytest.raises(ConfigurationError, match="invalid queue name"):
        sqlite_app.options(queue=queue).enqueue(noop)  # type: ignore[arg-type]


def test_schedule_with_delay_and_datetime(app: Backburner) -> None:
    @app.job
    def noop(delay: int = 0, at: int = 0) -> None: ...

    before = dt.datetime.now(dt.timezone.utc)
    delayed = app.get_job(app.schedule(60, noop, delay=1, at=2))
    at_time = before + dt.timedelta(hours=1)
    timed = app.get_job(noop.schedule(at_time))

    assert delayed is not None and delayed.state == "Scheduled"
    assert delayed.kwargs == {"delay": 1, "at": 2}
    assert delayed.due_at is not None and delayed.due_at >= before + dt.timedelta(seconds=59)
    assert timed is not None and timed.due_at is not None
    assert abs((timed.due_at - at_time).total_seconds()) < 0.01


def test_naive_datetime_rejected(sqlite_app: Backburner) -> None:
    @sqlite_app.job
    def noop() -> None: ...

    with pytest.raises(ConfigurationError, match="timezone-aware"):
        noop.schedule(dt.datetime(2030, 1, 1))


def test_negative_delay_rejected(sqlite_app: Backburner) -> None:
    @sqlite_app.job
    def noop() -> None: ...

    with pytest.raises(ConfigurationError, match="invalid delay"):
        sqlite_app.schedule(-1, noop)


def test_context_parameter_is_not_an_argument(app: Backburner) -> None:
    @app.job
    def with_context(x: int, ctx: JobContext) -> None: ...

    assert with_context.context_parameter == "ctx"
    with_context.enqueue(1)
    with pytest.raises(InvalidArguments, match="do not pass 'ctx'"):
        with_context.enqueue(1, ctx=None)


def test_continuation_of_missing_parent(app: Backburner) -> None:
    @app.job
    def noop() -> None: ...

    with pytest.raises(LookupError, match="not found"):
        app.continue_with("no-such-job", noop)


def test_continuation_option_validated(sqlite_app: Backburner) -> None:
    with pytest.raises(ConfigurationError, match="on='sometimes'"):
        sqlite_app.options(on="sometimes")


def test_delete_and_requeue(app: Backburner) -> None:
    @app.job
    def noop() -> None: ...

    job_id = noop.enqueue()

    assert app.delete(job_id) is True
    assert app.delete(job_id) is False
    assert app.get_job(job_id).state == "Deleted"  # type: ignore[union-attr]
    assert app.requeue(job_id) is True
    assert app.get_job(job_id).state == "Enqueued"  # type: ignore[union-attr]
    assert app.requeue("missing") is False
    assert app.get_job("missing") is None


def test_requeue_gives_fresh_retries(app: Backburner) -> None:
    @app.job
    def noop() -> None: ...

    job_id = noop.enqueue()
    job = app.storage.fetch_jobs(["default"], "server-a", 1)[0]
    app.storage.change_states([StateChange(job_id, "Failed", lease_token=job.lease_token,
                                           retry_count=10, crash_count=3)])
    requeued = app.requeue(job_id)
    record = app.storage.get_job(job_id)

    assert requeued is True
    assert record is not None
    assert (record.state, record.retry_count, record.crash_count) == ("Enqueued", 0, 0)


def test_storage_url_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("BACKBURNER_STORAGE_URL", url)

    assert Backburner().storage_url == url


@pytest.mark.parametrize("url,message", [
    ("mysql://localhost/db", "invalid storage URL"),
    ("sqlite://host/db", "three slashes"),
    ("sqlite:///:memory:", "in-memory"),
    ("sqlite:///x.db?busy_timeout_ms=soon", "whole number"),
    ("sqlite:///x.db?journal=off", "unknown SQLite URL option"),
])
def test_bad_storage_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Backburner(url).storage


def test_unwritable_int_rejected(sqlite_app: Backburner) -> None:
    @sqlite_app.job
    def take(value: int) -> None: ...

    with pytest.raises(InvalidArguments, match="cannot be written as JSON"):
        take.enqueue(10**5000)
