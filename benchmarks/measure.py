"""One measurement of one system: start servers on a fresh database, time the jobs."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.marks import read_marks
from benchmarks.systems import Progress, System, base_environment, marks_progress

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
#: Seconds a server gets to exit after SIGTERM before its process group is killed.
STOP_TIMEOUT = 20.0
#: Pause between starting the servers of the latency run and its first probe job.
SETTLE_SECONDS = 0.5


@dataclass
class Throughput:
    """Enqueue and processing rates of one batch of jobs (jobs per second)."""

    enqueue_rate: float
    processing_rate: float | None
    steady_rate: float | None
    done: int
    jobs: int
    locked_lines: int


@dataclass
class Latency:
    """Boot time and enqueue-to-start latencies of one latency run."""

    boot_seconds: float | None
    latencies_ms: list[float]
    probes: int
    locked_lines: int


class Workdir:
    """A fresh temporary folder holding one measurement's database, marks and server logs."""

    def __init__(self, system: System, keep: bool) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=f"bench-{system.client}-"))
        self.keep = keep
        self.environment = {**base_environment(), **system.environment(self.path),
                            "BENCH_MARKS": str(self.path / "marks")}

    def locked_lines(self) -> int:
        """Count the server log lines that contain "database is locked".

        One error can show on several lines, for example in a chained traceback."""
        return sum(1 for log in self.path.glob("server-*.log")
                   for line in log.read_text(errors="replace").splitlines()
                   if "database is locked" in line)

    def remove(self) -> None:
        if self.keep:
            logger.info("kept %s", self.path)
            return
        for child in self.path.iterdir():
            child.unlink()
        self.path.rmdir()


@contextmanager
def workdir_for(system: System, keep: bool) -> Iterator[Workdir]:
    """Yield a fresh Workdir and remove it afterwards unless ``keep``."""
    workdir = Workdir(system, keep)
    try:
        yield workdir
    finally:
        workdir.remove()


def run_client(system: System, workdir: Workdir, action: str, jobs: int, *,
               first: int = 0, interval: float | None = None) -> float:
    """Run ``benchmarks.client`` in a new process and return the seconds it took to enqueue."""
    command = [sys.executable, "-m", "benchmarks.client", system.client, action,
               "--jobs", str(jobs), "--first", str(first)]
    if interval is not None:
        command += ["--interval", str(interval)]
    finished = subprocess.run(command, cwd=ROOT, env=workdir.environment, capture_output=True,
                              text=True, timeout=600, check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {finished.returncode}:\n"
                           f"{finished.stderr[-2000:]}")
    return float(json.loads(finished.stdout)["seconds"])


@contextmanager
def servers(system: System, workdir: Workdir) -> Iterator[float]:
    """Start the system's servers and yield the time just before the first started."""
    processes: list[subprocess.Popen[bytes]] = []
    started_at = time.time()
    try:
        for number, command in enumerate(system.server_commands()):
            with open(workdir.path / f"server-{number}.log", "wb") as log:
                processes.append(subprocess.Popen(command, cwd=ROOT, env=workdir.environment,
                                                  stdout=log, stderr=subprocess.STDOUT,
                                                  start_new_session=True))
        yield started_at
    finally:
        stop_servers(processes)


def stop_servers(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each server, then kill the process group of any still running after
    STOP_TIMEOUT seconds."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)

    deadline = time.monotonic() + STOP_TIMEOUT
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning("server pid %d did not stop within %.0f s; killing its group",
                           process.pid, STOP_TIMEOUT)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for(check: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Call ``check`` every ``interval`` seconds until it returns True or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


def processing_timeout(jobs: int) -> float:
    """Return how long to wait for ``jobs`` jobs: at least 60 s, or 100 jobs per second."""
    return max(60.0, jobs / 100)


def measure_throughput(system: System, jobs: int, *, bulk: bool, keep: bool) -> Throughput:
    """Enqueue ``jobs`` jobs (in bulk or one by one), then start the servers and time
    how long they take to finish them."""
    with workdir_for(system, keep) as workdir:
        seconds = run_client(system, workdir, "bulk" if bulk else "enqueue", jobs)
        with servers(system, workdir) as started_at:
            wait_for(lambda: system.progress(workdir.path).done >= jobs,
                     processing_timeout(jobs), interval=0.1)
        progress = system.progress(workdir.path)
        locked_lines = workdir.locked_lines()
    return Throughput(jobs / seconds, *rates(progress, started_at, jobs), progress.done, jobs,
                      locked_lines)


def rates(progress: Progress, started_at: float, jobs: int) -> tuple[float | None, float | None]:
    """Return jobs/s from server start to the last job, and from the first job to the last.

    Both are None unless all ``jobs`` are done."""
    if progress.done < jobs or progress.first is None or progress.last is None:
        return None, None
    steady = jobs / (progress.last - progress.first) if progress.last > progress.first else None
    return jobs / (progress.last - started_at), steady


def measure_latency(system: System, probes: int, interval: float, *, keep: bool) -> Latency:
    """Time the boot (server start to the start of one job enqueued before it), then
    enqueue ``probes`` jobs ``interval`` seconds apart into the idle servers."""
    with workdir_for(system, keep) as workdir:
        run_client(system, workdir, "enqueue", 1, first=-1)
        with servers(system, workdir) as started_at:
            booted = wait_for(lambda: bool(read_marks(str(workdir.path / "marks"))), 60.0,
                              interval=0.01)
            time.sleep(SETTLE_SECONDS)
            run_client(system, workdir, "probe", probes, interval=interval)
            wait_for(lambda: marks_progress(workdir.path).done >= probes, 30.0)
        marks = read_marks(str(workdir.path / "marks"))
        locked_lines = workdir.locked_lines()

    boot = [mark.started_at - started_at for mark in marks if mark.index < 0]
    latencies = [(mark.started_at - mark.enqueued_at) * 1000 for mark in marks if mark.index >= 0]
    return Latency(boot[0] if booted and boot else None, latencies, probes, locked_lines)


def percentile(values: list[float], percent: float) -> float:
    """Return the nearest-rank percentile of ``values`` (not empty)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]
