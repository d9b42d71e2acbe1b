"""Graceful shutdown of a real server process on SIGTERM or SIGINT."""

from __future__ import annotations

import signal
import time

import jobapp
import pytest
from harness import StartServer, Workspace, executions, wait_for

SHUTDOWN_TIMEOUT = 4.0
#: Longer than SHUTDOWN_TIMEOUT, and the job ignores its cancellation token.
LONG_JOB = 60.0
#: Short enough to finish within SHUTDOWN_TIMEOUT after the signal.
SHORT_JOB = 2.0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_drains_server(workspace: Workspace, start_server: StartServer,
                              signum: int) -> None:
    app = workspace.app
    calls = [jobapp.sleep.call(SHORT_JOB) for _ in range(3)]
    calls += [jobapp.sleep.call(LONG_JOB), jobapp.async_sleep.call(LONG_JOB),
              jobapp.cooperative.call()]
    calls += [jobapp.sleep.call(0.0) for _ in range(3)]
    ids = app.enqueue_many(calls)
    short, (long, long_async, polite), waiting = ids[:3], ids[3:6], ids[6:]
    server = start_server(workers=6, shutdown_timeout=SHUTDOWN_TIMEOUT)
    server_id = server.wait_announced(app)
    wait_for(lambda: len(executions(workspace.log_path)) == 6, 30, "six jobs to start")

    signalled_at = time.time()
    server.send(signum)
    exit_code = server.wait_exit(SHUTDOWN_TIMEOUT + 15)

    assert exit_code == 0, server.output_tail()
    runs = executions(workspace.log_path)
    for job_id in short:
        assert app.get_job(job_id).state == "Succeeded"
        assert runs[job_id].finishes[0]["t"] > signalled_at

    long_job = app.get_job(long)
    assert long_job.state == "Enqueued"
    assert "shut down" in long_job.history[-1].reason
    assert server_id in long_job.history[-1].reason
    assert long_job.crash_count == 0
    assert runs[long].finishes == []

    async_job = app.get_job(long_async)
    assert async_job.state == "Enqueued"
    assert "shut down" in async_job.history[-1].reason
    assert runs[long_async].finishes == []

    polite_job = app.get_job(polite)
    cancelled = [line for line in runs[polite].others if line["event"] == "cancelled"]
    assert polite_job.state == "Enqueued"
    assert "shut down" in polite_job.history[-1].reason
    assert [line["reason"] for line in cancelled] == ["server is shutting down"]
    assert cancelled[0]["t"] < long_job.history[-1].at.timestamp()
    assert runs[polite].finishes == []

    for job_id in waiting:
        job = app.get_job(job_id)
        assert job.state == "Enqueued"
        assert job.attempt == 0
        assert job_id not in runs
    late_starts = [line for run in runs.values() for line in run.starts
                   if line["t"] >= signalled_at]
    assert late_starts == []
    assert server.server_id(app) is None


def test_second_signal_exits_at_once(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    long = jobapp.sleep.enqueue(LONG_JOB)
    server = start_server(workers=2, shutdown_timeout=30.0)
    server_id = server.wait_announced(app)
    wait_for(lambda: long in executions(workspace.log_path), 30, "the long job to start")

    server.send(signal.SIGTERM)
    wait_for(lambda: "SIGTERM received" in server.output_tail(), 30, "the first signal to land")
    server.send(signal.SIGTERM)
    exit_code = server.wait_exit(20)

    job = app.get_job(long)
    assert exit_code is not None
    assert exit_code != 0
    assert job.state == "Processing"
    assert job.server_id == server_id
    assert server.server_id(app) == server_id
