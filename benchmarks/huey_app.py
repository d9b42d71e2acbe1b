"""The Huey application for the peer measurements: SqliteHuey with its default settings.

The database file comes from BENCH_HUEY_DB, which the harness sets to a
fresh file for every measurement.
"""

from __future__ import annotations

import os

from huey import SqliteHuey

from benchmarks.marks import mark

huey = SqliteHuey("bench", filename=os.environ.get("BENCH_HUEY_DB", "huey-bench.db"))


@huey.task()
def noop(index: int, enqueued_at: float) -> None:
    """Do nothing but record when the job started."""
    mark(index, enqueued_at)
