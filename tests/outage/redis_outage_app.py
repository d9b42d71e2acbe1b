"""Job functions that the Redis outage tests run in real ``backburner server`` processes.

Servers import this module as ``redis_outage_app:app`` and get the storage
from ``--storage``. Every job appends a start and a finish line to the
execution log (see ``outage_helpers.record_event``).
"""

from __future__ import annotations

import os
import time

from outage_helpers import record_event

from backburner import Backburner, JobContext

app = Backburner()


@app.job(name="outage.work", retries=0)
def work(seconds: float, ctx: JobContext) -> int:
    """Sleep for ``seconds`` and return the pid of the server process that ran it."""
    record_event("start", ctx)
    time.sleep(seconds)
    record_event("finish", ctx)
    return os.getpid()
