"""Job functions that the fault-injection battery runs in real ``backburner server`` processes.

Servers import this module as ``chaosapp:app`` and take the storage from
``--storage``. Every job appends one JSON line when it starts and one when it
ends to the execution log named by the ``CHAOS_LOG`` environment variable.
Each line is opened, appended and fsynced on its own, so the log keeps every
line written before a SIGKILL.

``JobContext`` carries no lease token, so an execution is identified by the
job id and the attempt number (raised by every fetch, so unique per lease),
plus the server id and pid that ran it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from typing import Any

from backburner import Backburner, JobContext, serialization

#: Environment variable naming the execution log file.
LOG_ENV = "CHAOS_LOG"

app = Backburner()


def record(event: str, ctx: JobContext, **fields: Any) -> None:
    """Append one fsynced line about the running execution to the execution log."""
    line = {"event": event, "job": ctx.job_id, "attempt": ctx.attempt,
            "server": ctx.server_id, "pid": os.getpid(), "function": ctx.function,
            "wall": time.time(), "mono": time.monotonic(), **fields}
    data = (json.dumps(line) + "\n").encode()
    fd = os.open(os.environ[LOG_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def identity(ctx: JobContext) -> dict[str, Any]:
    """Return what a job stores as its result, so that a Succeeded entry names its execution."""
    return {"server": ctx.server_id, "attempt": ctx.attempt, "pid": os.getpid()}


def digest(value: Any) -> str:
    """Return the SHA-256 of a value's tagged-JSON encoding (byte-exact for bytes)."""
    if isinstance(value, bytes):
        return hashlib.sha256(value).hexdigest()
    return hashlib.sha256(serialization.dumps(value).encode()).hexdigest()


@app.job(name="chaos.work", retries=0)
def work(seconds: float, ctx: JobContext) -> dict[str, Any]:
    """Sleep ``seconds`` without looking at the cancellation token, like most real jobs."""
    record("start", ctx)
    time.sleep(seconds)
    record("end", ctx)
    return identity(ctx)


@app.job(name="chaos.tick", retries=0)
def tick(ctx: JobContext) -> dict[str, Any]:
    """The job of the per-second recurring schedule."""
    record("start", ctx)
    time.sleep(0.2)
    record("end", ctx)
    return identity(ctx)


@app.job(name="chaos.poison")
def poison(ctx: JobContext) -> None:
    """SIGKILL the server process that runs it, every time.

    It waits a second first, so that jobs fetched in the same claim start
    before the process dies.
    """
    record("start", ctx)
    time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGKILL)


@app.job(name="chaos.echo", retries=0)
def echo(value: Any, expected: str, ctx: JobContext) -> dict[str, Any]:
    """Check that ``value`` arrived with the digest the client computed before enqueue."""
    received = digest(value)
    record("start", ctx, digest=received, match=received == expected)
    record("end", ctx)
    return {**identity(ctx), "digest": received, "match": received == expected}
