"""The procrastinate application that the PostgreSQL benchmark workers run.

BENCH_PG_URL names the database; the harness adds ``options=-c search_path=...``
so that procrastinate's tables live in a fresh schema for every measurement.
"""

from __future__ import annotations

import os

import procrastinate

from benchmarks.marks import mark

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ.get("BENCH_PG_URL", "")))


@app.task(name="noop")
def noop(i: int, t_enq: float) -> None:
    """Do nothing but record when the job started."""
    mark(i, t_enq)
