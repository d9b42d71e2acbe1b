"""Redis outages with real ``backburner server`` processes: no job lost, no server exits.

Connection kills run on the shared Redis at 127.0.0.1:6379 and kill only the
connections of this test's servers, found by the client name that the
storage gives its connections. Restarts run on a redis-server that the test
starts itself, with AOF on, on a free port.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import redis_outage_app
from outage_helpers import ServerProcess, executions, free_port, wait_for
from redis_outage_app import work

from backburner import Backburner, states
from backburner.errors import StorageError
from backburner.storage.redis import default_client_name

SHARED_HOST, SHARED_PORT = "127.0.0.1", 6379
#: The jobs of a server whose heartbeat stops are recovered after its timeout
#: (20 s) plus up to one watchdog period (5 s). The rest is margin for a loaded machine.
RECOVERY_DEADLINE = 60.0
#: Servers back off at most 10 s between attempts while Redis is down.
RESUME_DEADLINE = 15.0
#: Name of the connections of the test process itself, never killed.
CLIENT_NAME = "bb-outage-test-client"
DISCARDED = "discarded: the job was deleted, requeued or recovered"
RECOVERED = "stopped heartbeating; job put back in its queue"


# -- fixtures -----------------------------------------------------------------


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    """The execution log that the servers' jobs append to."""
    return tmp_path / "executions.jsonl"


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own on the shared Redis; its keys are deleted afterwards."""
    name = f"bb-outage-{uuid.uuid4().hex[:12]}:"
    yield name
    with redis.Redis(host=SHARED_HOST, port=SHARED_PORT) as client:
        keys = list(client.scan_iter(match=f"{name}*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture
def shared_url(prefix: str) -> str:
    """The servers' storage URL on the shared Redis."""
    return f"redis://{SHARED_HOST}:{SHARED_PORT}/0?prefix={prefix}"


@pytest.fixture
def app() -> Iterator[Backburner]:
    """The job app of the servers, as a client; the test points it at its storage."""
    client = redis_outage_app.app
    client.close()
    yield client
    client.close()


@pytest.fixture
def start_server(tmp_path: Path, log_path: Path,
                 request: pytest.FixtureRequest) -> Iterator[Callable[..., ServerProcess]]:
    """Start ``backburner server`` processes; kill those still running at teardown.

    When the test failed, the end of each server's log output is printed.
    """
    started: list[ServerProcess] = []
    failures_before = request.session.testsfailed

    def start(storage_url: str, workers: int = 4) -> ServerProcess:
        args = ["server", "--app", "redis_outage_app:app", "--storage", storage_url,
                "--workers", str(workers), "--shutdown-timeout", "5"]
        server = ServerProcess(args, log_path, tmp_path / f"server-{len(started)}.log")
        started.append(server)
        return server

    yield start

    for server in started:
        server.kill()
    if request.session.testsfailed > failures_before:
        for server in started:
            print(f"--- server pid {server.pid}, exit code {server.process.returncode} ---")
            print(server.output_tail())


class RedisProcess:
    """A redis-server of the test's own with AOF on (appendfsync always), in ``folder``."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start redis-server (loading the AOF in the folder, if any); wait for PING to succeed."""
        server = shutil.which("redis-server")
        if server is None:
            pytest.fail("redis-server is not installed; install the redis-server package")
        with open(self.folder / "redis.log", "ab") as output:
            self.process = subprocess.Popen(
                [server, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
                 str(self.folder), "--appendonly", "yes", "--appendfsync", "always",
                 "--save", ""],
                stdout=output, stderr=subprocess.STDOUT)
        with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0) as probe:
            wait_for(lambda: _answers(probe), 30, f"redis-server on port {self.port} to answer")

    def kill(self) -> None:
        """SIGKILL redis-server, as a crash or power cut would end it, and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait(30)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A running redis-server with AOF on, on a free port; killed at teardown."""
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisProcess(folder, free_port())
    server.start()
    yield server
    server.kill()


# -- helpers ------------------------------------------------------------------


def client_url(storage_url: str) -> str:
    """The storage URL for the test's own connections, which carry a name of their own."""
    return f"{storage_url}&client_name={CLIENT_NAME}"


def wait_announced(app: Backburner, server: ServerProcess, timeout: float = 30.0) -> str:
    """Wait until ``server`` is in the storage's server list, and return its id."""
    def announced() -> str | None:
        if not server.alive():
            raise AssertionError(f"server exited with {server.process.returncode}:\n"
                                 f"{server.output_tail()}")
        return next((record.id for record in app.storage.list_servers()
                     if record.info.get("pid") == server.pid), None)

    return wait_for(announced, timeout, f"server pid {server.pid} to announce itself")


def count_in(app: Backburner, state: str) -> int:
    """Return how many jobs of the test's prefix are in ``state``."""
    return app.storage.count_jobs_by_state()[state]


def states_of(app: Backburner, job_ids: list[str]) -> dict[str, str | None]:
    """Return each job's state, None for a job that does not exist."""
    found = {job_id: app.storage.get_job(job_id, history=False) for job_id in job_ids}
    return {job_id: None if job is None else job.state for job_id, job in found.items()}


def run_twice(log_path: Path) -> set[str]:
    """Return the ids of jobs that the execution log shows starting more than once."""
    return {job_id for job_id, runs in executions(log_path).items() if len(runs.starts) > 1}


def kill_connections(admin: redis.Redis, name: str) -> int:
    """CLIENT KILL every connection named ``name``; return how many were killed.

    Redis 7.0 has no CLIENT KILL filter by name, so this lists the clients
    and kills each match by its id.
    """
    killed = 0
    for client in admin.client_list():
        if client["name"] == name:
            killed += admin.client_kill_filter(_id=client["id"])
    return killed


# -- connection kills ---------------------------------------------------------


def test_client_kill_mid_run(app: Backburner, shared_url: str, prefix: str,
                             start_server: Callable[..., ServerProcess], log_path: Path) -> None:
    app.use_storage(client_url(shared_url))
    servers = [start_server(shared_url) for _ in range(2)]
    for server in servers:
        wait_announced(app, server)
    name = default_client_name(prefix)
    admin = redis.Redis(host=SHARED_HOST, port=SHARED_PORT, decode_responses=True)

    job_ids: list[str] = []
    killed: list[int] = []
    last_kill = 0.0
    try:
        for wave in range(8):
            job_ids += app.enqueue_many([work.call(0.002) for _ in range(150)])
            time.sleep(0.25)
            if wave < 6:  # the last waves run after the last kill
                killed.append(kill_connections(admin, name))
                last_kill = time.time()
        wait_for(lambda: count_in(app, states.SUCCEEDED) == len(job_ids), 60,
                 "every job to succeed")
    finally:
        admin.close()
    outputs = [server.output() for server in servers]
    late_starts = {start["pid"] for run in executions(log_path).values()
                   for start in run.starts if start["t"] > last_kill}
    print(f"connections killed per round: {killed}")

    assert min(killed) >= 1
    assert set(states_of(app, job_ids).values()) == {states.SUCCEEDED}
    assert count_in(app, states.PROCESSING) == 0
    assert run_twice(log_path) == set()
    assert late_starts == {server.pid for server in servers}
    assert all(server.alive() for server in servers)
    for output in outputs:
        assert "Connection closed by server" in output
        assert "failed (attempt 1)" in output


def test_aof_restart(app: Backburner, aof_redis: RedisProcess,
                     start_server: Callable[..., ServerProcess], log_path: Path) -> None:
    storage_url = f"redis://127.0.0.1:{aof_redis.port}/0?prefix=bb-aof:"
    app.use_storage(client_url(storage_url))
    servers = [start_server(storage_url) for _ in range(2)]
    for server in servers:
        wait_announced(app, server)

    job_ids: list[str] = []
    for _ in range(4):
        job_ids += app.enqueue_many([work.call(0.01) for _ in range(100)])
        time.sleep(0.1)
    wait_for(lambda: count_in(app, states.SUCCEEDED) >= 100, 60, "the first jobs to succeed")
    # Outcomes that Redis acknowledged before the kill; the servers finish more meanwhile.
    finished = [job_id for job_id, state in states_of(app, job_ids).items()
                if state == states.SUCCEEDED]
    aof_redis.kill()

    with pytest.raises(StorageError) as raised:
        work.enqueue(0.0)
    time.sleep(2.0)  # an outage of a few seconds while the servers keep trying
    aof_redis.start()
    restarted = time.monotonic()
    after_restart = states_of(app, finished)
    probe_id = work.enqueue(0.0)
    wait_for(lambda: states_of(app, [probe_id])[probe_id] == states.SUCCEEDED,
             RESUME_DEADLINE, "the servers to run a job after the restart", interval=0.02)
    resumed_after = time.monotonic() - restarted
    job_ids += [probe_id, *app.enqueue_many([work.call(0.01) for _ in range(100)])]
    wait_for(lambda: count_in(app, states.SUCCEEDED) == len(job_ids), 60,
             "every job to succeed")
    message = str(raised.value)
    print(f"servers resumed {resumed_after:.2f} s after the restart")

    assert "failed to create jobs" in message
    assert f"127.0.0.1:{aof_redis.port}" in message
    assert "running and reachable" in message
    assert len(finished) >= 100
    assert set(after_restart.values()) == {states.SUCCEEDED}
    assert set(states_of(app, job_ids).values()) == {states.SUCCEEDED}
    assert run_twice(log_path) == set()
    assert all(server.alive() for server in servers)
    for server in servers:
        assert "Connection refused" in server.output()


# -- server crashes -----------------------------------------------------------


def test_server_sigkill_under_load(app: Backburner, shared_url: str,
                                   start_server: Callable[..., ServerProcess],
                                   log_path: Path) -> None:
    app.use_storage(client_url(shared_url))
    victim, survivor = start_server(shared_url), start_server(shared_url)
    victim_id = wait_announced(app, victim)
    wait_announced(app, survivor)
    job_ids = app.enqueue_many([work.call(0.05) for _ in range(800)])

    def victim_busy() -> bool:
        runs = executions(log_path).values()
        return sum(len(run.finishes) for run in runs) >= 150 and any(
            start["pid"] == victim.pid for run in runs for start in run.starts)

    wait_for(victim_busy, 60, "the victim to run jobs")
    victim.kill()
    killed_at = time.monotonic()
    wait_for(lambda: count_in(app, states.SUCCEEDED) == len(job_ids), RECOVERY_DEADLINE,
             "every job to succeed", interval=0.25)
    print(f"every job succeeded {time.monotonic() - killed_at:.1f} s after the kill")

    jobs = [app.get_job(job_id) for job_id in job_ids]
    recoveries = [(job.id, entry.data.get("server_id")) for job in jobs for entry in job.history
                  if RECOVERED in (entry.reason or "")]
    recovered = {job_id for job_id, _ in recoveries}
    runs = executions(log_path)
    unfinished = {job_id for job_id, run in runs.items()
                  if any(start["pid"] == victim.pid for start in run.starts)
                  and not any(finish["pid"] == victim.pid for finish in run.finishes)}

    assert {job.state for job in jobs} == {states.SUCCEEDED}
    assert set(runs) == set(job_ids)
    assert len(recovered) >= 1
    assert {server_id for _, server_id in recoveries} == {victim_id}
    assert unfinished <= recovered
    assert run_twice(log_path) <= recovered
    assert survivor.alive()


def test_frozen_server_result_rejected(app: Backburner, shared_url: str,
                                       start_server: Callable[..., ServerProcess],
                                       log_path: Path) -> None:
    app.use_storage(client_url(shared_url))
    frozen = start_server(shared_url, workers=2)
    frozen_id = wait_announced(app, frozen)
    job_id = work.enqueue(3.0)
    wait_for(lambda: job_id in executions(log_path), 30, "the job to start")
    frozen.send(signal.SIGSTOP)
    survivor = start_server(shared_url, workers=2)
    wait_announced(app, survivor)

    try:
        wait_for(lambda: states_of(app, [job_id])[job_id] == states.SUCCEEDED,
                 RECOVERY_DEADLINE, "the survivor to recover and run the job", interval=0.25)
    finally:
        frozen.send(signal.SIGCONT)
    wait_for(lambda: DISCARDED in frozen.output(), 30,
             "the frozen server's late outcome to be rejected")
    wait_for(lambda: any(record.id == frozen_id for record in app.storage.list_servers()), 30,
             "the frozen server to announce itself again")

    job = app.get_job(job_id)
    runs = executions(log_path)[job_id]
    assert job is not None
    assert [start["pid"] for start in runs.starts] == [frozen.pid, survivor.pid]
    assert sorted(finish["pid"] for finish in runs.finishes) == sorted([frozen.pid,
                                                                       survivor.pid])
    assert [entry.state for entry in job.history] == [
        states.ENQUEUED, states.PROCESSING, states.ENQUEUED, states.PROCESSING, states.SUCCEEDED]
    assert job.history[-1].data.get("result") == str(survivor.pid)
    assert job.history[2].reason is not None
    assert RECOVERED in job.history[2].reason
    assert frozen.alive()
    assert survivor.alive()


# -- outages longer than the server timeout -----------------------------------


def test_long_outage_recovers_nothing(aof_redis: RedisProcess) -> None:
    # After an outage longer than the server timeout every heartbeat is old.
    # A watchdog that judged at once would take back the jobs of live servers;
    # it must wait until they have had time to heartbeat again.
    app = Backburner(f"redis://127.0.0.1:{aof_redis.port}/0?prefix=bb-long:")

    @app.job(name="outage.hold", retries=0)
    def hold(seconds: float) -> None:
        time.sleep(seconds)

    settings = {"workers": 1, "heartbeat_interval": 0.5, "server_timeout": 2.0}
    try:
        with app.server(**settings), app.server(**settings):
            wait_for(lambda: len(app.storage.list_servers()) == 2, 30, "two servers")
            job_ids = [hold.enqueue(8.0) for _ in range(2)]
            wait_for(lambda: app.storage.count_jobs_by_state()[states.PROCESSING] == 2, 30,
                     "both jobs to start")
            aof_redis.kill()
            time.sleep(5.0)  # more than twice the server timeout
            aof_redis.start()
            wait_for(lambda: app.storage.count_jobs_by_state()[states.SUCCEEDED] == 2, 60,
                     "both jobs to succeed")
        histories = {job_id: [entry.state for entry in app.get_job(job_id).history]
                     for job_id in job_ids}
    finally:
        app.close()

    assert list(histories.values()) == [[states.ENQUEUED, states.PROCESSING,
                                         states.SUCCEEDED]] * 2
