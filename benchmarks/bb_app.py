"""The backburner application that the benchmark servers run.

The storage URL comes from BACKBURNER_STORAGE_URL, which the harness sets
to a fresh SQLite file for every measurement.
"""

from __future__ import annotations

from backburner import Backburner
from benchmarks.marks import mark

app = Backburner()


@app.job(name="bench.noop")
def noop(index: int, enqueued_at: float) -> None:
    """Do nothing but record when the job started."""
    mark(index, enqueued_at)
