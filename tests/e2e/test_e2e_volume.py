"""Many jobs on one storage: two servers, delayed jobs, continuations, a killed client."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter

import jobapp
from harness import (
    E2E_DIR,
    StartServer,
    Workspace,
    assert_sqlite_intact,
    child_env,
    count_in_state,
    executions,
    history_states,
    read_log,
    wait_for,
)

JOBS = 5_000
#: Jobs per enqueue_many call; the client keeps enqueuing while the servers run.
CHUNK = 250
#: Generous: 5,000 jobs took 4 to 9 s, depending on the backend, on a 2-core test machine.
DEADLINE = 240.0


def test_two_servers_run_once(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    servers = [start_server(workers=8), start_server(workers=8)]
    for server in servers:
        server.wait_announced(app)
    ids: list[str] = []
    for _ in range(JOBS // CHUNK):
        ids += app.enqueue_many([jobapp.sleep.call(0.0) for _ in range(CHUNK)])

    wait_for(lambda: count_in_state(app, "Succeeded") == JOBS, DEADLINE,
             f"{JOBS} jobs to succeed", interval=0.5)
    for server in servers:
        server.send(signal.SIGTERM)
    exit_codes = [server.wait_exit(30) for server in servers]

    lines = read_log(workspace.log_path)
    starts = Counter(line["job"] for line in lines if line["event"] == "start")
    finishes = Counter(line["job"] for line in lines if line["event"] == "finish")
    pids = {line["pid"] for line in lines}
    assert exit_codes == [0, 0]
    assert set(starts) == set(ids)
    assert [job_id for job_id, count in starts.items() if count != 1] == []
    assert [job_id for job_id, count in finishes.items() if count != 1] == []
    assert pids == {server.pid for server in servers}
    assert count_in_state(app, "Succeeded") == JOBS
    assert app.storage.counter_totals()["succeeded"] == JOBS

    records = app.storage.list_jobs("Succeeded", limit=2 * JOBS)
    histories = history_states(app, ids)
    assert Counter(record.attempt for record in records) == {1: JOBS}
    assert [job_id for job_id, states in histories.items()
            if states != ["Enqueued", "Processing", "Succeeded"]] == []
    assert_sqlite_intact(workspace)


def test_delayed_jobs_fire_once(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    servers = [start_server(workers=4), start_server(workers=4)]
    for server in servers:
        server.wait_announced(app)
    ids = [jobapp.sleep.schedule(1.0 + index / 200, 0.0) for index in range(400)]

    wait_for(lambda: count_in_state(app, "Succeeded") == len(ids), DEADLINE,
             "the delayed jobs to succeed", interval=0.5)

    starts = Counter(line["job"] for line in read_log(workspace.log_path)
                     if line["event"] == "start")
    histories = history_states(app, ids)
    assert set(starts) == set(ids)
    assert [job_id for job_id, count in starts.items() if count != 1] == []
    assert [job_id for job_id, states in histories.items()
            if states != ["Scheduled", "Enqueued", "Processing", "Succeeded"]] == []


def test_continuations_fire_once(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    servers = [start_server(workers=4), start_server(workers=4)]
    for server in servers:
        server.wait_announced(app)
    parents = app.enqueue_many([jobapp.sleep.call(0.0) for _ in range(300)])
    children = [app.continue_with(parent, jobapp.sleep, 0.0) for parent in parents]

    wait_for(lambda: count_in_state(app, "Succeeded") == 600, DEADLINE,
             "parents and continuations to succeed", interval=0.5)

    runs = executions(workspace.log_path)
    for parent, child in zip(parents, children, strict=True):
        assert len(runs[parent].starts) == 1, parent
        assert len(runs[child].starts) == 1, child
        assert runs[child].starts[0]["t"] >= runs[parent].finishes[0]["t"], child


#: A client that enqueues batches of 100 jobs until it is killed.
ENQUEUE_FOREVER = """
import sys
import jobapp
jobapp.app.use_storage(sys.argv[1])
while True:
    jobapp.app.enqueue_many([jobapp.sleep.call(0.0) for _ in range(100)])
"""


def test_killed_client_batches_atomic(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    server = start_server(workers=4)
    server.wait_announced(app)
    client = subprocess.Popen([sys.executable, "-c", ENQUEUE_FOREVER, workspace.storage_url],
                              cwd=E2E_DIR, env=child_env(workspace))
    try:
        wait_for(lambda: sum(app.storage.count_jobs_by_state().values()) >= 2_000, 60,
                 "the client to enqueue 2,000 jobs")
    finally:
        client.kill()
        client.wait(30)

    # A batch whose COMMIT reached the database just before the kill can become
    # visible after client.wait() returns, so wait until the totals stop moving.
    total = wait_for(lambda: _settled_total(app), DEADLINE,
                     "every enqueued job to succeed", interval=0.5)

    starts = Counter(line["job"] for line in read_log(workspace.log_path)
                     if line["event"] == "start")
    ids = [record.id for record in app.storage.list_jobs("Succeeded", limit=2 * total)]
    histories = history_states(app, ids)
    assert client.returncode == -signal.SIGKILL
    assert total % 100 == 0
    assert len(ids) == total
    assert [job_id for job_id, states in histories.items()
            if states != ["Enqueued", "Processing", "Succeeded"]] == []
    assert set(starts) == set(ids)
    assert set(starts.values()) == {1}
    assert_sqlite_intact(workspace)


def _settled_total(app: jobapp.E2EApp) -> int:
    """Return the job count once every job has succeeded and the count held for 1 s, else 0."""
    counts = app.storage.count_jobs_by_state()
    if {state for state, count in counts.items() if count} != {"Succeeded"}:
        return 0
    time.sleep(1.0)
    return counts["Succeeded"] if app.storage.count_jobs_by_state() == counts else 0
