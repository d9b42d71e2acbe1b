"""RQ's job function and queue; RQ imports the function by its dotted path in a worker."""

from __future__ import annotations

import os

from benchmarks.marks import mark


def redis_url() -> str:
    """Return the Redis URL that the harness set for RQ."""
    return os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")


def noop(index: int, enqueued_at: float) -> None:
    """Do nothing but record when the job started."""
    mark(index, enqueued_at)
