"""The fault-injection harness: backends, server processes, faults and the load manifest.

A ``Run`` owns one backend, one working folder and the three files the
offline checker reads:

- ``executions.jsonl``: one fsynced line per job start and end, written by
  the jobs in ``chaosapp`` inside the server processes;
- ``faults.jsonl``: one fsynced line per server start, SIGKILL, SIGSTOP,
  SIGCONT, SIGTERM and observed exit, written by the harness;
- ``manifest.json``: every acknowledged enqueue and what the test expects
  of it.

Times are recorded twice: wall clock (``time.time``) and ``time.monotonic``,
which on Linux is one clock for every process of the machine, so recovery
times can be computed across processes.
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import chaosapp

from backburner import Backburner, states

logger = logging.getLogger(__name__)

T = TypeVar("T")

CHAOS_DIR = Path(__file__).resolve().parent
#: Runs the click entry point directly, as the installed ``backburner`` script does.
CLI = [sys.executable, "-c", "from backburner.cli import main; main()"]
BACKENDS = ("sqlite", "postgres", "redis")
POSTGRES_URL = os.environ.get("BACKBURNER_TEST_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BACKBURNER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
#: States a job in the manifest may end in.
SETTLED = frozenset({states.SUCCEEDED, states.FAILED, states.DELETED})
#: States that mean a job still has to run.
ACTIVE = (states.ENQUEUED, states.SCHEDULED, states.PROCESSING)


def wait_for(condition: Callable[[], T], timeout: float, what: str,
             interval: float = 0.2) -> T:
    """Poll ``condition`` until it returns a truthy value; raise AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def append_line(path: Path, line: dict[str, Any]) -> None:
    """Append one JSON line to ``path`` and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Return the JSON lines of ``path``, ignoring a last line cut short by a kill."""
    if not path.exists():
        return []
    lines = []
    for text in path.read_text().splitlines():
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError:
            logger.warning("skipping a damaged line in %s: %r", path, text[:200])
    return lines


# -- backends ------------------------------------------------------------------


@dataclass
class Backend:
    """A storage URL of this run's own, and the cleanup that removes its data."""

    name: str
    url: str
    cleanup: Callable[[], None]


def open_backend(name: str, workdir: Path) -> Backend:
    """Create an empty storage of kind ``name`` ("sqlite", "postgres" or "redis")."""
    token = secrets.token_hex(6)
    if name == "sqlite":
        return Backend(name, f"sqlite:///{workdir / 'chaos.db'}", lambda: None)
    if name == "postgres":
        schema = f"bb_chaos_{token}"
        return Backend(name, f"{POSTGRES_URL}?schema={schema}", lambda: _drop_schema(schema))
    if name == "redis":
        prefix = f"bb-chaos:{token}:"
        return Backend(name, f"{REDIS_URL}?prefix={prefix}", lambda: _delete_keys(prefix))
    raise ValueError(f"unknown backend {name!r}: use one of {', '.join(BACKENDS)}")


def _drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _delete_keys(prefix: str) -> None:
    import redis

    with redis.Redis.from_url(REDIS_URL) as client:
        batch = []
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) == 500:
                client.delete(*batch)
                batch = []
        if batch:
            client.delete(*batch)


def make_client(url: str) -> Backburner:
    """Return a client app on ``url`` that resolves the job functions of ``chaosapp``."""
    client = Backburner(url)
    client.registry = chaosapp.app.registry
    return client


# -- server processes ----------------------------------------------------------


@dataclass
class ServerProcess:
    """One ``backburner server`` subprocess."""

    process: subprocess.Popen[bytes]
    output_path: Path
    frozen: bool = False
    #: True once the harness killed or stopped it on purpose.
    ended_by_harness: bool = False
    exit_recorded: bool = False

    @property
    def pid(self) -> int:
        """The process id, which is also part of the server id."""
        return self.process.pid

    def alive(self) -> bool:
        """Return True while the process runs (frozen counts as running)."""
        return self.process.poll() is None

    def output_tail(self, lines: int = 40) -> str:
        """Return the end of the server's log output."""
        try:
            text = self.output_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no output: {exc})"
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Run:
    """One scenario on one backend: servers, faults, load and the files for the checker."""

    backend: Backend
    workdir: Path
    workers: int = 4
    shutdown_timeout: float = 5.0
    servers: list[ServerProcess] = field(default_factory=list)
    manifest: list[dict[str, Any]] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.exec_log = self.workdir / "executions.jsonl"
        self.fault_log = self.workdir / "faults.jsonl"
        self.manifest_path = self.workdir / "manifest.json"
        self.client = make_client(self.backend.url)
        _ = self.client.storage  # creates the schema before any server starts

    # -- lifecycle -------------------------------------------------------

    def close(self) -> None:
        """Kill every server still running, write the manifest and close the client."""
        for server in self.servers:
            if server.alive():
                if server.frozen:
                    os.kill(server.pid, signal.SIGCONT)
                server.process.kill()
                server.process.wait(30)
        self.save_manifest()
        self.client.close()

    def save_manifest(self) -> None:
        """Write the manifest for the checker."""
        self.manifest_path.write_text(json.dumps(self.manifest))

    def fault(self, event: str, pid: int | None = None, **fields: Any) -> float:
        """Record a fault or lifecycle event; return its monotonic time."""
        mono = time.monotonic()
        append_line(self.fault_log, {"event": event, "pid": pid, "wall": time.time(),
                                     "mono": mono, **fields})
        return mono

    # -- servers ---------------------------------------------------------

    def spawn(self, workers: int | None = None) -> ServerProcess:
        """Start one server process and record it."""
        env = dict(os.environ)
        env[chaosapp.LOG_ENV] = str(self.exec_log)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CHAOS_DIR), env.get("PYTHONPATH")]))
        env.pop("BACKBURNER_STORAGE_URL", None)
        env.pop("BACKBURNER_APP", None)
        output_path = self.workdir / f"server-{len(self.servers)}.log"
        args = ["server", "--app", "chaosapp:app", "--storage", self.backend.url,
                "--workers", str(workers or self.workers),
                "--shutdown-timeout", str(self.shutdown_timeout), "--log-level", "warning"]
        # Each server gets a process group of its own. Had it stayed in the
        # harness's group, a group left without a parent in the session (a
        # harness started in the background) would get SIGHUP from the kernel
        # while one of its members is stopped, killing frozen servers.
        with open(output_path, "wb") as output:
            process = subprocess.Popen([*CLI, *args], cwd=CHAOS_DIR, env=env, stdout=output,
                                       stderr=subprocess.STDOUT, process_group=0)
        server = ServerProcess(process, output_path)
        self.servers.append(server)
        self.fault("spawn", server.pid)
        return server

    def wait_announced(self, servers: list[ServerProcess], timeout: float = 60.0) -> None:
        """Wait until every server in ``servers`` has announced itself in the storage."""
        def announced() -> bool:
            pids = {pid_of(record.id) for record in self.client.storage.list_servers()}
            for server in servers:
                if not server.alive():
                    raise AssertionError(f"server pid {server.pid} exited with "
                                         f"{server.process.returncode} before announcing "
                                         f"itself:\n{server.output_tail()}")
            return all(server.pid in pids for server in servers)

        wait_for(announced, timeout, f"{len(servers)} server(s) to announce themselves")

    def live(self) -> list[ServerProcess]:
        """Return the servers that run and are not frozen."""
        return [s for s in self.servers if s.alive() and not s.frozen]

    def kill(self, server: ServerProcess, event: str = "kill") -> float:
        """SIGKILL a server (thawing it first if frozen); return the monotonic kill time."""
        server.ended_by_harness = True
        os.kill(server.pid, signal.SIGKILL)
        mono = self.fault(event, server.pid)
        server.process.wait(30)
        server.frozen = False
        return mono

    def kill_all(self) -> float:
        """SIGKILL every running server at once (power loss); return the monotonic time."""
        victims = [s for s in self.servers if s.alive()]
        for server in victims:
            server.ended_by_harness = True
            os.kill(server.pid, signal.SIGKILL)
        mono = self.fault("power_loss", None, pids=[s.pid for s in victims])
        for server in victims:
            server.process.wait(30)
            server.frozen = False
        return mono

    def freeze(self, server: ServerProcess) -> float:
        """SIGSTOP a server; return the monotonic time."""
        os.kill(server.pid, signal.SIGSTOP)
        server.frozen = True
        return self.fault("freeze", server.pid)

    def thaw(self, server: ServerProcess) -> float:
        """SIGCONT a frozen server; return the monotonic time."""
        os.kill(server.pid, signal.SIGCONT)
        server.frozen = False
        return self.fault("thaw", server.pid)

    def terminate(self, server: ServerProcess) -> float:
        """SIGTERM a server (graceful stop); return the monotonic time."""
        server.ended_by_harness = True
        os.kill(server.pid, signal.SIGTERM)
        return self.fault("term", server.pid)

    def note_exits(self) -> list[ServerProcess]:
        """Record servers that exited since the last call; return those the harness did not end."""
        unexpected = []
        for server in self.servers:
            if server.exit_recorded or server.alive():
                continue
            server.exit_recorded = True
            self.fault("exit", server.pid, code=server.process.returncode,
                       by_harness=server.ended_by_harness)
            if not server.ended_by_harness:
                unexpected.append(server)
        return unexpected

    def busy_servers(self) -> list[ServerProcess]:
        """Return live, unfrozen servers that hold at least one Processing job."""
        holders = {pid_of(job.server_id) for job in
                   self.client.storage.list_jobs(states.PROCESSING, limit=10_000)
                   if job.server_id}
        return [s for s in self.live() if s.pid in holders]

    # -- load ------------------------------------------------------------

    def enqueue(self, kind: str, fn: str, *args: Any, expect: str = states.SUCCEEDED,
                **fields: Any) -> str:
        """Enqueue a job, recording it in the manifest once the storage acknowledged it."""
        job_id = self.client.enqueue(fn, *args)
        self.manifest.append({"id": job_id, "kind": kind, "expect": expect, "due": None,
                              **fields})
        return job_id

    def schedule_at(self, kind: str, fn: str, due: float, *args: Any) -> str:
        """Schedule a job at wall time ``due``, recorded with its due time."""
        import datetime as dt

        at = dt.datetime.fromtimestamp(due, dt.UTC)
        job_id = self.client.options(at=at).enqueue(fn, *args)
        self.manifest.append({"id": job_id, "kind": kind, "expect": states.SUCCEEDED,
                              "due": due})
        return job_id

    def continuation(self, parent_id: str, on: str, fn: str, *args: Any) -> str:
        """Create a continuation of ``parent_id``; the checker derives what it expects."""
        job_id = self.client.options(on=on).continue_with(parent_id, fn, *args)
        self.manifest.append({"id": job_id, "kind": "continuation", "expect": "derived",
                              "due": None, "parent": parent_id, "on": on})
        return job_id

    def settle(self, timeout: float) -> None:
        """Wait until every job in the manifest has settled and nothing is left to run.

        A job settles in Succeeded, Failed or Deleted; a continuation also
        settles by staying Awaiting while its parent is not in a final state.
        Parents are waited for before continuations, and the wait ends only
        when the storage contains no Enqueued, Scheduled or Processing job.
        """
        first = [entry for entry in self.manifest if entry["expect"] != "derived"]
        then = [entry for entry in self.manifest if entry["expect"] == "derived"]

        def settled() -> bool:
            self.note_exits()
            first[:] = [entry for entry in first if not self._is_settled(entry)]
            if first:
                return False
            then[:] = [entry for entry in then if not self._is_settled(entry)]
            if then:
                return False
            counts = self.client.storage.count_jobs_by_state()
            return not any(counts[state] for state in ACTIVE)

        wait_for(settled, timeout, "every job to reach Succeeded, Failed or Deleted",
                 interval=1.0)

    def delete(self, job_id: str) -> bool:
        """Delete a job through the client, noting it in the manifest."""
        deleted = self.client.delete(job_id)
        for entry in self.manifest:
            if entry["id"] == job_id:
                entry["deleted_by_harness"] = entry.get("deleted_by_harness", 0) + deleted
        return deleted

    def _is_settled(self, entry: dict[str, Any]) -> bool:
        job = self.client.storage.get_job(entry["id"], history=False)
        if job is None or job.state in SETTLED:
            return True
        if job.state != states.AWAITING or "parent" not in entry:
            return False
        parent = self.client.storage.get_job(entry["parent"], history=False)
        return parent is None or parent.state not in states.FINAL_STATES


def pid_of(server_id: str | None) -> int | None:
    """Return the pid part of a server id (``host:pid:random``), or None."""
    if not server_id:
        return None
    try:
        return int(server_id.rsplit(":", 2)[-2])
    except (IndexError, ValueError):
        return None
