"""PostgreSQL outages against real ``backburner server`` processes.

Each test works in a schema of its own, dropped afterwards. Its servers and
its client connect with an ``application_name`` of the test's own, so
"terminate every backend connection" reaches this test's connections and no
other session of the shared database.

The restart test stops the PostgreSQL server that every other test and user
of the machine shares, and starts it again; it is marked ``restarts_database``
so that it can be left out with ``-m "not restarts_database"``. It controls
the server with ``pg_ctlcluster`` (Debian's cluster of POSTGRES_URL), or with
the command in ``BACKBURNER_TEST_POSTGRES_CTL`` followed by ``stop`` or
``start``.
"""

from __future__ import annotations

import os
import secrets
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from outage_helpers import ServerProcess, executions, wait_for
from postgres_outage_app import app as job_app
from postgres_outage_app import work

from backburner import Backburner, states
from backburner.errors import StorageError

POSTGRES_URL = os.environ.get("BACKBURNER_TEST_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/test")
#: Seconds to wait for jobs to end before the test fails; far above what they need.
DEADLINE = 90.0
#: The servers' default server timeout (20 s) plus one watchdog interval (5 s):
#: the longest a dead or frozen server's jobs should wait to be taken back.
RECOVERY_TIME = 25.0
#: Seconds after PostgreSQL is back by which servers should start jobs again.
RESUME_TIME = 5.0


@dataclass
class Workspace:
    """One test's schema, connection name, execution log and client app."""

    root: Path
    schema: str
    application_name: str
    #: The storage URL of the servers and of the client app.
    url: str
    log_path: Path
    app: Backburner


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    """Point the job app at a fresh schema, installed before any server starts."""
    token = secrets.token_hex(6)
    schema = f"bb_outage_{token}"
    application_name = f"bb_outage_{token}"
    url = f"{POSTGRES_URL}?schema={schema}&application_name={application_name}"
    job_app.close()
    # A short pool timeout so that an enqueue during an outage fails within 2 s.
    job_app.use_storage(f"{url}&pool_timeout=2")
    job_app.storage.now()
    yield Workspace(tmp_path, schema, application_name, url, tmp_path / "executions.jsonl",
                    job_app)
    job_app.close()
    drop_schema(schema)


StartServer = Callable[..., ServerProcess]


@pytest.fixture
def start_server(workspace: Workspace) -> Iterator[StartServer]:
    """Start ``backburner server`` processes; kill the ones still running at teardown.

    Each server's log output is printed at teardown, which pytest shows when
    the test failed.
    """
    started: list[ServerProcess] = []

    def start(workers: int = 4) -> ServerProcess:
        args = ["server", "--app", "postgres_outage_app:app", "--storage", workspace.url,
                "--workers", str(workers), "--shutdown-timeout", "5"]
        server = ServerProcess(args, workspace.log_path,
                               workspace.root / f"server-{len(started)}.log")
        started.append(server)
        return server

    yield start

    for server in started:
        server.kill()
        print(f"--- server pid {server.pid}, exit code {server.process.returncode} ---")
        print(server.output_tail())


# -- helpers ----------------------------------------------------------------------


def drop_schema(schema: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def wait_announced(app: Backburner, server: ServerProcess) -> str:
    """Wait until ``server`` is in the storage's server list; return its server id."""
    def announced() -> str | None:
        assert server.alive(), f"server exited before announcing itself:\n{server.output()}"
        for record in app.storage.list_servers():
            if record.info.get("pid") == server.pid:
                return record.id
        return None

    return wait_for(announced, 60, f"server pid {server.pid} to announce itself")


def started_count(log_path: Path) -> int:
    return sum(len(run.starts) for run in executions(log_path).values())


def all_succeeded(app: Backburner, job_ids: Sequence[str]) -> bool:
    return all(app.storage.get_job(job_id, history=False).state == states.SUCCEEDED
               for job_id in job_ids)


def succeeded_entries(app: Backburner, job_id: str) -> int:
    job = app.get_job(job_id)
    assert job is not None, f"job {job_id} is missing"
    return [entry.state for entry in job.history].count(states.SUCCEEDED)


def listener_reconnected(server: ServerProcess) -> bool:
    return "listener reconnected" in server.output()


def backend_pids(application_name: str) -> list[int]:
    """Return the pids of the backends that serve connections named ``application_name``."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        rows = admin.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                             (application_name,)).fetchall()
    return [row[0] for row in rows]


def terminate_backends(application_name: str) -> int:
    """Terminate every backend of connections named ``application_name``; return how many."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s", (application_name,)).fetchone()
    assert row is not None
    return int(row[0])


def postgres_ctl(action: str) -> None:
    """Stop or start the PostgreSQL server of POSTGRES_URL (``action``: "stop" or "start")."""
    command = os.environ.get("BACKBURNER_TEST_POSTGRES_CTL")
    if command:
        args = [*shlex.split(command), action]
    else:
        versions = sorted(os.listdir("/etc/postgresql"))
        args = ["pg_ctlcluster", "--skip-systemctl-redirect", versions[0], "main", action]
    subprocess.run(args, check=True, timeout=120, capture_output=True)


def postgres_ready() -> bool:
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


# -- tests ------------------------------------------------------------------------


def test_terminate_backends(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    servers = [start_server(), start_server()]
    for server in servers:
        wait_announced(app, server)
    first = app.enqueue_many([work.call(0.05) for _ in range(200)])
    wait_for(lambda: started_count(workspace.log_path) >= 20, 60, "20 jobs to start")

    terminated = [terminate_backends(workspace.application_name)]
    time.sleep(0.5)
    terminated.append(terminate_backends(workspace.application_name))
    later = app.enqueue_many([work.call(0.05) for _ in range(50)])
    job_ids = [*first, *later]
    wait_for(lambda: all_succeeded(app, job_ids), DEADLINE, "every job to succeed",
             interval=0.5)
    wait_for(lambda: all(listener_reconnected(server) for server in servers), DEADLINE,
             "the listeners to reconnect")

    runs = executions(workspace.log_path)
    assert terminated[0] > 0
    assert terminated[1] > 0
    for server in servers:
        assert server.alive()
        assert "listener connection failed" in server.output()
    assert len(backend_pids(workspace.application_name)) > 0
    for job_id in job_ids:
        assert succeeded_entries(app, job_id) == 1, job_id
        assert len(runs[job_id].starts) >= 1, job_id
    assert sum(app.storage.count_jobs_by_state().values()) == len(job_ids)


@pytest.mark.restarts_database
def test_restart_database(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    servers = [start_server(), start_server()]
    for server in servers:
        wait_announced(app, server)
    first = app.enqueue_many([work.call(0.5) for _ in range(40)])
    wait_for(lambda: started_count(workspace.log_path) >= 8, 60, "8 jobs to start")

    try:
        postgres_ctl("stop")
        with pytest.raises(StorageError) as failure:
            work.enqueue(0.0)
        time.sleep(1.0)
        alive_during_outage = [server.alive() for server in servers]
    finally:
        if not postgres_ready():
            postgres_ctl("start")
    up_at = time.time()
    later = app.enqueue_many([work.call(0.05) for _ in range(10)])
    job_ids = [*first, *later]
    wait_for(lambda: all_succeeded(app, job_ids), DEADLINE, "every job to succeed",
             interval=0.5)
    wait_for(lambda: all(listener_reconnected(server) for server in servers), DEADLINE,
             "the listeners to reconnect")

    runs = executions(workspace.log_path)
    resumed_at = min(start["t"] for run in runs.values() for start in run.starts
                     if start["t"] > up_at)
    print(f"jobs started again {resumed_at - up_at:.2f} s after PostgreSQL was back")
    message = str(failure.value)
    assert "failed to create jobs" in message
    assert "no connection within 2 s" in message
    assert alive_during_outage == [True, True]
    for server in servers:
        assert server.alive()
        assert "listener connection failed" in server.output()
    assert resumed_at - up_at < RESUME_TIME
    for job_id in job_ids:
        assert succeeded_entries(app, job_id) == 1, job_id
    assert sum(app.storage.count_jobs_by_state().values()) == len(job_ids)


def test_frozen_server_late_result(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    frozen = start_server(workers=1)
    frozen_id = wait_announced(app, frozen)
    job_id = work.enqueue(2.0)
    wait_for(lambda: job_id in executions(workspace.log_path), 60, "the job to start")

    frozen.send(signal.SIGSTOP)
    try:
        rescuer = start_server(workers=1)
        rescuer_id = wait_announced(app, rescuer)
        wait_for(lambda: app.storage.get_job(job_id, history=False).state == states.SUCCEEDED,
                 RECOVERY_TIME + DEADLINE, "the rescuing server to finish the job",
                 interval=0.5)
    finally:
        frozen.send(signal.SIGCONT)
    discarded = f"outcome Succeeded of job {job_id} discarded"
    wait_for(lambda: discarded in frozen.output(), 60, "the frozen server's late outcome")

    job = app.get_job(job_id)
    assert job is not None
    processing = [entry for entry in job.history if entry.state == states.PROCESSING]
    runs = executions(workspace.log_path)[job_id]
    assert [entry.data["server_id"] for entry in processing] == [frozen_id, rescuer_id]
    assert [entry.state for entry in job.history].count(states.SUCCEEDED) == 1
    assert job.history[-1].state == states.SUCCEEDED
    assert [start["pid"] for start in runs.starts] == [frozen.pid, rescuer.pid]
    assert frozen.alive()


def test_sigkill_under_load(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    victim, survivor = start_server(), start_server()
    wait_announced(app, victim)
    wait_announced(app, survivor)
    job_ids = app.enqueue_many([work.call(0.2) for _ in range(200)])
    wait_for(lambda: started_count(workspace.log_path) >= 40, 60, "40 jobs to start")

    victim.kill()
    killed_at = time.monotonic()
    wait_for(lambda: all_succeeded(app, job_ids), RECOVERY_TIME + DEADLINE,
             "every job to succeed", interval=0.5)
    recovered_after = time.monotonic() - killed_at

    runs = executions(workspace.log_path)
    victim_unfinished = [job_id for job_id, run in runs.items()
                         if any(start["pid"] == victim.pid for start in run.starts)
                         and not any(finish["pid"] == victim.pid for finish in run.finishes)]
    assert victim_unfinished, "the kill hit no running job"
    assert recovered_after < RECOVERY_TIME + 5.0
    assert survivor.alive()
    for job_id in job_ids:
        assert succeeded_entries(app, job_id) == 1, job_id
    for job_id in victim_unfinished:
        assert runs[job_id].starts[-1]["pid"] == survivor.pid, job_id
    assert sum(app.storage.count_jobs_by_state().values()) == len(job_ids)
