"""Clock skew between servers (T10), made with libfaketime.

Servers start under ``LD_PRELOAD=libfaketime`` with ``FAKETIME`` set to a
relative offset such as ``-120s``, so ``time.time()`` inside them is off by
that much; ``FAKETIME_DONT_FAKE_MONOTONIC=1`` leaves the monotonic clock alone, as a
real skew would, so the harness can still place their log lines in time.

On PostgreSQL and Redis the storage clock (``now()``, ``TIME``) decides due
times, recurring occurrences and lease expiry, so servers at -120 s, 0 and
+120 s must behave as one: no job starts more than 1 s before it is due by
the storage clock, one job per recurring occurrence, and no job is taken
back from a live server. The execution log's wall times, written by the
skewed servers, are replaced by the harness's (unskewed) clock plus the
measured storage clock offset before the checker reads them.

SQLite has no clock of its own: the storage clock is the clock of the
processes that open the file, which on one machine is one clock. That is
all it promises, so on SQLite every server runs at the same +120 s skew and
the checks use the servers' own clock. Servers with different clocks on one
SQLite file are outside that promise.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from chaos_checker import Report, check_run
from chaos_faults import spawn_server
from chaos_harness import CHAOS_DIR, Run, read_lines

from backburner import states

logger = logging.getLogger(__name__)

#: Debian's libfaketime, thread-safe variant (package ``libfaketime``, pulled in by ``faketime``).
FAKETIME_LIBRARY = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
#: A skew check allows this much difference between the requested and the seen offset, in s.
OFFSET_TOLERANCE = 2.0
#: History reason of a job taken back from a server whose heartbeat went stale.
RECOVERED = "stopped heartbeating"
#: ``sitecustomize`` for skewed servers. With libfaketime 0.9.10 and an
#: unshifted monotonic clock, Python 3.11's ``time.sleep`` (an absolute
#: ``clock_nanosleep`` on CLOCK_MONOTONIC) fails with EINVAL, but
#: ``threading.Event.wait`` works. Shifting the monotonic clock instead makes
#: ``Event.wait`` hang. So a failing ``time.sleep`` is retried as an Event wait.
SLEEP_SHIM = """\
import threading
import time

_real_sleep = time.sleep


def _sleep(seconds):
    try:
        _real_sleep(seconds)
    except OSError:
        threading.Event().wait(seconds)


time.sleep = _sleep
"""


class FaketimeMissing(RuntimeError):
    """libfaketime is not installed, or does not shift a Python child's clock."""


def faketime_env(offset: int, shim_folder: Path) -> dict[str, str]:
    """Return the environment that shifts a Python child's wall clock by ``offset`` s.

    ``shim_folder`` receives the ``sitecustomize`` that keeps ``time.sleep``
    working under libfaketime; it goes first on PYTHONPATH.
    """
    if offset == 0:
        return {}
    shim_folder.mkdir(parents=True, exist_ok=True)
    (shim_folder / "sitecustomize.py").write_text(SLEEP_SHIM)
    path = os.pathsep.join(filter(None, [str(shim_folder), str(CHAOS_DIR),
                                         os.environ.get("PYTHONPATH")]))
    return {"LD_PRELOAD": str(FAKETIME_LIBRARY), "FAKETIME": f"{offset:+d}s",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1", "PYTHONPATH": path}


def check_faketime(offset: int, shim_folder: Path) -> float:
    """Start a Python child at ``offset`` s and return the offset it really shows.

    Raises FaketimeMissing when the library is absent, the shift is off by
    more than OFFSET_TOLERANCE, or ``time.sleep`` fails in the child.
    """
    if not FAKETIME_LIBRARY.exists() or shutil.which("faketime") is None:
        raise FaketimeMissing(f"libfaketime is missing ({FAKETIME_LIBRARY}); install it with "
                              "apt-get install -y faketime")
    env = {**os.environ, **faketime_env(offset, shim_folder)}
    before = time.time()
    probe = "import time; now = time.time(); time.sleep(0.05); print(now)"
    output = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    if output.returncode != 0:
        raise FaketimeMissing(f"a Python child under libfaketime failed:\n{output.stderr}")
    after = time.time()
    seen = float(output.stdout.strip()) - (before + after) / 2
    if abs(seen - offset) > OFFSET_TOLERANCE:
        raise FaketimeMissing(f"a child started with FAKETIME={offset:+d}s is off by "
                              f"{seen:.1f} s, not {offset} s")
    return round(seen, 1)


def clock_skew(run: Run, seconds: float, delayed: int,
               offsets: tuple[int, ...] = (-120, 0, 120),
               job_seconds: tuple[float, float] = (2.0, 6.0)) -> Report:
    """Run delayed jobs, a per-second recurring job and jobs of ``job_seconds`` (min, max)
    on servers with skewed clocks."""
    shared_clock = run.backend.name == "sqlite"
    if shared_clock:
        offsets = tuple(120 for _ in offsets)
    shim = run.workdir / "faketime-shim"
    seen = [check_faketime(offset, shim) for offset in offsets]
    storage_offset = run.client.storage.now() - time.time()

    servers = [spawn_server(run, env=faketime_env(offset, shim)) for offset in offsets]
    run.wait_announced(servers)
    run.client.recurring.add_or_update("chaos-skew", "chaos.tick", "* * * * * *")
    begin = time.time()
    for _ in range(delayed):
        run.schedule_at("delayed", "chaos.work", begin + run.rng.uniform(2.0, seconds), 0.1)
    drive_long_jobs(run, seconds, job_seconds)
    run.client.recurring.remove("chaos-skew")

    run.settle(240.0)
    run.note_exits()
    run.save_manifest()
    if not shared_clock:
        rewrite_walls(run.exec_log, storage_offset)
    report = check_run(run.workdir, run.client, ("chaos-skew",), strict_ticks=True)
    report.metrics["offsets_s"] = list(offsets)
    report.metrics["offsets_seen_s"] = seen
    report.metrics["storage_clock_offset_s"] = round(storage_offset, 3)
    report.metrics["clock_checked"] = "servers' own (+120 s)" if shared_clock else "storage"
    check_no_early_recovery(run, report)
    report.metrics["earliest_start_before_due_s"] = earliest_start(run)
    return report


def drive_long_jobs(run: Run, seconds: float, job_seconds: tuple[float, float]) -> None:
    """Keep jobs of ``job_seconds`` (min, max) running on every server for ``seconds``,
    so that leases are held across heartbeats and watchdog passes."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run.note_exits()
        waiting = run.client.storage.count_jobs_by_state()[states.ENQUEUED]
        for _ in range(max(0, len(run.servers) * 2 - waiting)):
            run.enqueue("work", "chaos.work", round(run.rng.uniform(*job_seconds), 2))
        time.sleep(0.5)


def rewrite_walls(exec_log: Path, storage_offset: float) -> None:
    """Replace the skewed wall times of the execution log by storage-clock times.

    The monotonic clock is one clock for every process on Linux and is not
    shifted, so harness wall minus monotonic, plus the storage clock's
    offset, turns each line's monotonic time into a storage-clock time. The
    server's own reading is kept as ``server_wall``.
    """
    shift = time.time() - time.monotonic() + storage_offset
    lines = read_lines(exec_log)
    with open(exec_log, "w") as output:
        for line in lines:
            line["server_wall"] = line["wall"]
            line["wall"] = line["mono"] + shift
            output.write(json.dumps(line) + "\n")


def check_no_early_recovery(run: Run, report: Report) -> None:
    """No job was taken back from a server: none died, so none may lose its lease."""
    recovered = 0
    for entry in run.manifest:
        job = run.client.get_job(entry["id"])
        if job is None:
            continue
        for change in job.history:
            if RECOVERED in (change.reason or "") or "crash_count" in change.data:
                recovered += 1
                report.fail("T10", f"job {entry['id']} was taken back from a live server: "
                                   f"{change.reason}")
    report.metrics["leases_taken_from_live_servers"] = recovered


def earliest_start(run: Run) -> float | None:
    """Return how far before its due time the earliest delayed job started (negative: late)."""
    starts: dict[str, float] = {}
    for line in read_lines(run.exec_log):
        if line["event"] == "start":
            starts.setdefault(line["job"], line["wall"])
    leads = [entry["due"] - starts[entry["id"]] for entry in run.manifest
             if entry.get("due") is not None and entry["id"] in starts]
    return round(max(leads), 2) if leads else None
