"""The ``backburner demo`` workload: analyse real files on embedded SQLite, one job per file.

The demo creates a fresh database in its folder, starts an in-process server
and runs:

- one ``demo.analyse_file`` job per source file, which measures SHA-256,
  lines, words, bytes and zlib-compressed bytes. A few of them raise a
  simulated transient error on their first run or two, so the server
  retries them after short delays;
- a delayed ``demo.write_timestamp`` job, scheduled 2 s ahead;
- once the file jobs and the delayed job have ended, a
  ``demo.write_report`` job that reads the file jobs' results from storage
  and writes ``report.md`` and ``report.json``;
- a ``demo.checksum_report`` continuation of the report job, which writes
  ``report.md.sha256`` when the report job has Succeeded;
- the recurring job ``demo-heartbeat``, which runs ``demo.heartbeat`` once a
  second to append a line to ``heartbeat.txt``. It is paused when the jobs
  have ended, so the database keeps it for ``backburner recurring list``.

While it runs, the demo serves the dashboard on 127.0.0.1 and prints its URL.
With ``keep_open`` the dashboard, the server and the heartbeat keep running
after the summary, until Ctrl-C.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shlex
import signal
import sys
import sysconfig
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import click

from backburner import serialization, states
from backburner.app import Backburner
from backburner.context import JobContext
from backburner.dashboard.background import BackgroundServer
from backburner.job import Job

ANALYSE_FILE = "demo.analyse_file"
WRITE_TIMESTAMP = "demo.write_timestamp"
WRITE_REPORT = "demo.write_report"
CHECKSUM_REPORT = "demo.checksum_report"
HEARTBEAT = "demo.heartbeat"
#: The recurring job that runs HEARTBEAT every second while the demo runs.
HEARTBEAT_ID = "demo-heartbeat"
HEARTBEAT_CRON = "* * * * * *"
#: Seconds to wait, once the heartbeat is paused, for the jobs it created to end.
HEARTBEAT_DRAIN_TIMEOUT = 15.0
#: The dashboard listens on this address only, so only this machine can open it.
DASHBOARD_HOST = "127.0.0.1"
DEFAULT_DASHBOARD_PORT = 8000

#: Seconds before each automatic retry of a file job; short so the demo stays fast.
RETRY_DELAYS = (0.5, 1.0)
FILE_JOB_RETRIES = 3
#: File jobs chosen (evenly spread over the input) to fail on purpose before succeeding.
FLAKY_FILE_JOBS = 6
#: Seconds between scheduling the delayed job and its due time.
SCHEDULE_DELAY = 2.0
#: How often the server moves due delayed jobs and retries to their queues, in seconds.
SCHEDULE_POLL_INTERVAL = 0.2
#: How often the demo reads job counts while it waits, in seconds.
WAIT_POLL_INTERVAL = 0.2
SHUTDOWN_TIMEOUT = 5.0
#: The demo gives up after DEADLINE_SECONDS plus DEADLINE_SECONDS_PER_FILE per file. The
#: bound is far above a normal run, so it only stops a stuck demo.
DEADLINE_SECONDS = 60.0
DEADLINE_SECONDS_PER_FILE = 0.25
TOP_FILES = 10
#: Folders under the standard library that hold installed packages, not the standard library.
SKIPPED_FOLDERS = frozenset({"site-packages", "dist-packages", "__pycache__"})

DATABASE_FILE = "demo.db"
MANIFEST_FILE = "jobs.json"
REPORT_MARKDOWN = "report.md"
REPORT_JSON = "report.json"
REPORT_CHECKSUM = "report.md.sha256"
TIMESTAMP_FILE = "delayed.txt"
HEARTBEAT_FILE = "heartbeat.txt"
#: Files a previous run left behind, removed first so that each run starts clean.
OUTPUT_FILES = (DATABASE_FILE, f"{DATABASE_FILE}-wal", f"{DATABASE_FILE}-shm",
                f"{DATABASE_FILE}-journal", MANIFEST_FILE, REPORT_MARKDOWN, REPORT_JSON,
                REPORT_CHECKSUM, TIMESTAMP_FILE, HEARTBEAT_FILE)

#: States after which a job runs no more unless someone requeues it.
ENDED_STATES = (states.SUCCEEDED, states.FAILED, states.DELETED)


class SimulatedTransientError(RuntimeError):
    """Raised on purpose by a demo file job so that the server retries it."""


# -- the work ---------------------------------------------------------------


def find_source_files(source: Path, limit: int) -> list[Path]:
    """Return up to ``limit`` ``*.py`` files under ``source``, sorted by relative path.

    Installed packages (site-packages, dist-packages) and symbolic links to
    folders are skipped.
    """
    found: list[tuple[str, Path]] = []
    for folder, subfolders, files in os.walk(source):
        subfolders[:] = [name for name in subfolders if name not in SKIPPED_FOLDERS]
        for name in files:
            path = Path(folder, name)
            if name.endswith(".py") and path.is_file():
                found.append((path.relative_to(source).as_posix(), path))
    found.sort()
    return [path for _, path in found[:limit]]


def analyse_bytes(data: bytes) -> dict[str, Any]:
    """Measure file contents: SHA-256, lines, whitespace-separated words, bytes, zlib bytes."""
    return {
        "sha256": hashlib.sha256(data).hexdigest(),
        "lines": len(data.splitlines()),
        "words": len(data.split()),
        "bytes": len(data),
        "compressed_bytes": len(zlib.compress(data)),
    }


def pick_flaky_files(count: int) -> dict[int, int]:
    """Choose which of ``count`` file jobs fail on purpose: index -> failed runs before success.

    The choice is deterministic and evenly spread. The first chosen job fails
    twice, so both retry delays are used, and the others fail once.
    """
    chosen = min(FLAKY_FILE_JOBS, count)
    indexes = sorted({(k * count) // chosen + (count // chosen) // 2 for k in range(chosen)})
    return {index: 2 if position == 0 else 1 for position, index in enumerate(indexes)}


def create_app(directory: Path) -> Backburner:
    """Create the demo app on ``<directory>/demo.db`` and register its job functions."""
    app = Backburner(sqlite_url(directory / DATABASE_FILE))

    @app.job(name=ANALYSE_FILE, retries=FILE_JOB_RETRIES, retry_delays=RETRY_DELAYS)
    def analyse_file(path: str, failures: int = 0, *, context: JobContext) -> dict[str, Any]:
        if context.retry_count < failures:
            raise SimulatedTransientError(
                f"simulated transient error for {Path(path).name} "
                f"(planned failure {context.retry_count + 1} of {failures})")
        return {"path": path, **analyse_bytes(Path(path).read_bytes())}

    @app.job(name=WRITE_TIMESTAMP, retries=0)
    def write_timestamp(path: str, scheduled_at: dt.datetime) -> float:
        ran_at = dt.datetime.now(dt.UTC)
        waited = (ran_at - scheduled_at).total_seconds()
        Path(path).write_text(f"scheduled at {scheduled_at.isoformat()}\n"
                              f"ran at       {ran_at.isoformat()}\n"
                              f"waited       {waited:.2f} s\n", encoding="utf-8")
        return round(waited, 3)

    @app.job(name=WRITE_REPORT, retries=0)
    def write_report(manifest_path: str) -> dict[str, Any]:
        report = build_report(app, json.loads(Path(manifest_path).read_text(encoding="utf-8")))
        folder = Path(manifest_path).parent
        (folder / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        (folder / REPORT_MARKDOWN).write_text(render_report(report), encoding="utf-8")
        return report["totals"]

    @app.job(name=CHECKSUM_REPORT, retries=0)
    def checksum_report(report_path: str) -> str:
        path = Path(report_path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        Path(f"{report_path}.sha256").write_text(f"{digest}  {path.name}\n", encoding="utf-8")
        return digest

    @app.job(name=HEARTBEAT, retries=0)
    def heartbeat(path: str) -> str:
        ticked_at = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        # One short append per tick: O_APPEND keeps concurrent ticks on separate lines.
        with open(path, "a", encoding="utf-8") as file:
            file.write(f"tick at {ticked_at}\n")
        return ticked_at

    return app


def count_ticks(folder: Path) -> int:
    """Return how many times the heartbeat job ran, from the lines of its file."""
    try:
        with open(folder / HEARTBEAT_FILE, "rb") as file:
            return sum(1 for _ in file)
    except FileNotFoundError:
        return 0


def sqlite_url(path: Path) -> str:
    """Return the ``sqlite:///`` URL of an absolute database path."""
    return "sqlite:///" + quote(str(path.resolve()))


# -- the report -------------------------------------------------------------


def build_report(app: Backburner, manifest: dict[str, Any]) -> dict[str, Any]:
    """Read the file jobs listed in ``manifest`` from storage and total their results."""
    source = Path(manifest["source"])
    files: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    retried: list[dict[str, Any]] = []
    for entry in manifest["jobs"]:
        job = app.get_job(entry["job_id"])
        relative = Path(entry["path"]).relative_to(source).as_posix()
        result = job_result(job)
        if job is None or not isinstance(result, dict):
            failed.append({"path": relative, "job_id": entry["job_id"],
                           "state": job.state if job else "missing"})
            continue
        files.append({**result, "path": relative})
        if job.retry_count:
            retried.append({"path": relative, "job_id": job.id, "retries": job.retry_count})

    return {"source": str(source), "totals": total_results(files),
            "largest_files": sorted(files, key=lambda f: (-f["bytes"], f["path"]))[:TOP_FILES],
            "retried_jobs": retried, "total_retries": sum(r["retries"] for r in retried),
            "failed_jobs": failed,
            "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def job_result(job: Job | None) -> Any:
    """Return the decoded return value of a Succeeded job, or None."""
    if job is None or job.state != states.SUCCEEDED:
        return None
    for entry in reversed(job.history):
        if entry.state == states.SUCCEEDED and "result" in entry.data:
            return serialization.loads(entry.data["result"])
    return None


def total_results(files: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum the per-file measurements, with ``ratio`` as compressed bytes over bytes."""
    totals = {key: sum(f[key] for f in files)
              for key in ("lines", "words", "bytes", "compressed_bytes")}
    ratio = totals["compressed_bytes"] / totals["bytes"] if totals["bytes"] else 0.0
    return {"files": len(files), **totals, "ratio": round(ratio, 4)}


def render_report(report: dict[str, Any]) -> str:
    """Render the report as Markdown."""
    totals = report["totals"]
    lines = [
        "# backburner demo report", "",
        f"Source: `{report['source']}`  ",
        f"Written: {report['written_at']}", "",
        "## Totals", "",
        "| files | lines | words | bytes | compressed bytes | ratio |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        (f"| {totals['files']:,} | {totals['lines']:,} | {totals['words']:,} | "
         f"{totals['bytes']:,} | {totals['compressed_bytes']:,} | {totals['ratio']:.3f} |"), "",
        f"## Largest {len(report['largest_files'])} files", "",
        "| file | bytes | lines | compressed bytes | SHA-256 |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    lines += [f"| `{f['path']}` | {f['bytes']:,} | {f['lines']:,} | {f['compressed_bytes']:,} "
              f"| `{f['sha256'][:16]}…` |" for f in report["largest_files"]]

    lines += ["", "## Retries", "",
              (f"{plural(len(report['retried_jobs']), 'job')} retried "
               f"{plural(report['total_retries'], 'time')} in all after simulated transient "
               "errors."), ""]
    lines += [f"- `{r['path']}`: {plural(r['retries'], 'retry', 'retries')}, job {r['job_id']}"
              for r in report["retried_jobs"]]
    if report["failed_jobs"]:
        lines += ["", "## Failed", ""]
        lines += [f"- `{f['path']}`: job {f['job_id']} is {f['state']}"
                  for f in report["failed_jobs"]]
    return "\n".join(lines) + "\n"


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """Return ``count`` followed by the singular or plural noun, e.g. "1 job", "2 jobs"."""
    return f"{count:,} {singular if count == 1 else plural_form or singular + 's'}"


# -- the console ------------------------------------------------------------


class ProgressLine:
    """A progress bar on one line of ``stream``, safe to use from several threads.

    On a terminal it is redrawn in place with a carriage return. Elsewhere a
    plain line is written at most every ``quiet_interval`` seconds.
    """

    WIDTH = 30

    def __init__(self, total: int, stream: TextIO, quiet_interval: float = 5.0) -> None:
        self.total = total
        self.stream = stream
        self.interactive = stream.isatty()
        self.quiet_interval = quiet_interval
        self._text = ""
        self._last_plain = 0.0
        self._lock = threading.Lock()

    def show(self, done: int, note: str) -> None:
        """Draw ``done`` of ``total`` jobs with a short note."""
        filled = self.WIDTH * min(done, self.total) // max(self.total, 1)
        text = (f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] "
                f"{done}/{self.total} jobs ended  {note}")
        with self._lock:
            self._text = text
            if self.interactive:
                self.stream.write("\r\x1b[K" + text)
                self.stream.flush()
            elif done >= self.total or time.monotonic() - self._last_plain >= self.quiet_interval:
                self._last_plain = time.monotonic()
                self.stream.write(text + "\n")

    def write_above(self, line: str) -> None:
        """Write a line, such as a log record, above the bar, then draw the bar again."""
        with self._lock:
            redraw = self.interactive and bool(self._text)
            if redraw:
                self.stream.write("\r\x1b[K")
            self.stream.write(line + "\n")
            if redraw:
                self.stream.write(self._text)
            self.stream.flush()

    def finish(self) -> None:
        """End the bar's line so that later output starts on a new line."""
        with self._lock:
            if self.interactive and self._text:
                self.stream.write("\n")
                self.stream.flush()
            self._text = ""


class ProgressLogHandler(logging.Handler):
    """Writes log records above the progress bar instead of through it."""

    def __init__(self, progress: ProgressLine) -> None:
        super().__init__()
        self.progress = progress
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.progress.write_above(self.format(record))
        # Like logging.StreamHandler, report a failed write and carry on.
        except Exception:  # noqa: BLE001
            self.handleError(record)


# -- the driver -------------------------------------------------------------


def run_demo(directory: str, source: str | None, limit: int, workers: int | None, *,
             dashboard_port: int | None = DEFAULT_DASHBOARD_PORT,
             keep_open: bool = False) -> int:
    """Run the demo in ``directory`` and return the exit code.

    ``dashboard_port`` is the dashboard's port on 127.0.0.1: a taken port is
    replaced by a free one, 0 always picks a free one, and None serves no
    dashboard. ``keep_open`` keeps the dashboard and the server running after
    the summary until Ctrl-C, which then ends the demo normally.

    The code is 0 when every job Succeeded, 130 after Ctrl-C while jobs run,
    2 for invalid options and 1 otherwise.
    """
    if keep_open and dashboard_port is None:
        click.echo("error: --keep-open keeps the dashboard open, so it cannot be combined with "
                   "--no-dashboard", err=True)
        return 2
    folder = Path(directory).resolve()
    root = Path(source or sysconfig.get_paths()["stdlib"]).resolve()
    files = find_source_files(root, limit) if root.is_dir() else []
    if not files:
        click.echo(f"error: no *.py files found under {root}; pass --source FOLDER", err=True)
        return 1

    folder.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_FILES:
        (folder / name).unlink(missing_ok=True)
    app = create_app(folder)
    progress = ProgressLine(total=len(files) + 3, stream=sys.stderr)
    restore_logging = quiet_logging(progress)
    click.echo(f"Analysing {plural(len(files), 'file')} from {root}, one job each, "
               f"on {app.storage_url}", err=True)
    try:
        with serve_dashboard(app, dashboard_port) as dashboard_url:
            return drive(app, folder, root, files, progress, workers,
                         dashboard_url=dashboard_url, keep_open=keep_open)
    except KeyboardInterrupt:
        progress.finish()
        click.echo("interrupted; unfinished jobs stay in the database", err=True)
        return 130
    finally:
        restore_logging()
        app.close()


def quiet_logging(progress: ProgressLine) -> Callable[[], None]:
    """Show only WARNING and above from backburner and uvicorn, above the progress bar.

    Return a function that restores the previous logging setup.
    """
    handler = ProgressLogHandler(progress)
    loggers = [logging.getLogger(name) for name in ("backburner", "uvicorn")]
    saved = [(logger.level, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False

    def restore() -> None:
        for logger, (level, propagate) in zip(loggers, saved):
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate

    return restore


@contextmanager
def serve_dashboard(app: Backburner, port: int | None) -> Iterator[str | None]:
    """Serve the app's dashboard on 127.0.0.1 while the block runs and yield its URL.

    Yield None when ``port`` is None, or when the dashboard cannot start (the
    demo then runs without it, after a warning).
    """
    if port is None:
        yield None
        return
    server = BackgroundServer(app.dashboard(), host=DASHBOARD_HOST, port=port)
    try:
        server.start()
    except (ImportError, OSError, RuntimeError) as exc:
        click.echo(f"warning: the dashboard did not start ({exc}); the demo runs without it",
                   err=True)
        yield None
        return

    try:
        if server.fallback_reason is not None:
            click.echo(f"Port {port} is not available ({server.fallback_reason}); the "
                       f"dashboard uses port {server.port} instead.", err=True)
        click.echo(f"Dashboard: {server.url}")
        yield server.url
    finally:
        server.stop()


def drive(app: Backburner, folder: Path, root: Path, files: list[Path],
          progress: ProgressLine, workers: int | None, *, dashboard_url: str | None = None,
          keep_open: bool = False) -> int:
    """Enqueue the demo jobs, wait for them with a progress bar, then print the summary.

    With ``keep_open``, keep the server running afterwards until Ctrl-C.
    """
    started = time.monotonic()
    deadline = started + DEADLINE_SECONDS + DEADLINE_SECONDS_PER_FILE * len(files)
    ids = {"timestamp": "", "report": "", "checksum": ""}
    app.recurring.add_or_update(HEARTBEAT_ID, HEARTBEAT, HEARTBEAT_CRON,
                                args=[str(folder / HEARTBEAT_FILE)])
    server = app.server(workers=workers, schedule_poll_interval=SCHEDULE_POLL_INTERVAL,
                        shutdown_timeout=SHUTDOWN_TIMEOUT)
    with server:
        ids["timestamp"] = app.schedule(SCHEDULE_DELAY, WRITE_TIMESTAMP,
                                        str(folder / TIMESTAMP_FILE),
                                        dt.datetime.now(dt.UTC))
        manifest = enqueue_file_jobs(app, folder, root, files)

        # One continuation has one parent, so the driver waits for all the file
        # jobs (and the delayed job) before it enqueues the report job.
        in_time = wait_for(app, folder, progress, lambda ended: ended >= len(files) + 1,
                           deadline, "analysing files")
        if in_time:
            ids["report"] = app.enqueue(WRITE_REPORT, str(manifest))
            ids["checksum"] = app.continue_with(ids["report"], CHECKSUM_REPORT,
                                                str(folder / REPORT_MARKDOWN))
            in_time = wait_for(app, folder, progress, lambda _: report_chain_ended(app, ids),
                               deadline, "writing the report")
        progress.finish()
        elapsed = time.monotonic() - started
        # After a timeout other jobs may still be queued, so waiting for the
        # heartbeat's jobs to end could last until HEARTBEAT_DRAIN_TIMEOUT.
        stop_heartbeat(app, wait=in_time)

        code = summarize(app, folder, workers=server.workers, elapsed=elapsed,
                         in_time=in_time, ids=ids)
        if keep_open:
            stay_open(app, dashboard_url)
        elif dashboard_url:
            click.echo("The dashboard closes with the demo; run it with --keep-open to browse "
                       "the jobs afterwards.")
    return code


def stop_heartbeat(app: Backburner, *, wait: bool) -> None:
    """Pause the heartbeat recurring job; with ``wait``, also wait until no job is
    Enqueued or Processing, which is when the heartbeat's last jobs have ended."""
    app.recurring.pause(HEARTBEAT_ID)
    deadline = time.monotonic() + HEARTBEAT_DRAIN_TIMEOUT
    while wait and time.monotonic() < deadline:
        counts = app.storage.count_jobs_by_state()
        if counts.get(states.ENQUEUED, 0) + counts.get(states.PROCESSING, 0) == 0:
            return
        time.sleep(WAIT_POLL_INTERVAL)


def stay_open(app: Backburner, dashboard_url: str | None) -> None:
    """Resume the heartbeat and keep the server (and the dashboard) running until Ctrl-C."""
    app.recurring.resume(HEARTBEAT_ID)
    where = f"The dashboard stays open at {dashboard_url}" if dashboard_url \
        else "The server keeps running"
    click.echo(f"{where} and {HEARTBEAT_ID} keeps ticking every second. Press Ctrl-C to stop.")
    wait_for_stop_signal()
    click.echo("Stopping.", err=True)
    stop_heartbeat(app, wait=True)


def wait_for_stop_signal() -> None:
    """Block until SIGINT (Ctrl-C) or SIGTERM.

    From the main thread both signals are handled here, even when the shell
    started the demo with SIGINT ignored (as it does for background jobs of a
    script). From another thread only a KeyboardInterrupt ends the wait.
    """
    received: list[int] = []
    stop_signals = (signal.SIGINT, signal.SIGTERM)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {}
    if in_main_thread:
        # The handler only records the signal: it runs between two bytecodes of
        # the main thread, so it must not take locks.
        previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum))
                    for sig in stop_signals}
    try:
        while not received:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def enqueue_file_jobs(app: Backburner, folder: Path, root: Path, files: list[Path]) -> Path:
    """Enqueue one analyse job per file in one transaction and write the manifest of them.

    Return the manifest's path.
    """
    flaky = pick_flaky_files(len(files))
    analyse = app.registry.resolve(ANALYSE_FILE)
    file_ids = app.enqueue_many(analyse.call(str(path), flaky.get(index, 0))
                                for index, path in enumerate(files))

    manifest = folder / MANIFEST_FILE
    entries = [{"path": str(path), "job_id": job_id} for path, job_id in zip(files, file_ids)]
    manifest.write_text(json.dumps({"source": str(root), "jobs": entries}), encoding="utf-8")
    return manifest


def wait_for(app: Backburner, folder: Path, progress: ProgressLine,
             done: Callable[[int], bool], deadline: float, note: str) -> bool:
    """Redraw the progress bar until ``done(number of ended jobs)`` returns True.

    Heartbeat jobs are not counted. Return False if the deadline passed first.
    """
    while True:
        counts = app.storage.count_jobs_by_state()
        # A tick is written just before its job Succeeds, so this count is at
        # most one short for a moment, never ahead.
        ended = max(0, sum(counts.get(state, 0) for state in ENDED_STATES) - count_ticks(folder))
        retrying = counts.get(states.SCHEDULED, 0)
        progress.show(ended, f"{note}, {retrying} scheduled" if retrying else note)
        if done(ended):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(WAIT_POLL_INTERVAL)


def report_chain_ended(app: Backburner, ids: dict[str, str]) -> bool:
    """Return True once the checksum continuation ended, or its report job can no longer run it."""
    report = app.get_job(ids["report"])
    checksum = app.get_job(ids["checksum"])
    if checksum is not None and checksum.state in ENDED_STATES:
        return True
    return report is None or report.state in (states.FAILED, states.DELETED)


def summarize(app: Backburner, folder: Path, *, workers: int, elapsed: float,
              in_time: bool, ids: dict[str, str]) -> int:
    """Print what the demo did and where its output is, and return the exit code."""
    counts = app.storage.count_jobs_by_state()
    total = sum(counts.values())
    unfinished = {state: n for state, n in counts.items() if n and state != states.SUCCEEDED}
    click.echo(f"Ran {total} jobs with {workers} workers in {elapsed:.1f} s: "
               + ", ".join(f"{n} {state.lower()}" for state, n in counts.items() if n))

    report_path = folder / REPORT_JSON
    if report_path.exists():
        report = json.loads(report_path.read_text(encoding="utf-8"))
        totals = report["totals"]
        click.echo(f"  files:   {totals['files']:,} ({totals['lines']:,} lines, "
                   f"{totals['words']:,} words, {totals['bytes']:,} bytes, "
                   f"{totals['compressed_bytes']:,} compressed, ratio {totals['ratio']:.3f})")
        click.echo(f"  retries: {plural(len(report['retried_jobs']), 'file job')} retried "
                   f"{plural(report['total_retries'], 'time')} after simulated transient errors")
    print_job_line(app, ids["timestamp"], "delayed:",
                   lambda waited: f"ran {waited:.1f} s after it was scheduled, "
                                  f"wrote {folder / TIMESTAMP_FILE}")
    print_job_line(app, ids["checksum"], "chained:",
                   lambda _: f"continuation of the report job wrote {folder / REPORT_CHECKSUM}")
    click.echo(f"  recurring: {HEARTBEAT_ID} ({HEARTBEAT_CRON}, every second) ran "
               f"{plural(count_ticks(folder), 'time')}, wrote {folder / HEARTBEAT_FILE}")

    url = shlex.quote(app.storage_url)
    if (folder / REPORT_MARKDOWN).exists():
        click.echo(f"Report:   {folder / REPORT_MARKDOWN}")
    click.echo(f"Database: {app.storage_url}")
    click.echo("Inspect the jobs with:")
    click.echo(f"  backburner stats --storage {url}")
    click.echo(f"  backburner jobs list --state succeeded --storage {url}")
    click.echo(f"  backburner recurring list --storage {url}")

    pending = ", ".join(f"{n} {state}" for state, n in unfinished.items())
    if not in_time:
        click.echo(f"error: the demo timed out after {elapsed:.0f} s with jobs not yet "
                   f"Succeeded ({pending}); list them with backburner jobs list --state STATE "
                   f"--storage {url}", err=True)
        return 1
    if unfinished:
        click.echo(f"error: not every job Succeeded ({pending}); see backburner jobs list "
                   f"--state failed --storage {url}", err=True)
        return 1
    return 0


def print_job_line(app: Backburner, job_id: str, label: str,
                   describe: Callable[[Any], str]) -> None:
    """Print one summary line for a job: ``describe(result)`` if it Succeeded, else its state."""
    job = app.get_job(job_id) if job_id else None
    if job is None:
        click.echo(f"  {label:<8} not run")
        return
    if job.state == states.SUCCEEDED:
        click.echo(f"  {label:<8} {describe(job_result(job))}")
    else:
        click.echo(f"  {label:<8} job {job.id} is {job.state}")
