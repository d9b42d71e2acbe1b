"""Job functions and the server entry point of the load scenarios (T11, T14, T15, T20).

The load scenarios need server settings that ``backburner server`` does not
expose (job retention, expiration interval), so they start servers with
``python loadapp.py --storage URL ...`` instead. Each job appends a start and
an end line to the execution log named by ``CHAOS_LOG``, in the format of
``chaosapp.record``. The lines are not fsynced: these scenarios kill no
process, and a line written before a process dies stays in the page cache
anyway, so only a machine crash could lose one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any

from backburner import Backburner, JobContext
from backburner.retry import default_delay

logger = logging.getLogger(__name__)

#: Environment variable naming the execution log file.
LOG_ENV = "CHAOS_LOG"
#: Environment variable naming the file whose existence means "the dependency is down".
DEPENDENCY_ENV = "LOAD_DEPENDENCY_FLAG"
#: Divides the default retry delays of ``load.flaky_fast``, for the CI short form.
FAST_RETRY_DIVISOR = 30.0

app = Backburner()


class DependencyDown(ConnectionError):
    """Raised by jobs while the simulated dependency is down."""


def record(event: str, ctx: JobContext, **fields: Any) -> None:
    """Append one line about the running execution to the execution log."""
    line = {"event": event, "job": ctx.job_id, "attempt": ctx.attempt,
            "server": ctx.server_id, "pid": os.getpid(), "function": ctx.function,
            "wall": time.time(), "mono": time.monotonic(), **fields}
    fd = os.open(os.environ[LOG_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


def identity(ctx: JobContext) -> dict[str, Any]:
    """Return what a job stores as its result, so that a Succeeded entry names its execution."""
    return {"server": ctx.server_id, "attempt": ctx.attempt, "pid": os.getpid()}


def call_dependency(ctx: JobContext) -> dict[str, Any]:
    """Fail with DependencyDown while the flag file exists, else succeed."""
    record("start", ctx)
    flag = os.environ.get(DEPENDENCY_ENV)
    if flag and os.path.exists(flag):
        raise DependencyDown(f"dependency down (flag file {flag} exists)")
    record("end", ctx)
    return identity(ctx)


@app.job(name="load.flaky")
def flaky(ctx: JobContext) -> dict[str, Any]:
    """Call the dependency; retried with the default backoff (10 retries)."""
    return call_dependency(ctx)


@app.job(name="load.flaky_fast",
         retry_delays=lambda number: default_delay(number) / FAST_RETRY_DIVISOR)
def flaky_fast(ctx: JobContext) -> dict[str, Any]:
    """Call the dependency; retried after a thirtieth of the default backoff."""
    return call_dependency(ctx)


@app.job(name="load.sleep", retries=0)
def sleep(seconds: float, ctx: JobContext) -> dict[str, Any]:
    """Sleep ``seconds``."""
    record("start", ctx)
    time.sleep(seconds)
    record("end", ctx)
    return identity(ctx)


@app.job(name="load.soak", retries=3, retry_delays=[2.0])
def soak(fail_first: bool, ctx: JobContext) -> dict[str, Any]:
    """Succeed at once, or fail the first run and succeed on the retry 2 s later."""
    record("start", ctx)
    if fail_first and ctx.attempt == 1:
        raise RuntimeError("soak job failing its first run on purpose")
    record("end", ctx)
    return identity(ctx)


@app.job(name="load.noop", retries=0)
def noop(fail: bool, ctx: JobContext) -> dict[str, Any]:
    """Succeed at once, or fail for good (no retries) when ``fail`` is True."""
    record("start", ctx)
    if fail:
        raise RuntimeError("retention job failing on purpose")
    record("end", ctx)
    return identity(ctx)


@app.job(name="load.tick", retries=0)
def tick(ctx: JobContext) -> dict[str, Any]:
    """The job of the soak's recurring schedule."""
    record("start", ctx)
    record("end", ctx)
    return identity(ctx)


def main() -> int:
    """Run one server on ``--storage`` with the given retention and expiration interval."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--storage", required=True, help="Storage URL.")
    parser.add_argument("--queues", default="default",
                        help="Comma-separated queues, highest priority first.")
    parser.add_argument("--workers", type=int, default=4, help="Worker threads.")
    parser.add_argument("--retention", type=float, default=None,
                        help="Seconds Succeeded and Deleted jobs are kept (default 24 h).")
    parser.add_argument("--expiration-interval", type=float, default=300.0,
                        help="Seconds between runs of the expiration component.")
    parser.add_argument("--shutdown-timeout", type=float, default=5.0,
                        help="Seconds running jobs get to finish after SIGTERM.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    app.use_storage(args.storage)
    if args.retention is not None:
        app.job_retention = args.retention
    queues = [name.strip() for name in args.queues.split(",") if name.strip()]
    server = app.server(queues=queues, workers=args.workers,
                        shutdown_timeout=args.shutdown_timeout,
                        expiration_interval=args.expiration_interval)
    return server.run()


if __name__ == "__main__":
    sys.exit(main())
