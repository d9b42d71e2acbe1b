"""Huey on Redis (RedisHuey) with its default settings."""

from __future__ import annotations

import os

from huey import RedisHuey

from benchmarks.marks import mark

huey = RedisHuey("bench", url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5"))


@huey.task()
def noop(index: int, enqueued_at: float) -> None:
    """Do nothing but record when the job started."""
    mark(index, enqueued_at)
