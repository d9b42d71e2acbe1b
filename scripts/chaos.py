#!/usr/bin/env python3
"""Run the fault-injection battery on SQLite, PostgreSQL and Redis and print the figures.

    python scripts/chaos.py                      # full battery, all backends (about 30 min)
    python scripts/chaos.py --scale quick        # smaller counts (about 8 min)
    python scripts/chaos.py --backends sqlite --scenarios t1,t3

PostgreSQL must listen on 127.0.0.1:5432 (database ``test``, trust auth)
and Redis on 127.0.0.1:6379. Each scenario uses a schema or key prefix of
its own and removes it afterwards. Backends run in parallel, one process
each, unless ``--sequential``. Results go to ``--out`` (default
``chaos-results/``): the run folders (execution and fault logs), one JSON
file per backend, ``results.json`` and ``results.md``. The exit code is 1
when any invariant was violated.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "chaos"))

import chaos_faults as faults
import chaos_faults_poison as poison_faults
import chaos_faults_skew as skew
import chaos_faults_sqlite as sqlite_faults
import chaos_load as load
import chaos_scenarios as scenarios
import chaos_soak as soak
from chaos_checker import Report
from chaos_harness import BACKENDS, Run

logger = logging.getLogger("chaos")

Scenario = Callable[[Run], Report]

#: Scenario id -> (title, what it injects, full-size call, quick call).
PLAN: dict[str, tuple[str, str, Scenario, Scenario]] = {
    "t1": ("SIGKILL mid-job",
           "SIGKILL a random busy server of 4 every 4 s, replacement started 2 s later",
           lambda run: scenarios.sigkill(run, kills=100, interval=4.0),
           lambda run: scenarios.sigkill(run, kills=10, interval=4.0)),
    "t2": ("power loss",
           "SIGKILL all 4 servers at once, restart them 10 s later",
           lambda run: scenarios.power_loss(run, rounds=10),
           lambda run: scenarios.power_loss(run, rounds=2)),
    "t3": ("zombie server",
           "SIGSTOP 2 busy servers of 4 for 32 s (server timeout 20 s), then SIGCONT",
           lambda run: scenarios.zombie(run, rounds=4),
           lambda run: scenarios.zombie(run, rounds=1)),
    "t4": ("graceful stop",
           "SIGTERM a server running 4 short and 4 long jobs, shutdown timeout 5 s",
           scenarios.graceful, scenarios.graceful),
    "t5": ("poison job",
           "a job that SIGKILLs its own server, among normal jobs; servers restarted",
           lambda run: scenarios.poison(run, normal=100),
           lambda run: scenarios.poison(run, normal=30)),
    "t8": ("scheduler uniqueness",
           ("per-second recurring job and delayed jobs; every 6 s kill or freeze (25 s) one "
            "of 5 servers, at least one left running"),
           lambda run: scenarios.scheduler(run, seconds=180.0, servers=5),
           lambda run: scenarios.scheduler(run, seconds=60.0, servers=5)),
    "t12": ("payload sizes", "arguments of 0 B to 10 MiB around the 1 MiB limit",
            scenarios.payload_sizes, scenarios.payload_sizes),
    "t13": ("hostile values",
            ("NUL, lone surrogates, astral and RTL characters, bytes, huge ints, NaN, "
             "deep nesting, tag look-alikes, random strings"),
            lambda run: scenarios.hostile_values(run, random_count=200),
            lambda run: scenarios.hostile_values(run, random_count=40)),
    "t16": ("continuation races",
            ("continuations created at random moments around their parent's end, 10 % of "
             "parents deleted, a busy server of 3 SIGKILLed every 4 s"),
            lambda run: scenarios.continuations(run, parents=300),
            lambda run: scenarios.continuations(run, parents=60)),
    "t5b": ("memory exhaustion",
            ("a job that allocates until its server's 1 GiB address-space limit (RLIMIT_AS) "
             "stops it, among 200 (quick: 30) normal jobs; 2 servers, dead ones restarted"),
            lambda run: poison_faults.memory_exhaustion(run, normal=200),
            lambda run: poison_faults.memory_exhaustion(run, normal=30)),
    "t6": ("storage outage",
           ("every connection of 2 servers ended (pg_terminate_backend, CLIENT KILL) every "
            "4 s under load, 10 times (quick: 3); on Redis also a private AOF redis-server "
            "SIGKILLed, down 5 s and restarted, 3 times (quick: 1); not for SQLite"),
           lambda run: faults.storage_outage(run, kills=10, restarts=3),
           lambda run: faults.storage_outage(run, kills=3, restarts=1)),
    "t7": ("SQLite concurrency",
           ("a client process enqueuing 50 jobs/s and 2 servers on one SQLite file; a server "
            "or the client SIGKILLed every 0.3 to 2 s, 50 times (quick: 10), "
            "integrity_check after each kill; SQLite only"),
           lambda run: sqlite_faults.sqlite_kills(run, kills=50),
           lambda run: sqlite_faults.sqlite_kills(run, kills=10)),
    "t10": ("clock skew",
            ("servers at -120 s, 0 and +120 s (libfaketime; on SQLite all at +120 s), 100 "
             "(quick: 20) delayed jobs and a per-second recurring job over 120 s (quick: "
             "30 s), 2 to 6 s jobs on every server"),
            lambda run: skew.clock_skew(run, seconds=120.0, delayed=100),
            lambda run: skew.clock_skew(run, seconds=30.0, delayed=20)),
    "t19": ("poisoned storage",
            ("crafted job rows and keys written into the storage: pickle payloads, "
             "unregistered and os.system-like functions, malformed JSON, wrong types; 40 "
             "normal jobs alongside"),
            poison_faults.poisoned_storage, poison_faults.poisoned_storage),
    "t11": ("retry storm",
            ("jobs with the default backoff fail while a dependency (a flag file) is down "
             "for 240 s (quick: 60 s), then it recovers; 2 servers"),
            lambda run: load.retry_storm(run, jobs=10_000, outage=240.0, max_share_pct=2.0),
            lambda run: load.retry_storm(run, jobs=1_000, outage=60.0, max_share_pct=2.0)),
    "t14": ("starvation and fairness",
            ("queue a flooded with 1-s jobs, queue b fed 1 job/s for 300 s (quick: 60 s), "
             "3 of 8 workers busy with long jobs; servers list b before a"),
            lambda run: load.starvation(run, seconds=300.0, b_wait_limit=5.0),
            lambda run: load.starvation(run, seconds=60.0, b_wait_limit=5.0)),
    "t15": ("soak",
            ("50 jobs/s for 30 min (quick: 3 min), 10 % failing their first run, a recurring "
             "job every minute; retention 300 s (quick: 30 s)"),
            lambda run: soak.soak(run, seconds=1800.0, retention=300.0,
                                  expiration_interval=60.0),
            lambda run: soak.soak(run, seconds=180.0, retention=30.0,
                                  expiration_interval=10.0)),
    "t20": ("result retention",
            ("100,000 jobs (quick: 10,000) in 2 rounds, 5 % failing for good, retention 15 s; "
             "Failed jobs deleted after the check"),
            lambda run: soak.retention(run, jobs=100_000),
            lambda run: soak.retention(run, jobs=10_000)),
}

#: Figures shown in the summary table, in order.
SUMMARY = ("jobs", "lost", "duplicates", "kills", "power_losses", "freezes",
           "interrupted_by_kill", "requeue_kill_p50_s", "requeue_kill_p99_s",
           "recovery_kill_p50_s", "recovery_kill_p99_s",
           "recovery_kill_max_s", "interrupted_by_freeze", "requeue_freeze_p99_s",
           "recovery_freeze_p50_s", "recovery_freeze_p99_s", "zombie_finishes_rejected",
           "released_by_stop", "requeue_stop_max_s", "unexpected_server_exits",
           "failed_or_deleted", "ticks_chaos-tick", "missed_ticks_chaos-tick",
           "continuations_triggered", "poison_runs", "exit_code", "exit_after_s", "rejected",
           "applies", "storage_kills", "sessions_ended", "resume_after_kill_max_s",
           "storage_restarts", "resume_after_restart_max_s", "restart_jobs", "restart_lost",
           "enqueue_error_while_down", "client_kills", "enqueue_rate_per_s",
           "integrity_checks", "integrity_not_ok", "logs_with_database_locked",
           "offsets_seen_s", "leases_taken_from_live_servers", "earliest_start_before_due_s",
           "ticks_chaos-skew", "missed_ticks_chaos-skew", "crafted", "crafted_failed",
           "canaries_created", "server_up_at_end", "hog_runs", "hog_outcome",
           "server_exits_caused",
           "retries", "retry_wave_max_share_pct", "b_wait_p50_s", "b_wait_p99_s",
           "b_wait_max_s", "waited_while_idle", "claim_to_start_max_s", "a_backlog_at_feed_end",
           "rate_per_s", "recurring_runs", "rss_max_mib", "rss_growth_pct",
           "storage_mib_after_warmup", "storage_mib_end", "storage_growth_pct",
           "stored_jobs_after_warmup", "stored_jobs_end", "failed_kept",
           "failed_kept_after_expiry", "target_met")


def run_backend(backend: str, chosen: list[str], scale: str, out: Path) -> dict[str, Any]:
    """Run the chosen scenarios on one backend, one after the other; return the results."""
    results: dict[str, Any] = {}
    for key in chosen:
        title, _, full, quick = PLAN[key]
        workdir = out / backend / key
        started = time.monotonic()
        logger.info("%s: %s (%s) starting", backend, key, title)
        try:
            with scenarios.open_run(backend, workdir) as run:
                report = (full if scale == "full" else quick)(run)
            entry: dict[str, Any] = {"violations": report.violations,
                                     "metrics": report.metrics}
        except Exception as exc:  # a scenario that breaks is reported, and the rest still run
            logger.exception("%s: %s failed to complete", backend, key)
            entry = {"violations": [f"scenario error: {type(exc).__name__}: {exc}"],
                     "metrics": {}, "traceback": traceback.format_exc()}
        entry["seconds"] = round(time.monotonic() - started, 1)
        results[key] = entry
        logger.info("%s: %s done in %.0f s, %d violation(s)", backend, key, entry["seconds"],
                    len(entry["violations"]))
        (out / f"{backend}.json").write_text(json.dumps(results, indent=2, default=str))
    return results


def render(results: dict[str, dict[str, Any]], chosen: list[str], scale: str) -> str:
    """Return the results as Markdown tables, one per scenario."""
    backends = list(results)
    lines = [f"# Chaos battery results ({scale} scale)", ""]
    for key in chosen:
        title, injects, _, _ = PLAN[key]
        lines += [f"## {key.upper()} {title}", "", f"Injects: {injects}.", "",
                  "| figure | " + " | ".join(backends) + " |",
                  "|---|" + "---|" * len(backends)]
        entries = [results[b].get(key, {}) for b in backends]
        for name in SUMMARY:
            if any(name in e.get("metrics", {}) for e in entries):
                cells = [str(e.get("metrics", {}).get(name, "")) for e in entries]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("| violations | " + " | ".join(
            str(len(e.get("violations", []))) for e in entries) + " |")
        lines.append("| seconds | " + " | ".join(str(e.get("seconds", "")) for e in entries)
                     + " |")
        lines.append("")
        for backend, entry in zip(backends, entries):
            for violation in entry.get("violations", [])[:20]:
                lines.append(f"- {backend}: {violation}")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="Comma-separated backends: sqlite, postgres, redis.")
    parser.add_argument("--scenarios", default=",".join(PLAN),
                        help=f"Comma-separated scenario ids: {', '.join(PLAN)}.")
    parser.add_argument("--scale", choices=("full", "quick"), default="full",
                        help="full: the published counts; quick: smaller counts.")
    parser.add_argument("--out", type=Path, default=ROOT / "chaos-results",
                        help="Folder for logs and results.")
    parser.add_argument("--sequential", action="store_true",
                        help="Run the backends one after the other instead of in parallel.")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    chosen = [key.strip().lower() for key in args.scenarios.split(",") if key.strip()]
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    unknown = [key for key in chosen if key not in PLAN] + \
              [name for name in backends if name not in BACKENDS]
    if unknown:
        parser.error(f"unknown scenario or backend: {', '.join(unknown)}")
    args.out.mkdir(parents=True, exist_ok=True)

    if args.worker:
        run_backend(args.worker, chosen, args.scale, args.out)
        return 0

    started = time.monotonic()
    if args.sequential:
        results = {b: run_backend(b, chosen, args.scale, args.out) for b in backends}
    else:
        results = run_workers(backends, args)
    text = render(results, chosen, args.scale)
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (args.out / "results.md").write_text(text)
    print(text)
    print(f"total {time.monotonic() - started:.0f} s; results in {args.out}")
    return 1 if any(e.get("violations") for r in results.values() for e in r.values()) else 0


def run_workers(backends: list[str], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Run one worker process per backend at once; return their results."""
    workers = [subprocess.Popen([sys.executable, __file__, "--worker", backend,
                                 "--scenarios", args.scenarios, "--scale", args.scale,
                                 "--out", str(args.out)]) for backend in backends]
    for worker in workers:
        worker.wait()
    results = {}
    for backend in backends:
        path = args.out / f"{backend}.json"
        results[backend] = json.loads(path.read_text()) if path.exists() else {}
    return results


if __name__ == "__main__":
    sys.exit(main())
