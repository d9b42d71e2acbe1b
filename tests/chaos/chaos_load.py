"""Load scenarios of the battery: retry storm (T11) and starvation (T14).

The soak (T15) and result retention (T20) are in ``chaos_soak``. These
scenarios run servers of ``loadapp`` (``python loadapp.py``), which can take
a job retention and an expiration interval, with the product defaults
otherwise (heartbeat 5 s, server timeout 20 s). They kill no server; they
check that load alone loses nothing and delays nothing unduly.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import loadapp
from chaos_checker import Report, check_run, load_executions, percentile
from chaos_harness import CHAOS_DIR, Run, ServerProcess, wait_for
from chaos_load_checker import check_idle_while_waiting, check_retry_waves, default_delay_bounds

from backburner import states

logger = logging.getLogger(__name__)

#: Jobs per enqueue_many call.
BATCH = 500


@dataclass(frozen=True)
class LoadServer:
    """Settings of the load servers of one scenario."""

    workers: int = 4
    queues: tuple[str, ...] = ("default",)
    #: Seconds Succeeded and Deleted jobs are kept; None keeps the 24-h default.
    retention: float | None = None
    expiration_interval: float = 300.0


def use_load_app(run: Run, retention: float | None = None) -> None:
    """Make the run's client resolve ``loadapp``'s job functions."""
    run.client.registry = loadapp.app.registry
    if retention is not None:
        run.client.job_retention = retention  # jobs the client deletes expire this fast


def dependency_flag(run: Run) -> str:
    """Return the path of the run's "dependency is down" flag file."""
    return str(run.workdir / "dependency-down")


def spawn_load_server(run: Run, settings: LoadServer) -> ServerProcess:
    """Start one ``loadapp`` server process and record it in the run."""
    env = dict(os.environ)
    env[loadapp.LOG_ENV] = str(run.exec_log)
    env[loadapp.DEPENDENCY_ENV] = dependency_flag(run)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CHAOS_DIR), env.get("PYTHONPATH")]))
    env.pop("BACKBURNER_STORAGE_URL", None)
    args = [sys.executable, str(CHAOS_DIR / "loadapp.py"), "--storage", run.backend.url,
            "--workers", str(settings.workers), "--queues", ",".join(settings.queues),
            "--expiration-interval", str(settings.expiration_interval),
            "--shutdown-timeout", str(run.shutdown_timeout)]
    if settings.retention is not None:
        args += ["--retention", str(settings.retention)]
    output_path = run.workdir / f"server-{len(run.servers)}.log"
    with open(output_path, "wb") as output:
        process = subprocess.Popen(args, cwd=CHAOS_DIR, env=env, stdout=output,
                                   stderr=subprocess.STDOUT, process_group=0)
    server = ServerProcess(process, output_path)
    run.servers.append(server)
    run.fault("spawn", server.pid)
    return server


def start_load_servers(run: Run, count: int, settings: LoadServer) -> list[ServerProcess]:
    """Start ``count`` load servers and wait until all of them announced themselves."""
    servers = [spawn_load_server(run, settings) for _ in range(count)]
    run.wait_announced(servers)
    return servers


def enqueue_batch(run: Run, kind: str, function: str, calls: list[tuple[Any, ...]],
                  queue: str | None = None, expect: str = states.SUCCEEDED) -> list[str]:
    """Enqueue calls of ``function`` BATCH at a time, recording each in the manifest."""
    target = run.client.registry.resolve(function)
    ids: list[str] = []
    for start in range(0, len(calls), BATCH):
        chunk = [target.call(*args) for args in calls[start:start + BATCH]]
        created = run.client.options(queue=queue).enqueue_many(chunk)
        run.manifest.extend({"id": job_id, "kind": kind, "expect": expect, "due": None}
                            for job_id in created)
        ids += created
    return ids


def settle_and_check(run: Run, timeout: float) -> Report:
    """Wait for the jobs to settle and run the standard checker (I1 to I7)."""
    unexpected = run.note_exits()
    if unexpected:
        logger.warning("%d server(s) exited on their own", len(unexpected))
    wait_for(lambda: not active_jobs(run), timeout, "no Enqueued, Scheduled or Processing job",
             interval=0.5)
    run.settle(timeout)
    run.note_exits()
    run.save_manifest()
    return check_run(run.workdir, run.client)


def active_jobs(run: Run) -> int:
    """Return the number of Enqueued, Scheduled and Processing jobs."""
    counts = run.client.storage.count_jobs_by_state()
    return sum(counts[state] for state in (states.ENQUEUED, states.SCHEDULED,
                                           states.PROCESSING))


def unexpected_exits(run: Run, report: Report) -> None:
    """Report servers that exited although nothing stopped them."""
    for server in run.servers:
        if server.exit_recorded and not server.ended_by_harness:
            report.fail("load", f"server pid {server.pid} exited with "
                                f"{server.process.returncode}:\n{server.output_tail()}")


# -- T11: retry storm ---------------------------------------------------------------


def settle_timeout_after(outage: float, scale: float = 1.0) -> float:
    """Return how long the last retry may take after an outage of ``outage`` seconds.

    That is the maximum delay of the first retry number whose earliest time
    falls after the outage, plus two minutes for the runs themselves.
    """
    earliest = 0.0
    number = 1
    while True:
        low, high = (bound / scale for bound in default_delay_bounds(number))
        earliest += low
        if earliest > outage:
            return high + 120.0
        number += 1


def retry_storm(run: Run, jobs: int, outage: float, servers: int = 2,
                function: str = "load.flaky", scale: float = 1.0,
                max_share_pct: float | None = None) -> Report:
    """Enqueue ``jobs`` jobs that fail while a dependency is down for ``outage`` seconds.

    ``function`` is ``load.flaky`` (the default backoff) or ``load.flaky_fast``
    (the default backoff divided by ``scale``). With ``max_share_pct``, a wave
    whose largest 1-s share exceeds it is reported as a missed target.
    """
    use_load_app(run)
    flag = dependency_flag(run)
    open(flag, "w").close()
    start_load_servers(run, servers, LoadServer(workers=run.workers))
    down_at = run.fault("dependency_down")
    ids = enqueue_batch(run, "flaky", function, [() for _ in range(jobs)])

    while time.monotonic() < down_at + outage:
        run.note_exits()
        time.sleep(0.5)
    os.unlink(flag)
    run.fault("dependency_up")

    report = settle_and_check(run, settle_timeout_after(outage, scale))
    stored = [job for job in (run.client.get_job(job_id) for job_id in ids) if job]
    check_retry_waves(report, stored, scale)
    not_succeeded = [job.id for job in stored if job.state != states.SUCCEEDED]
    if not_succeeded:
        report.fail("T11", f"{len(not_succeeded)} job(s) did not succeed after the dependency "
                           f"recovered, e.g. {not_succeeded[:3]}")
    report.metrics["outage_s"] = outage
    share = report.metrics["retry_wave_max_share_pct"]
    if max_share_pct is not None:
        report.metrics["target_met"] = share is not None and share <= max_share_pct
    unexpected_exits(run, report)
    return report


# -- T14: starvation and fairness ---------------------------------------------------------


def starvation(run: Run, seconds: float, servers: int = 2, long_jobs: int = 3,
               long_seconds: float | None = None, flood_factor: float = 1.3,
               queues: tuple[str, ...] = ("b", "a"), b_wait_limit: float | None = None
               ) -> Report:
    """Flood queue "a" with 1-s jobs, feed queue "b" one short job a second for
    ``seconds`` seconds, and keep ``long_jobs`` workers busy with jobs of
    ``long_seconds`` (default: the feed plus 5 s).

    Servers list ``queues`` in that order ("b" before "a" by default).
    backburner serves a server's queues in strict priority order, so with
    "a" first, "b" waits until "a" is empty.
    """
    use_load_app(run)
    settings = LoadServer(workers=run.workers, queues=queues)
    start_load_servers(run, servers, settings)
    long_seconds = seconds + 5.0 if long_seconds is None else long_seconds
    long_ids = enqueue_batch(run, "long", "load.sleep", [(long_seconds,)] * long_jobs, "a")
    wait_started(run, long_ids)

    free_workers = servers * run.workers - long_jobs
    flood = math.ceil(seconds * free_workers * flood_factor)
    enqueue_batch(run, "a", "load.sleep", [(1.0,)] * flood, "a")
    b_enqueued = feed(run, seconds)
    backlog = run.client.storage.queue_lengths().get("a", 0)

    report = settle_and_check(run, seconds * 3 + 240)
    measure_b_waits(run, report, b_enqueued, b_wait_limit)
    jobs = {entry["id"]: run.client.get_job(entry["id"]) for entry in run.manifest}
    runs = load_executions(run.exec_log)
    check_idle_while_waiting(report, runs, {k: v for k, v in jobs.items() if v}, run.workers)
    report.metrics["a_jobs"] = flood
    report.metrics["a_backlog_at_feed_end"] = backlog
    if backlog == 0:
        report.fail("T14", "queue a ran empty before the feed of queue b ended, so the run "
                           "did not test starvation; raise flood_factor")
    unexpected_exits(run, report)
    return report


def wait_started(run: Run, ids: list[str], timeout: float = 60.0) -> None:
    """Wait until every job of ``ids`` has a start line in the execution log."""
    deadline = time.monotonic() + timeout
    while set(ids) - set(load_executions(run.exec_log)):
        if time.monotonic() > deadline:
            raise AssertionError(f"the long jobs did not start within {timeout:g} s")
        time.sleep(0.2)


def feed(run: Run, seconds: float) -> dict[str, float]:
    """Enqueue one 0.1-s job in queue "b" every second; return id -> enqueue wall time."""
    enqueued: dict[str, float] = {}
    begin = time.monotonic()
    for index in range(int(seconds)):
        time.sleep(max(0.0, begin + index - time.monotonic()))
        at = time.time()
        job_id = run.client.options(queue="b").enqueue("load.sleep", 0.1)
        run.manifest.append({"id": job_id, "kind": "b", "expect": states.SUCCEEDED,
                             "due": None})
        enqueued[job_id] = at
        run.note_exits()
    return enqueued


def measure_b_waits(run: Run, report: Report, enqueued: dict[str, float],
                    limit: float | None) -> None:
    """Measure how long queue b's jobs waited from enqueue to start."""
    runs = load_executions(run.exec_log)
    waits = [runs[job_id][0].start_wall - at for job_id, at in enqueued.items()
             if job_id in runs]
    report.metrics["b_jobs"] = len(enqueued)
    report.metrics["b_wait_p50_s"] = percentile(waits, 0.50)
    report.metrics["b_wait_p99_s"] = percentile(waits, 0.99)
    report.metrics["b_wait_max_s"] = percentile(waits, 1.0)
    if limit is not None:
        p99 = report.metrics["b_wait_p99_s"]
        report.metrics["target_met"] = p99 is not None and p99 <= limit
