"""The pgqueuer worker that the PostgreSQL benchmark runs (``python -m``).

BENCH_PG_URL names the database, and PGQUEUER_SCHEMA the fresh schema that
the harness makes for every measurement.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pgqueuer
from pgqueuer import AsyncpgDriver, Job, PgQueuer

from benchmarks.marks import mark


@asynccontextmanager
async def create_pgqueuer() -> AsyncIterator[PgQueuer]:
    """Connect and yield a PgQueuer with the one no-op entrypoint."""
    connection = await asyncpg.connect(os.environ["BENCH_PG_URL"])
    try:
        pgq = PgQueuer(AsyncpgDriver(connection))

        @pgq.entrypoint("noop")
        async def noop(job: Job) -> None:
            """Do nothing but record when the job started."""
            data = json.loads(job.payload or b"{}")
            mark(data["i"], data["t"])

        yield pgq
    finally:
        await connection.close()


def main() -> None:
    """Run one worker with pgqueuer's defaults (batch size 10), as ``pgq run`` does."""
    # ``pgq run`` of pgqueuer 1.6.0 fails before it starts (its --log-level
    # value is a str where its logging setup expects an enum), so the worker
    # is started through the same supervisor from Python.
    logging.basicConfig(level=logging.INFO)
    asyncio.run(pgqueuer.run(create_pgqueuer))


if __name__ == "__main__":
    main()
