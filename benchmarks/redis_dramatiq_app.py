"""Dramatiq on its RedisBroker with the default middleware and settings."""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from benchmarks.marks import mark

broker = RedisBroker(url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/4"))
dramatiq.set_broker(broker)


@dramatiq.actor
def noop(index: int, enqueued_at: float) -> None:
    """Do nothing but record when the job started."""
    mark(index, enqueued_at)
