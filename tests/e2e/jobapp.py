"""Job functions that the end-to-end tests run in real ``backburner server`` processes.

Servers import this module as ``jobapp:app`` and get the storage from
``--storage``. Every job that takes a ``JobContext`` appends one JSON line per
event (start, finish, cancelled, ...) to the execution log that the
``BB_E2E_LOG`` environment variable names. Each line is opened, appended and
fsynced on its own, so the log survives a SIGKILL of the server.

``backburner server`` has no options for the heartbeat interval, the server
timeout or the crash requeue limit, so a test that needs shorter ones passes
them as a JSON object of ``Server`` keyword arguments in ``BB_E2E_SERVER``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from backburner import Backburner, JobContext

if TYPE_CHECKING:
    from backburner.server import Server

#: Environment variable naming the execution log file.
LOG_ENV = "BB_E2E_LOG"
#: Environment variable with extra ``Server`` keyword arguments, as a JSON object.
SERVER_ENV = "BB_E2E_SERVER"


class E2EApp(Backburner):
    """A Backburner app whose servers take extra settings from ``BB_E2E_SERVER``."""

    def server(self, *, queues: Sequence[str] | None = None, workers: int | None = None,
               **settings: Any) -> Server:
        extra = json.loads(os.environ.get(SERVER_ENV) or "{}")
        return super().server(queues=queues, workers=workers, **{**extra, **settings})


app = E2EApp()


class Flaky(RuntimeError):
    """Raised by jobs that fail on purpose."""


def record(event: str, ctx: JobContext, **fields: Any) -> None:
    """Append one event line for the running job to the execution log."""
    line = {"event": event, "job": ctx.job_id, "attempt": ctx.attempt, "pid": os.getpid(),
            "t": time.time(), **fields}
    data = (json.dumps(line) + "\n").encode()
    fd = os.open(os.environ[LOG_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


@app.job(name="e2e.sleep", retries=0)
def sleep(seconds: float, ctx: JobContext) -> float:
    """Sleep without looking at the cancellation token, like most real jobs."""
    record("start", ctx)
    time.sleep(seconds)
    record("finish", ctx)
    return seconds


@app.job(name="e2e.echo", retries=0)
def echo(value: Any, ctx: JobContext) -> Any:
    """Log the argument's type and return the argument."""
    record("start", ctx, kind=type(value).__name__)
    record("finish", ctx)
    return value


@app.job(name="e2e.cooperative", retries=0)
def cooperative(ctx: JobContext) -> None:
    """Wait on the cancellation token for up to two minutes, then honour it."""
    record("start", ctx)
    if ctx.cancellation.wait(120):
        record("cancelled", ctx, reason=ctx.cancellation.reason)
    ctx.cancellation.raise_if_cancelled()
    record("finish", ctx)


@app.job(name="e2e.kill_server")
def kill_server(ctx: JobContext) -> None:
    """Kill the server process that runs it, every time (a poison job).

    It waits a second first, so that jobs claimed together with it finish
    before the process dies.
    """
    record("start", ctx)
    time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGKILL)


@app.job(name="e2e.flaky", retries=3, retry_delays=[0.2])
def flaky(failures: int, ctx: JobContext) -> int:
    """Fail on the first ``failures`` attempts, then succeed."""
    record("start", ctx)
    if ctx.attempt <= failures:
        raise Flaky(f"failing on purpose on attempt {ctx.attempt}")
    record("finish", ctx)
    return ctx.attempt


@app.job(name="e2e.always_fails", retries=2, retry_delays=[0.2], on_exhausted="delete")
def always_fails(ctx: JobContext) -> None:
    """Fail every time, so its retries end in Deleted."""
    record("start", ctx)
    raise Flaky(f"failing on purpose on attempt {ctx.attempt}")


@app.job(name="e2e.forbidden", retries=5, retry_delays=[0.2], dont_retry_on=[PermissionError])
def forbidden(ctx: JobContext) -> None:
    """Raise an exception type that the retry policy excludes."""
    record("start", ctx)
    raise PermissionError("not retried on purpose")


@app.job(name="e2e.overrun", retries=0, timeout=0.5)
def overrun(seconds: float, ctx: JobContext) -> None:
    """Sleep past the 0.5 s timeout without looking at the cancellation token."""
    record("start", ctx)
    time.sleep(seconds)
    record("finish", ctx)


@app.job(name="e2e.cooperative_overrun", retries=0, timeout=1.0)
def cooperative_overrun(ctx: JobContext) -> None:
    """Wait on the cancellation token past the 1 s timeout."""
    record("start", ctx)
    if ctx.cancellation.wait(60):
        record("cancelled", ctx, reason=ctx.cancellation.reason)
    ctx.cancellation.raise_if_cancelled()
    record("finish", ctx)


@app.job(name="e2e.async_overrun", retries=0, timeout=0.5)
async def async_overrun(ctx: JobContext) -> None:
    """Await past the 0.5 s timeout."""
    record("start", ctx)
    await asyncio.sleep(60)
    record("finish", ctx)


@app.job(name="e2e.async_sleep", retries=0)
async def async_sleep(seconds: float, ctx: JobContext) -> None:
    """Await ``seconds`` on the server's event loop, ignoring the cancellation token."""
    record("start", ctx)
    await asyncio.sleep(seconds)
    record("finish", ctx)


@app.job(name="e2e.async_add", retries=0)
async def async_add(a: int, b: int, ctx: JobContext) -> int:
    """Add two numbers on the server's event loop."""
    record("start", ctx)
    await asyncio.sleep(0.05)
    record("finish", ctx)
    return a + b


@app.job(name="e2e.context", retries=0)
def context(ctx: JobContext) -> str:
    """Log what the job context contains."""
    record("start", ctx, queue=ctx.queue, function=ctx.function, server_id=ctx.server_id,
           retry_count=ctx.retry_count)
    record("finish", ctx)
    return ctx.job_id


#: An int too long for str() and repr() under Python's default limit of 4300 digits.
HUGE_INT_DIGITS = 5_000


@app.job(name="e2e.huge_error", retries=0)
def huge_error(ctx: JobContext) -> None:
    """Raise an exception whose message cannot be turned into a string."""
    record("start", ctx)
    raise ValueError(10 ** HUGE_INT_DIGITS)


@app.job(name="e2e.huge_result", retries=0)
def huge_result(ctx: JobContext) -> int:
    """Return a value that neither JSON nor repr() can render."""
    record("start", ctx)
    record("finish", ctx)
    return 10 ** HUGE_INT_DIGITS
