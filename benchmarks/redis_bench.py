"""Benchmark backburner on Redis side by side with Celery, RQ, Dramatiq, Huey and arq.

Run in the benchmark venvs made by ``benchmarks/redis_setup.sh``:

    /work/bench-venv/bin/python benchmarks/redis_bench.py [--quick] [--write BENCHMARKS.md]

Every system runs on the same Redis (default 127.0.0.1:6379), each in a
database number of its own, and the harness deletes only the keys that
system creates there, before and after each measurement. See the Redis
section of BENCHMARKS.md for what each column measures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
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

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from benchmarks.marks import read_marks
from benchmarks.measure import Latency, Throughput, percentile, rates, stop_servers, wait_for
from benchmarks.report import load_average, write_section
from benchmarks.systems import Progress, base_environment, marks_progress

logger = logging.getLogger("benchmarks.redis_bench")

ROOT = Path(__file__).resolve().parent.parent
#: The venv with backburner, Celery, RQ, Dramatiq and Huey.
BENCH_VENV = Path(os.environ.get("BENCH_VENV", "/work/bench-venv"))
#: arq needs redis-py < 6 and Celery's kombu needs redis-py >= 6.1, so arq has a venv of its own.
ARQ_VENV = Path(os.environ.get("BENCH_ARQ_VENV", "/work/bench-arq-venv"))
RESULTS_START = "<!-- redis results: start (written by benchmarks/redis_bench.py --write) -->"
RESULTS_END = "<!-- redis results: end -->"
#: Pause between the boot job of a latency run and its first probe job.
SETTLE_SECONDS = 0.5
#: Jobs per bulk call.
CHUNK = 500


@dataclass(frozen=True)
class System:
    """One benchmark row: a job system, its settings and its worker processes."""

    kind: str
    processes: int
    database: int
    #: Key patterns (Redis SCAN syntax) of everything the system creates in its database.
    patterns: tuple[str, ...]
    settings: str
    enqueue_api: str
    bulk_api: str | None = None
    #: Max jobs per throughput run, for a system too slow to finish the full count in minutes.
    max_jobs: int | None = None

    @property
    def name(self) -> str:
        return f"{self.kind} ×{self.processes}"

    @property
    def venv(self) -> Path:
        return ARQ_VENV if self.kind == "arq" else BENCH_VENV

    def url(self, base: str) -> str:
        """Return the Redis URL of the system's database."""
        if self.kind == "backburner":
            return f"{base}/{self.database}?prefix=bench:"
        return f"{base}/{self.database}"

    def environment(self, base: str, workdir: Path) -> dict[str, str]:
        name = "BACKBURNER_STORAGE_URL" if self.kind == "backburner" else "BENCH_REDIS_URL"
        return {**base_environment(), name: self.url(base), "BENCH_MARKS": str(workdir / "marks")}

    def server_commands(self, base: str) -> list[list[str]]:
        """Return one command line per process to start, on the Redis at ``base``."""
        bin_dir = self.venv / "bin"
        count = str(self.processes)
        if self.kind == "backburner":
            return [[str(bin_dir / "backburner"), "server", "--app",
                     "benchmarks.bb_app:app"]] * self.processes
        if self.kind == "celery":
            return [[str(bin_dir / "celery"), "-A", "benchmarks.redis_celery_app", "worker",
                     "--pool", "prefork", "--concurrency", count]]
        if self.kind == "rq":
            return [[str(bin_dir / "rq"), "worker-pool", "-n", count, "--url",
                     self.url(base), "default"]]
        if self.kind == "dramatiq":
            return [[str(bin_dir / "dramatiq"), "benchmarks.redis_dramatiq_app",
                     "--processes", count, "--threads", "8"]]
        if self.kind == "huey":
            return [[str(bin_dir / "huey_consumer"), "benchmarks.redis_huey_app.huey", "-k",
                     "process", "-w", count]]
        return [[str(bin_dir / "arq"), "benchmarks.redis_arq_app.WorkerSettings"]] * self.processes


def all_systems() -> list[System]:
    """Return every benchmark row, in table order."""
    rows = []
    for processes in (1, 2):
        rows += [
            System("backburner", processes, 10, ("bench:*",),
                   f"{processes} × `backburner server --app benchmarks.bb_app:app` (defaults: "
                   "10 worker threads, log level info)", "`noop.enqueue(i, t)`",
                   "`app.enqueue_many([noop.call(i, t), ...])`"),
            System("celery", processes, 11, ("celery*", "_kombu.*", "unacked*"),
                   f"`celery worker --pool prefork --concurrency {processes}` (defaults: "
                   "prefetch ×4, log level warning, no result backend)", "`noop.delay(i, t)`"),
            System("rq", processes, 12, ("rq:*",),
                   f"`rq worker-pool -n {processes}` (default Worker: forks a work horse per "
                   "job)", "`queue.enqueue(noop, i, t)`",
                   "`queue.enqueue_many([Queue.prepare_data(noop, (i, t)), ...])`",
                   max_jobs=2_000),
            System("dramatiq", processes, 13, ("dramatiq*",),
                   f"`dramatiq --processes {processes} --threads 8` (default middleware)",
                   "`noop.send(i, t)`"),
            System("huey", processes, 14, ("huey.*",),
                   f"`huey_consumer -k process -w {processes}` (RedisHuey defaults)",
                   "`noop(i, t)`"),
            System("arq", processes, 15, ("arq:*",),
                   f"{processes} × `arq WorkerSettings` (defaults: max_jobs 10, poll_delay "
                   "0.5 s)", "`await pool.enqueue_job('noop', i, t)`", max_jobs=4_000),
        ]
    return rows


# -- one measurement ----------------------------------------------------------


@dataclass
class Bench:
    """The Redis under test and the options of the run."""

    base: str
    keep: bool

    def client(self, system: System) -> redis.Redis:
        return redis.Redis.from_url(f"{self.base}/{system.database}")

    def clean(self, system: System) -> int:
        """Delete the keys the system creates in its database; return how many."""
        deleted = 0
        with self.client(system) as client:
            for pattern in system.patterns:
                keys = list(client.scan_iter(match=pattern, count=1000))
                for start in range(0, len(keys), 1000):
                    deleted += client.delete(*keys[start:start + 1000])
        return deleted


@contextmanager
def workdir_for(bench: Bench, system: System) -> Iterator[Path]:
    """Yield a fresh folder for marks and server logs, on a database cleaned before and after."""
    path = Path(tempfile.mkdtemp(prefix=f"bench-redis-{system.kind}-"))
    bench.clean(system)
    try:
        yield path
    finally:
        bench.clean(system)
        if bench.keep:
            logger.info("kept %s", path)
        else:
            shutil.rmtree(path)


def run_client(bench: Bench, system: System, workdir: Path, action: str, jobs: int, *,
               first: int = 0, interval: float | None = None) -> float:
    """Run ``benchmarks.redis_client`` in a new process; return the seconds it took to enqueue."""
    command = [str(system.venv / "bin" / "python"), "-m", "benchmarks.redis_client", system.kind,
               action, "--jobs", str(jobs), "--first", str(first), "--chunk", str(CHUNK)]
    if interval is not None:
        command += ["--interval", str(interval)]
    finished = subprocess.run(command, cwd=ROOT, env=system.environment(bench.base, workdir),
                              capture_output=True, text=True, timeout=900, check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {finished.returncode}:\n"
                           f"{finished.stderr[-2000:]}")
    return float(json.loads(finished.stdout)["seconds"])


@contextmanager
def servers(bench: Bench, system: System, workdir: Path) -> Iterator[float]:
    """Start the system's processes and yield the time just before the first started."""
    processes: list[subprocess.Popen[bytes]] = []
    environment = system.environment(bench.base, workdir)
    started_at = time.time()
    try:
        for number, command in enumerate(system.server_commands(bench.base)):
            with open(workdir / f"server-{number}.log", "wb") as log:
                processes.append(subprocess.Popen(command, cwd=ROOT, env=environment,
                                                  stdout=log, stderr=subprocess.STDOUT,
                                                  start_new_session=True))
        yield started_at
    finally:
        stop_servers(processes)


def progress(bench: Bench, system: System, workdir: Path) -> Progress:
    """Return how many throughput jobs are done, and when the first and the last finished.

    For backburner "done" is the Succeeded state change in storage. The last
    one is the newest Succeeded job's. The first is the earliest job start,
    which comes slightly before its Succeeded time, so the steady rate errs
    low. The peers keep no such record by default, so for them it is the job
    start from the marks file.
    """
    if system.kind != "backburner":
        return marks_progress(workdir)
    from backburner.storage import open_storage

    storage = open_storage(system.url(bench.base))
    try:
        done = storage.count_jobs_by_state()["Succeeded"]
        newest = storage.list_jobs("Succeeded", limit=1)
    finally:
        storage.close()
    starts = [mark.started_at for mark in read_marks(str(workdir / "marks")) if mark.index >= 0]
    if not done or not newest or not starts:
        return Progress(done, None, None)
    return Progress(done, min(starts), newest[0].state_at)


def processing_timeout(jobs: int) -> float:
    """Return how long to wait for ``jobs`` jobs: at least 120 s, or 40 jobs per second."""
    return max(120.0, jobs / 40)


def measure_throughput(bench: Bench, system: System, jobs: int, *, bulk: bool) -> Throughput:
    """Enqueue ``jobs`` jobs (in bulk or one by one), then start the workers and time
    how long they take to finish them."""
    with workdir_for(bench, system) as workdir:
        seconds = run_client(bench, system, workdir, "bulk" if bulk else "enqueue", jobs)
        with servers(bench, system, workdir) as started_at:
            wait_for(lambda: progress(bench, system, workdir).done >= jobs,
                     processing_timeout(jobs), interval=0.1)
        final = progress(bench, system, workdir)
    return Throughput(jobs / seconds, *rates(final, started_at, jobs), final.done, jobs, 0)


def measure_latency(bench: Bench, system: System, probes: int, interval: float) -> Latency:
    """Time the boot (workers start to the start of one job enqueued before), then
    enqueue ``probes`` jobs ``interval`` seconds apart into the idle workers."""
    with workdir_for(bench, system) as workdir:
        run_client(bench, system, workdir, "enqueue", 1, first=-1)
        with servers(bench, system, workdir) as started_at:
            booted = wait_for(lambda: bool(read_marks(str(workdir / "marks"))), 60.0,
                              interval=0.01)
            time.sleep(SETTLE_SECONDS)
            run_client(bench, system, workdir, "probe", probes, interval=interval)
            wait_for(lambda: marks_progress(workdir).done >= probes, 60.0)
        marks = read_marks(str(workdir / "marks"))
    boot = [mark.started_at - started_at for mark in marks if mark.index < 0]
    latencies = [(mark.started_at - mark.enqueued_at) * 1000 for mark in marks if mark.index >= 0]
    return Latency(boot[0] if booted and boot else None, latencies, probes, 0)


# -- rounds and the report ----------------------------------------------------


@dataclass
class Run:
    """Everything measured for one system in one round."""

    one_by_one: Throughput
    bulk: Throughput | None
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
    """The machine, command and duration of a run, and its results."""

    about: str
    command: str
    seconds: float
    load_after: str
    results: dict[str, list[Run]] = field(default_factory=dict)


def measure_run(bench: Bench, system: System, settings: Settings) -> Run:
    jobs = min(settings.jobs, system.max_jobs or settings.jobs)
    one_by_one = measure_throughput(bench, system, jobs, bulk=False)
    bulk = measure_throughput(bench, system, jobs, bulk=True) if system.bulk_api else None
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
            logger.info("round %d/%d %s done in %.1f s: enqueue %.0f/s, processing %s/s "
                        "(%d/%d done), p50 %s ms", round_number, settings.runs, system.name,
                        time.monotonic() - started, run.one_by_one.enqueue_rate,
                        format_number(run.one_by_one.processing_rate), run.one_by_one.done,
                        run.one_by_one.jobs, latency_cell([run], 50))
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
            if batch is not None and batch.done != batch.jobs:
                shortfalls.append(f"run {number} {label}: {batch.done}/{batch.jobs} done")
        if len(run.latency.latencies_ms) != run.latency.probes:
            shortfalls.append(f"run {number} latency: {len(run.latency.latencies_ms)}/"
                              f"{run.latency.probes} done")
    if shortfalls:
        return "; ".join(shortfalls)
    first = runs[0]
    return (f"{len(runs)} run{'s' if len(runs) > 1 else ''}, all {first.one_by_one.jobs}/"
            f"{first.one_by_one.jobs} + {first.latency.probes}/{first.latency.probes} done")


def table(systems: list[System], results: dict[str, list[Run]]) -> str:
    lines = [
        ("| system | enqueue 1-by-1 jobs/s | enqueue bulk jobs/s | processing jobs/s (worker "
         "start → last job) | processing jobs/s steady (1st → last job) | worker boot s | "
         "latency p50 ms | p95 ms | p99 ms | checks |"),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for system in systems:
        runs = results[system.name]
        bulk = [run.bulk for run in runs if run.bulk is not None]
        lines.append(" | ".join([
            f"| {system.name}", spread([run.one_by_one.enqueue_rate for run in runs]),
            spread([batch.enqueue_rate for batch in bulk]) if bulk else "–",
            spread([run.one_by_one.processing_rate for run in runs]),
            spread([run.one_by_one.steady_rate for run in runs]),
            spread([run.latency.boot_seconds for run in runs], 2),
            latency_cell(runs, 50), latency_cell(runs, 95), latency_cell(runs, 99),
            checks(runs) + " |"]))
    notes = []
    for system in systems:
        bulk = [run.bulk for run in results[system.name] if run.bulk is not None]
        if bulk:
            done = ", ".join(f"{batch.done}/{batch.jobs}" for batch in bulk)
            notes.append(f"{system.name}: {spread([batch.processing_rate for batch in bulk])} "
                         f"jobs/s incl. boot, {done} done")
    if notes:
        lines += ["", "Processing of the bulk-enqueued jobs (a check that they are ordinary "
                  "jobs): " + "; ".join(notes)]
    return "\n".join(lines)


def settings_table(systems: list[System]) -> str:
    lines = ["| system | enqueue API | bulk API | workers |", "|---|---|---|---|"]
    lines += [f"| {system.name} | {system.enqueue_api} | {system.bulk_api or 'none'} | "
              f"{system.settings} |" for system in systems]
    return "\n".join(lines)


def versions(bench: Bench) -> str:
    """Return the versions of Redis, Python and every package measured."""
    def installed(venv: Path, packages: list[str]) -> str:
        code = ("import importlib.metadata as m, sys\n"
                "for name in sys.argv[1:]:\n"
                "    try: print(name, m.version(name))\n"
                "    except m.PackageNotFoundError: print(name, 'not installed')\n")
        result = subprocess.run([str(venv / "bin" / "python"), "-c", code, *packages],
                                capture_output=True, text=True, check=False)
        return ", ".join(result.stdout.split("\n")[:-1])

    with redis.Redis.from_url(f"{bench.base}/0") as client:
        server = client.info("server")["redis_version"]
    main = installed(BENCH_VENV, ["backburner", "celery", "kombu", "rq", "dramatiq", "huey",
                                  "redis", "hiredis"])
    return (f"- Redis {server}, Python {platform.python_version()}\n- {main}\n"
            f"- arq venv: {installed(ARQ_VENV, ['arq', 'redis', 'hiredis'])}")


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
         "system, fewer throughput jobs where the checks column says so, median (min–max). "
         f"The whole run took {session.seconds:.0f} s."),
        table(systems, session.results),
        "Settings per system:",
        settings_table(systems),
    ])


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke check: 1 run, 2,000 jobs, 50 latency probes")
    parser.add_argument("--runs", type=int, help="runs per system (default 3, quick 1)")
    parser.add_argument("--jobs", type=int, help="jobs per throughput run (default 20,000)")
    parser.add_argument("--probes", type=int, help="latency probe jobs (default 200)")
    parser.add_argument("--interval", type=float, default=0.02,
                        help="seconds between latency probes (default 0.02)")
    parser.add_argument("--systems", help="comma-separated kinds to run, e.g. backburner,huey "
                        "(each selects its ×1 and ×2 rows)")
    parser.add_argument("--processes", help="comma-separated process counts (default 1,2)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379",
                        help="Redis to measure on, without a database number; systems use "
                        "databases 10 to 15 (default redis://127.0.0.1:6379)")
    parser.add_argument("--write", type=Path, metavar="FILE",
                        help="also write the results into the Redis section of FILE")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also save raw results as JSON")
    parser.add_argument("--from-json", type=Path, metavar="FILE",
                        help="measure nothing: print (and --write) the report of a --json file")
    parser.add_argument("--keep", action="store_true",
                        help="keep each measurement's temporary folder (marks, server logs)")
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


def check_environment(systems: list[System], base: str) -> None:
    """Exit with the setup command if a program of ``systems`` is not installed."""
    missing = {command[0] for system in systems for command in system.server_commands(base)
               if not Path(command[0]).exists()}
    if missing:
        sys.exit(f"missing {', '.join(sorted(missing))}: run `bash benchmarks/redis_setup.sh`")


def load_results(path: Path) -> tuple[Settings, Session]:
    saved = json.loads(path.read_text())
    session = Session(**{key: value for key, value in saved["session"].items()
                         if key != "results"})
    session.results = {
        name: [Run(Throughput(**run["one_by_one"]),
                   Throughput(**run["bulk"]) if run["bulk"] else None,
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
                            jobs=options.jobs or (2_000 if options.quick else 20_000),
                            probes=options.probes or (50 if options.quick else 200),
                            interval=options.interval)
        bench = Bench(options.redis.rstrip("/"), options.keep)
        check_environment(systems, bench.base)
        about = about_machine(bench)
        started = time.monotonic()
        results = measure_all(bench, systems, settings)
        session = Session(about, " ".join(["python benchmarks/redis_bench.py", *sys.argv[1:]]),
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
