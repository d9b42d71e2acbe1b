"""One final outcome: a run whose lease is gone cannot overwrite the job's state."""

from __future__ import annotations

import signal

import jobapp
from harness import FAST_RECOVERY, StartServer, Workspace, all_in_state, executions, wait_for

#: A running job learns at its server's next heartbeat (every second with
#: FAST_RECOVERY) that its lease is gone.
HEARTBEAT_DEADLINE = 30.0
#: Recovery of a silent server's jobs: server timeout plus watchdog period, 7 s
#: with FAST_RECOVERY.
RECOVERY_DEADLINE = 60.0
DISCARDED = "discarded: the job was deleted, requeued or recovered"


def test_delete_running_job(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    server = start_server(workers=2, settings=FAST_RECOVERY)
    server.wait_announced(app)
    job_id = jobapp.cooperative.enqueue()
    wait_for(lambda: job_id in executions(workspace.log_path), 30, "the job to start")

    assert app.delete(job_id)
    wait_for(lambda: executions(workspace.log_path)[job_id].others, HEARTBEAT_DEADLINE,
             "the running job to see its cancellation")
    wait_for(lambda: DISCARDED in server.output_tail(), 30, "the stale outcome to be discarded")

    job = app.get_job(job_id)
    cancelled = executions(workspace.log_path)[job_id].others[0]
    assert job.state == "Deleted"
    assert [entry.state for entry in job.history] == ["Enqueued", "Processing", "Deleted"]
    assert cancelled["reason"] == "job was deleted, requeued or recovered elsewhere"
    assert server.alive()


def test_requeue_running_job(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    server = start_server(workers=2, settings=FAST_RECOVERY)
    server.wait_announced(app)
    job_id = jobapp.sleep.enqueue(2.0)
    wait_for(lambda: job_id in executions(workspace.log_path), 30, "the job to start")

    assert app.requeue(job_id)
    wait_for(lambda: len(executions(workspace.log_path)[job_id].finishes) == 2,
             HEARTBEAT_DEADLINE, "both runs to finish")
    wait_for(lambda: all_in_state(app, [job_id], "Succeeded"), 30, "the second run's outcome")
    wait_for(lambda: DISCARDED in server.output_tail(), 30, "the first run's outcome to be "
             "discarded")

    job = app.get_job(job_id)
    runs = executions(workspace.log_path)[job_id]
    history_states = [entry.state for entry in job.history]
    assert job.attempt == 2
    assert history_states == ["Enqueued", "Processing", "Enqueued", "Processing", "Succeeded"]
    assert job.history[-1].at.timestamp() >= max(finish["t"] for finish in runs.finishes)


def test_paused_server_outcome_discarded(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    paused = start_server(workers=2, settings=FAST_RECOVERY)
    paused_id = paused.wait_announced(app)
    job_id = jobapp.sleep.enqueue(3.0)
    wait_for(lambda: job_id in executions(workspace.log_path), 30, "the job to start")
    paused.send(signal.SIGSTOP)
    survivor = start_server(workers=2, settings=FAST_RECOVERY)
    survivor.wait_announced(app)

    try:
        wait_for(lambda: len(executions(workspace.log_path)[job_id].starts) == 2,
                 RECOVERY_DEADLINE, "the survivor to recover and start the job", interval=0.2)
    finally:
        paused.send(signal.SIGCONT)
    wait_for(lambda: DISCARDED in paused.output_tail(), 30,
             "the paused server's stale outcome to be discarded")
    wait_for(lambda: all_in_state(app, [job_id], "Succeeded"), 30, "the survivor's outcome")
    wait_for(lambda: paused.server_id(app) == paused_id, 30,
             "the paused server to announce itself again")

    job = app.get_job(job_id)
    runs = executions(workspace.log_path)[job_id]
    survivor_finish = [finish["t"] for finish in runs.finishes if finish["pid"] == survivor.pid]
    assert [start["pid"] for start in runs.starts] == [paused.pid, survivor.pid]
    assert [entry.state for entry in job.history] == ["Enqueued", "Processing", "Enqueued",
                                                      "Processing", "Succeeded"]
    assert len(survivor_finish) == 1
    assert job.history[-1].at.timestamp() >= survivor_finish[0]
    assert paused.alive()
    assert survivor.alive()
