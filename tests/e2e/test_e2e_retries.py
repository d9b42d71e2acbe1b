"""Automatic retries and timeouts in a real server process, with short retry delays."""

from __future__ import annotations

import jobapp
from harness import StartServer, Workspace, all_in_state, executions, wait_for

DEADLINE = 60.0


def test_retry_then_success(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    server = start_server(workers=2)
    server.wait_announced(app)
    job_id = jobapp.flaky.enqueue(2)
    wait_for(lambda: all_in_state(app, [job_id], "Succeeded"), DEADLINE, "the flaky job")

    job = app.get_job(job_id)
    history_states = [entry.state for entry in job.history]
    failures = [entry for entry in job.history if entry.state == "Failed"]
    assert job.attempt == 3
    assert job.retry_count == 2
    assert history_states.count("Failed") == 2
    assert history_states.count("Scheduled") == 2
    assert all(entry.data["exception_type"] == "jobapp.Flaky" for entry in failures)
    assert [start["attempt"] for start in executions(workspace.log_path)[job_id].starts] == \
        [1, 2, 3]


def test_exhausted_retries_delete(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    server = start_server(workers=2)
    server.wait_announced(app)
    job_id = jobapp.always_fails.enqueue()
    wait_for(lambda: all_in_state(app, [job_id], "Deleted"), DEADLINE, "the job to be deleted")

    job = app.get_job(job_id)
    history_states = [entry.state for entry in job.history]
    assert job.attempt == 3
    assert history_states.count("Failed") == 3
    assert history_states[-2:] == ["Failed", "Deleted"]
    assert "Retries exhausted" in job.history[-1].reason
    assert len(executions(workspace.log_path)[job_id].starts) == 3


def test_excluded_exception_fails(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    server = start_server(workers=2)
    server.wait_announced(app)
    job_id = jobapp.forbidden.enqueue()
    wait_for(lambda: all_in_state(app, [job_id], "Failed"), DEADLINE, "the job to fail")

    job = app.get_job(job_id)
    history_states = [entry.state for entry in job.history]
    assert job.attempt == 1
    assert job.retry_count == 0
    assert "Scheduled" not in history_states
    assert job.history[-1].data["exception_type"] == "builtins.PermissionError"
    assert "PermissionError" in job.history[-1].reason
    assert len(executions(workspace.log_path)[job_id].starts) == 1


def test_timeouts_fail_jobs(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    server = start_server(workers=3)
    server.wait_announced(app)
    ids = [jobapp.overrun.enqueue(1.5), jobapp.cooperative_overrun.enqueue(),
           jobapp.async_overrun.enqueue()]
    wait_for(lambda: all_in_state(app, ids, "Failed"), DEADLINE, "the timed-out jobs to fail")

    runs = executions(workspace.log_path)
    for job_id in ids:
        failed = app.get_job(job_id).history[-1]
        assert failed.data["exception_type"] == "backburner.errors.JobTimeout", job_id
        assert "timeout" in failed.reason, job_id
    assert len(runs[ids[0]].finishes) == 1
    assert [line["reason"] for line in runs[ids[1]].others] == ["timeout"]
    assert runs[ids[1]].finishes == []
    assert runs[ids[2]].finishes == []
