"""Conformance: concurrent fetchers, in threads and in processes, never share a job."""

from __future__ import annotations

import multiprocessing
import queue
import random
import threading
from collections import Counter
from typing import Any

from backburner.storage import open_storage
from backburner.storage.base import Storage

QUEUES = ["critical", "default"]
#: Seconds to wait for a worker thread or process before the test fails.
JOIN_TIMEOUT = 120.0


def fetch_until_empty(storage: Storage, server_id: str) -> list[tuple[str, str]]:
    """Fetch in small random batches until nothing is left; return (job id, lease token) pairs."""
    claimed = []
    while True:
        batch = storage.fetch_jobs(QUEUES, server_id, random.randint(1, 4))
        if not batch:
            return claimed
        claimed += [(job.id, job.lease_token or "") for job in batch]


def fetch_in_process(url: str, server_id: str, barrier: Any, results: Any) -> None:
    """Open the storage at ``url`` and report what this process fetched (runs in a child)."""
    storage = open_storage(url)
    try:
        barrier.wait(JOIN_TIMEOUT)
        results.put((server_id, fetch_until_empty(storage, server_id)))
    except BaseException as exc:
        results.put((server_id, repr(exc)))
        raise
    finally:
        storage.close()


def create_jobs(storage: Storage, jobs, count: int) -> set[str]:
    batch = [jobs.new(queue=QUEUES[index % 2]) for index in range(count)]
    storage.create_jobs(batch)
    return {job.id for job in batch}


def check_claims(claims: list[tuple[str, str]], expected: set[str]) -> None:
    """Assert every job was claimed exactly once, each with its own lease token."""
    counts = Counter(job_id for job_id, _ in claims)
    tokens = [token for _, token in claims]

    assert {job_id: n for job_id, n in counts.items() if n > 1} == {}
    assert set(counts) == expected
    assert len(set(tokens)) == len(tokens)


def test_threads_fetch_once(storage: Storage, jobs) -> None:
    expected = create_jobs(storage, jobs, 240)
    barrier = threading.Barrier(8)
    results: list[list[tuple[str, str]]] = [[] for _ in range(8)]

    def run(index: int) -> None:
        barrier.wait(JOIN_TIMEOUT)
        results[index] = fetch_until_empty(storage, f"thread-{index}")

    threads = [threading.Thread(target=run, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)

    assert not any(thread.is_alive() for thread in threads)
    check_claims([claim for result in results for claim in result], expected)
    assert storage.queue_lengths() == {}


def test_processes_fetch_once(backend, jobs) -> None:
    expected = create_jobs(backend.storage, jobs, 300)
    context = multiprocessing.get_context("spawn")
    children = 3
    barrier = context.Barrier(children + 1)
    results = context.Queue()
    processes = [
        context.Process(target=fetch_in_process,
                        args=(backend.url, f"process-{index}", barrier, results))
        for index in range(children)]
    for process in processes:
        process.start()

    # This process fetches too, through its own storage, while the children run.
    try:
        barrier.wait(JOIN_TIMEOUT)
        claims = fetch_until_empty(backend.storage, "parent")
        reports = [results.get(timeout=JOIN_TIMEOUT) for _ in processes]
    except (threading.BrokenBarrierError, queue.Empty):
        for process in processes:
            process.kill()
        raise
    finally:
        for process in processes:
            process.join(JOIN_TIMEOUT)

    errors = {server_id: report for server_id, report in reports if isinstance(report, str)}
    assert errors == {}
    assert [process.exitcode for process in processes] == [0] * children
    for _, report in reports:
        claims += report
    check_claims(claims, expected)
    assert backend.storage.queue_lengths() == {}
