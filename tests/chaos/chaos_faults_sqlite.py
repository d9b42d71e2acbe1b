"""SQLite under concurrent processes, killed during writes (T7).

A client process enqueues about 50 short jobs per second while two server
processes run them, all on one SQLite file in WAL mode. At random moments
one of the three gets SIGKILL (a server is replaced at once, the client
restarted). Every moment has writes in flight: enqueues, claims, outcomes,
heartbeats. After each kill a read-only connection runs ``PRAGMA
integrity_check``. At the end the server and client logs are searched for
"database is locked", and the checker confirms that no acknowledged job
was lost.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from chaos_checker import Report
from chaos_faults import not_applicable
from chaos_harness import CHAOS_DIR, Run, read_lines
from chaos_scenarios import finish, start_servers

from backburner import states

logger = logging.getLogger(__name__)

#: The error text that must never reach a log: SQLite gave up waiting for the write lock.
LOCKED = "database is locked"


@dataclass
class ClientProcess:
    """The enqueuing client (``chaos_faults_app.py``) and where its output goes."""

    process: subprocess.Popen[bytes]
    output_path: Path


def sqlite_kills(run: Run, kills: int, servers: int = 2, rate: float = 50.0,
                 client_share: float = 0.3) -> Report:
    """SIGKILL a server or the client at random moments ``kills`` times; check the file each time."""
    if run.backend.name != "sqlite":
        return not_applicable("T7 is about processes sharing one SQLite file")
    database = Path(run.backend.url.removeprefix("sqlite:///"))
    acks = run.workdir / "acks.jsonl"
    start_servers(run, servers)
    clients = [start_client(run, acks, rate, 0)]

    integrity: list[str] = []
    client_kills = 0
    for _ in range(kills):
        wait_noting_exits(run, run.rng.uniform(0.3, 2.0))
        if run.rng.random() < client_share:
            kill_client(run, clients[-1])
            client_kills += 1
            clients.append(start_client(run, acks, rate, len(clients)))
        else:
            run.kill(run.rng.choice(run.live()))
            run.spawn()
        integrity.append(integrity_check(database))

    kill_client(run, clients[-1])
    add_acknowledged(run, acks)
    report = finish(run)
    report.metrics["client_kills"] = client_kills
    report.metrics["integrity_checks"] = len(integrity)
    report.metrics["integrity_not_ok"] = sum(1 for result in integrity if result != "ok")
    for result in integrity:
        if result != "ok":
            report.fail("T7", f"PRAGMA integrity_check after a kill returned {result!r}")
    check_logs(run, report, [c.output_path for c in clients])
    return report


def start_client(run: Run, acks: Path, rate: float, index: int) -> ClientProcess:
    """Start the enqueuing client process."""
    output_path = run.workdir / f"client-{index}.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CHAOS_DIR), env.get("PYTHONPATH")]))
    with open(output_path, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, str(CHAOS_DIR / "chaos_faults_app.py"), run.backend.url,
             str(acks), str(rate)], cwd=CHAOS_DIR, env=env, stdout=output,
            stderr=subprocess.STDOUT, process_group=0)
    run.fault("client_start", None, client_pid=process.pid)
    return ClientProcess(process, output_path)


def kill_client(run: Run, client: ClientProcess) -> None:
    """SIGKILL the client; a client that exited on its own is a violation found later."""
    if client.process.poll() is None:
        os.kill(client.process.pid, signal.SIGKILL)
    client.process.wait(30)
    run.fault("client_kill", None, client_pid=client.process.pid,
              code=client.process.returncode)


def wait_noting_exits(run: Run, seconds: float) -> None:
    """Wait ``seconds``, recording unexpected server exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run.note_exits()
        time.sleep(0.05)


def integrity_check(database: Path) -> str:
    """Run ``PRAGMA integrity_check`` on a read-only connection; return its rows joined."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.Error as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
    return "; ".join(str(row[0]) for row in rows)


def add_acknowledged(run: Run, acks: Path) -> None:
    """Add every job id that a client saw acknowledged to the manifest."""
    for line in read_lines(acks):
        run.manifest.append({"id": line["id"], "kind": "client", "expect": states.SUCCEEDED,
                             "due": None})


def check_logs(run: Run, report: Report, client_logs: list[Path]) -> None:
    """No server or client log contains "database is locked"; clients died only by SIGKILL."""
    paths = [server.output_path for server in run.servers] + client_logs
    locked = [path.name for path in paths if LOCKED in path.read_text(errors="replace")]
    report.metrics["logs_with_database_locked"] = len(locked)
    if locked:
        report.fail("T7", f'"{LOCKED}" appears in {", ".join(locked)}')
    acks = read_lines(run.workdir / "acks.jsonl")
    report.metrics["acknowledged_by_client"] = len(acks)
    if len(acks) > 1:
        span = acks[-1]["mono"] - acks[0]["mono"]
        report.metrics["enqueue_rate_per_s"] = round((len(acks) - 1) / span, 1)
