"""Enqueue benchmark jobs in a process of its own and print the timing as JSON.

Usage: ``python -m benchmarks.client SYSTEM ACTION [options]`` where SYSTEM is
``backburner``, ``huey`` or ``django_q`` and ACTION is one of:

- ``enqueue``: enqueue ``--jobs`` jobs one call at a time, as fast as possible;
- ``bulk``: enqueue ``--jobs`` jobs in chunks of ``--chunk`` per call;
- ``probe``: enqueue ``--jobs`` jobs one at a time, ``--interval`` seconds apart.

Each job gets its index and its enqueue time (``time.time()``) as arguments.
The environment names the database (see ``benchmarks/systems.py``), so each
measurement starts in a fresh process on a fresh file.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

Enqueue = Callable[[int, float], object]
EnqueueMany = Callable[[list[tuple[int, float]]], object]


def backburner_client() -> tuple[Enqueue, EnqueueMany | None]:
    """Open backburner's storage and return its one-at-a-time and bulk enqueue functions."""
    from benchmarks.bb_app import app, noop

    app.storage.describe()  # open the file and create the schema before the clock starts

    def enqueue_many(items: list[tuple[int, float]]) -> object:
        return app.enqueue_many([noop.call(index, at) for index, at in items])

    return noop.enqueue, enqueue_many


def huey_client() -> tuple[Enqueue, EnqueueMany | None]:
    """Open Huey's connection and return its enqueue function (Huey has no bulk call)."""
    from benchmarks.huey_app import huey, noop

    huey.pending_count()  # open the connection before the clock starts
    return noop, None


def django_q_client() -> tuple[Enqueue, EnqueueMany | None]:
    """Create Django-Q2's tables and return its enqueue function (it has no bulk call)."""
    import os

    import django
    from django.core.management import call_command

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.djq_settings")
    django.setup()
    call_command("migrate", verbosity=0)  # create the tables before the clock starts

    from django_q.tasks import async_task

    def enqueue(index: int, enqueued_at: float) -> object:
        return async_task("benchmarks.djq_jobs.noop", index, enqueued_at)

    return enqueue, None


CLIENTS = {"backburner": backburner_client, "huey": huey_client, "django_q": django_q_client}


def enqueue_one_by_one(enqueue: Enqueue, jobs: int, first: int) -> float:
    """Enqueue ``jobs`` jobs with one call each and return the elapsed seconds."""
    started = time.perf_counter()
    for index in range(first, first + jobs):
        enqueue(index, time.time())
    return time.perf_counter() - started


def enqueue_in_chunks(enqueue_many: EnqueueMany, jobs: int, first: int, chunk: int) -> float:
    """Enqueue ``jobs`` jobs with ``chunk`` jobs per call and return the elapsed seconds."""
    started = time.perf_counter()
    for start in range(first, first + jobs, chunk):
        stop = min(start + chunk, first + jobs)
        enqueue_many([(index, time.time()) for index in range(start, stop)])
    return time.perf_counter() - started


def enqueue_paced(enqueue: Enqueue, jobs: int, first: int, interval: float) -> float:
    """Enqueue ``jobs`` jobs on a fixed schedule, ``interval`` seconds apart."""
    started = time.perf_counter()
    for offset in range(jobs):
        delay = started + offset * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        enqueue(first + offset, time.time())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("system", choices=sorted(CLIENTS))
    parser.add_argument("action", choices=["enqueue", "bulk", "probe"])
    parser.add_argument("--jobs", type=int, required=True, help="number of jobs to enqueue")
    parser.add_argument("--first", type=int, default=0, help="index of the first job")
    parser.add_argument("--chunk", type=int, default=500, help="jobs per bulk call")
    parser.add_argument("--interval", type=float, default=0.02,
                        help="seconds between probe jobs")
    options = parser.parse_args()

    enqueue, enqueue_many = CLIENTS[options.system]()
    if options.action == "enqueue":
        seconds = enqueue_one_by_one(enqueue, options.jobs, options.first)
    elif options.action == "bulk":
        if enqueue_many is None:
            parser.error(f"{options.system} has no bulk enqueue call")
        seconds = enqueue_in_chunks(enqueue_many, options.jobs, options.first, options.chunk)
    else:
        seconds = enqueue_paced(enqueue, options.jobs, options.first, options.interval)
    print(json.dumps({"jobs": options.jobs, "seconds": seconds}))


if __name__ == "__main__":
    main()
