"""Time the dashboard's pages and JSON API on a storage that contains many jobs.

Run in the project venv:

    /work/venv/bin/python benchmarks/dashboard_bench.py [--backends sqlite,postgres]
        [--jobs 1000000] [--write BENCHMARKS.md] [--keep]

Each backend gets a fresh storage (a SQLite file in a temporary folder, or a
PostgreSQL schema of its own that is dropped afterwards), filled through the
storage API with a mix of jobs in every state. Then every route is requested
in-process through Starlette's TestClient as a local client.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from starlette.testclient import TestClient

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backburner import Backburner
from backburner.records import NewJob, StateChange
from backburner.retry import RetryPolicy
from benchmarks.report import load_average, write_section

logger = logging.getLogger("benchmarks.dashboard_bench")

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
RESULTS_START = "<!-- dashboard results: start (written by benchmarks/dashboard_bench.py --write) -->"
RESULTS_END = "<!-- dashboard results: end -->"
LOCAL_CLIENT = ("127.0.0.1", 50000)
QUEUES = ("default", "critical", "emails")
QUEUE_WEIGHTS = (6, 1, 3)
BATCH = 1000
WARMUP = 2
REQUESTS = 20
SERVER_ID = "bench-host:4242:a1b2c3"

#: Share of the jobs in each kind; Succeeded takes what the others leave.
MIX = {"deleted": 0.04, "failed": 0.02, "enqueued": 0.02, "scheduled": 0.01, "retry": 0.005,
       "awaiting": 0.0049, "processing": 0.0001}
RECURRING = [("reports/nightly", "0 2 * * *"), ("cleanup/hourly", "0 * * * *"),
             ("emails/digest", "30 7 * * MON-FRI"), ("billing/monthly", "0 0 1 * *"),
             ("sync/every-5-min", "*/5 * * * *")]


@dataclass
class Filled:
    """A filled storage: its app, the ids the routes need and how long filling took."""

    app: Backburner
    failed_id: str = ""
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    #: Jobs per state that ``count_jobs_by_state`` returned after the fill.
    stored: dict[str, int] = field(default_factory=dict)


def make_app(url: str) -> Backburner:
    """Return an app with the job functions the fill enqueues."""
    app = Backburner(url)

    @app.job(name="bench.send_email")
    def send_email(user_id: int, template: str) -> None:
        return None

    @app.job(name="bench.resize_image")
    def resize_image(path: str, width: int) -> None:
        return None

    return app


def plan_kinds(jobs: int) -> dict[str, int]:
    """Return how many jobs of each kind to make; Succeeded gets the rest."""
    counts = {kind: int(jobs * share) for kind, share in MIX.items()}
    counts["succeeded"] = jobs - sum(counts.values())
    return counts


def new_job(app: Backburner, rng: random.Random, **options: object) -> NewJob:
    """Build one job through the client, as ``enqueue`` would, without writing it."""
    queue = rng.choices(QUEUES, QUEUE_WEIGHTS)[0]
    client = app.options(queue=queue, **options)  # type: ignore[arg-type]
    if rng.random() < 0.5:
        return client.build("bench.send_email", [rng.randrange(10**6), "welcome"], {})
    return client.build("bench.resize_image", [f"/uploads/{rng.randrange(10**6)}.png", 640], {})


def sample_error() -> BaseException:
    """Return an exception with a traceback, as a failed job records it."""
    try:
        raise ConnectionError("SMTP server smtp.example.com:587 refused the connection")
    except ConnectionError as error:
        return error


def fill_final(app: Backburner, kinds: list[str], rng: random.Random, filled: Filled) -> None:
    """Create one batch as Enqueued, then delete, fetch and finish it through the storage API.

    Nothing else is Enqueued while this runs, so the fetch claims exactly this batch.
    """
    storage, machine = app.storage, app.state_machine
    jobs = [new_job(app, rng) for _ in kinds]
    storage.create_jobs(jobs)

    deleted = [job.id for job, kind in zip(jobs, kinds) if kind == "deleted"]
    if deleted:
        storage.change_states([StateChange(job_id, "Deleted", "Deleted by request",
                                           expected=("Enqueued",), expire_in=machine.retention)
                               for job_id in deleted])

    kind_of = {job.id: kind for job, kind in zip(jobs, kinds)}
    records = storage.fetch_jobs(QUEUES, SERVER_ID, len(jobs) - len(deleted))
    error, policy = sample_error(), RetryPolicy(retries=10, delays=[86_400])
    changes = []
    for record in records:
        kind = kind_of[record.id]
        if kind == "succeeded":
            changes.append(machine.succeeded(record, rng.uniform(0.01, 2.0), None))
        else:
            changes.append(machine.failed(record, error, policy if kind == "retry" else None))
            if kind == "failed":
                filled.failed_id = record.id
    storage.change_states(changes)


def fill(app: Backburner, jobs: int) -> Filled:
    """Fill the storage with ``jobs`` jobs in the mix of ``MIX``."""
    rng = random.Random(1)
    filled = Filled(app=app, counts=plan_kinds(jobs))
    started = time.monotonic()
    storage, counts = app.storage, filled.counts
    storage.announce_server(SERVER_ID, list(QUEUES), 10, {"host": "bench-host", "pid": 4242})

    final = [kind for kind in ("succeeded", "deleted", "failed", "retry")
             for _ in range(counts[kind])]
    rng.shuffle(final)
    for start in range(0, len(final), BATCH):
        fill_final(app, final[start:start + BATCH], rng, filled)
        if start // BATCH % 100 == 0:
            logger.info("%s: %d of %d jobs", storage.describe(), start, jobs)

    scheduled = [new_job(app, rng, delay=rng.uniform(60, 7 * 86_400))
                 for _ in range(counts["scheduled"])]
    for start in range(0, len(scheduled), BATCH):
        storage.create_jobs(scheduled[start:start + BATCH])
    parents = [job.id for job in scheduled] or [filled.failed_id]
    awaiting = [app.options().build("bench.send_email", [n, "receipt"], {},
                                    parent_id=rng.choice(parents))
                for n in range(counts["awaiting"])]
    for start in range(0, len(awaiting), BATCH):
        storage.create_jobs(awaiting[start:start + BATCH])

    processing = [new_job(app, rng) for _ in range(counts["processing"])]
    storage.create_jobs(processing)
    storage.fetch_jobs(QUEUES, SERVER_ID, len(processing))
    enqueued = [new_job(app, rng) for _ in range(counts["enqueued"])]
    for start in range(0, len(enqueued), BATCH):
        storage.create_jobs(enqueued[start:start + BATCH])

    for recurring_id, cron in RECURRING:
        app.recurring.add_or_update(recurring_id, "bench.send_email", cron, args=[1, "report"])
    storage.tidy()
    filled.seconds = time.monotonic() - started
    filled.stored = storage.count_jobs_by_state()
    if filled.stored != expected_states(counts):
        logger.warning("job counts after the fill %s differ from the plan %s", filled.stored,
                       expected_states(counts))
    return filled


def expected_states(counts: dict[str, int]) -> dict[str, int]:
    """Return the jobs per state that the planned kinds should end in."""
    return {"Enqueued": counts["enqueued"], "Scheduled": counts["scheduled"] + counts["retry"],
            "Awaiting": counts["awaiting"], "Processing": counts["processing"],
            "Succeeded": counts["succeeded"], "Failed": counts["failed"],
            "Deleted": counts["deleted"]}


def routes(filled: Filled) -> dict[str, str]:
    """Return the paths to time, keyed by the label the report shows."""
    paths = ["/", "/jobs/enqueued", "/jobs/enqueued/default", "/jobs/scheduled",
             "/jobs/processing", "/jobs/succeeded", "/jobs/succeeded?page=1000", "/jobs/failed",
             "/jobs/succeeded?size=500", "/jobs/failed?size=500", "/jobs/deleted",
             "/jobs/awaiting", "/retries", "/recurring", "/servers"]
    labels = {path: path for path in paths}
    labels["/jobs/details/<failed job id>"] = f"/jobs/details/{filled.failed_id}"
    for path in ("/api/stats", "/api/jobs?state=Succeeded", "/api/history", "/metrics"):
        labels[path] = path
    return labels


def time_routes(filled: Filled) -> dict[str, tuple[float, float, int]]:
    """Request each route ``WARMUP`` times, then ``REQUESTS`` times timed.

    Returns p50 and max in milliseconds and the last status code per label.
    """
    results = {}
    with TestClient(filled.app.dashboard(), client=LOCAL_CLIENT,
                    base_url="http://127.0.0.1") as client:
        for label, path in routes(filled).items():
            for _ in range(WARMUP):
                client.get(path)
            timings = []
            for _ in range(REQUESTS):
                started = time.perf_counter()
                response = client.get(path)
                timings.append((time.perf_counter() - started) * 1000)
            results[label] = (statistics.median(timings), max(timings), response.status_code)
            logger.info("%s: p50 %.1f ms, max %.1f ms, status %d", label, *results[label])
    return results


@contextmanager
def storage_url(backend: str, keep: bool) -> Iterator[str]:
    """Yield the URL of a fresh storage for ``backend``; remove it afterwards unless ``keep``."""
    if backend == "sqlite":
        folder = tempfile.mkdtemp(prefix="dashboard-bench-")
        try:
            yield f"sqlite:///{folder}/bench.db"
        finally:
            if keep:
                logger.info("kept the SQLite storage in %s", folder)
            else:
                shutil.rmtree(folder)
        return
    import psycopg

    schema = f"bench_dash_{uuid.uuid4().hex[:12]}"
    try:
        yield f"{POSTGRES_URL}?schema={schema}"
    finally:
        if keep:
            logger.info("kept the PostgreSQL schema %s", schema)
        else:
            with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def analyze(app: Backburner, backend: str) -> None:
    """Run VACUUM ANALYZE on PostgreSQL, which autovacuum would do soon after such a fill."""
    if backend != "postgres":
        return
    import psycopg

    schema = app.storage.schema  # type: ignore[attr-defined]
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        for table in ("jobs", "history", "job_counts", "job_count_deltas", "counters"):
            conn.execute(f'VACUUM ANALYZE "{schema}".{table}')


def measure(backend: str, jobs: int, keep: bool,
            ) -> tuple[Filled, dict[str, tuple[float, float, int]]]:
    """Fill a fresh storage of ``backend`` and time the routes on it."""
    with storage_url(backend, keep) as url:
        app = make_app(url)
        try:
            filled = fill(app, jobs)
            logger.info("%s: filled %d jobs in %.0f s", backend, jobs, filled.seconds)
            analyze(app, backend)
            return filled, time_routes(filled)
        finally:
            app.close()


def machine() -> str:
    """Describe the machine and the versions measured."""
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               "unknown")
    memory_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                     if line.startswith("MemTotal"))
    return (f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC\n"
            f"- machine: {os.cpu_count()} CPUs (`nproc`), {cpu}, {memory_kb / 2**20:.1f} GiB RAM, "
            f"load average before the run {load_average()}\n"
            f"- Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
            f"{postgres_version()}\n- backburner checkout at {git_revision()}")


def git_revision() -> str:
    """Return the checkout's short commit id, noting uncommitted changes to the package."""
    def git(*arguments: str) -> str:
        return subprocess.run(["git", *arguments], cwd=ROOT, capture_output=True, text=True,
                              check=False).stdout.strip()

    revision = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--", "backburner"):
        return f"git {revision} with uncommitted changes in backburner/"
    return f"git {revision}"


def postgres_version() -> str:
    try:
        import psycopg

        with psycopg.connect(POSTGRES_URL) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return f", PostgreSQL {row[0]}" if row else ""
    except Exception as error:  # noqa: BLE001 - the version is only informative
        logger.warning("could not read the PostgreSQL version: %s", error)
        return ""


def report(about: str, command: str, jobs: int,
           results: dict[str, tuple[Filled, dict[str, tuple[float, float, int]]]]) -> str:
    """Return the markdown section that ``--write`` puts into BENCHMARKS.md."""
    backends = list(results)
    first = next(iter(results.values()))[0]
    mix = ", ".join(f"{state} {count:,}" for state, count in first.stored.items())
    fills = ", ".join(f"{backend} {results[backend][0].seconds:.0f} s" for backend in backends)
    checks = ", ".join(f"{backend} {fill_check(filled)}"
                       for backend, (filled, _) in results.items())
    settings = (f"`{command}`: {jobs:,} jobs ({mix}, of the Scheduled "
                f"{first.counts['retry']:,} retries), {len(RECURRING)} recurring jobs, 1 server. "
                f"Filling through the storage API took {fills}. Job counts per state after the "
                f"fill: {checks}. Each path: {WARMUP} warm-up requests, then {REQUESTS} timed, "
                "p50 / max in ms.")
    lines = [about, f"- load average after the run {load_average()}", "", settings, "",
             ("| path | " + " | ".join(f"{backend} p50 | {backend} max" for backend in backends)
              + " |"),
             "|---|" + "---:|---:|" * len(backends)]
    for label in results[backends[0]][1]:
        cells = []
        for backend in backends:
            p50, longest, status = results[backend][1][label]
            suffix = "" if status == 200 else f" (HTTP {status})"
            cells += [f"{p50:,.1f}{suffix}", f"{longest:,.1f}"]
        lines.append(f"| `{label}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fill_check(filled: Filled) -> str:
    """Say whether the job counts per state after the fill are the planned ones."""
    if filled.stored == expected_states(filled.counts):
        return "as planned"
    return f"NOT as planned ({filled.stored})"


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="sqlite,postgres",
                        help="comma-separated backends to measure: sqlite, postgres")
    parser.add_argument("--jobs", type=int, default=1_000_000,
                        help="jobs to fill each storage with (default 1,000,000)")
    parser.add_argument("--write", type=Path, metavar="FILE",
                        help="replace the dashboard results section of FILE, e.g. BENCHMARKS.md")
    parser.add_argument("--keep", action="store_true",
                        help="keep each filled storage (SQLite folder, PostgreSQL schema) to "
                             "inspect its queries; the log names them")
    options = parser.parse_args()
    unknown = set(options.backends.split(",")) - {"sqlite", "postgres"}
    if unknown:
        parser.error(f"unknown backend(s) {', '.join(sorted(unknown))}; use sqlite, postgres")
    return options


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    for name in ("httpx", "httpx2"):  # TestClient logs every request at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    options = parse_arguments()
    about = machine()
    results = {backend: measure(backend, options.jobs, options.keep)
               for backend in options.backends.split(",")}
    command = " ".join(["python benchmarks/dashboard_bench.py", *sys.argv[1:]])
    section = report(about, command, options.jobs, results)
    print(section)
    if options.write:
        write_section(options.write, section, RESULTS_START, RESULTS_END)


if __name__ == "__main__":
    main()
