"""Continuations, delayed jobs, async jobs, queues and JobContext across a real server."""

from __future__ import annotations

import datetime as dt
import json

import jobapp
from harness import StartServer, Workspace, all_in_state, executions, read_log, run_cli, wait_for

DEADLINE = 60.0


def test_continuation_chain(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    server = start_server(workers=4)
    server.wait_announced(app)

    first = jobapp.sleep.enqueue(0.3)
    second = app.continue_with(first, jobapp.sleep, 0.1)
    third = app.continue_with(second, jobapp.sleep, 0.0)
    ids = [first, second, third]
    wait_for(lambda: all_in_state(app, ids, "Succeeded"), DEADLINE, "the chain to succeed")

    runs = executions(workspace.log_path)
    assert [len(runs[job_id].starts) for job_id in ids] == [1, 1, 1]
    assert runs[second].starts[0]["t"] >= runs[first].finishes[0]["t"]
    assert runs[third].starts[0]["t"] >= runs[second].finishes[0]["t"]
    assert app.get_job(second).history[0].state == "Awaiting"
    assert app.get_job(second).parent_id == first


def test_continuation_of_finished_parent(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    server = start_server(workers=2)
    server.wait_announced(app)
    parent = jobapp.sleep.enqueue(0.0)
    wait_for(lambda: all_in_state(app, [parent], "Succeeded"), DEADLINE, "the parent")

    child = app.continue_with(parent, jobapp.sleep, 0.0)
    wait_for(lambda: all_in_state(app, [child], "Succeeded"), DEADLINE, "the late continuation")

    assert len(executions(workspace.log_path)[child].starts) == 1


def test_continuation_of_deleted_parent(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    server = start_server(workers=2)
    server.wait_announced(app)
    parent = jobapp.sleep.schedule(3600, 0.0)
    on_success = app.continue_with(parent, jobapp.sleep, 0.0)
    on_delete = app.options(on="deleted").continue_with(parent, jobapp.sleep, 0.0)
    on_finish = app.options(on="finished").continue_with(parent, jobapp.sleep, 0.0)

    assert app.delete(parent)
    wait_for(lambda: all_in_state(app, [on_delete, on_finish], "Succeeded"), DEADLINE,
             "the on-deleted and on-finished continuations")

    runs = executions(workspace.log_path)
    assert app.get_job(on_success).state == "Deleted"
    assert on_success not in runs
    assert parent not in runs
    assert len(runs[on_delete].starts) == 1
    assert len(runs[on_finish].starts) == 1


def test_delayed_job_waits(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    server = start_server(workers=2)
    server.wait_announced(app)
    by_delay = jobapp.sleep.schedule(dt.timedelta(seconds=2), 0.0)
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    by_time = app.options(at=at).enqueue(jobapp.sleep, 0.0)
    assert app.get_job(by_delay).state == "Scheduled"
    assert app.get_job(by_time).state == "Scheduled"

    ids = [by_delay, by_time]
    wait_for(lambda: all_in_state(app, ids, "Succeeded"), DEADLINE, "the delayed jobs")

    runs = executions(workspace.log_path)
    for job_id in ids:
        job = app.get_job(job_id)
        due_at = job.history[0].data["due_at"]
        assert runs[job_id].starts[0]["t"] >= due_at
        assert [entry.state for entry in job.history[:3]] == ["Scheduled", "Enqueued",
                                                              "Processing"]
        assert job.history[1].reason == "Due time reached"


def test_async_job_result(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    server = start_server(workers=2)
    server.wait_announced(app)
    ids = [jobapp.async_add.enqueue(n, 10) for n in range(5)]
    wait_for(lambda: all_in_state(app, ids, "Succeeded"), DEADLINE, "the async jobs")

    for n, job_id in enumerate(ids):
        succeeded = app.get_job(job_id).history[-1]
        assert succeeded.state == "Succeeded"
        assert json.loads(succeeded.data["result"]) == n + 10
    runs = executions(workspace.log_path)
    assert all(len(runs[job_id].finishes) == 1 for job_id in ids)


def test_job_context_fields(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    server = start_server(workers=2, queues="critical,default")
    server.wait_announced(app)
    job_id = app.options(queue="critical").enqueue(jobapp.context)
    wait_for(lambda: all_in_state(app, [job_id], "Succeeded"), DEADLINE, "the context job")

    start = executions(workspace.log_path)[job_id].starts[0]
    assert start["job"] == job_id
    assert start["attempt"] == 1
    assert start["retry_count"] == 0
    assert start["queue"] == "critical"
    assert start["function"] == "e2e.context"
    assert start["server_id"] == server.server_id(app)
    assert json.loads(app.get_job(job_id).history[-1].data["result"]) == job_id


def test_unserved_queue_waits(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    server = start_server(workers=2, queues="critical")
    server.wait_announced(app)
    waiting = app.options(queue="other").enqueue(jobapp.sleep, 0.0)
    served = app.options(queue="critical").enqueue(jobapp.sleep, 0.0)
    wait_for(lambda: all_in_state(app, [served], "Succeeded"), DEADLINE, "the critical job")

    assert app.get_job(waiting).state == "Enqueued"
    assert waiting not in executions(workspace.log_path)


def test_tagged_arguments_arrive(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    server = start_server(workers=2)
    server.wait_announced(app)
    values = {"datetime": dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC),
              "date": dt.date(2024, 3, 1), "bytes": b"\x00\xff", "tuple": (1, "a")}
    ids = {name: jobapp.echo.enqueue(value) for name, value in values.items()}
    wait_for(lambda: all_in_state(app, list(ids.values()), "Succeeded"), DEADLINE,
             "the echo jobs")

    runs = executions(workspace.log_path)
    for name, job_id in ids.items():
        assert runs[job_id].starts[0]["kind"] == name


def test_queue_priority_order(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    low = app.enqueue_many([jobapp.sleep.call(0.0) for _ in range(10)])
    high = app.options(queue="critical").enqueue(jobapp.sleep, 0.0)
    server = start_server(workers=1, queues="critical,default")
    server.wait_announced(app)
    wait_for(lambda: all_in_state(app, [*low, high], "Succeeded"), DEADLINE, "all jobs")

    order = [line["job"] for line in read_log(workspace.log_path) if line["event"] == "start"]
    assert order[0] == high
    assert order[1:] == low


def test_cli_requeue_failed_job(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    server = start_server(workers=1)
    server.wait_announced(app)
    job_id = jobapp.forbidden.enqueue()
    wait_for(lambda: all_in_state(app, [job_id], "Failed"), DEADLINE, "the first failure")

    result = run_cli(["jobs", "requeue", job_id, "--storage", workspace.storage_url],
                     workspace)
    wait_for(lambda: len(executions(workspace.log_path)[job_id].starts) == 2, DEADLINE,
             "the requeued job to run again")
    wait_for(lambda: all_in_state(app, [job_id], "Failed"), DEADLINE, "the second failure")

    job = app.get_job(job_id)
    assert result.returncode == 0, result.stderr
    assert job.attempt == 2
    assert "Requeued by request" in [entry.reason for entry in job.history]
