"""Servers killed with SIGKILL: recovery by a live server, bounded duplicates, poison jobs."""

from __future__ import annotations

import random
import signal
import time

import jobapp
from harness import (
    FAST_RECOVERY,
    Execution,
    ServerProcess,
    StartServer,
    Workspace,
    all_in_state,
    assert_sqlite_intact,
    executions,
    wait_for,
)

#: Recovery takes up to heartbeat (5 s) + server timeout (20 s) + watchdog period (5 s)
#: with the default timings. A test waits twice that long before it gives up.
RECOVERY_DEADLINE = 60.0
#: Crashes a poison job may cause before it is Failed, instead of the default 3,
#: so that the test needs two crash rounds instead of four.
POISON_CRASH_REQUEUES = 1
#: A job that the killed server finished this shortly before the kill may run again,
#: because its outcome can still have been waiting in the server's outcome writer.
OUTCOME_WRITE_GRACE = 2.0


def in_flight(runs: dict[str, Execution], pid: int) -> set[str]:
    """Return the jobs that process ``pid`` started and did not finish."""
    return {job_id for job_id, run in runs.items()
            if any(s["pid"] == pid for s in run.starts)
            and not any(f["pid"] == pid for f in run.finishes)}


def test_sigkill_recovers_jobs(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    # The default timings run once, on SQLite: they belong to the server, whatever
    # the storage, and waiting them out adds about 12 s per backend.
    settings = None if workspace.backend == "sqlite" else FAST_RECOVERY
    victim = start_server(workers=4, settings=settings)
    survivor = start_server(workers=4, settings=settings)
    victim_id = victim.wait_announced(app)
    survivor.wait_announced(app)
    durations = random.Random(7).choices([0.5, 1.0, 1.5, 2.0], k=40)
    ids = app.enqueue_many([jobapp.sleep.call(seconds) for seconds in durations])

    def victim_busy() -> bool:
        runs = executions(workspace.log_path)
        finished = sum(1 for run in runs.values() if run.finishes)
        return finished >= 8 and len(in_flight(runs, victim.pid)) >= 2

    wait_for(victim_busy, 60, "the victim to run jobs mid-batch", interval=0.02)
    killed_at = time.time()
    victim.send(signal.SIGKILL)
    assert victim.wait_exit(10) == -signal.SIGKILL
    interrupted = in_flight(executions(workspace.log_path), victim.pid)

    wait_for(lambda: all_in_state(app, ids, "Succeeded"), RECOVERY_DEADLINE,
             "every job to succeed after the kill", interval=0.5)

    runs = executions(workspace.log_path)
    recently_finished = {job_id for job_id, run in runs.items()
                         if any(f["pid"] == victim.pid and f["t"] >= killed_at -
                                OUTCOME_WRITE_GRACE for f in run.finishes)}
    assert interrupted
    for job_id in ids:
        run = runs[job_id]
        assert run.finishes, job_id
        if len(run.starts) > 1:
            assert job_id in interrupted | recently_finished, job_id
            assert len(run.starts) == 2, job_id
            assert run.starts[0]["pid"] == victim.pid, job_id
            assert run.starts[1]["pid"] == survivor.pid, job_id
    for job_id in interrupted:
        recovery = [entry for entry in app.get_job(job_id).history
                    if entry.state == "Enqueued" and entry.data.get("server_id") == victim_id]
        assert len(runs[job_id].starts) == 2, job_id
        assert runs[job_id].finishes[-1]["pid"] == survivor.pid, job_id
        assert len(recovery) == 1, job_id
        assert "stopped heartbeating" in recovery[0].reason, job_id
    assert survivor.alive()
    assert_sqlite_intact(workspace)


def test_poison_job_ends_failed(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    poison = jobapp.kill_server.enqueue()
    others = [jobapp.sleep.enqueue(0.0) for _ in range(10)]
    settings = {**FAST_RECOVERY, "max_crash_requeues": POISON_CRASH_REQUEUES}
    crashes = POISON_CRASH_REQUEUES + 1
    deaths = 0

    for _ in range(crashes + 2):
        server = start_server(workers=2, settings=settings)
        server.wait_announced(app)
        others += [jobapp.sleep.enqueue(0.0) for _ in range(3)]

        def died_or_failed(current: ServerProcess = server) -> bool:
            return not current.alive() or app.get_job(poison).state == "Failed"

        wait_for(died_or_failed, RECOVERY_DEADLINE, "the poison job to kill the server or fail",
                 interval=0.2)
        if server.alive():
            break
        deaths += 1

    job = app.get_job(poison)
    wait_for(lambda: all_in_state(app, others, "Succeeded"), RECOVERY_DEADLINE,
             "the other jobs to succeed")
    server.send(signal.SIGTERM)
    assert server.wait_exit(30) == 0
    assert job.state == "Failed"
    assert deaths == crashes
    assert len(executions(workspace.log_path)[poison].starts) == crashes
    assert job.crash_count == crashes
    assert "stopped while performing the job" in job.history[-1].reason
    assert [entry.state for entry in job.history].count("Processing") == crashes
    assert all(len(executions(workspace.log_path)[job_id].starts) == 1 for job_id in others)
