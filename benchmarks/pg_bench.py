"""Benchmark backburner on PostgreSQL side by side with procrastinate and pgqueuer.

Run in the benchmark venv (see the PostgreSQL section of BENCHMARKS.md):

    /work/bench-venv/bin/python benchmarks/pg_bench.py [--quick] [--write BENCHMARKS.md]

Every system runs on the same PostgreSQL (default 127.0.0.1:5432, database
``test``). Each measurement works in a fresh schema of its own, which the
harness creates before and drops after it, so no system sees another's rows.
See the PostgreSQL section of BENCHMARKS.md for what each column measures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import quote

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from benchmarks.marks import read_marks
from benchmarks.measure import Latency, Throughput, percentile, rates, stop_servers, wait_for
from benchmarks.report import load_average, write_section
from benchmarks.systems import Progress, base_environment, marks_progress

logger = logging.getLogger("benchmarks.pg_bench")

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
RESULTS_START = "<!-- postgres results: start (written by benchmarks/pg_bench.py --write) -->"
RESULTS_END = "<!-- postgres results: end -->"
#: Pause between the boot job of a latency run and its first probe job.
SETTLE_SECONDS = 0.5
#: Jobs per bulk call.
CHUNK = 500
#: Prefix of the schemas the harness makes; a schema left by an interrupted run
#: can be found by it.
SCHEMA_PREFIX = "bench_pg_"


@dataclass(frozen=True)
class System:
    """One benchmark row: a job system, its settings and its worker processes."""

    kind: str
    processes: int
    settings: str
    enqueue_api: str
    bulk_api: str

    @property
    def name(self) -> str:
        return f"{self.kind} ×{self.processes}"

    def environment(self, url: str, schema: str, workdir: Path) -> dict[str, str]:
        """Return the environment that points clients and workers at ``schema``."""
        environment = {**base_environment(), "BENCH_MARKS": str(workdir / "marks")}
        if self.kind == "backburner":
            environment["BACKBURNER_STORAGE_URL"] = f"{url}?schema={schema}"
        elif self.kind == "procrastinate":
            # procrastinate has no schema setting, so its objects go where search_path points.
            environment["BENCH_PG_URL"] = f"{url}?options={quote(f'-c search_path={schema}')}"
        else:
            environment["BENCH_PG_URL"] = url
            environment["PGQUEUER_SCHEMA"] = schema
        return environment

    def server_commands(self) -> list[list[str]]:
        """Return one command line per worker process to start."""
        if self.kind == "backburner":
            command = [str(BIN / "backburner"), "server", "--app", "benchmarks.bb_app:app"]
        elif self.kind == "procrastinate":
            command = [str(BIN / "procrastinate"), "--app=benchmarks.pg_procrastinate_app.app",
                       "worker", "--concurrency", "10"]
        else:
            command = [sys.executable, "-m", "benchmarks.pg_pgqueuer_app"]
        return [command] * self.processes


def all_systems() -> list[System]:
    """Return every benchmark row, in table order."""
    rows = []
    for processes in (1, 2):
        rows += [
            System("backburner", processes,
                   f"{processes} × `backburner server --app benchmarks.bb_app:app` (defaults: "
                   "10 worker threads, LISTEN/NOTIFY, log level info)",
                   "`noop.enqueue(i, t)`", "`app.enqueue_many([noop.call(i, t), ...])`"),
            System("procrastinate", processes,
                   f"{processes} × `procrastinate worker --concurrency 10` (LISTEN/NOTIFY on, "
                   "default polling 5 s)",
                   "`await noop.defer_async(i=i, t_enq=t)`",
                   "`await noop.batch_defer_async(*kwargs)`"),
            System("pgqueuer", processes,
                   f"{processes} × `pgqueuer.run(factory)` (as `pgq run`: batch_size 10, "
                   "LISTEN/NOTIFY, asyncpg)",
                   "`await queries.enqueue('noop', payload)`",
                   "`await queries.enqueue([names], [payloads], [priorities])`"),
        ]
    return rows


# -- one measurement ----------------------------------------------------------


@dataclass
class Bench:
    """The PostgreSQL under test and the options of the run."""

    url: str
    keep: bool

    def execute(self, statement: str) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(statement)


@dataclass
class Measurement:
    """One measurement's schema and its folder for marks and worker logs."""

    schema: str
    workdir: Path


@contextmanager
def measurement_for(bench: Bench, system: System) -> Iterator[Measurement]:
    """Yield a fresh schema and folder, both removed afterwards (unless ``--keep``)."""
    schema = f"{SCHEMA_PREFIX}{system.kind}_{secrets.token_hex(4)}"
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-pg-{system.kind}-"))
    bench.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield Measurement(schema, workdir)
    finally:
        if bench.keep:
            logger.info("kept schema %s and folder %s", schema, workdir)
        else:
            bench.execute(f'DROP SCHEMA "{schema}" CASCADE')
            shutil.rmtree(workdir)


def run_client(bench: Bench, system: System, measurement: Measurement, action: str, jobs: int,
               *, first: int = 0, interval: float | None = None) -> float:
    """Run ``benchmarks.pg_client`` in a new process; return the seconds it took to enqueue."""
    command = [sys.executable, "-m", "benchmarks.pg_client", system.kind, action, "--jobs",
               str(jobs), "--first", str(first), "--chunk", str(CHUNK)]
    if interval is not None:
        command += ["--interval", str(interval)]
    finished = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
        env=system.environment(bench.url, measurement.schema, measurement.workdir))
    if finished.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {finished.returncode}:\n"
                           f"{finished.stderr[-2000:]}")
    return float(json.loads(finished.stdout)["seconds"])


@contextmanager
def servers(bench: Bench, system: System, measurement: Measurement) -> Iterator[float]:
    """Start the system's workers and yield the time just before the first started."""
    processes: list[subprocess.Popen[bytes]] = []
    environment = system.environment(bench.url, measurement.schema, measurement.workdir)
    started_at = time.time()
    try:
        for number, command in enumerate(system.server_commands()):
            with open(measurement.workdir / f"server-{number}.log", "wb") as log:
                processes.append(subprocess.Popen(command, cwd=ROOT, env=environment,
                                                  stdout=log, stderr=subprocess.STDOUT,
                                                  start_new_session=True))
        yield started_at
    finally:
        stop_servers(processes)


def progress(bench: Bench, system: System, measurement: Measurement) -> Progress:
    """Return how many throughput jobs are done, and when the first and the last finished.

    For backburner "done" is the commit of the Succeeded state (``jobs.state_at``),
    so it includes the batched outcome write. The peers' default settings keep
    no such time for a finished job, so for them it is the job start from the
    marks file, which favours them slightly.
    """
    if system.kind != "backburner":
        return marks_progress(measurement.workdir)
    with psycopg.connect(bench.url, autocommit=True) as conn:
        row = conn.execute(
            f'SELECT count(*), min(state_at), max(state_at) FROM "{measurement.schema}".jobs '
            "WHERE state = 'Succeeded'").fetchone()
    assert row is not None
    return Progress(int(row[0]), row[1], row[2])


def processing_timeout(jobs: int) -> float:
    """Return how long to wait for ``jobs`` jobs: at least 120 s, or 50 jobs per second."""
    return max(120.0, jobs / 50)


def measure_throughput(bench: Bench, system: System, jobs: int, *, bulk: bool) -> Throughput:
    """Enqueue ``jobs`` jobs (in bulk or one by one), then start the workers and time
    how long they take to finish them."""
    with measurement_for(bench, system) as measurement:
        seconds = run_client(bench, system, measurement, "bulk" if bulk else "enqueue", jobs)
        with servers(bench, system, measurement) as started_at:
            wait_for(lambda: progress(bench, system, measurement).done >= jobs,
                     processing_timeout(jobs), interval=0.1)
        final = progress(bench, system, measurement)
    return Throughput(jobs / seconds, *rates(final, started_at, jobs), final.done, jobs, 0)


def measure_latency(bench: Bench, system: System, probes: int, interval: float) -> Latency:
    """Time the boot (workers start to the start of one job enqueued before), then
    enqueue ``probes`` jobs ``interval`` seconds apart into the idle workers."""
    with measurement_for(bench, system) as measurement:
        marks_path = str(measurement.workdir / "marks")
        run_client(bench, system, measurement, "enqueue", 1, first=-1)
        with servers(bench, system, measurement) as started_at:
            booted = wait_for(lambda: bool(read_marks(marks_path)), 60.0, interval=0.01)
            time.sleep(SETTLE_SECONDS)
            run_client(bench, system, measurement, "probe", probes, interval=interval)
            wait_for(lambda: marks_progress(measurement.workdir).done >= probes, 60.0)
        marks = read_marks(marks_path)
    boot = [mark.started_at - started_at for mark in marks if mark.index < 0]
    latencies = [(mark.started_at - mark.enqueued_at) * 1000 for mark in marks if mark.index >= 0]
    return Latency(boot[0] if booted and boot else None, latencies, probes, 0)


# -- rounds and the report ----------------------------------------------------


@dataclass
class Run:
    """Everything measured for one system in one round."""

    one_by_one: Throughput
    bulk: Throughput
    latency: Latency


@dataclass
class Settings:
    """How much to measure: runs per system, jobs per throughput run, latency probes."""

    runs: int
    jobs: int
    probes: int
    interval: float


@dataclass
class Session:
    """What a report says about the run besides the results."""

    about: str
    command: str
    seconds: float
    load_after: str
    results: dict[str, list[Run]] = field(default_factory=dict)


def measure_run(bench: Bench, system: System, settings: Settings) -> Run:
    one_by_one = measure_throughput(bench, system, settings.jobs, bulk=False)
    bulk = measure_throughput(bench, system, settings.jobs, bulk=True)
    latency = measure_latency(bench, system, settings.probes, settings.interval)
    return Run(one_by_one, bulk, latency)


def measure_all(bench: Bench, systems: list[System], settings: Settings) -> dict[str, list[Run]]:
    """Measure every system once per round, rounds interleaved so that noise spreads evenly."""
    results: dict[str, list[Run]] = {system.name: [] for system in systems}
    for round_number in range(1, settings.runs + 1):
        for system in systems:
            started = time.monotonic()
            run = measure_run(bench, system, settings)
            results[system.name].append(run)
            logger.info("round %d/%d %s done in %.1f s: enqueue %.0f/s, bulk %.0f/s, "
                        "processing %s/s (%d/%d done), p50 %s ms", round_number, settings.runs,
                        system.name, time.monotonic() - started, run.one_by_one.enqueue_rate,
                        run.bulk.enqueue_rate, format_number(run.one_by_one.processing_rate),
                        run.one_by_one.done, run.one_by_one.jobs, latency_cell([run], 50))
    return results


def format_number(value: float | None, decimals: int = 0) -> str:
    return "–" if value is None else f"{value:,.{decimals}f}"


def spread(values: list[float | None], decimals: int = 0) -> str:
    """Format the median with the minimum and maximum in brackets."""
    present = [value for value in values if value is not None]
    if not present:
        return "–"
    if len(present) == 1:
        return format_number(present[0], decimals)
    return (f"{format_number(statistics.median(present), decimals)} "
            f"({format_number(min(present), decimals)}–{format_number(max(present), decimals)})")


def latency_cell(runs: list[Run], percent: float) -> str:
    return spread([percentile(run.latency.latencies_ms, percent) if run.latency.latencies_ms
                   else None for run in runs], 1)


def checks(runs: list[Run]) -> str:
    """Say whether every job of every run was done, or which runs fell short."""
    shortfalls = []
    for number, run in enumerate(runs, 1):
        for label, batch in (("1-by-1", run.one_by_one), ("bulk", run.bulk)):
            if batch.done != batch.jobs:
                shortfalls.append(f"run {number} {label}: {batch.done}/{batch.jobs} done")
        if len(run.latency.latencies_ms) != run.latency.probes:
            shortfalls.append(f"run {number} latency: {len(run.latency.latencies_ms)}/"
                              f"{run.latency.probes} done")
    if shortfalls:
        return "; ".join(shortfalls)
    first = runs[0]
    return (f"{len(runs)} run{'s' if len(runs) > 1 else ''}, all {first.one_by_one.jobs}/"
            f"{first.one_by_one.jobs} (×2 with bulk) + {first.latency.probes}/"
            f"{first.latency.probes} done")


def table(systems: list[System], results: dict[str, list[Run]]) -> str:
    lines = [
        ("| system | enqueue 1-by-1 jobs/s | enqueue bulk jobs/s | processing jobs/s (worker "
         "start → last job) | processing jobs/s steady (1st → last job) | processing of bulk "
         "jobs/s | worker boot s | latency p50 ms | p95 ms | p99 ms | checks |"),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for system in systems:
        runs = results[system.name]
        lines.append(" | ".join([
            f"| {system.name}", spread([run.one_by_one.enqueue_rate for run in runs]),
            spread([run.bulk.enqueue_rate for run in runs]),
            spread([run.one_by_one.processing_rate for run in runs]),
            spread([run.one_by_one.steady_rate for run in runs]),
            spread([run.bulk.processing_rate for run in runs]),
            spread([run.latency.boot_seconds for run in runs], 2),
            latency_cell(runs, 50), latency_cell(runs, 95), latency_cell(runs, 99),
            checks(runs) + " |"]))
    return "\n".join(lines)


def settings_table(systems: list[System]) -> str:
    lines = ["| system | enqueue API | bulk API | workers |", "|---|---|---|---|"]
    lines += [f"| {system.name} | {system.enqueue_api} | {system.bulk_api} | {system.settings} |"
              for system in systems]
    return "\n".join(lines)


def versions(bench: Bench) -> str:
    """Return the versions of PostgreSQL, Python and every package measured."""
    from importlib import metadata

    with psycopg.connect(bench.url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    server = row[0] if row else "unknown"
    packages = []
    for name in ("backburner", "procrastinate", "pgqueuer", "psycopg", "psycopg-binary",
                 "psycopg-pool", "asyncpg"):
        try:
            packages.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            packages.append(f"{name} not installed")
    return f"- PostgreSQL {server}, Python {platform.python_version()}\n- {', '.join(packages)}"


def about_machine(bench: Bench) -> str:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "backburner"], cwd=ROOT,
                           capture_output=True, text=True, check=False).stdout.strip()
    return (f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC\n"
            f"- machine: {os.cpu_count()} CPUs (`nproc`), {cpu}, load average before the run "
            f"{load_average()}\n{versions(bench)}\n"
            f"- backburner checkout at git {revision or 'unknown'}"
            f"{' with uncommitted changes in backburner/' if dirty else ''}")


def report(systems: list[System], settings: Settings, session: Session) -> str:
    return "\n\n".join([
        f"{session.about}\n- load average after the run {session.load_after}",
        (f"`{session.command}`: {settings.jobs:,} jobs per throughput run, {settings.probes} "
         f"latency probes {settings.interval * 1000:.0f} ms apart, {settings.runs} run(s) per "
         f"system, median (min–max). The whole run took {session.seconds:.0f} s."),
        table(systems, session.results),
        "Settings per system:",
        settings_table(systems),
    ])


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke check: 1 run, 2,000 jobs, 50 latency probes")
    parser.add_argument("--runs", type=int, help="runs per system (default 3, quick 1)")
    parser.add_argument("--jobs", type=int, help="jobs per throughput run (default 10,000)")
    parser.add_argument("--probes", type=int, help="latency probe jobs (default 200)")
    parser.add_argument("--interval", type=float, default=0.02,
                        help="seconds between latency probes (default 0.02)")
    parser.add_argument("--systems", help="comma-separated kinds to run, e.g. "
                        "backburner,pgqueuer (each selects its ×1 and ×2 rows)")
    parser.add_argument("--processes", help="comma-separated process counts (default 1,2)")
    parser.add_argument("--url", default=DEFAULT_URL,
                        help=f"PostgreSQL database to measure on (default {DEFAULT_URL})")
    parser.add_argument("--write", type=Path, metavar="FILE",
                        help="also write the results into the PostgreSQL section of FILE")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also save raw results as JSON")
    parser.add_argument("--from-json", type=Path, metavar="FILE",
                        help="measure nothing: print (and --write) the report of a --json file")
    parser.add_argument("--keep", action="store_true",
                        help="keep each measurement's schema and folder (marks, worker logs)")
    return parser.parse_args()


def select_systems(options: argparse.Namespace) -> list[System]:
    systems = all_systems()
    kinds = {system.kind for system in systems}
    wanted = set(options.systems.split(",")) if options.systems else kinds
    if not wanted <= kinds:
        sys.exit(f"unknown system(s) {', '.join(sorted(wanted - kinds))}; "
                 f"choose from {', '.join(sorted(kinds))}")
    counts = {int(count) for count in (options.processes or "1,2").split(",")}
    return [system for system in systems if system.kind in wanted and system.processes in counts]


def check_environment(systems: list[System]) -> None:
    """Exit with the install command if a program or package of ``systems`` is missing."""
    missing = {command[0] for system in systems for command in system.server_commands()
               if not Path(command[0]).exists()}
    for module in ("procrastinate", "pgqueuer", "asyncpg"):
        try:
            __import__(module)
        except ImportError:
            missing.add(module)
    if missing:
        sys.exit(f"missing {', '.join(sorted(missing))}: run `{BIN / 'pip'} install "
                 "procrastinate pgqueuer asyncpg 'psycopg[binary]'`")


def load_results(path: Path) -> tuple[Settings, Session]:
    saved = json.loads(path.read_text())
    session = Session(**{key: value for key, value in saved["session"].items()
                         if key != "results"})
    session.results = {
        name: [Run(Throughput(**run["one_by_one"]), Throughput(**run["bulk"]),
                   Latency(**run["latency"])) for run in runs]
        for name, runs in saved["session"]["results"].items()}
    return Settings(**saved["settings"]), session


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    options = parse_arguments()
    systems = select_systems(options)
    if options.from_json:
        settings, session = load_results(options.from_json)
        systems = [system for system in all_systems() if system.name in session.results]
    else:
        settings = Settings(runs=options.runs or (1 if options.quick else 3),
                            jobs=options.jobs or (2_000 if options.quick else 10_000),
                            probes=options.probes or (50 if options.quick else 200),
                            interval=options.interval)
        bench = Bench(options.url, options.keep)
        check_environment(systems)
        about = about_machine(bench)
        started = time.monotonic()
        results = measure_all(bench, systems, settings)
        session = Session(about, " ".join(["python benchmarks/pg_bench.py", *sys.argv[1:]]),
                          time.monotonic() - started, load_average(), results)
        if options.json:
            options.json.write_text(json.dumps({"settings": asdict(settings),
                                                "session": asdict(session)}, indent=1))
    section = report(systems, settings, session)
    print(section)
    if options.write:
        write_section(options.write, section, RESULTS_START, RESULTS_END)


if __name__ == "__main__":
    main()
