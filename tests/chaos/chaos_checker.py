"""The offline checker: reads a run's logs and its storage, and checks invariants I1 to I7.

It reads the execution log, the fault log and the manifest that the harness
wrote, and each job through the public client API (``get_job``, plus
``list_jobs`` to find the jobs that recurring schedules created). It
returns the violations it found, each prefixed with its invariant, and the
measured figures.

- I1 no loss: every acknowledged job ends Succeeded after an execution that
  finished, or Failed/Deleted with a reason in its history.
- I2 bounded duplicates: a job runs again only after an execution that a
  fault interrupted (its process was killed or exited, or frozen while the
  job ran), and a killed execution never overlaps the next one.
- I3 no early run: no execution starts more than 1 s before the job's due
  time (scheduled jobs) or its occurrence (recurring jobs).
- I4 legal transitions: the history starts in an initial state, follows
  ``states.TRANSITIONS``, ends after Succeeded or Deleted (the harness never
  requeues), and attempt numbers of Processing entries only go up.
- I5 fencing: a job's Succeeded entry names the execution that held the
  last lease (the jobs return their server id and attempt), never one that
  was frozen and superseded, and a job has at most one Succeeded entry.
- I6 recurring: one job per occurrence of each recurring schedule, and no
  occurrence skipped while a scheduler ran.
- I7 continuations: a continuation leaves Awaiting for Enqueued exactly once
  if its parent reached a trigger state, and never runs otherwise.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from chaos_harness import read_lines

from backburner import Backburner, serialization, states
from backburner.job import Job

#: Allowed clock difference for "no early run", in seconds.
EARLY_TOLERANCE = 1.0
#: A killed execution may overlap its successor by this much: the harness
#: records the kill just after sending SIGKILL.
KILL_SLACK = 0.5


@dataclass
class Execution:
    """One run of a job, from the execution log."""

    job: str
    attempt: int
    server: str
    pid: int
    function: str
    start_wall: float
    start_mono: float
    end_wall: float | None = None
    end_mono: float | None = None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class Faults:
    """What the harness did to the servers, from the fault log."""

    #: pid -> monotonic time of its death (SIGKILL, power loss or observed exit).
    deaths: dict[int, float] = field(default_factory=dict)
    #: pid -> monotonic time of a SIGTERM (graceful stop).
    terms: dict[int, float] = field(default_factory=dict)
    #: pid -> [(freeze time, thaw time or None)].
    freezes: dict[int, list[tuple[float, float | None]]] = field(default_factory=dict)
    kills: int = 0
    power_losses: int = 0
    #: Wall clock minus monotonic clock, to turn fault times into wall times.
    wall_offset: float = 0.0
    #: Exits the harness did not cause, with their exit codes.
    unexpected_exits: list[int | None] = field(default_factory=list)


@dataclass
class Report:
    """The checker's verdict on one run."""

    violations: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    def fail(self, invariant: str, message: str) -> None:
        """Record one violation."""
        self.violations.append(f"{invariant}: {message}")


def load_executions(path: Path) -> dict[str, list[Execution]]:
    """Group the execution log by job, each list ordered by attempt."""
    runs: dict[tuple[str, int], Execution] = {}
    for line in read_lines(path):
        key = (line["job"], line["attempt"])
        if line["event"] == "start":
            extra = {k: v for k, v in line.items() if k not in
                     ("event", "job", "attempt", "server", "pid", "function", "wall", "mono")}
            runs[key] = Execution(line["job"], line["attempt"], line["server"], line["pid"],
                                  line["function"], line["wall"], line["mono"], fields=extra)
        elif line["event"] == "end" and key in runs:
            runs[key].end_wall = line["wall"]
            runs[key].end_mono = line["mono"]
    grouped: dict[str, list[Execution]] = defaultdict(list)
    for execution in sorted(runs.values(), key=lambda e: (e.job, e.attempt)):
        grouped[execution.job].append(execution)
    return dict(grouped)


def load_faults(path: Path) -> Faults:
    """Read the fault log."""
    faults = Faults()
    for line in read_lines(path):
        event, mono = line["event"], line["mono"]
        pid: Any = line.get("pid")
        faults.wall_offset = line["wall"] - mono
        if event in ("kill", "exit"):
            faults.deaths.setdefault(pid, mono)
            faults.kills += event == "kill"
            if event == "exit" and not line.get("by_harness"):
                faults.unexpected_exits.append(line.get("code"))
        elif event == "power_loss":
            faults.power_losses += 1
            for victim in line["pids"]:
                faults.deaths.setdefault(victim, mono)
        elif event == "term":
            faults.terms.setdefault(pid, mono)
        elif event == "freeze":
            faults.freezes.setdefault(pid, []).append((mono, None))
        elif event == "thaw":
            periods = faults.freezes.get(pid, [])
            if periods and periods[-1][1] is None:
                periods[-1] = (periods[-1][0], mono)
    return faults


def interruption(execution: Execution, faults: Faults,
                 recovered: bool = False) -> tuple[str, float] | None:
    """Return ("killed", "stopped" or "frozen", fault time) if a fault interrupted ``execution``.

    ``recovered`` is True when the watchdog took the execution's lease back. A
    process killed or frozen after the job's end line but before its outcome
    was stored is then interrupted too. A job released by a graceful stop counts
    as interrupted at the SIGTERM.
    """
    end = execution.end_mono if execution.end_mono is not None else float("inf")
    if recovered:
        end = float("inf")  # frozen after the end line, before the outcome was stored
    for frozen_at, thawed_at in faults.freezes.get(execution.pid, []):
        if frozen_at < end and (thawed_at is None or thawed_at > execution.start_mono):
            return "frozen", max(frozen_at, execution.start_mono)
    death = faults.deaths.get(execution.pid)
    if death is None or death < execution.start_mono:
        return None
    if execution.end_mono is not None and not recovered:
        return None
    term = faults.terms.get(execution.pid)
    if term is not None and execution.start_mono <= term <= death:
        return "stopped", term
    return "killed", death


def percentile(values: list[float], fraction: float) -> float | None:
    """Return the nearest-rank percentile of ``values``, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return round(ordered[index], 2)


class Checker:
    """Checks one run; call ``check`` once."""

    def __init__(self, workdir: Path, client: Backburner) -> None:
        self.workdir = workdir
        self.client = client
        self.report = Report()
        self.runs = load_executions(workdir / "executions.jsonl")
        self.faults = load_faults(workdir / "faults.jsonl")
        self.manifest: list[dict[str, Any]] = json.loads(
            (workdir / "manifest.json").read_text())
        self.jobs: dict[str, Job | None] = {}
        self.harness_deletes = {e["id"]: e["deleted_by_harness"] for e in self.manifest
                                if e.get("deleted_by_harness")}

    def interruption(self, execution: Execution) -> tuple[str, float] | None:
        """Return how a fault interrupted ``execution``, or None."""
        return interruption(execution, self.faults, self._recovered(execution))

    def _recovered(self, execution: Execution) -> bool:
        """Return True if the watchdog took back the lease of ``execution``."""
        job = self.job(execution.job)
        history = job.history if job is not None else []
        for entry, following in pairwise(history):
            if entry.state == states.PROCESSING and \
                    entry.data.get("attempt") == execution.attempt:
                return "crash_count" in following.data
        return False

    def job(self, job_id: str) -> Job | None:
        """Return the job from storage (cached)."""
        if job_id not in self.jobs:
            self.jobs[job_id] = self.client.get_job(job_id)
        return self.jobs[job_id]

    def check(self, recurring_ids: tuple[str, ...] = (), strict_ticks: bool = False) -> Report:
        """Run every check and return the report."""
        tick_jobs = self.check_recurring(recurring_ids, strict_ticks)
        expected = [e for e in self.manifest if e["expect"] != "derived"]
        self.check_no_loss([e["id"] for e in expected] + tick_jobs)
        every_job = set(self.runs) | {e["id"] for e in self.manifest} | set(tick_jobs)
        for job_id in sorted(every_job):
            self.check_duplicates(job_id)
            self.check_history(job_id)
            self.check_fencing(job_id)
        self.check_due_times()
        self.check_continuations()
        self.measure()
        return self.report

    # -- I1 --------------------------------------------------------------

    def check_no_loss(self, job_ids: list[str]) -> None:
        lost = not_succeeded = 0
        for job_id in job_ids:
            job = self.job(job_id)
            if job is None:
                lost += 1
                self.report.fail("I1", f"job {job_id} was acknowledged but is not in storage")
            elif job.state == states.SUCCEEDED:
                if not any(r.end_mono is not None for r in self.runs.get(job_id, [])):
                    lost += 1
                    self.report.fail("I1", f"job {job_id} is Succeeded but no execution "
                                           "finished")
            elif job.state in (states.FAILED, states.DELETED):
                not_succeeded += 1
                if not job.history or not job.history[-1].reason:
                    self.report.fail("I1", f"job {job_id} is {job.state} without a reason")
            else:
                lost += 1
                self.report.fail("I1", f"job {job_id} is still {job.state} after the run")
        self.report.metrics["jobs"] = len(job_ids)
        self.report.metrics["lost"] = lost
        self.report.metrics["failed_or_deleted"] = not_succeeded

    # -- I2 --------------------------------------------------------------

    def check_duplicates(self, job_id: str) -> None:
        runs = self.runs.get(job_id, [])
        for earlier, later in pairwise(runs):
            cause = self.interruption(earlier)
            if cause is None and not self._retried_after(job_id, earlier.attempt):
                self.report.fail("I2", f"job {job_id} ran again (attempt {later.attempt}) "
                                       f"after attempt {earlier.attempt} without a fault")
            elif cause is not None and cause[0] == "killed" and \
                    cause[1] > later.start_mono + KILL_SLACK:
                self.report.fail("I2", f"job {job_id}: attempt {later.attempt} started while "
                                       f"attempt {earlier.attempt} was still alive")

    def _retried_after(self, job_id: str, attempt: int) -> bool:
        """Return True if the history shows an automatic retry of ``attempt``."""
        job = self.job(job_id)
        if job is None:
            return False
        current = 0
        for entry in job.history:
            if entry.state == states.PROCESSING:
                current = int(entry.data.get("attempt", 0))
            elif entry.state == states.SCHEDULED and current == attempt and \
                    "retry" in entry.data:
                return True
        return False

    # -- I3 --------------------------------------------------------------

    def check_due_times(self) -> None:
        for entry in self.manifest:
            runs = self.runs.get(entry["id"], [])
            if entry.get("due") is not None and runs and \
                    runs[0].start_wall < entry["due"] - EARLY_TOLERANCE:
                self.report.fail("I3", f"job {entry['id']} started "
                                       f"{entry['due'] - runs[0].start_wall:.2f} s before "
                                       "its due time")

    # -- I4 --------------------------------------------------------------

    def check_history(self, job_id: str) -> None:
        job = self.job(job_id)
        if job is None or not job.history:
            return
        names = [entry.state for entry in job.history]
        if names[0] not in states.INITIAL_STATES:
            self.report.fail("I4", f"job {job_id} starts in {names[0]}")
        deletes = self.harness_deletes.get(job_id, 0)
        for source, target in pairwise(names):
            if target not in states.TRANSITIONS[source]:
                self.report.fail("I4", f"job {job_id}: illegal transition {source} -> {target}")
            if source in states.FINAL_STATES and target == states.DELETED and deletes:
                deletes -= 1  # the harness deleted it on purpose
            elif source in states.FINAL_STATES:
                self.report.fail("I4", f"job {job_id} left final state {source} for {target}")
        attempts = [int(e.data.get("attempt", 0)) for e in job.history
                    if e.state == states.PROCESSING]
        if any(b <= a for a, b in pairwise(attempts)):
            self.report.fail("I4", f"job {job_id}: attempt numbers not increasing: {attempts}")
        if attempts and job.attempt != attempts[-1]:
            self.report.fail("I4", f"job {job_id}: attempt {job.attempt} but last Processing "
                                   f"entry has attempt {attempts[-1]}")

    # -- I5 --------------------------------------------------------------

    def check_fencing(self, job_id: str) -> None:
        job = self.job(job_id)
        if job is None:
            return
        succeeded = [i for i, e in enumerate(job.history) if e.state == states.SUCCEEDED]
        if len(succeeded) > 1:
            self.report.fail("I5", f"job {job_id} has {len(succeeded)} Succeeded entries")
        runs = self.runs.get(job_id, [])
        superseded = {(r.server, r.attempt) for r in runs[:-1]
                      if (self.interruption(r) or ("", 0))[0] == "frozen"}
        for index in succeeded:
            writer = self._result_identity(job.history[index].data)
            if writer is None:
                continue
            lease = next((e.data for e in reversed(job.history[:index])
                          if e.state == states.PROCESSING), {})
            holder = (lease.get("server_id"), lease.get("attempt"))
            if writer != holder:
                self.report.fail("I5", f"job {job_id}: Succeeded written by {writer}, but the "
                                       f"lease was held by {holder}")
            if writer in superseded:
                self.report.fail("I5", f"job {job_id}: the result of frozen attempt "
                                       f"{writer[1]} was accepted after its lease was recovered")

    @staticmethod
    def _result_identity(data: dict[str, Any]) -> tuple[str, int] | None:
        if "result" not in data:
            return None
        result = serialization.loads(data["result"])
        if not isinstance(result, dict) or "server" not in result:
            return None
        return result["server"], result["attempt"]

    # -- I6 --------------------------------------------------------------

    def check_recurring(self, recurring_ids: tuple[str, ...], strict_ticks: bool) -> list[str]:
        """Check one job per occurrence; return the ids of the jobs the schedules created."""
        found: list[str] = []
        for recurring_id in recurring_ids:
            jobs = self._jobs_of(recurring_id)
            found += [job.id for job in jobs]
            by_occurrence: dict[float, list[str]] = defaultdict(list)
            for job in jobs:
                if job.occurrence is not None:
                    by_occurrence[job.occurrence.timestamp()].append(job.id)
            for occurrence, ids in by_occurrence.items():
                if len(ids) > 1:
                    self.report.fail("I6", f"recurring {recurring_id}: occurrence "
                                           f"{occurrence} has {len(ids)} jobs {ids}")
            for job in jobs:
                runs = self.runs.get(job.id, [])
                if job.occurrence is not None and runs and \
                        runs[0].start_wall < job.occurrence.timestamp() - EARLY_TOLERANCE:
                    self.report.fail("I3", f"recurring job {job.id} started before its "
                                           "occurrence")
            missing = self._missing_seconds(sorted(by_occurrence))
            self.report.metrics[f"ticks_{recurring_id}"] = len(by_occurrence)
            self.report.metrics[f"missed_ticks_{recurring_id}"] = len(missing)
            if strict_ticks and missing:
                self.report.fail("I6", f"recurring {recurring_id}: {len(missing)} occurrence(s) "
                                       f"without a job, first at {missing[0]}")
        return found

    def _jobs_of(self, recurring_id: str) -> list[Job]:
        ids = set(self.runs)
        for state in states.ALL_STATES:
            ids |= {r.id for r in self.client.storage.list_jobs(state, limit=100_000)}
        jobs = []
        for job_id in sorted(ids):
            job = self.job(job_id)
            if job is not None and job.recurring_id == recurring_id:
                jobs.append(job)
        return jobs

    @staticmethod
    def _missing_seconds(occurrences: list[float]) -> list[float]:
        if not occurrences:
            return []
        present = {round(o) for o in occurrences}
        start, end = round(occurrences[0]), round(occurrences[-1])
        return [float(s) for s in range(start, end + 1) if s not in present]

    # -- I7 --------------------------------------------------------------

    def check_continuations(self) -> None:
        triggered = 0
        for entry in self.manifest:
            if entry["kind"] != "continuation":
                continue
            job, parent = self.job(entry["id"]), self.job(entry["parent"])
            if job is None or parent is None:
                self.report.fail("I7", f"continuation {entry['id']} or its parent is missing")
                continue
            expected = states.continuation_outcome(entry["on"], release_state(parent, job))
            releases = sum(1 for a, b in pairwise(job.history)
                           if a.state == states.AWAITING and b.state != states.AWAITING)
            runs = self.runs.get(entry["id"], [])
            if expected == states.ENQUEUED:
                triggered += 1
                self._check_triggered(entry["id"], job, releases, runs)
            elif runs:
                self.report.fail("I7", f"continuation {entry['id']} ran although its parent is "
                                       f"{parent.state} and it waits for {entry['on']}")
            elif expected is None and job.state != states.AWAITING:
                self.report.fail("I7", f"continuation {entry['id']} is {job.state} while its "
                                       f"parent is still {parent.state}")
            elif expected == states.DELETED and job.state != states.DELETED:
                self.report.fail("I7", f"continuation {entry['id']} is {job.state}, expected "
                                       f"Deleted (parent {parent.state}, on={entry['on']})")
        self.report.metrics["continuations_triggered"] = triggered

    def _check_triggered(self, job_id: str, job: Job, releases: int,
                         runs: list[Execution]) -> None:
        if releases != 1:
            self.report.fail("I7", f"continuation {job_id} left Awaiting {releases} times")
        if job.state != states.SUCCEEDED:
            self.report.fail("I7", f"continuation {job_id} is {job.state}, expected Succeeded")
        if not any(r.end_mono is not None for r in runs):
            self.report.fail("I7", f"continuation {job_id} was triggered but never finished")

    # -- figures ---------------------------------------------------------

    def measure(self) -> None:
        recovery: dict[str, list[float]] = {"killed": [], "frozen": [], "stopped": []}
        requeue: dict[str, list[float]] = {"killed": [], "frozen": [], "stopped": []}
        duplicates = zombie_finishes = lost_outcomes = 0
        for runs in self.runs.values():
            duplicates += len(runs) - 1
            for earlier, later in pairwise(runs):
                cause = self.interruption(earlier)
                if cause is None:
                    continue
                recovery[cause[0]].append(later.start_mono - cause[1])
                requeued_at = self._requeued_at(earlier)
                if requeued_at is not None:
                    requeue[cause[0]].append(
                        requeued_at - (cause[1] + self.faults.wall_offset))
                zombie_finishes += cause[0] == "frozen" and earlier.end_mono is not None
                lost_outcomes += cause[0] == "killed" and earlier.end_mono is not None
        metrics = self.report.metrics
        metrics["executions"] = sum(len(runs) for runs in self.runs.values())
        metrics["duplicates"] = duplicates
        metrics["kills"] = self.faults.kills
        metrics["power_losses"] = self.faults.power_losses
        metrics["freezes"] = sum(len(p) for p in self.faults.freezes.values())
        metrics["interrupted_by_kill"] = len(recovery["killed"])
        metrics["requeue_kill_p50_s"] = percentile(requeue["killed"], 0.50)
        metrics["requeue_kill_p99_s"] = percentile(requeue["killed"], 0.99)
        metrics["requeue_freeze_p99_s"] = percentile(requeue["frozen"], 0.99)
        metrics["recovery_kill_p50_s"] = percentile(recovery["killed"], 0.50)
        metrics["recovery_kill_p99_s"] = percentile(recovery["killed"], 0.99)
        metrics["recovery_kill_max_s"] = percentile(recovery["killed"], 1.0)
        metrics["interrupted_by_freeze"] = len(recovery["frozen"])
        metrics["recovery_freeze_p50_s"] = percentile(recovery["frozen"], 0.50)
        metrics["recovery_freeze_p99_s"] = percentile(recovery["frozen"], 0.99)
        metrics["zombie_finishes_rejected"] = zombie_finishes
        metrics["killed_before_outcome_stored"] = lost_outcomes
        metrics["released_by_stop"] = len(recovery["stopped"])
        metrics["requeue_stop_max_s"] = percentile(requeue["stopped"], 1.0)
        metrics["unexpected_server_exits"] = len(self.faults.unexpected_exits)
        if recovery["killed"]:
            metrics["recovery_kill_mean_s"] = round(statistics.fmean(recovery["killed"]), 2)


    def _requeued_at(self, execution: Execution) -> float | None:
        """Return the storage time at which the watchdog put ``execution``'s job back."""
        job = self.job(execution.job)
        if job is None:
            return None
        history = job.history
        for entry, following in pairwise(history):
            if entry.state == states.PROCESSING and \
                    entry.data.get("attempt") == execution.attempt and \
                    following.state in (states.ENQUEUED, states.FAILED):
                return following.at.timestamp()
        return None


def release_state(parent: Job, continuation: Job) -> str:
    """Return the parent state that decides the continuation's fate.

    That is the parent's state when the continuation was created, if final,
    else the first final state the parent reached afterwards, else its
    current state. Later changes (a delete after Succeeded) do not count.
    """
    created = continuation.created_at
    before = [e for e in parent.history if e.at <= created]
    if before and before[-1].state in states.FINAL_STATES:
        return before[-1].state
    after = [e for e in parent.history if e.at > created and e.state in states.FINAL_STATES]
    return after[0].state if after else parent.state


def check_run(workdir: Path, client: Backburner, recurring_ids: tuple[str, ...] = (),
              strict_ticks: bool = False) -> Report:
    """Check the run in ``workdir`` against its storage; return the report."""
    return Checker(workdir, client).check(recurring_ids, strict_ticks)
