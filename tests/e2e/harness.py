"""Helpers for the end-to-end tests: server processes, the execution log, polling."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from backends import StorageSpace
from jobapp import SERVER_ENV

from backburner import Backburner

T = TypeVar("T")

#: Folder that contains the job apps, which servers and CLI runs import from here.
E2E_DIR = Path(__file__).resolve().parent
#: Runs the click entry point directly, as the installed ``backburner`` script does.
CLI = [sys.executable, "-c", "from backburner.cli import main; main()"]


def wait_for(condition: Callable[[], T], timeout: float, what: str,
             interval: float = 0.1) -> T:
    """Poll ``condition`` until it returns a truthy value, failing the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def child_env(workspace: Workspace, server_settings: dict[str, Any] | None = None
              ) -> dict[str, str]:
    """Return the environment for server, CLI and client processes of ``workspace``.

    ``BACKBURNER_STORAGE_URL`` names the test's own storage, so a process that
    gets no ``--storage`` option still cannot touch any other.
    ``server_settings`` go to the servers as extra ``Server`` keyword arguments.
    """
    env = dict(os.environ)
    env["BB_E2E_LOG"] = str(workspace.log_path)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(E2E_DIR), env.get("PYTHONPATH")]))
    env["BACKBURNER_STORAGE_URL"] = workspace.storage_url
    env.pop("BACKBURNER_APP", None)
    env.pop(SERVER_ENV, None)
    if server_settings:
        env[SERVER_ENV] = json.dumps(server_settings)
    return env


def run_cli(args: Sequence[str], workspace: Workspace,
            timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``backburner ARGS`` to completion and return its exit code and output."""
    return subprocess.run([*CLI, *args], cwd=E2E_DIR, env=child_env(workspace),
                          capture_output=True, text=True, timeout=timeout, check=False)


class ServerProcess:
    """One ``backburner server`` subprocess, whose log output goes to ``output_path``."""

    def __init__(self, args: Sequence[str], env: dict[str, str], output_path: Path) -> None:
        self.args = list(args)
        self.output_path = output_path
        with open(output_path, "wb") as output:
            self.process = subprocess.Popen([*CLI, *args], cwd=E2E_DIR, env=env,
                                            stdout=output, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        """The process id, which is also in the server id and the execution log."""
        return self.process.pid

    def alive(self) -> bool:
        """Return True while the process runs."""
        return self.process.poll() is None

    def server_id(self, app: Backburner) -> str | None:
        """Return the id this process announced in the storage, or None before it did."""
        for server in app.storage.list_servers():
            if server.info.get("pid") == self.pid:
                return server.id
        return None

    def wait_announced(self, app: Backburner, timeout: float = 30.0) -> str:
        """Wait until the server is in the storage's server list, and return its id."""
        def announced() -> str | None:
            if not self.alive():
                raise AssertionError(f"server exited with {self.process.returncode} before "
                                     f"announcing itself:\n{self.output_tail()}")
            return self.server_id(app)

        server_id = wait_for(announced, timeout, f"server pid {self.pid} to announce itself")
        assert server_id is not None
        return server_id

    def send(self, signum: int) -> None:
        """Send a signal to the process."""
        os.kill(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL the process and reap it."""
        if self.alive():
            self.send(signal.SIGKILL)
        self.process.wait(30)

    def wait_exit(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for the process to end; return its exit code."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def output_tail(self, lines: int = 80) -> str:
        """Return the end of the server's log output."""
        try:
            text = self.output_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no output: {exc})"
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Workspace:
    """One test's storage, execution log and client app."""

    root: Path
    space: StorageSpace
    log_path: Path
    app: Backburner

    @property
    def backend(self) -> str:
        """The storage backend: sqlite, postgres or redis."""
        return self.space.backend

    @property
    def storage_url(self) -> str:
        """The URL that servers and CLI runs open the test's storage with."""
        return self.space.url


@dataclass
class Execution:
    """What the execution log shows of one job."""

    starts: list[dict[str, Any]] = field(default_factory=list)
    finishes: list[dict[str, Any]] = field(default_factory=list)
    others: list[dict[str, Any]] = field(default_factory=list)


def read_log(path: Path) -> list[dict[str, Any]]:
    """Return the execution log lines, oldest first (empty if nothing ran yet)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def executions(path: Path) -> dict[str, Execution]:
    """Group the execution log by job id."""
    grouped: dict[str, Execution] = defaultdict(Execution)
    for line in read_log(path):
        entry = grouped[line["job"]]
        if line["event"] == "start":
            entry.starts.append(line)
        elif line["event"] == "finish":
            entry.finishes.append(line)
        else:
            entry.others.append(line)
    return dict(grouped)


def states_of(app: Backburner, job_ids: Sequence[str]) -> dict[str, str | None]:
    """Return each job's current state, None for a missing job."""
    result: dict[str, str | None] = {}
    for job_id in job_ids:
        job = app.get_job(job_id)
        result[job_id] = None if job is None else job.state
    return result


def all_in_state(app: Backburner, job_ids: Sequence[str], state: str) -> bool:
    """Return True when every job is in ``state``."""
    return all(value == state for value in states_of(app, job_ids).values())


def count_in_state(app: Backburner, state: str) -> int:
    """Return how many jobs of the storage are in ``state``."""
    return app.storage.count_jobs_by_state()[state]


def history_states(app: Backburner, job_ids: Sequence[str]) -> dict[str, list[str]]:
    """Return the states in each job's history, oldest first, read through the storage."""
    result: dict[str, list[str]] = {}
    for job_id in job_ids:
        record = app.storage.get_job(job_id)
        assert record is not None, f"job {job_id} not found"
        result[job_id] = [entry.state for entry in record.history]
    return result


def assert_sqlite_intact(workspace: Workspace) -> None:
    """SQLite only: check that the database file passes ``PRAGMA integrity_check``.

    The other backends have no file that a killed process could leave half written.
    """
    if workspace.backend != "sqlite":
        return
    conn = workspace.space.connect_sqlite()
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()
    assert integrity == "ok"


#: The ``start_server`` fixture: starts a server process with the given options.
StartServer = Callable[..., ServerProcess]

#: Runs a test on SQLite only, for checks that only SQLite can make (file locks,
#: ``PRAGMA integrity_check``). Every other test runs on each backend.
SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"])

#: Server timings for tests that wait for the watchdog to recover a silent
#: server's jobs. A server is declared dead after 6 s without a heartbeat
#: (default 20 s), and heartbeats and the watchdog run every second (default
#: 5 s), so a live server on a loaded test machine still has 5 s of slack.
FAST_RECOVERY = {"heartbeat_interval": 1.0, "server_timeout": 6.0}
