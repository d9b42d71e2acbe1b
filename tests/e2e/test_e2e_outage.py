"""A storage that stops accepting writes for a while: servers wait it out and lose nothing."""

from __future__ import annotations

import time

import jobapp
import pytest
from harness import SQLITE_ONLY, StartServer, Workspace, all_in_state, executions, wait_for

from backburner import StorageError

#: Longer than the SQLite busy timeout (10 s), so writes fail instead of waiting,
#: and shorter than the server timeout (20 s), so no server is declared dead.
OUTAGE = 13.0
DEADLINE = 60.0


@SQLITE_ONLY  # it holds SQLite's exclusive lock on the database file
def test_write_lock_outage(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    server = start_server(workers=2)
    server.wait_announced(app)
    ids = app.enqueue_many([jobapp.sleep.call(0.5) for _ in range(12)])
    wait_for(lambda: executions(workspace.log_path), 30, "the first job to start")

    blocker = workspace.space.connect_sqlite()
    blocker.execute("BEGIN EXCLUSIVE")
    locked_at = time.monotonic()
    try:
        with pytest.raises(StorageError, match="locked"):
            jobapp.sleep.enqueue(0.0)
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - locked_at)))
        alive_during_outage = server.alive()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    late = jobapp.sleep.enqueue(0.0)
    wait_for(lambda: all_in_state(app, [*ids, late], "Succeeded"), DEADLINE,
             "every job to succeed after the outage", interval=0.5)

    runs = executions(workspace.log_path)
    assert alive_during_outage
    assert server.alive()
    assert "database is locked" in server.output_tail(10_000)
    for job_id in [*ids, late]:
        history_states = [entry.state for entry in app.get_job(job_id).history]
        assert history_states.count("Succeeded") == 1, job_id
        assert len(runs[job_id].starts) == 1, job_id
    assert sum(app.storage.count_jobs_by_state().values()) == len(ids) + 1
