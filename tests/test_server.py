"""The embedded server: running, retrying, cancelling and stopping jobs in-process.

Every test runs on each storage backend.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from backends import BACKENDS, storage_space

from backburner import Backburner, Job, JobContext
from backburner.records import StateChange
from backburner.server.outcomes import OutcomeWriter


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


def wait_for_state(app: Backburner, job_id: str, states: set[str], timeout: float = 15) -> Job:
    deadline = time.monotonic() + timeout
    while True:
        job = app.get_job(job_id)
        assert job is not None
        if job.state in states:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job.state}"
        time.sleep(0.02)


def wait_until(condition: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_sync_and_async_jobs_succeed(app: Backburner) -> None:
    @app.job
    def add(a: int, b: int) -> int:
        return a + b

    @app.job
    async def async_add(a: int, b: int) -> int:
        await asyncio.sleep(0.01)
        return a + b

    with app.server(workers=2):
        sync_job = wait_for_state(app, add.enqueue(1, 2), {"Succeeded"})
        async_job = wait_for_state(app, async_add.enqueue(3, 4), {"Succeeded"})

    assert sync_job.history[-1].data["result"] == "3"
    assert async_job.history[-1].data["result"] == "7"
    assert sync_job.attempt == 1


def test_context_is_passed(app: Backburner) -> None:
    seen: dict[str, object] = {}

    @app.job(queue="ctx")
    def inspect(ctx: JobContext) -> None:
        seen.update(job_id=ctx.job_id, attempt=ctx.attempt, queue=ctx.queue)

    with app.server(workers=1, queues=["ctx"]):
        job_id = inspect.enqueue()
        wait_for_state(app, job_id, {"Succeeded"})

    assert seen == {"job_id": job_id, "attempt": 1, "queue": "ctx"}


def test_retry_then_success(app: Backburner) -> None:
    calls: list[int] = []

    @app.job(retry_delays=[0.1])
    def flaky(ctx: JobContext) -> str:
        calls.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError(f"attempt {ctx.attempt}")
        return "ok"

    with app.server(workers=1, schedule_poll_interval=0.05):
        job = wait_for_state(app, flaky.enqueue(), {"Succeeded"})

    states = [entry.state for entry in job.history]
    assert calls == [1, 2, 3]
    assert job.retry_count == 2
    assert states.count("Failed") == 2
    assert states.count("Scheduled") == 2
    failed = next(entry for entry in job.history if entry.state == "Failed")
    assert failed.data["exception_type"] == "builtins.ConnectionError"
    assert "attempt 1" in failed.data["exception_message"]
    assert "Traceback" in failed.data["traceback"]
    assert app.storage.counter_totals()["failed"] == 0


def test_exhausted_and_not_retried(app: Backburner) -> None:
    @app.job(retries=1, retry_delays=[0.05])
    def always_fails() -> None:
        raise RuntimeError("broken")

    @app.job(retries=1, retry_delays=[0.05], on_exhausted="delete")
    def deleted_when_exhausted() -> None:
        raise RuntimeError("broken")

    @app.job(dont_retry_on=(ValueError,))
    def bad_value() -> None:
        raise ValueError("bad input")

    with app.server(workers=3, schedule_poll_interval=0.05):
        failed = wait_for_state(app, always_fails.enqueue(), {"Failed"})
        deleted = wait_for_state(app, deleted_when_exhausted.enqueue(), {"Deleted"})
        not_retried = wait_for_state(app, bad_value.enqueue(), {"Failed"})

    assert failed.attempt == 2
    assert deleted.attempt == 2
    assert "Retries exhausted" in (deleted.history[-1].reason or "")
    assert not_retried.attempt == 1
    assert not_retried.retry_count == 0


def test_async_timeout_fails_job(app: Backburner) -> None:
    @app.job(timeout=0.2, retries=0)
    async def slow() -> None:
        await asyncio.sleep(30)

    with app.server(workers=1):
        job = wait_for_state(app, slow.enqueue(), {"Failed"})

    assert job.history[-1].data["exception_type"] == "backburner.errors.JobTimeout"


def test_sync_timeout_cancels_token(app: Backburner) -> None:
    @app.job(timeout=0.3, retries=0)
    def cooperative(ctx: JobContext) -> None:
        ctx.cancellation.wait(30)
        ctx.cancellation.raise_if_cancelled()

    with app.server(workers=1):
        job = wait_for_state(app, cooperative.enqueue(), {"Failed"})

    assert job.history[-1].data["exception_type"] == "backburner.errors.JobTimeout"


def test_delete_cancels_running_job(app: Backburner) -> None:
    started, finished = threading.Event(), threading.Event()

    @app.job
    def long_running(ctx: JobContext) -> None:
        started.set()
        ctx.cancellation.wait(30)
        finished.set()

    with app.server(workers=1, heartbeat_interval=0.2, server_timeout=5):
        job_id = long_running.enqueue()
        assert started.wait(10)
        assert app.delete(job_id)
        assert finished.wait(10)
        time.sleep(0.3)

    job = app.get_job(job_id)
    assert job is not None
    assert job.state == "Deleted"


def test_graceful_stop_releases_unfinished_job(app: Backburner) -> None:
    started = threading.Event()
    release = threading.Event()

    @app.job
    def stubborn() -> None:
        started.set()
        release.wait(30)

    server = app.server(workers=1)
    server.start()
    job_id = stubborn.enqueue()
    assert started.wait(10)
    server.stop(timeout=0.3)
    release.set()

    job = app.get_job(job_id)
    assert job is not None
    assert job.state == "Enqueued"
    assert "shut down" in (job.history[-1].reason or "")
    assert app.storage.list_servers() == []


def test_cooperative_job_put_back_on_stop(app: Backburner) -> None:
    started = threading.Event()

    @app.job
    def cooperative(ctx: JobContext) -> None:
        started.set()
        ctx.cancellation.wait(30)
        ctx.cancellation.raise_if_cancelled()

    server = app.server(workers=1)
    server.start()
    job_id = cooperative.enqueue()
    assert started.wait(10)
    began = time.monotonic()
    server.stop(timeout=10)

    assert time.monotonic() - began < 5
    job = app.get_job(job_id)
    assert job is not None
    assert job.state == "Enqueued"


def test_queue_priority_order(app: Backburner) -> None:
    order: list[str] = []

    @app.job
    def record(label: str) -> None:
        order.append(label)

    for i in range(3):
        app.options(queue="low").enqueue(record, f"low{i}")
    for i in range(3):
        app.options(queue="high").enqueue(record, f"high{i}")

    with app.server(workers=1, queues=["high", "low"]):
        wait_until(lambda: len(order) == 6)

    assert order == ["high0", "high1", "high2", "low0", "low1", "low2"]


def test_continuations_follow_parent_outcome(app: Backburner) -> None:
    @app.job(retries=0)
    def fails() -> None:
        raise RuntimeError("no")

    @app.job
    def noop() -> None: ...

    with app.server(workers=2):
        parent = noop.enqueue()
        on_success = app.continue_with(parent, noop)
        failed_parent = fails.enqueue()
        waiting = app.continue_with(failed_parent, noop)
        wait_for_state(app, on_success, {"Succeeded"})
        wait_for_state(app, failed_parent, {"Failed"})

        assert app.get_job(waiting).state == "Awaiting"  # type: ignore[union-attr]
        app.delete(failed_parent)
        skipped = wait_for_state(app, waiting, {"Deleted"})
        only_deleted = app.options(on="deleted").continue_with(failed_parent, noop)
        wait_for_state(app, only_deleted, {"Succeeded"})

    assert "condition not met" in (skipped.history[-1].reason or "")


def test_unknown_function_fails_cleanly(app: Backburner) -> None:
    producer = Backburner(app.storage_url)

    @producer.job(name="only.in.producer")
    def remote() -> None: ...

    job_id = remote.enqueue()

    @app.job
    def noop() -> None: ...

    with app.server(workers=1):
        job = wait_for_state(app, job_id, {"Failed"})
        wait_for_state(app, noop.enqueue(), {"Succeeded"})

    assert "not registered in this server's app" in (job.history[-1].reason or "")
    assert job.retry_count == 0
    producer.close()


def test_expiration_removes_final_jobs(storage_url: str) -> None:
    app = Backburner(storage_url, job_retention=0.2)

    @app.job(retries=0)
    def fails() -> None:
        raise RuntimeError("kept")

    @app.job
    def noop() -> None: ...

    with app.server(workers=1, expiration_interval=0.1):
        succeeded = noop.enqueue()
        failed = fails.enqueue()
        wait_until(lambda: app.get_job(succeeded) is None)
        kept = wait_for_state(app, failed, {"Failed"})

    assert kept.state == "Failed"
    app.close()


def test_server_reannounces_after_being_declared_dead(app: Backburner) -> None:
    with app.server(workers=1, heartbeat_interval=0.1, server_timeout=5) as server:
        app.storage.remove_server(server.id)
        wait_until(lambda: [s.id for s in app.storage.list_servers()] == [server.id])


def test_lone_surrogate_message_recorded(app: Backburner) -> None:
    @app.job(retries=0)
    def surrogate() -> None:
        raise ValueError("bad \udc80 text")

    @app.job
    def noop() -> None: ...

    with app.server(workers=2):
        failed = wait_for_state(app, surrogate.enqueue(), {"Failed"})
        wait_for_state(app, noop.enqueue(), {"Succeeded"})

    assert "\\udc80" in (failed.history[-1].reason or "")
    assert failed.history[-1].data["exception_message"] == "bad \\udc80 text"


def test_outcome_written_by_lost_reply_is_recognised(app: Backburner) -> None:
    # A write whose reply was lost may have committed; its retry is then
    # rejected, and the writer must tell that apart from a discarded outcome.
    @app.job
    def noop() -> None: ...

    written, requeued = noop.enqueue(), noop.enqueue()
    fetched = {job.id: job for job in app.storage.fetch_jobs(["default"], "server-a", 2)}
    changes = {job_id: StateChange(job_id, "Succeeded", lease_token=job.lease_token)
               for job_id, job in fetched.items()}
    app.storage.change_states([changes[written]])
    app.requeue(requeued)
    writer = OutcomeWriter(app.state_machine, "server-a")

    assert writer._written_before(changes[written]) is True
    assert writer._written_before(changes[requeued]) is False
