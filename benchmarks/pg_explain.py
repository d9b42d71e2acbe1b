"""Show the query plans of the PostgreSQL storage on a table of millions of jobs.

Fills a throwaway schema with ``--rows`` jobs (one history row each) with
``INSERT ... SELECT generate_series``, then runs the storage's own operations
once each. Its connections load ``auto_explain`` (so the URL's user must be a
superuser), which sends the plan and time of every statement, including the
ones inside ``claim_jobs``, back to the connection as a notice. Prints those
plans, and drops the schema at the end unless ``--keep``.

    python benchmarks/pg_explain.py [--url postgresql://postgres@127.0.0.1:5432/test]
                                    [--rows 2500000] [--keep]
"""

from __future__ import annotations

import argparse
import re
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import psycopg

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backburner import states
from backburner.ids import new_job_id
from backburner.records import NewJob, StateChange
from backburner.storage.postgres import PostgresStorage

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
QUEUES = ["q1", "q2", "q3", "q4", "q5"]

#: Share of the rows in each state; Succeeded takes the rest.
SHARES = {
    states.ENQUEUED: 0.05,
    states.SCHEDULED: 0.04,
    states.DELETED: 0.05,
    states.FAILED: 0.04,
    states.AWAITING: 0.02,
}
#: Processing jobs: on a live server, and on a server that stopped heartbeating.
PROCESSING_LIVE = 500
PROCESSING_DEAD = 100
#: Succeeded jobs past their expiry, and Scheduled jobs past their due time.
EXPIRED = 5_000
DUE = 2_000


#: Server settings of the storage's connections: a plan for every statement, sent
#: to the client as a notice.
EXPLAIN_OPTIONS = ("-c session_preload_libraries=auto_explain "
                   "-c auto_explain.log_min_duration=0 -c auto_explain.log_analyze=on "
                   "-c auto_explain.log_buffers=on -c auto_explain.log_nested_statements=on "
                   "-c client_min_messages=log")
#: The first line of a plan: a node at the left margin with its cost estimate.
PLAN_START = re.compile(r"^\S.*\(cost=")


class ExplainingStorage(PostgresStorage):
    """A PostgresStorage whose connections collect the plans that auto_explain sends."""

    plans: ClassVar[list[str]] = []

    def _connection_class(self) -> type[psycopg.Connection[Any]]:
        base = super()._connection_class()

        class Explaining(base):  # type: ignore[valid-type, misc]
            @classmethod
            def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
                conn = super().connect(conninfo, **kwargs)
                conn.add_notice_handler(
                    lambda diag: ExplainingStorage.plans.append(diag.message_primary or ""))
                return conn

        return Explaining


def populate(conn: psycopg.Connection[Any], schema: str, rows: int) -> dict[str, int]:
    """Insert ``rows`` jobs in the proportions of SHARES; return the count per state."""
    counts = {state: int(rows * share) for state, share in SHARES.items()}
    counts[states.PROCESSING] = PROCESSING_LIVE + PROCESSING_DEAD
    counts[states.SUCCEEDED] = rows - sum(counts.values())
    s = f'"{schema}"'
    now = time.time()
    conn.execute(f"INSERT INTO {s}.servers VALUES ('live', '[\"q1\"]', 10, '{{}}', %s, %s)",
                 (now, now + 3600))

    start = 0
    for state, count in counts.items():
        conn.execute(
            f"INSERT INTO {s}.jobs (id, function, payload, queue, state, created_at, state_at, "
            "enqueued_at, attempt, lease_token, server_id, due_at, expire_at, parent_id, "
            "continue_on) "
            "SELECT lpad(to_hex(i), 26, '0'), 'app.jobs:work', '[[1,2],{}]', "
            "       'q' || (1 + i %% 5), %(state)s::text, %(now)s - 86400 + i * 0.01, "
            "       %(now)s - 86400 + i * 0.01, "
            "       CASE WHEN %(state)s::text = 'Enqueued' THEN %(now)s - 86400 + i * 0.01 END, "
            "       CASE WHEN %(state)s::text IN ('Enqueued', 'Scheduled', 'Awaiting') THEN 0 "
            "            ELSE 1 END, "
            "       CASE WHEN %(state)s::text = 'Processing' THEN md5(i::text) END, "
            "       CASE WHEN %(state)s::text = 'Processing' "
            "            THEN CASE WHEN i - %(start)s::bigint < %(live)s::bigint THEN 'live' ELSE 'dead' END "
            "       END, "
            "       CASE WHEN %(state)s::text = 'Scheduled' "
            "            THEN CASE WHEN i - %(start)s::bigint < %(due)s::bigint "
            "                      THEN %(now)s - 60 - (i - %(start)s::bigint) * 0.001 "
            "                      ELSE %(now)s + 3600 + (i - %(start)s::bigint) * 0.01 END "
            "       END, "
            "       CASE WHEN %(state)s::text IN ('Succeeded', 'Deleted') "
            "            THEN CASE WHEN i - %(start)s::bigint < %(expired)s::bigint "
            "                      THEN %(now)s - 60 - (i - %(start)s::bigint) * 0.001 "
            "                      ELSE %(now)s + 86400 + (i - %(start)s::bigint) * 0.01 END "
            "       END, "
            "       CASE WHEN %(state)s::text = 'Awaiting' THEN lpad(to_hex(i - 1), 26, '0') END, "
            "       CASE WHEN %(state)s::text = 'Awaiting' THEN 'succeeded' END "
            "FROM generate_series(%(start)s::bigint, %(end)s::bigint) AS i",
            {"state": state, "now": now, "start": start, "end": start + count - 1,
             "live": PROCESSING_LIVE, "due": DUE, "expired": EXPIRED})
        start += count
    conn.execute(
        f"INSERT INTO {s}.history (job_id, state, reason, data, at) "
        f"SELECT id, state, NULL, '{{}}', state_at FROM {s}.jobs")
    return counts


def operations(storage: PostgresStorage) -> list[tuple[str, Callable[[], Any]]]:
    """Return the storage operations to explain, by name, in the order to run them."""
    claimed: list[Any] = []

    def fetch() -> None:
        claimed.extend(storage.fetch_jobs(QUEUES, "live", 10))

    def write_outcomes() -> None:
        storage.change_states([StateChange(job.id, states.SUCCEEDED, None, {},
                                           expected=(states.PROCESSING,),
                                           lease_token=job.lease_token, expire_in=86400)
                               for job in claimed])

    def create() -> None:
        storage.create_jobs([NewJob(new_job_id(), "app.jobs:work", "[[1,2],{}]", "q1",
                                    states.ENQUEUED) for _ in range(100)])

    listed: list[tuple[str, Callable[[], Any]]] = [
        (f"list_jobs {state}", lambda state=state: storage.list_jobs(state))
        for state in states.ALL_STATES]
    return [
        ("create_jobs (100)", create),
        ("fetch_jobs (10, 5 queues)", fetch),
        ("change_states (outcomes of the fetched jobs)", write_outcomes),
        ("get_job with history", lambda: storage.get_job(claimed[0].id)),
        ("current_leases", lambda: storage.current_leases([job.lease_token or ""
                                                            for job in claimed])),
        ("count_jobs_by_state", storage.count_jobs_by_state),
        ("queue_lengths", storage.queue_lengths),
        *listed,
        ("list_jobs Enqueued, queue q3", lambda: storage.list_jobs(states.ENQUEUED,
                                                                    queue="q3")),
        ("list_jobs Succeeded, offset 10,000",
         lambda: storage.list_jobs(states.SUCCEEDED, offset=10_000)),
        ("enqueue_due_jobs (1,000)", lambda: storage.enqueue_due_jobs(1_000)),
        ("recover_jobs_of_dead_servers", lambda: storage.recover_jobs_of_dead_servers(20.0, 3)),
        ("expire (1,000)", lambda: storage.expire(1_000)),
    ]


def print_plan(plan: str) -> None:
    """Print an auto_explain message without the statement text before the plan."""
    lines = plan.splitlines()
    print(f"  {lines[0]}")
    in_query = False
    for line in lines[1:]:
        if line.startswith("Query Text:"):
            in_query = True
        elif in_query and PLAN_START.match(line):
            in_query = False
        if not in_query:
            print(f"    {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="PostgreSQL URL (a superuser).")
    parser.add_argument("--rows", type=int, default=2_500_000, help="Jobs to insert.")
    parser.add_argument("--keep", action="store_true", help="Keep the schema afterwards.")
    args = parser.parse_args()

    schema = f"bb_explain_{secrets.token_hex(4)}"
    storage = ExplainingStorage.from_url(
        f"{args.url}?schema={schema}&options={quote(EXPLAIN_OPTIONS)}")
    try:
        storage.migrate()
        with psycopg.connect(args.url, autocommit=True) as conn:
            started = time.perf_counter()
            counts = populate(conn, schema, args.rows)
            conn.execute(f'VACUUM ANALYZE "{schema}".jobs, "{schema}".history')
            print(f"schema {schema}: {counts} in {time.perf_counter() - started:.0f} s")
            for table in ("jobs", "history"):
                size = conn.execute("SELECT pg_size_pretty(pg_table_size(%s)), "
                                    "pg_size_pretty(pg_indexes_size(%s))",
                                    (f'"{schema}".{table}',) * 2).fetchone()
                assert size is not None
                print(f"{table}: table {size[0]}, indexes {size[1]}")

        for name, operation in operations(storage):
            ExplainingStorage.plans.clear()
            started = time.perf_counter()
            operation()
            elapsed = (time.perf_counter() - started) * 1000
            print(f"\n## {name}: {elapsed:.1f} ms in the client, "
                  f"{len(ExplainingStorage.plans)} plan(s)")
            for plan in ExplainingStorage.plans:
                print_plan(plan)
    finally:
        storage.close()
        if not args.keep:
            with psycopg.connect(args.url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
