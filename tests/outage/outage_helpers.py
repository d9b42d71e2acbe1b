"""Helpers for the outage tests: server subprocesses, an execution log, polling.

Job apps in this folder call ``record_event`` from inside jobs. Each line is
one ``os.write`` on a file opened with O_APPEND. So lines from several server
processes never interleave, and a SIGKILL of a server loses none of them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from backburner import JobContext

T = TypeVar("T")

#: This folder: server subprocesses import the job apps from here.
OUTAGE_DIR = Path(__file__).resolve().parent
#: Runs the click entry point directly, as the installed ``backburner`` script does.
CLI = [sys.executable, "-c", "from backburner.cli import main; main()"]
#: Environment variable naming the execution log file.
LOG_ENV = "BB_OUTAGE_LOG"


def wait_for(condition: Callable[[], T], timeout: float, what: str,
             interval: float = 0.1) -> T:
    """Poll ``condition`` until it returns a truthy value; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """Return a loopback TCP port that nothing listens on (closed right after binding)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def record_event(event: str, ctx: JobContext, **fields: Any) -> None:
    """Append one JSON line about the running job to the execution log."""
    line = {"event": event, "job": ctx.job_id, "attempt": ctx.attempt, "pid": os.getpid(),
            "t": time.time(), **fields}
    fd = os.open(os.environ[LOG_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


def child_env(log_path: Path) -> dict[str, str]:
    """Return the environment for server subprocesses: this folder importable, the log named."""
    env = dict(os.environ)
    env[LOG_ENV] = str(log_path)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(OUTAGE_DIR), env.get("PYTHONPATH")]))
    env.pop("BACKBURNER_STORAGE_URL", None)
    env.pop("BACKBURNER_APP", None)
    return env


class ServerProcess:
    """One ``backburner server`` subprocess, whose log output goes to ``output_path``."""

    def __init__(self, args: Sequence[str], log_path: Path, output_path: Path) -> None:
        self.args = list(args)
        self.output_path = output_path
        with open(output_path, "wb") as output:
            self.process = subprocess.Popen([*CLI, *args], cwd=OUTAGE_DIR,
                                            env=child_env(log_path), stdout=output,
                                            stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        """The process id, which is also in the server id and the execution log."""
        return self.process.pid

    def alive(self) -> bool:
        """Return True while the process runs."""
        return self.process.poll() is None

    def send(self, signum: int) -> None:
        """Send a signal to the process."""
        os.kill(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL the process (after SIGCONT, in case it is stopped) and reap it."""
        if self.alive():
            self.send(signal.SIGCONT)
            self.send(signal.SIGKILL)
        self.process.wait(30)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM the process and wait for it to exit; return its exit code, None on timeout."""
        if self.alive():
            self.send(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def output(self) -> str:
        """Return the server's log output so far."""
        try:
            return self.output_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no output: {exc})"

    def output_tail(self, lines: int = 80) -> str:
        """Return the end of the server's log output."""
        return "\n".join(self.output().splitlines()[-lines:])


@dataclass
class Execution:
    """What the execution log shows of one job."""

    starts: list[dict[str, Any]] = field(default_factory=list)
    finishes: list[dict[str, Any]] = field(default_factory=list)


def executions(path: Path) -> dict[str, Execution]:
    """Group the execution log by job id (empty before anything ran)."""
    grouped: dict[str, Execution] = defaultdict(Execution)
    if not path.exists():
        return {}
    for text in path.read_text().splitlines():
        if not text.strip():
            continue
        line = json.loads(text)
        entry = grouped[line["job"]]
        if line["event"] == "start":
            entry.starts.append(line)
        elif line["event"] == "finish":
            entry.finishes.append(line)
    return dict(grouped)
