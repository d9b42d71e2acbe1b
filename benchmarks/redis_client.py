"""Enqueue Redis benchmark jobs in a process of its own and print the timing as JSON.

Usage: ``python -m benchmarks.redis_client SYSTEM ACTION [options]`` where
SYSTEM is one of ``CLIENTS`` and ACTION is one of:

- ``enqueue``: enqueue ``--jobs`` jobs one call at a time, as fast as possible;
- ``bulk``: enqueue ``--jobs`` jobs in chunks of ``--chunk`` per call;
- ``probe``: enqueue ``--jobs`` jobs one at a time, ``--interval`` seconds apart.

Each job gets its index and its enqueue time (``time.time()``) as arguments.
The environment names the Redis database (BENCH_REDIS_URL) or, for
backburner, the storage URL (BACKBURNER_STORAGE_URL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable

from benchmarks.client import enqueue_in_chunks, enqueue_one_by_one, enqueue_paced

Enqueue = Callable[[int, float], object]
EnqueueMany = Callable[[list[tuple[int, float]]], object]


def backburner_client() -> tuple[Enqueue, EnqueueMany | None]:
    """Open backburner's storage and return its one-at-a-time and bulk enqueue functions."""
    from benchmarks.bb_app import app, noop

    app.storage.now()  # connect before the clock starts

    def enqueue_many(items: list[tuple[int, float]]) -> object:
        return app.enqueue_many([noop.call(index, at) for index, at in items])

    return noop.enqueue, enqueue_many


def celery_client() -> tuple[Enqueue, EnqueueMany | None]:
    """Return Celery's ``delay`` (Celery has no bulk call for separate tasks)."""
    from benchmarks.redis_celery_app import app, noop

    with app.connection_for_write() as connection:
        connection.ensure_connection()  # connect before the clock starts
    return noop.delay, None


def rq_client() -> tuple[Enqueue, EnqueueMany | None]:
    """Return RQ's ``Queue.enqueue`` and ``Queue.enqueue_many``."""
    from redis import Redis
    from rq import Queue

    from benchmarks.redis_rq_jobs import noop, redis_url

    queue = Queue("default", connection=Redis.from_url(redis_url()))
    queue.connection.ping()  # connect before the clock starts

    def enqueue(index: int, enqueued_at: float) -> object:
        return queue.enqueue(noop, index, enqueued_at)

    def enqueue_many(items: list[tuple[int, float]]) -> object:
        return queue.enqueue_many([Queue.prepare_data(noop, (index, at)) for index, at in items])

    return enqueue, enqueue_many


def dramatiq_client() -> tuple[Enqueue, EnqueueMany | None]:
    """Return Dramatiq's ``send`` (Dramatiq has no bulk call)."""
    from benchmarks.redis_dramatiq_app import broker, noop

    broker.client.ping()  # connect before the clock starts
    return noop.send, None


def huey_client() -> tuple[Enqueue, EnqueueMany | None]:
    """Return a call of Huey's task, which enqueues it (Huey has no bulk call)."""
    from benchmarks.redis_huey_app import huey, noop

    huey.pending_count()  # connect before the clock starts
    return noop, None


CLIENTS: dict[str, Callable[[], tuple[Enqueue, EnqueueMany | None]]] = {
    "backburner": backburner_client, "celery": celery_client, "rq": rq_client,
    "dramatiq": dramatiq_client, "huey": huey_client}


async def arq_run(action: str, jobs: int, first: int, interval: float) -> float:
    """Enqueue with arq's ``enqueue_job`` on one event loop (arq has no bulk call)."""
    from arq import create_pool

    from benchmarks.redis_arq_app import redis_settings

    pool = await create_pool(redis_settings())
    try:
        await pool.ping()  # connect before the clock starts
        enqueue: Callable[[int, float], Awaitable[object]] = (
            lambda index, at: pool.enqueue_job("noop", index, at))
        started = time.perf_counter()
        for offset in range(jobs):
            if action == "probe":
                delay = started + offset * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            await enqueue(first + offset, time.time())
        return time.perf_counter() - started
    finally:
        await pool.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("system", choices=sorted([*CLIENTS, "arq"]))
    parser.add_argument("action", choices=["enqueue", "bulk", "probe"])
    parser.add_argument("--jobs", type=int, required=True, help="number of jobs to enqueue")
    parser.add_argument("--first", type=int, default=0, help="index of the first job")
    parser.add_argument("--chunk", type=int, default=500, help="jobs per bulk call")
    parser.add_argument("--interval", type=float, default=0.02,
                        help="seconds between probe jobs")
    options = parser.parse_args()

    if options.system == "arq":
        if options.action == "bulk":
            parser.error("arq has no bulk enqueue call")
        seconds = asyncio.run(arq_run(options.action, options.jobs, options.first,
                                      options.interval))
    else:
        enqueue, enqueue_many = CLIENTS[options.system]()
        if options.action == "enqueue":
            seconds = enqueue_one_by_one(enqueue, options.jobs, options.first)
        elif options.action == "bulk":
            if enqueue_many is None:
                parser.error(f"{options.system} has no bulk enqueue call")
            seconds = enqueue_in_chunks(enqueue_many, options.jobs, options.first,
                                        options.chunk)
        else:
            seconds = enqueue_paced(enqueue, options.jobs, options.first, options.interval)
    print(json.dumps({"jobs": options.jobs, "seconds": seconds}))


if __name__ == "__main__":
    main()
