"""The systems under test: how to point them at a fresh database, start their
servers, and read back when the benchmark jobs finished."""

from __future__ import annotations

import os
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.marks import read_marks

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Progress:
    """How many jobs are done, and when the first and the last finished (epoch seconds)."""

    done: int
    first: float | None
    last: float | None


class System:
    """One benchmark row: a job system, its settings and its server processes."""

    name: str
    client: str
    settings: str
    bulk: bool
    servers: int
    #: Max jobs per throughput run, set for a slow system so that the full run ends in
    #: under 10 minutes.
    max_jobs: int | None = None

    def environment(self, workdir: Path) -> dict[str, str]:
        """Return the environment variables that point clients and servers at ``workdir``."""
        raise NotImplementedError

    def server_commands(self) -> list[list[str]]:
        """Return one command line per server process to start."""
        raise NotImplementedError

    def progress(self, workdir: Path) -> Progress:
        """Return how many of the throughput jobs are done and when they finished."""
        raise NotImplementedError


class BackburnerSystem(System):
    """backburner servers on one SQLite file with default settings.

    Job completion is the time of the Succeeded state change in storage."""

    client = "backburner"
    bulk = True

    def __init__(self, servers: int) -> None:
        self.servers = servers
        self.name = f"backburner ×{servers}" if servers > 1 else "backburner"
        self.settings = (f"{servers} × `backburner server --app benchmarks.bb_app:app` "
                         "(default: 10 worker threads, log level info)")

    def environment(self, workdir: Path) -> dict[str, str]:
        return {"BACKBURNER_STORAGE_URL": f"sqlite:///{workdir / 'backburner.db'}"}

    def server_commands(self) -> list[list[str]]:
        command = [str(BIN / "backburner"), "server", "--app", "benchmarks.bb_app:app"]
        return [command] * self.servers

    def progress(self, workdir: Path) -> Progress:
        # A plain read in WAL mode never blocks the servers' writes.
        connection = sqlite3.connect(workdir / "backburner.db", timeout=10)
        try:
            done, first, last = connection.execute(
                "SELECT count(*), min(state_at), max(state_at) FROM jobs "
                "WHERE state = 'Succeeded'").fetchone()
        finally:
            connection.close()
        return Progress(done, first, last)


class HueySystem(System):
    """Huey's consumer with SqliteHuey's defaults.

    Huey keeps no record of a finished job, so completion is the time each job
    recorded when it ran."""

    name = "huey_sqlite"
    client = "huey"
    bulk = False
    servers = 1
    settings = ("`huey_consumer benchmarks.huey_app.huey -k process -w 2` (SqliteHuey defaults: "
                "WAL, synchronous FULL, polling from 0.1 s backing off ×1.15)")

    def environment(self, workdir: Path) -> dict[str, str]:
        return {"BENCH_HUEY_DB": str(workdir / "huey.db")}

    def server_commands(self) -> list[list[str]]:
        return [[str(BIN / "huey_consumer"), "benchmarks.huey_app.huey", "-k", "process",
                 "-w", "2"]]

    def progress(self, workdir: Path) -> Progress:
        return marks_progress(workdir)


class DjangoQSystem(System):
    """Django-Q2's cluster on the Django ORM broker with SQLite, default settings.

    Its result table keeps only the last 250 successes, so completion is the time
    each job recorded when it ran."""

    name = "django_q2_sqlite"
    client = "django_q"
    bulk = False
    servers = 1
    max_jobs = 2_000
    settings = ("`django-admin qcluster` with `Q_CLUSTER = {'name': 'bench', 'orm': 'default'}` "
                "(defaults: workers = CPU count = 2, poll 0.2 s, recycle after 500 tasks; "
                "Django's SQLite defaults: rollback journal, synchronous FULL)")

    def environment(self, workdir: Path) -> dict[str, str]:
        return {"BENCH_DJQ_DB": str(workdir / "django_q.db"),
                "DJANGO_SETTINGS_MODULE": "benchmarks.djq_settings"}

    def server_commands(self) -> list[list[str]]:
        return [[str(BIN / "django-admin"), "qcluster"]]

    def progress(self, workdir: Path) -> Progress:
        return marks_progress(workdir)


def marks_progress(workdir: Path) -> Progress:
    """Read progress from the marks file.

    Each job records its start, which for a no-op job is also its end. A job that
    ran twice counts once."""
    marks = [mark for mark in read_marks(str(workdir / "marks")) if mark.index >= 0]
    if not marks:
        return Progress(0, None, None)
    times = [mark.started_at for mark in marks]
    return Progress(len({mark.index for mark in marks}), min(times), max(times))


def all_systems() -> list[System]:
    """Return every benchmark row, in table order."""
    return [BackburnerSystem(1), BackburnerSystem(2), HueySystem(), DjangoQSystem()]


def base_environment() -> dict[str, str]:
    """Return this process's environment with the repository on the import path."""
    root = str(Path(__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root if not path else f"{root}{os.pathsep}{path}"}
