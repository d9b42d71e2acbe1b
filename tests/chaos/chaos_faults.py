"""Storage outages for the battery (T6), and helpers that the other fault modules share.

The outage faults reach only this run's own connections. On PostgreSQL the
servers connect with an ``application_name`` of the run's own, and
``pg_terminate_backend`` ends every session with that name, so other users
of the shared database keep theirs; the harness's own client is named
differently and stays connected. On Redis the servers carry a
``client_name`` of the run's own, and ``CLIENT KILL`` ends those
connections. The restart part runs on a private redis-server with
``appendonly yes`` that the scenario starts on a free loopback port in a
folder of its own, and SIGKILLs and starts again mid-run. The shared
PostgreSQL and the shared Redis on 6379 are never restarted.

SQLite is a file opened by each process, with no connection to kill or
server to restart, so T6 does not apply to it.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import chaosapp
from chaos_checker import Report
from chaos_harness import (
    CHAOS_DIR,
    CLI,
    Backend,
    Run,
    ServerProcess,
    read_lines,
    wait_for,
)
from chaos_scenarios import finish, top_up

logger = logging.getLogger(__name__)

#: Maximum wait for the first job start after the storage is back, in seconds.
#: The target is 5 s; the rest only stops a run that never resumes.
RESUME_WAIT = 60.0


# -- shared helpers ------------------------------------------------------------


def spawn_server(run: Run, url: str | None = None, env: dict[str, str] | None = None,
                 address_space: int | None = None, app: str = "chaosapp:app",
                 workers: int | None = None) -> ServerProcess:
    """Start one server like ``Run.spawn``, with another storage URL, extra environment
    variables or an address-space limit (RLIMIT_AS, bytes)."""
    child_env = dict(os.environ)
    child_env[chaosapp.LOG_ENV] = str(run.exec_log)
    child_env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(CHAOS_DIR), child_env.get("PYTHONPATH")]))
    child_env.pop("BACKBURNER_STORAGE_URL", None)
    child_env.pop("BACKBURNER_APP", None)
    child_env.update(env or {})

    output_path = run.workdir / f"server-{len(run.servers)}.log"
    args = ["server", "--app", app, "--storage", url or run.backend.url,
            "--workers", str(workers or run.workers),
            "--shutdown-timeout", str(run.shutdown_timeout), "--log-level", "warning"]
    # prlimit sets the limit and then execs the server, so the pid stays the server's.
    limit = [] if address_space is None else ["prlimit", f"--as={address_space}"]
    # A process group of its own, as in Run.spawn, so no SIGHUP reaches it.
    with open(output_path, "wb") as output:
        process = subprocess.Popen([*limit, *CLI, *args], cwd=CHAOS_DIR, env=child_env,
                                   stdout=output, stderr=subprocess.STDOUT, process_group=0)
    server = ServerProcess(process, output_path)
    run.servers.append(server)
    run.fault("spawn", server.pid, url_tag=_tag_of(url), limit=address_space)
    return server


def _tag_of(url: str | None) -> str | None:
    if url is None:
        return None
    options = parse_qs(urlsplit(url).query)
    names = options.get("application_name") or options.get("client_name")
    return names[-1] if names else None


def first_start_after(run: Run, mono: float) -> float | None:
    """Return the monotonic time of the first job start after ``mono``, or None."""
    starts = [line["mono"] for line in read_lines(run.exec_log)
              if line["event"] == "start" and line["mono"] > mono]
    return min(starts) if starts else None


def wait_first_start(run: Run, mono: float, timeout: float = RESUME_WAIT) -> float | None:
    """Wait until a job starts after ``mono``; return the delay in seconds, None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.note_exits()
        started = first_start_after(run, mono)
        if started is not None:
            return round(started - mono, 2)
        time.sleep(0.1)
    return None


def free_port() -> int:
    """Return a loopback TCP port that nothing listens on (closed right after binding)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def not_applicable(reason: str) -> Report:
    """Return an empty report that states why a scenario does not apply to a backend."""
    return Report(metrics={"applies": f"no: {reason}"})


# -- killing the servers' sessions ------------------------------------------------


def server_url(backend: Backend, tag: str) -> str:
    """Return the backend URL with a connection name that only the run's servers use."""
    option = "application_name" if backend.name == "postgres" else "client_name"
    return f"{backend.url}&{option}={tag}"


def kill_sessions(backend: Backend, tag: str) -> int:
    """End every storage connection named ``tag``; return how many were ended."""
    if backend.name == "postgres":
        import psycopg
        from chaos_harness import POSTGRES_URL

        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            row = admin.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                "FROM pg_stat_activity WHERE application_name = %s AND pid <> "
                "pg_backend_pid()", (tag,)).fetchone()
        return int(row[0]) if row else 0

    import redis
    from chaos_harness import REDIS_URL

    killed = 0
    # Redis 7.0 has no CLIENT KILL filter by name: list the clients, kill matches by id.
    with redis.Redis.from_url(REDIS_URL) as admin:
        for client in admin.client_list():
            if client["name"] == tag:
                killed += admin.client_kill_filter(_id=client["id"])
    return killed


def session_kills(run: Run, kills: int, servers: int = 2, interval: float = 4.0) -> Report:
    """End every session of the run's servers ``kills`` times under load (T6)."""
    if run.backend.name == "sqlite":
        return not_applicable("SQLite has no connection to end or server to restart")
    tag = f"bb_chaos_srv_{secrets.token_hex(4)}"
    url = server_url(run.backend, tag)
    started = [spawn_server(run, url) for _ in range(servers)]
    run.wait_announced(started)
    backlog = servers * run.workers * 2

    resumes: list[float] = []
    ended: list[int] = []
    for _ in range(kills):
        pause_with_load(run, interval, backlog)
        ended.append(kill_sessions(run.backend, tag))
        at = run.fault("storage_kill", None, sessions=ended[-1])
        resumed = wait_first_start(run, at)
        resumes.append(resumed if resumed is not None else float("inf"))

    report = finish(run)
    report.metrics["storage_kills"] = kills
    report.metrics["sessions_ended"] = sum(ended)
    report.metrics["resume_after_kill_max_s"] = max(resumes) if resumes else None
    if any(count == 0 for count in ended):
        report.fail("T6", f"a kill found no session of the servers to end: {ended}")
    if any(r == float("inf") for r in resumes):
        report.fail("T6", f"no job started within {RESUME_WAIT:g} s after a session kill")
    return report


def pause_with_load(run: Run, seconds: float, backlog: int) -> None:
    """Wait ``seconds`` while keeping ``backlog`` jobs enqueued and noting server exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run.note_exits()
        top_up(run, backlog, 0.2, 2.0)
        time.sleep(0.5)


# -- restarting a private Redis ------------------------------------------------------


class PrivateRedis:
    """A redis-server of the scenario's own: loopback, a free port, AOF fsynced on every write."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """The base URL, without a key prefix."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start redis-server, loading the AOF of an earlier start; wait until PING succeeds."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; install the redis-server package")
        with open(self.folder / "redis.log", "ab") as output:
            self.process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
                 str(self.folder), "--appendonly", "yes", "--appendfsync", "always",
                 "--save", ""], stdout=output, stderr=subprocess.STDOUT, process_group=0)
        wait_for(self.answers, 30, f"redis-server on port {self.port} to answer")

    def answers(self) -> bool:
        """Return True if the server replies to PING."""
        import redis

        try:
            with redis.Redis(port=self.port, socket_timeout=1.0) as probe:
                return bool(probe.ping())
        except (redis.ConnectionError, redis.TimeoutError):
            return False

    def kill(self) -> None:
        """SIGKILL redis-server and reap it."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(30)


def redis_restarts(workdir: Path, restarts: int, servers: int = 2, interval: float = 5.0,
                   downtime: float = 5.0) -> Report:
    """SIGKILL a private redis-server under load and start it again, ``restarts`` times (T6)."""
    redis_server = PrivateRedis(workdir / "redis")
    redis_server.start()
    backend = Backend("redis", f"{redis_server.url}?prefix=bb-chaos-restart:", lambda: None)
    run = Run(backend, workdir)
    try:
        return _restart_rounds(run, redis_server, restarts, servers, interval, downtime)
    finally:
        run.close()
        redis_server.kill()


def _restart_rounds(run: Run, redis_server: PrivateRedis, restarts: int, servers: int,
                    interval: float, downtime: float) -> Report:
    started = [spawn_server(run) for _ in range(servers)]
    run.wait_announced(started)
    backlog = servers * run.workers * 2
    resumes: list[float] = []
    errors: list[str] = []
    acknowledged_while_down = 0

    for _ in range(restarts):
        pause_with_load(run, interval, backlog)
        redis_server.kill()
        run.fault("storage_down", None)
        outcome = try_enqueue(run)
        if outcome is None:
            acknowledged_while_down += 1
        else:
            errors.append(outcome)
        sleep_noting_exits(run, downtime)
        redis_server.start()
        back = run.fault("storage_up", None)
        resumed = wait_first_start(run, back)
        resumes.append(resumed if resumed is not None else float("inf"))

    report = finish(run)
    report.metrics["storage_restarts"] = restarts
    report.metrics["resume_after_restart_max_s"] = max(resumes) if resumes else None
    report.metrics["enqueue_error_while_down"] = errors[0] if errors else None
    if acknowledged_while_down:
        report.fail("T6", f"{acknowledged_while_down} enqueue(s) returned a job id while "
                          "Redis was down")
    if any(r == float("inf") for r in resumes):
        report.fail("T6", f"no job started within {RESUME_WAIT:g} s after Redis came back")
    return report


def try_enqueue(run: Run) -> str | None:
    """Enqueue while the storage is down; return "Type: message" of the error, None if none."""
    started = time.monotonic()
    try:
        run.enqueue("outage", "chaos.work", 0.1)
    except Exception as exc:  # noqa: BLE001 (the point is to record whatever it raises)
        took = time.monotonic() - started
        return f"{type(exc).__module__}.{type(exc).__name__}: {exc} (after {took:.1f} s)"
    return None


def sleep_noting_exits(run: Run, seconds: float) -> None:
    """Wait ``seconds``, recording server exits meanwhile."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run.note_exits()
        time.sleep(0.2)


def storage_outage(run: Run, kills: int, restarts: int, interval: float = 4.0,
                   downtime: float = 5.0) -> Report:
    """T6 in full: session kills on the run's backend, and on Redis private restarts too."""
    report = session_kills(run, kills, interval=interval)
    if run.backend.name != "redis" or restarts == 0:
        return report
    restart = redis_restarts(run.workdir / "restart", restarts, interval=interval + 1,
                             downtime=downtime)
    report.violations += [f"restart part: {v}" for v in restart.violations]
    for name in ("jobs", "lost", "unexpected_server_exits", "duplicates"):
        report.metrics[f"restart_{name}"] = restart.metrics.get(name)
    for name in ("storage_restarts", "resume_after_restart_max_s", "enqueue_error_while_down"):
        report.metrics[name] = restart.metrics.get(name)
    return report
