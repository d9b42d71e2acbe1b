"""Offline checks of the load scenarios: retry waves, idle workers, loss with expiration.

These read the execution log and the jobs' state histories, like
``chaos_checker``, and add their findings to a ``Report``. Violations are
prefixed with the battery row they test (T11, T14, T15, T20).
"""

from __future__ import annotations

import bisect
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaos_checker import Execution, Report, load_executions, percentile

from backburner import Backburner, states
from backburner.job import Job

logger = logging.getLogger(__name__)

#: Seconds the delayed scheduler may take to enqueue a due retry: it polls
#: every second and moves due jobs in batches.
SCHEDULER_SLACK = 10.0
#: Storage timestamps and the scheduler's check of due times may differ by this much.
CLOCK_SLACK = 1.0
#: A wait or an idle period shorter than this is not counted (fetch and wake-up latency).
IDLE_SLACK = 2.0


def default_delay_bounds(retry_number: int) -> tuple[float, float]:
    """Return the least and greatest delay of ``backburner.retry.default_delay``."""
    base = (retry_number - 1) ** 4 + 15
    return float(base), float(base + 29 * retry_number)


# -- T11: retry waves --------------------------------------------------------------


@dataclass
class Retry:
    """One automatic retry: when the run failed and when the retry was enqueued."""

    number: int
    failed_at: float
    enqueued_at: float | None


def retries_of(job: Job) -> list[Retry]:
    """Return the automatic retries in a job's history, in order."""
    found = []
    for index, entry in enumerate(job.history):
        if entry.state != states.SCHEDULED or "retry" not in entry.data:
            continue
        following = job.history[index + 1] if index + 1 < len(job.history) else None
        enqueued_at = None
        if following is not None and following.state == states.ENQUEUED:
            enqueued_at = following.at.timestamp()
        found.append(Retry(int(entry.data["retry"]), entry.at.timestamp(), enqueued_at))
    return found


def max_window_share(times: list[float], window: float = 1.0) -> float:
    """Return the largest fraction of ``times`` inside any half-open interval
    [t, t + ``window``), so two scheduler polls exactly 1 s apart never share one."""
    if not times:
        return 0.0
    ordered = sorted(times)
    best = 0
    for index, start in enumerate(ordered):
        end = bisect.bisect_left(ordered, start + window, lo=index)
        best = max(best, end - index)
    return best / len(ordered)


def check_retry_waves(report: Report, jobs: list[Job], scale: float = 1.0,
                      min_wave: int = 100) -> None:
    """Check each retry delay against the default formula (divided by ``scale``) and
    measure how the waves spread.

    A wave is every job's retry number n. Its share is the largest fraction of
    the wave that the delayed scheduler enqueued inside one 1-s window. Only
    waves of at least ``min_wave`` jobs count towards ``retry_wave_max_share_pct``.
    """
    waves: dict[int, list[Retry]] = defaultdict(list)
    for job in jobs:
        for retry in retries_of(job):
            waves[retry.number].append(retry)
            check_retry_delay(report, job.id, retry, scale)

    summary: dict[int, dict[str, Any]] = {}
    for number, wave in sorted(waves.items()):
        enqueued = [r.enqueued_at for r in wave if r.enqueued_at is not None]
        failed = [r.failed_at for r in wave]
        summary[number] = {
            "jobs": len(wave),
            "failure_span_s": round(max(failed) - min(failed), 2),
            "enqueue_span_s": round(max(enqueued) - min(enqueued), 2) if enqueued else None,
            "max_1s_share_pct": round(100 * max_window_share(enqueued), 2),
        }
    report.metrics["retry_waves"] = summary
    big = [wave["max_1s_share_pct"] for wave in summary.values() if wave["jobs"] >= min_wave]
    report.metrics["retry_wave_max_share_pct"] = max(big) if big else None
    report.metrics["retries"] = sum(len(wave) for wave in waves.values())


def check_retry_delay(report: Report, job_id: str, retry: Retry, scale: float) -> None:
    """The time from failure to enqueue lies within the formula's bounds."""
    if retry.enqueued_at is None:
        return
    low, high = default_delay_bounds(retry.number)
    low, high = low / scale, high / scale
    delay = retry.enqueued_at - retry.failed_at
    if delay < low - CLOCK_SLACK:
        report.fail("T11", f"job {job_id}: retry {retry.number} was enqueued {delay:.2f} s "
                           f"after the failure, before the minimum delay of {low:g} s")
    if delay > high + SCHEDULER_SLACK:
        report.fail("T11", f"job {job_id}: retry {retry.number} was enqueued {delay:.2f} s "
                           f"after the failure, beyond the maximum delay of {high:g} s")


# -- T14: waiting while a worker idles ------------------------------------------------


def idle_periods(runs: list[Execution], workers: int, slack: float = IDLE_SLACK
                 ) -> list[tuple[float, float]]:
    """Return the wall-time periods longer than ``slack`` in which fewer than ``workers``
    of one server's executions ran, between its first start and its last end."""
    events = []
    for run in runs:
        events.append((run.start_wall, 1))
        if run.end_wall is not None:
            events.append((run.end_wall, -1))
    events.sort()
    if not events:
        return []
    periods = []
    running = 0
    idle_since: float | None = None
    for at, change in events:
        running += change
        if running < workers and idle_since is None:
            idle_since = at
        elif running >= workers and idle_since is not None:
            if at - idle_since > slack:
                periods.append((idle_since, at))
            idle_since = None
    return periods


def check_idle_while_waiting(report: Report, runs: dict[str, list[Execution]],
                             jobs: dict[str, Job], workers: int,
                             slack: float = IDLE_SLACK) -> None:
    """No job waits in a queue, nor claimed but not started, while a worker idles.

    A job's wait runs from its creation to its first start. Each server's idle
    periods come from the execution log; every server serves every queue.
    """
    by_server: dict[int, list[Execution]] = defaultdict(list)
    for executions in runs.values():
        for execution in executions:
            by_server[execution.pid].append(execution)
    idle = {pid: idle_periods(executions, workers, slack)
            for pid, executions in by_server.items()}
    report.metrics["idle_periods"] = sum(len(periods) for periods in idle.values())

    claim_delays = []
    offenders = 0
    for job_id, job in jobs.items():
        first = runs.get(job_id, [None])[0]
        if first is None:
            continue
        claim_delays.append(first.start_wall - claimed_at(job, first.attempt))
        waited_from, waited_to = job.created_at.timestamp(), first.start_wall
        for pid, periods in idle.items():
            for start, end in periods:
                overlap = min(end, waited_to) - max(start, waited_from)
                if overlap > slack:
                    offenders += 1
                    report.fail("T14", f"job {job_id} waited {overlap:.1f} s while server pid "
                                       f"{pid} had an idle worker")
    report.metrics["claim_to_start_max_s"] = percentile(claim_delays, 1.0)
    report.metrics["waited_while_idle"] = offenders
    late = [d for d in claim_delays if d > slack]
    if late:
        report.fail("T14", f"{len(late)} job(s) started more than {slack:g} s after their "
                           f"server claimed them (max {max(late):.1f} s): claimed jobs waited "
                           "for a worker")


def claimed_at(job: Job, attempt: int) -> float:
    """Return when the lease of ``attempt`` was taken, from the Processing entry."""
    for entry in job.history:
        if entry.state == states.PROCESSING and entry.data.get("attempt") == attempt:
            return entry.at.timestamp()
    return job.created_at.timestamp()


# -- T15, T20: no loss while jobs expire -----------------------------------------------


def check_no_loss_with_expiry(report: Report, workdir: Path, client: Backburner,
                              manifest: list[dict[str, Any]], row: str) -> None:
    """Every job expected to succeed finished an execution and is Succeeded or expired;
    every job expected to fail is Failed.

    A job that is gone from storage counts as expired only if its execution
    finished; otherwise it is lost.
    """
    runs = load_executions(workdir / "executions.jsonl")
    lost = failed_kept = 0
    for entry in manifest:
        finished = any(r.end_wall is not None for r in runs.get(entry["id"], []))
        job = client.storage.get_job(entry["id"], history=False)
        if entry["expect"] == states.FAILED:
            if job is None or job.state != states.FAILED:
                report.fail(row, f"job {entry['id']} should be kept as Failed but is "
                                 f"{job.state if job else 'gone'}")
            else:
                failed_kept += 1
        elif not finished:
            lost += 1
            report.fail("I1", f"job {entry['id']} never finished an execution; it is "
                              f"{job.state if job else 'gone from storage'}")
        elif job is not None and job.state != states.SUCCEEDED:
            lost += 1
            report.fail("I1", f"job {entry['id']} finished but is {job.state}")
    for name, value in (("jobs", len(manifest)), ("lost", lost), ("failed_kept", failed_kept)):
        report.metrics[name] = report.metrics.get(name, 0) + value
    report.metrics["executions"] = sum(len(r) for r in runs.values())


def check_counts_flat(report: Report, first: dict[str, int], second: dict[str, int],
                      exempt: tuple[str, ...], bounded: dict[str, int]) -> None:
    """Check that no table or key group contains more rows or keys after the second
    round than after the first.

    ``exempt`` names (time-bucketed data) are skipped. ``bounded`` names may
    change between rounds but must stay within their fixed bound, such as one
    row per state and queue.
    """
    grown = {}
    for name, count in sorted(second.items()):
        if name.startswith(exempt):
            continue
        if name in bounded:
            if count > bounded[name]:
                report.fail("T20", f"{name} has {count} rows or members; at most "
                                   f"{bounded[name]} are expected")
            continue
        before = first.get(name, 0)
        if count > before:
            grown[name] = (before, count)
            report.fail("T20", f"{name} grew from {before} to {count} between two identical "
                               "rounds, although every job of both rounds had expired")
    report.metrics["grown"] = grown
