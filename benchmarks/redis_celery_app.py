"""Celery on a Redis broker with its default settings (no result backend)."""

from __future__ import annotations

import os

from celery import Celery

from benchmarks.marks import mark

app = Celery("bench", broker=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/2"))


@app.task
def noop(index: int, enqueued_at: float) -> None:
    """Do nothing but record when the job started."""
    mark(index, enqueued_at)
