"""Load scenarios of the battery: soak (T15) and result retention (T20).

Both run ``loadapp`` servers with a short job retention and expiration
interval, so that Succeeded jobs expire within the run, and measure what the
storage holds: its size in bytes and its rows (SQLite, PostgreSQL) or keys
(Redis). Servers are started as in ``chaos_load``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from chaos_checker import Report, load_executions
from chaos_harness import POSTGRES_URL, REDIS_URL, Run, append_line, wait_for
from chaos_load import (
    LoadServer,
    active_jobs,
    enqueue_batch,
    start_load_servers,
    unexpected_exits,
    use_load_app,
)
from chaos_load_checker import check_counts_flat, check_no_loss_with_expiry

from backburner import states

logger = logging.getLogger(__name__)

#: Time-bucketed counters (per minute for 24 h, per hour for 30 days) grow
#: with the clock, not with the jobs, so the row and key checks skip them.
COUNTER_NAMES = ("counters", "keys:counter", "members:counter")


# -- storage measurements ---------------------------------------------------------


def url_option(url: str, name: str) -> str:
    """Return the query option ``name`` of a storage URL (the schema or key prefix)."""
    return parse_qs(urlsplit(url).query)[name][0]


def storage_bytes(run: Run) -> int:
    """Return the storage's size: the SQLite files, the schema's PostgreSQL relations
    with their indexes and TOAST, or the Redis memory of the prefix's keys."""
    name, url = run.backend.name, run.backend.url
    if name == "sqlite":
        path = Path(urlsplit(url).path)
        return sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal")) if p.exists())
    if name == "postgres":
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            row = conn.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind = 'r'",
                (url_option(url, "schema"),)).fetchone()
        return int(row[0]) if row else 0
    import redis

    with redis.Redis.from_url(REDIS_URL) as client:
        keys = list(client.scan_iter(match=f"{url_option(url, 'prefix')}*", count=1000))
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.memory_usage(key)
        return sum(size or 0 for size in pipe.execute())


def storage_counts(run: Run) -> dict[str, int]:
    """Return rows per table (SQLite, PostgreSQL) or, for Redis, keys and collection
    members per key kind (the first part of the name after the prefix)."""
    name, url = run.backend.name, run.backend.url
    if name == "sqlite":
        import sqlite3

        with sqlite3.connect(urlsplit(url).path) as conn:
            tables = [row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")]
            return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    if name == "postgres":
        import psycopg

        schema = url_option(url, "schema")
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            tables = [row[0] for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))]
            counts = {}
            for table in tables:
                row = conn.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()
                counts[table] = int(row[0]) if row else 0
            return counts
    return redis_counts(url_option(url, "prefix"))


def redis_counts(prefix: str) -> dict[str, int]:
    """Count the keys and collection members under ``prefix``, by key kind."""
    import redis

    counts: Counter[str] = Counter()
    sizes = {"hash": "hlen", "list": "llen", "set": "scard", "zset": "zcard"}
    with redis.Redis.from_url(REDIS_URL, decode_responses=True) as client:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.type(key)
        kinds = pipe.execute()
        pipe = client.pipeline(transaction=False)
        for key, kind in zip(keys, kinds):
            getattr(pipe, sizes.get(kind, "exists"))(key)
        for key, size in zip(keys, pipe.execute()):
            group = key[len(prefix):].split(":", 1)[0]
            counts[f"keys:{group}"] += 1
            counts[f"members:{group}"] += int(size)
    return dict(counts)


def rss_kib(pid: int) -> int | None:
    """Return a process's resident set size in KiB from /proc, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


# -- T15: soak ------------------------------------------------------------------------


def soak(run: Run, seconds: float, rate: float = 50.0, fail_share: float = 0.1,
         servers: int = 2, retention: float = 30.0, expiration_interval: float = 10.0,
         warmup: float | None = None, sample_every: float = 5.0,
         storage_every: float = 15.0, vacuum: bool = True) -> Report:
    """Enqueue ``rate`` jobs a second for ``seconds`` seconds and sample RSS and storage size.

    A ``fail_share`` of the jobs fail their first run, and a recurring job runs
    every minute.

    Failing jobs succeed on their retry, so that they expire like the rest
    (Failed jobs never expire). Growth is measured from the end of the warm-up
    (default: a third of the run, at least retention plus two expiration
    intervals) to the end of the load. With ``vacuum``, a PostgreSQL server
    whose autovacuum is off gets a VACUUM of the schema's tables at each
    storage sample, standing in for autovacuum.
    """
    warmup = warmup if warmup is not None else max(seconds / 3,
                                                   retention + 2 * expiration_interval)
    use_load_app(run, retention)
    settings = LoadServer(workers=run.workers, retention=retention,
                          expiration_interval=expiration_interval)
    start_load_servers(run, servers, settings)
    run.client.recurring.add_or_update("load-minute", "load.tick", "* * * * *")
    samples_path = run.workdir / "soak-samples.jsonl"
    vacuuming = vacuum and run.backend.name == "postgres" and not autovacuum_on()

    begin = time.monotonic()
    sent = 0
    next_sample = next_storage = begin
    while (now := time.monotonic()) < begin + seconds:
        due = math.floor((now - begin) * rate) - sent
        calls = [(run.rng.random() < fail_share,) for _ in range(due)]
        sent += len(enqueue_batch(run, "soak", "load.soak", calls))
        if now >= next_sample:
            sample_rss(run, samples_path, now - begin)
            next_sample += sample_every
        if now >= next_storage:
            if vacuuming:
                vacuum_schema(run)
            sample_storage(run, samples_path, now - begin)
            next_storage += storage_every
        run.note_exits()
        time.sleep(0.1)
    sample_storage(run, samples_path, time.monotonic() - begin)
    run.client.recurring.remove("load-minute")

    run.settle(retention + 240)
    run.note_exits()
    run.save_manifest()
    report = Report()
    check_no_loss_with_expiry(report, run.workdir, run.client, run.manifest, "T15")
    summarize_samples(report, samples_path, warmup)
    report.metrics["rate_per_s"] = round(sent / seconds, 1)
    report.metrics["vacuumed_by_harness"] = vacuuming
    report.metrics["recurring_runs"] = sum(
        1 for runs in load_executions(run.exec_log).values() if runs[0].function == "load.tick")
    unexpected_exits(run, report)
    return report


def autovacuum_on() -> bool:
    """Return True if the PostgreSQL server runs autovacuum."""
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        row = conn.execute("SHOW autovacuum").fetchone()
    return row is not None and row[0] == "on"


def vacuum_schema(run: Run) -> None:
    """VACUUM every table of the run's PostgreSQL schema (never another schema)."""
    import psycopg

    schema = url_option(run.backend.url, "schema")
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))]
        for table in tables:
            conn.execute(f'VACUUM "{schema}"."{table}"')


def sample_rss(run: Run, path: Path, elapsed: float) -> None:
    """Append each live server's RSS to the sample file."""
    for server in run.live():
        rss = rss_kib(server.pid)
        if rss is not None:
            append_line(path, {"kind": "rss", "t": round(elapsed, 1), "pid": server.pid,
                               "rss_kib": rss})


def sample_storage(run: Run, path: Path, elapsed: float) -> None:
    """Append the storage size and its job count to the sample file."""
    jobs = sum(run.client.storage.count_jobs_by_state().values())
    append_line(path, {"kind": "storage", "t": round(elapsed, 1),
                       "bytes": storage_bytes(run), "jobs": jobs})


def summarize_samples(report: Report, path: Path, warmup: float) -> None:
    """Report RSS and storage growth from the end of the warm-up to the last sample."""
    lines = [json.loads(text) for text in path.read_text().splitlines()]
    rss = [line for line in lines if line["kind"] == "rss"]
    stored = [line for line in lines if line["kind"] == "storage"]
    report.metrics["rss_samples"] = len(rss)
    report.metrics["storage_samples"] = len(stored)

    growth = []
    for pid in sorted({line["pid"] for line in rss}):
        mine = [line["rss_kib"] for line in rss if line["pid"] == pid and line["t"] >= warmup]
        if len(mine) >= 2:
            growth.append(100 * (mine[-1] - mine[0]) / mine[0])
    report.metrics["rss_max_mib"] = round(max((line["rss_kib"] for line in rss), default=0)
                                          / 1024, 1)
    report.metrics["rss_growth_pct"] = round(max(growth), 1) if growth else None

    after = [line for line in stored if line["t"] >= warmup]
    if len(after) >= 2:
        first, last = after[0], after[-1]
        report.metrics["storage_mib_after_warmup"] = round(first["bytes"] / 2**20, 2)
        report.metrics["storage_mib_end"] = round(last["bytes"] / 2**20, 2)
        report.metrics["storage_growth_pct"] = round(
            100 * (last["bytes"] - first["bytes"]) / max(first["bytes"], 1), 1)
        report.metrics["stored_jobs_after_warmup"] = first["jobs"]
        report.metrics["stored_jobs_end"] = last["jobs"]


# -- T20: result retention ---------------------------------------------------------------


def retention(run: Run, jobs: int, fail_share: float = 0.05, retention_s: float = 15.0,
              expiration_interval: float = 5.0, servers: int = 2, rounds: int = 2) -> Report:
    """Run ``rounds`` identical rounds of ``jobs / rounds`` jobs with a short retention.

    Each round checks that Succeeded jobs expire and Failed jobs stay, then
    deletes the Failed jobs and waits until every job has expired. The rows
    and keys left after each round must not grow from round to round.
    """
    use_load_app(run, retention_s)
    settings = LoadServer(workers=run.workers, retention=retention_s,
                          expiration_interval=expiration_interval)
    start_load_servers(run, servers, settings)
    report = Report()
    per_round = jobs // rounds
    failing = max(1, round(per_round * fail_share))
    after_rounds: list[dict[str, int]] = []
    report.metrics["counts_before"] = storage_counts(run)

    for number in range(rounds):
        calls = [(index < failing,) for index in range(per_round)]
        run.rng.shuffle(calls)
        ids = enqueue_batch(run, f"round{number}", "load.noop", calls)
        expect_failed = {job_id for job_id, (fail,) in zip(ids, calls) if fail}
        for entry in run.manifest[-per_round:]:
            if entry["id"] in expect_failed:
                entry["expect"] = states.FAILED
        peak = run_round(run, report, per_round, failing, retention_s, expiration_interval)
        report.metrics[f"peak_bytes_round{number}"] = peak
        after_rounds.append(storage_counts(run))

    report.metrics["counts_after_rounds"] = after_rounds
    per_state = len(states.ALL_STATES)  # one queue, "default"
    bounded = {"job_counts": per_state, "keys:state-counts": 1,
               "members:state-counts": per_state}
    check_counts_flat(report, after_rounds[0], after_rounds[-1], COUNTER_NAMES, bounded)
    report.metrics["jobs"] = len(run.manifest)
    report.metrics["failed_per_round"] = failing
    unexpected_exits(run, report)
    return report


def run_round(run: Run, report: Report, jobs: int, failing: int, retention_s: float,
              interval: float) -> int:
    """Run one round to its end and return the storage size after its jobs ran.

    It waits for the jobs to run and the Succeeded ones to expire, checks
    them, deletes the Failed ones and waits until no job is left.
    """
    timeout = jobs / 20 + retention_s + interval + 120
    wait_for(lambda: not active_jobs(run), timeout, "the round's jobs to run", interval=0.25)
    peak = storage_bytes(run)
    wait_for(lambda: run.client.storage.count_jobs_by_state()[states.SUCCEEDED] == 0,
             retention_s + 2 * interval + 120, "every Succeeded job to expire", interval=0.25)

    kept = run.client.storage.count_jobs_by_state()[states.FAILED]
    report.metrics["failed_kept_after_expiry"] = kept
    if kept != failing:
        report.fail("T20", f"{kept} Failed job(s) kept after expiration; expected {failing}")
    entries = run.manifest[-jobs:]
    check_no_loss_with_expiry(report, run.workdir, run.client, entries, "T20")

    for entry in entries:
        if entry["expect"] == states.FAILED:
            run.client.delete(entry["id"])
    wait_for(lambda: sum(run.client.storage.count_jobs_by_state().values()) == 0,
             retention_s + 2 * interval + 120, "every deleted job to expire", interval=0.25)
    return peak

