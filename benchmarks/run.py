"""Run the SQLite benchmarks of backburner and its peers and print a markdown table.

Run in the benchmark venv made by ``benchmarks/setup.sh``:

    /work/bench-venv/bin/python benchmarks/run.py [--quick] [--write BENCHMARKS.md]

See BENCHMARKS.md for what each column measures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import logging
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.measure import Latency, Throughput, measure_latency, measure_throughput, percentile
from benchmarks.report import load_average, write_section
from benchmarks.systems import System, all_systems

logger = logging.getLogger("benchmarks.run")

ROOT = Path(__file__).resolve().parent.parent
RESULTS_START = "<!-- results: start (written by benchmarks/run.py --write) -->"
RESULTS_END = "<!-- results: end -->"


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
    keep: bool


def measure_run(system: System, settings: Settings) -> Run:
    """Measure one round of every row of ``system``."""
    jobs = min(settings.jobs, system.max_jobs or settings.jobs)
    one_by_one = measure_throughput(system, jobs, bulk=False, keep=settings.keep)
    bulk = None
    if system.bulk:
        bulk = measure_throughput(system, jobs, bulk=True, keep=settings.keep)
    latency = measure_latency(system, settings.probes, settings.interval, keep=settings.keep)
    return Run(one_by_one, bulk, latency)


def measure_all(systems: list[System], settings: Settings) -> dict[str, list[Run]]:
    """Measure every system once per round, rounds interleaved so noise spreads evenly."""
    results: dict[str, list[Run]] = {system.name: [] for system in systems}
    for round_number in range(1, settings.runs + 1):
        for system in systems:
            started = time.monotonic()
            run = measure_run(system, settings)
            results[system.name].append(run)
            logger.info("round %d/%d %s done in %.1f s: %s", round_number, settings.runs,
                        system.name, time.monotonic() - started, summarize_run(run))
    return results


def summarize_run(run: Run) -> str:
    """Return a one-line summary of a run for the progress log."""
    latencies = run.latency.latencies_ms
    p50 = f"{percentile(latencies, 50):.1f} ms" if latencies else "-"
    return (f"enqueue {run.one_by_one.enqueue_rate:,.0f}/s, processing "
            f"{format_number(run.one_by_one.processing_rate)}/s ({run.one_by_one.done} done), "
            f"boot {format_number(run.latency.boot_seconds, 2)} s, p50 {p50}")


def format_number(value: float | None, decimals: int = 0) -> str:
    """Format a value with thousands separators, or an en dash for none."""
    return "–" if value is None else f"{value:,.{decimals}f}"


def format_spread(values: list[float | None], decimals: int = 0) -> str:
    """Format the median with the minimum and maximum in brackets, over the runs that
    produced a value."""
    present = [value for value in values if value is not None]
    if not present:
        return "–"
    if len(present) == 1:
        return format_number(present[0], decimals)
    return (f"{format_number(statistics.median(present), decimals)} "
            f"({format_number(min(present), decimals)}–{format_number(max(present), decimals)})")


def latency_column(runs: list[Run], percent: float) -> str:
    """Format one latency percentile over the runs."""
    values = [percentile(run.latency.latencies_ms, percent) if run.latency.latencies_ms
              else None for run in runs]
    return format_spread(values, 1)


def checks(runs: list[Run]) -> str:
    """Say whether every job of every run was done (or which runs fell short), and count
    the server log lines that contain "database is locked"."""
    shortfalls = []
    for run_number, run in enumerate(runs, 1):
        for label, batch in (("1-by-1", run.one_by_one), ("bulk", run.bulk)):
            if batch is not None and batch.done != batch.jobs:
                shortfalls.append(f"run {run_number} {label}: {batch.done}/{batch.jobs} done")
        latency = run.latency
        if len(latency.latencies_ms) != latency.probes:
            shortfalls.append(f"run {run_number} latency: {len(latency.latencies_ms)}/"
                              f"{latency.probes} done")
        if latency.boot_seconds is None:
            shortfalls.append(f"run {run_number}: boot job not run")

    first = runs[0]
    parts = shortfalls or [
        (f"{len(runs)} run{'s' if len(runs) > 1 else ''}, all "
         f"{first.one_by_one.jobs}/{first.one_by_one.jobs} + "
         f"{first.latency.probes}/{first.latency.probes} done")]
    locked_lines = sum(run.one_by_one.locked_lines + run.latency.locked_lines
                      + (run.bulk.locked_lines if run.bulk else 0) for run in runs)
    if locked_lines:
        parts.append(f"{locked_lines} server log lines with \"database is locked\"")
    return "; ".join(parts)


def table(systems: list[System], results: dict[str, list[Run]]) -> str:
    """Return the results as a markdown table, then the bulk-processing check."""
    lines = [
        ("| system | backend | enqueue 1-by-1 jobs/s | enqueue bulk jobs/s | processing jobs/s "
         "(server start → last job) | processing jobs/s steady (1st → last job) | server boot s "
         "| latency p50 ms | p95 ms | p99 ms | checks |"),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for system in systems:
        runs = results[system.name]
        bulk = [run.bulk for run in runs if run.bulk is not None]
        lines.append(" | ".join([
            f"| {system.name}", "SQLite",
            format_spread([run.one_by_one.enqueue_rate for run in runs]),
            format_spread([batch.enqueue_rate for batch in bulk]) if bulk else "–",
            format_spread([run.one_by_one.processing_rate for run in runs]),
            format_spread([run.one_by_one.steady_rate for run in runs]),
            format_spread([run.latency.boot_seconds for run in runs], 2),
            latency_column(runs, 50), latency_column(runs, 95), latency_column(runs, 99),
            checks(runs) + " |"]))

    notes = []
    for system in systems:
        bulk = [run.bulk for run in results[system.name] if run.bulk is not None]
        if bulk:
            done = ", ".join(f"{batch.done}/{batch.jobs}" for batch in bulk)
            if all(batch.done == batch.jobs for batch in bulk):
                done = f"all {bulk[0].jobs}/{bulk[0].jobs}"
            notes.append(f"{system.name}: {format_spread([batch.processing_rate for batch in bulk])} "
                         f"jobs/s incl. boot, {done} done")
    if notes:
        lines += ["", "Processing of the bulk-enqueued jobs (a check that they are ordinary "
                  "jobs): " + "; ".join(notes)]
    return "\n".join(lines)


def settings_table(systems: list[System]) -> str:
    """Return the enqueue calls and server commands of each system as a markdown table."""
    lines = ["| system | enqueue API | bulk API | servers |", "|---|---|---|---|"]
    for system in systems:
        if system.client == "backburner":
            apis = "`noop.enqueue(i, t)`", "`app.enqueue_many([noop.call(i, t), ...])`, 500 per call"
        else:
            apis = "`noop(i, t)`", "none"
        lines.append(f"| {system.name} | {apis[0]} | {apis[1]} | {system.settings} |")
    return "\n".join(lines)


def machine() -> str:
    """Describe the machine, the versions measured and the date."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC\n"
            f"- machine: {os.cpu_count()} CPUs (`nproc`), {cpu}, "
            f"load average before the run {load_average()}\n"
            f"- Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}\n"
            f"- {package_versions()}; backburner checkout at {git_revision()}")


def git_revision() -> str:
    """Return the checkout's short commit id, noting uncommitted changes to the package."""
    def git(*arguments: str) -> str:
        return subprocess.run(["git", *arguments], cwd=ROOT, capture_output=True,
                              text=True, check=False).stdout.strip()

    revision = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--", "backburner"):
        return f"git {revision} with uncommitted changes in backburner/"
    return f"git {revision}"


def package_versions() -> str:
    """Return the installed versions of the packages measured."""
    versions = []
    for package in ("backburner", "huey", "django-q2", "Django"):
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package} not installed")
    return ", ".join(versions)


@dataclass
class Session:
    """What a report says about the run besides the results."""

    about_machine: str
    command: str
    seconds: float
    load_after: str


def report(systems: list[System], results: dict[str, list[Run]], settings: Settings,
           session: Session) -> str:
    """Return the markdown section that ``--write`` puts into BENCHMARKS.md."""
    return "\n\n".join([
        f"{session.about_machine}\n- load average after the run {session.load_after}",
        (f"`{session.command}`: {settings.jobs:,} jobs per throughput run, {settings.probes} "
         f"latency probes {settings.interval * 1000:.0f} ms apart, {settings.runs} run(s) per "
         "system, fewer throughput jobs where the checks column says so, median (min–max). "
         f"The whole run took {session.seconds:.0f} s."),
        table(systems, results),
        "Settings per system:",
        settings_table(systems),
    ])


def parse_arguments() -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description="Benchmark backburner and its peers on SQLite.")
    parser.add_argument("--quick", action="store_true",
                        help="smoke check: 1 run, 2,000 jobs, 50 latency probes")
    parser.add_argument("--runs", type=int, help="runs per system (default 3, quick 1)")
    parser.add_argument("--jobs", type=int, help="jobs per throughput run (default 10,000)")
    parser.add_argument("--probes", type=int, help="latency probe jobs (default 200)")
    parser.add_argument("--interval", type=float, default=0.02,
                        help="seconds between latency probes (default 0.02)")
    parser.add_argument("--systems", help="comma-separated systems to run, e.g. huey_sqlite. "
                        "The name backburner selects both backburner rows.")
    parser.add_argument("--write", type=Path, metavar="FILE",
                        help="also write the results section into FILE, e.g. BENCHMARKS.md")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also save raw results as JSON")
    parser.add_argument("--from-json", type=Path, metavar="FILE",
                        help="measure nothing: print (and --write) the report of a --json file")
    parser.add_argument("--keep", action="store_true",
                        help="keep each measurement's temporary folder (database, server logs)")
    return parser.parse_args()


def check_environment(systems: list[System]) -> None:
    """Exit with the setup command if a server program of ``systems`` is not installed
    next to this Python."""
    missing = [command[0] for system in systems for command in system.server_commands()
               if not Path(command[0]).exists()]
    if missing:
        sys.exit(f"missing {', '.join(sorted(set(missing)))}: run `bash benchmarks/setup.sh`, "
                 "then `/work/bench-venv/bin/python benchmarks/run.py` (or set BENCH_VENV)")


def load_results(path: Path) -> tuple[Settings, Session, dict[str, list[Run]]]:
    """Read a file saved by ``--json``."""
    saved = json.loads(path.read_text())
    results = {
        name: [Run(Throughput(**run["one_by_one"]),
                   Throughput(**run["bulk"]) if run["bulk"] else None,
                   Latency(**run["latency"])) for run in runs]
        for name, runs in saved["results"].items()}
    return Settings(**saved["settings"]), Session(**saved["session"]), results


def save_results(path: Path, settings: Settings, session: Session,
                 results: dict[str, list[Run]]) -> None:
    """Write the raw results with the settings and session details, for ``--from-json``."""
    raw = {name: [asdict(run) for run in runs] for name, runs in results.items()}
    path.write_text(json.dumps({"settings": asdict(settings), "session": asdict(session),
                                "results": raw}, indent=1))


def select_systems(names: str | None) -> list[System]:
    """Return the systems named in ``names`` (all if None), exiting on an unknown name."""
    systems = all_systems()
    if not names:
        return systems
    wanted = set(names.split(","))
    known = {system.name.split(" ")[0] for system in systems}
    if not wanted <= known:
        sys.exit(f"unknown system(s) {', '.join(sorted(wanted - known))}; "
                 f"choose from {', '.join(sorted(known))}")
    return [system for system in systems if system.name.split(" ")[0] in wanted]


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    options = parse_arguments()

    if options.from_json:
        settings, session, results = load_results(options.from_json)
        systems = [system for system in all_systems() if system.name in results]
    else:
        settings = Settings(runs=options.runs or (1 if options.quick else 3),
                            jobs=options.jobs or (2_000 if options.quick else 10_000),
                            probes=options.probes or (50 if options.quick else 200),
                            interval=options.interval, keep=options.keep)
        systems = select_systems(options.systems)
        check_environment(systems)
        about_machine = machine()
        started = time.monotonic()
        results = measure_all(systems, settings)
        session = Session(about_machine, " ".join(["python benchmarks/run.py", *sys.argv[1:]]),
                          time.monotonic() - started, load_average())
        if options.json:
            save_results(options.json, settings, session, results)

    section = report(systems, results, settings, session)
    print(section)
    if options.write:
        write_section(options.write, section, RESULTS_START, RESULTS_END)


if __name__ == "__main__":
    main()
