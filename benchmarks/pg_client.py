"""Enqueue PostgreSQL benchmark jobs in a process of its own and print the timing as JSON.

Usage: ``python -m benchmarks.pg_client SYSTEM ACTION [options]`` where SYSTEM
is ``backburner``, ``procrastinate`` or ``pgqueuer`` and ACTION is ``enqueue``
(one call per job), ``bulk`` (``--chunk`` jobs per call) or ``probe`` (one job
every ``--interval`` seconds), as in ``benchmarks/client.py``. Each job gets
its index and its enqueue time (``time.time()``) as arguments.

The environment names the database and schema (see ``benchmarks/pg_bench.py``).
The client installs the system's schema there, if missing, before it starts
the clock.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable

from benchmarks.client import enqueue_in_chunks, enqueue_one_by_one, enqueue_paced

AsyncEnqueue = Callable[[int, float], Awaitable[object]]
AsyncEnqueueMany = Callable[[list[tuple[int, float]]], Awaitable[object]]


def run_backburner(action: str, jobs: int, first: int, chunk: int, interval: float) -> float:
    """Enqueue with backburner's sync client; return the elapsed seconds."""
    from benchmarks.bb_app import app, noop

    app.storage.now()  # install the schema before the clock starts

    def enqueue_many(items: list[tuple[int, float]]) -> object:
        return app.enqueue_many([noop.call(index, at) for index, at in items])

    if action == "enqueue":
        return enqueue_one_by_one(noop.enqueue, jobs, first)
    if action == "bulk":
        return enqueue_in_chunks(enqueue_many, jobs, first, chunk)
    return enqueue_paced(noop.enqueue, jobs, first, interval)


async def run_procrastinate(action: str, jobs: int, first: int, chunk: int,
                            interval: float) -> float:
    """Enqueue with procrastinate's async API; return the elapsed seconds."""
    from benchmarks.pg_procrastinate_app import app, noop

    async with app.open_async():
        installed = await app.connector.execute_query_one_async(
            "SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS installed")
        if not installed["installed"]:
            await app.schema_manager.apply_schema_async()

        async def enqueue(index: int, at: float) -> object:
            return await noop.defer_async(i=index, t_enq=at)

        async def enqueue_many(items: list[tuple[int, float]]) -> object:
            return await noop.batch_defer_async(*[{"i": index, "t_enq": at}
                                                  for index, at in items])

        return await run_async(action, enqueue, enqueue_many, jobs, first, chunk, interval)


async def run_pgqueuer(action: str, jobs: int, first: int, chunk: int, interval: float) -> float:
    """Enqueue with pgqueuer's Queries over one asyncpg connection; return the elapsed seconds."""
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries

    connection = await asyncpg.connect(os.environ["BENCH_PG_URL"])
    try:
        queries = Queries(AsyncpgDriver(connection))
        if not await queries.schema_is_installed():
            await queries.install()

        async def enqueue(index: int, at: float) -> object:
            return await queries.enqueue("noop", payload(index, at))

        async def enqueue_many(items: list[tuple[int, float]]) -> object:
            return await queries.enqueue(["noop"] * len(items),
                                         [payload(index, at) for index, at in items],
                                         [0] * len(items))

        return await run_async(action, enqueue, enqueue_many, jobs, first, chunk, interval)
    finally:
        await connection.close()


def payload(index: int, at: float) -> bytes:
    return json.dumps({"i": index, "t": at}).encode()


async def run_async(action: str, enqueue: AsyncEnqueue, enqueue_many: AsyncEnqueueMany,
                    jobs: int, first: int, chunk: int, interval: float) -> float:
    """Time ``action`` with an async system's calls, as ``benchmarks.client`` times sync ones."""
    started = time.perf_counter()
    if action == "enqueue":
        for index in range(first, first + jobs):
            await enqueue(index, time.time())
    elif action == "bulk":
        for start in range(first, first + jobs, chunk):
            stop = min(start + chunk, first + jobs)
            await enqueue_many([(index, time.time()) for index in range(start, stop)])
    else:
        for offset in range(jobs):
            delay = started + offset * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await enqueue(first + offset, time.time())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("system", choices=["backburner", "procrastinate", "pgqueuer"])
    parser.add_argument("action", choices=["enqueue", "bulk", "probe"])
    parser.add_argument("--jobs", type=int, required=True, help="number of jobs to enqueue")
    parser.add_argument("--first", type=int, default=0, help="index of the first job")
    parser.add_argument("--chunk", type=int, default=500, help="jobs per bulk call")
    parser.add_argument("--interval", type=float, default=0.02,
                        help="seconds between probe jobs")
    options = parser.parse_args()

    arguments = (options.action, options.jobs, options.first, options.chunk, options.interval)
    if options.system == "backburner":
        seconds = run_backburner(*arguments)
    elif options.system == "procrastinate":
        seconds = asyncio.run(run_procrastinate(*arguments))
    else:
        seconds = asyncio.run(run_pgqueuer(*arguments))
    print(json.dumps({"jobs": options.jobs, "seconds": seconds}))


if __name__ == "__main__":
    main()
