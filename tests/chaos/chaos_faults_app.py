"""Extra job functions and a client process for the fault scenarios of ``chaos_faults*``.

Servers import ``chaos_faults_app:app``, which is the ``chaosapp`` app with
the jobs below added, so every ``chaos.*`` job of the battery still runs.

Run as a program, it is the enqueuing client of the SQLite concurrency
scenario (T7)::

    python chaos_faults_app.py STORAGE_URL ACK_FILE RATE

It enqueues ``chaos.work`` jobs of 0.01 to 0.1 s at about RATE per second
until killed, and appends one fsynced JSON line per acknowledged job id to
ACK_FILE, so a SIGKILL loses no acknowledged id.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

from chaosapp import app, identity, record

from backburner import JobContext

logger = logging.getLogger(__name__)

#: Bytes allocated per step by ``chaos.hog``.
HOG_STEP = 16 * 1024 * 1024

__all__ = ["app"]


@app.job(name="chaos.hog", retries=1, retry_delays=[1.0])
def hog(ctx: JobContext) -> dict[str, Any]:
    """Allocate and touch memory until the allocation fails; never returns normally."""
    record("start", ctx)
    chunks = []
    while True:
        # bytearray zero-fills, so every page is touched and really resident.
        chunks.append(bytearray(HOG_STEP))
        if len(chunks) > 100_000:  # 1.6 TB: only reached if no limit applies
            break
    record("end", ctx)
    return identity(ctx)


def enqueue_forever(url: str, ack_path: str, rate: float) -> None:
    """Enqueue short work jobs at about ``rate`` per second and log each acknowledged id."""
    from chaos_harness import append_line, make_client

    client = make_client(url)
    acks = Path(ack_path)
    rng = random.Random()
    period = 1.0 / rate
    next_at = time.monotonic()
    while True:
        job_id = client.enqueue("chaos.work", round(rng.uniform(0.01, 0.1), 3))
        append_line(acks, {"id": job_id, "mono": time.monotonic()})
        next_at += period
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    enqueue_forever(sys.argv[1], sys.argv[2], float(sys.argv[3]))
