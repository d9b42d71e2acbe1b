"""The job function of the Django-Q2 peer."""

from __future__ import annotations

from benchmarks.marks import mark


def noop(index: int, enqueued_at: float) -> None:
    """Do nothing but record when the job started."""
    mark(index, enqueued_at)
