"""A server that was frozen past the server timeout claims jobs whose leases are void at once.

After SIGCONT, the frozen server's fetcher can claim a job before its
heartbeat runs again. Its heartbeat is then older than the server timeout,
so the next watchdog pass (its own included) takes the job back, and the
job runs twice, the two runs overlapping, although no fault hit either run.
The battery saw this in T3 and T8 on every backend.
"""

from __future__ import annotations

import time
from pathlib import Path

from chaos_scenarios import open_run


def test_fetch_after_freeze(backend_name: str, tmp_path: Path) -> None:
    with open_run(backend_name, tmp_path) as run:
        storage = run.client.storage
        storage.announce_server("frozen-server", ["default"], 1, {})
        time.sleep(1.5)
        job_id = run.client.enqueue("chaos.work", 0.1)
        claimed = storage.fetch_jobs(["default"], "frozen-server", 1)
        recovered = storage.recover_jobs_of_dead_servers(1.0, 3)
        leases = storage.current_leases([job.lease_token or "" for job in claimed])

    assert [job.id for job in claimed] == [job_id]
    assert recovered == []
    assert len(leases) == 1
