"""Tests for ``backburner demo``: real files, a real SQLite database, a real in-process server."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backburner import Backburner, demo, states
from backburner.demo import run_demo
from backburner.job import Job

LIMIT = 40
#: Seconds a demo subprocess may take before the test gives up, far above a normal run.
SUBPROCESS_TIMEOUT = 240
DASHBOARD_LINE = re.compile(r"^Dashboard: (http://127\.0\.0\.1:(\d+)/)$", re.MULTILINE)


@dataclass
class DemoRun:
    """One finished demo run: its folder, exit code, output and the jobs it left."""

    folder: Path
    source: Path
    code: int
    stdout: str
    stderr: str

    @property
    def app(self) -> Backburner:
        return Backburner(f"sqlite:///{self.folder / 'demo.db'}")

    def report(self) -> dict[str, Any]:
        return json.loads((self.folder / "report.json").read_text(encoding="utf-8"))

    def jobs(self, app: Backburner, function: str) -> list[Job]:
        manifest_ids = [entry["job_id"] for entry in self.manifest()["jobs"]]
        found = [app.get_job(job_id) for job_id in manifest_ids]
        return [job for job in found if job is not None and job.function == function]

    def manifest(self) -> dict[str, Any]:
        return json.loads((self.folder / "jobs.json").read_text(encoding="utf-8"))

    def heartbeat_jobs(self, app: Backburner) -> list[Job]:
        records = [record for state in states.ALL_STATES
                   for record in app.storage.list_jobs(state, limit=1000)
                   if record.function == demo.HEARTBEAT]
        return [job for job in (app.get_job(record.id) for record in records) if job]


def write_source_tree(root: Path) -> None:
    """Write 45 Python files of varied size in nested folders, plus files the demo must skip."""
    for index in range(45):
        folder = root / f"pkg{index % 3}" / ("sub" if index % 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        body = "".join(f"value_{index}_{line} = {line} * {index}  # word word\n"
                       for line in range(index * 7 + 1))
        (folder / f"module_{index:02d}.py").write_text(body, encoding="utf-8")
    (root / "notes.txt").write_text("not python\n", encoding="utf-8")
    (root / "site-packages").mkdir()
    (root / "site-packages" / "installed.py").write_text("x = 1\n", encoding="utf-8")


def expected_files(root: Path, limit: int) -> list[Path]:
    """Return the files the demo should pick: sorted ``*.py`` outside site-packages."""
    paths = [p for p in root.rglob("*.py") if "site-packages" not in p.parts]
    return sorted(paths, key=lambda p: p.relative_to(root).as_posix())[:limit]


def measure(path: Path) -> dict[str, Any]:
    """Measure one file independently of the demo's code."""
    data = path.read_bytes()
    text = data.decode("utf-8")
    return {"lines": text.count("\n") + (0 if text.endswith("\n") or not text else 1),
            "words": len(text.split()), "bytes": len(data),
            "compressed_bytes": len(zlib.compress(data)),
            "sha256": hashlib.sha256(data).hexdigest()}


def run_in_process(folder: Path, source: Path | None, limit: int,
                   dashboard_port: int | None = None) -> DemoRun:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = run_demo(directory=str(folder), source=None if source is None else str(source),
                        limit=limit, workers=4, dashboard_port=dashboard_port)
    return DemoRun(folder, source or Path(), code, stdout.getvalue(), stderr.getvalue())


@contextlib.contextmanager
def taken_port() -> Iterator[int]:
    """Listen on a free loopback port for the duration of the block, and yield it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


@dataclass
class FinishedRun(DemoRun):
    """A demo run that was asked for a dashboard port another socket held."""

    taken_port: int = 0


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> FinishedRun:
    source = tmp_path_factory.mktemp("source")
    write_source_tree(source)
    with taken_port() as port:
        run = run_in_process(tmp_path_factory.mktemp("demo") / "out", source, LIMIT,
                             dashboard_port=port)
    return FinishedRun(**vars(run), taken_port=port)


# -- one in-process run -------------------------------------------------------


def test_demo_exit_code(finished: DemoRun) -> None:
    assert finished.code == 0, finished.stderr


def test_demo_all_jobs_succeeded(finished: DemoRun) -> None:
    app = finished.app
    counts = app.storage.count_jobs_by_state()
    heartbeats = len(finished.heartbeat_jobs(app))

    assert counts[states.SUCCEEDED] == LIMIT + 3 + heartbeats
    assert sum(counts.values()) == LIMIT + 3 + heartbeats


def test_demo_picks_files(finished: DemoRun) -> None:
    listed = [entry["path"] for entry in finished.manifest()["jobs"]]

    assert listed == [str(p) for p in expected_files(finished.source, LIMIT)]


def test_demo_report_totals(finished: DemoRun) -> None:
    measured = [measure(p) for p in expected_files(finished.source, LIMIT)]
    totals = finished.report()["totals"]

    assert totals["files"] == LIMIT
    assert totals["lines"] == sum(m["lines"] for m in measured)
    assert totals["words"] == sum(m["words"] for m in measured)
    assert totals["bytes"] == sum(m["bytes"] for m in measured)
    assert totals["compressed_bytes"] == sum(m["compressed_bytes"] for m in measured)
    assert totals["ratio"] == pytest.approx(totals["compressed_bytes"] / totals["bytes"],
                                            abs=1e-4)


def test_demo_report_largest(finished: DemoRun) -> None:
    files = expected_files(finished.source, LIMIT)
    by_size = sorted(files, key=lambda p: -p.stat().st_size)[:10]
    largest = finished.report()["largest_files"]

    assert [f["path"] for f in largest] == [p.relative_to(finished.source).as_posix()
                                            for p in by_size]
    assert [f["sha256"] for f in largest] == [measure(p)["sha256"] for p in by_size]


def test_demo_report_markdown(finished: DemoRun) -> None:
    text = (finished.folder / "report.md").read_text(encoding="utf-8")
    totals = finished.report()["totals"]

    assert "## Totals" in text
    assert f"| {totals['files']:,} | {totals['lines']:,} | {totals['words']:,} |" in text
    assert "6 jobs retried 7 times" in text


def test_demo_retries_recorded(finished: DemoRun) -> None:
    app = finished.app
    retried = [job for job in finished.jobs(app, demo.ANALYSE_FILE) if job.retry_count]
    failures = [entry for job in retried for entry in job.history
                if entry.state == states.FAILED]

    assert len(retried) == demo.FLAKY_FILE_JOBS
    assert sum(job.retry_count for job in retried) == demo.FLAKY_FILE_JOBS + 1
    assert len(failures) == demo.FLAKY_FILE_JOBS + 1
    assert all("simulated transient error" in (entry.reason or "") for entry in failures)
    assert all(job.state == states.SUCCEEDED for job in retried)


def test_demo_report_retries(finished: DemoRun) -> None:
    report = finished.report()
    app = finished.app
    retried = {job.id for job in finished.jobs(app, demo.ANALYSE_FILE) if job.retry_count}

    assert {r["job_id"] for r in report["retried_jobs"]} == retried
    assert report["total_retries"] == demo.FLAKY_FILE_JOBS + 1
    assert report["failed_jobs"] == []


def test_demo_delayed_job(finished: DemoRun) -> None:
    app = finished.app
    delayed = [job for job in app.storage.list_jobs(states.SUCCEEDED, limit=1000)
               if job.function == demo.WRITE_TIMESTAMP]
    job = app.get_job(delayed[0].id)
    text = (finished.folder / "delayed.txt").read_text(encoding="utf-8")
    waited = float(text.split("waited")[1].split()[0])

    assert len(delayed) == 1
    assert job is not None
    assert job.history[0].state == states.SCHEDULED
    assert job.state == states.SUCCEEDED
    assert waited >= demo.SCHEDULE_DELAY * 0.9


def test_demo_continuation(finished: DemoRun) -> None:
    app = finished.app
    records = app.storage.list_jobs(states.SUCCEEDED, limit=1000)
    report_ids = [r.id for r in records if r.function == demo.WRITE_REPORT]
    chained = [app.get_job(r.id) for r in records if r.function == demo.CHECKSUM_REPORT]
    report_bytes = (finished.folder / "report.md").read_bytes()
    checksum_line = (finished.folder / "report.md.sha256").read_text(encoding="utf-8")

    assert len(report_ids) == 1
    assert len(chained) == 1
    assert chained[0] is not None
    assert chained[0].parent_id == report_ids[0]
    assert chained[0].history[0].state == states.AWAITING
    assert checksum_line == f"{hashlib.sha256(report_bytes).hexdigest()}  report.md\n"


def test_demo_prints_hints(finished: DemoRun) -> None:
    url = f"sqlite:///{finished.folder.resolve() / 'demo.db'}"

    assert f"Report:   {finished.folder.resolve() / 'report.md'}" in finished.stdout
    assert f"backburner stats --storage {url}" in finished.stdout
    assert f"backburner jobs list --state succeeded --storage {url}" in finished.stdout


def test_demo_progress_on_stderr(finished: DemoRun) -> None:
    assert f"{LIMIT + 3}/{LIMIT + 3} jobs ended" in finished.stderr


def test_demo_heartbeat_recurring(finished: DemoRun) -> None:
    app = finished.app
    recurring = app.recurring.get(demo.HEARTBEAT_ID)
    jobs = finished.heartbeat_jobs(app)
    ticks = (finished.folder / "heartbeat.txt").read_text(encoding="utf-8").splitlines()

    assert recurring.cron == "* * * * * *"
    assert recurring.function == demo.HEARTBEAT
    assert recurring.paused
    assert recurring.last_job_id in {job.id for job in jobs}
    assert len(jobs) >= 1
    assert len(ticks) == len(jobs)
    assert all(job.state == states.SUCCEEDED for job in jobs)
    assert all(job.recurring_id == demo.HEARTBEAT_ID for job in jobs)
    assert all(job.occurrence is not None for job in jobs)
    assert f"ran {len(jobs)} time" in finished.stdout


def test_demo_dashboard_port_fallback(finished: FinishedRun) -> None:
    match = DASHBOARD_LINE.search(finished.stdout)

    assert match is not None, finished.stdout
    assert int(match.group(2)) != finished.taken_port
    assert f"Port {finished.taken_port} is not available" in finished.stderr


def test_demo_dashboard_stops(finished: FinishedRun) -> None:
    match = DASHBOARD_LINE.search(finished.stdout)
    assert match is not None, finished.stdout

    with pytest.raises(OSError):
        urllib.request.urlopen(match.group(1), timeout=5)


# -- other runs ---------------------------------------------------------------


def test_cli_stdlib_rerun(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    stale = Backburner(f"sqlite:///{folder / 'demo.db'}")
    stale.job(name="old.job")(lambda: None).enqueue()
    stale.close()
    (folder / "report.md.sha256").write_text("stale\n", encoding="utf-8")

    result = subprocess.run(
        [sys.executable, "-c", "from backburner.cli import main; main()", "demo",
         "--dir", str(folder), "--limit", str(LIMIT), "--workers", "4", "--no-dashboard"],
        check=False, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
        cwd=tmp_path)
    counts = Backburner(f"sqlite:///{folder / 'demo.db'}").storage.count_jobs_by_state()
    ticks = len((folder / "heartbeat.txt").read_text(encoding="utf-8").splitlines())
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))

    assert result.returncode == 0, result.stderr
    assert "Dashboard:" not in result.stdout
    assert counts[states.SUCCEEDED] == LIMIT + 3 + ticks
    assert counts[states.ENQUEUED] == 0
    assert report["totals"]["files"] == LIMIT
    assert (folder / "report.md.sha256").read_text(encoding="utf-8") != "stale\n"


def test_demo_failed_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("a.py", "bad.py", "c.py"):
        (source / name).write_text(f"# {name}\n", encoding="utf-8")
    real_analyse = demo.analyse_bytes

    def analyse_or_raise(data: bytes) -> dict[str, Any]:
        if data == b"# bad.py\n":
            raise OSError("simulated read error")
        return real_analyse(data)

    monkeypatch.setattr(demo, "analyse_bytes", analyse_or_raise)
    monkeypatch.setattr(demo, "RETRY_DELAYS", (0.1,))
    run = run_in_process(tmp_path / "out", source, 10)
    report = run.report()

    assert run.code == 1
    assert "not every job Succeeded" in run.stderr
    assert [f["path"] for f in report["failed_jobs"]] == ["bad.py"]
    assert report["totals"]["files"] == 2


def test_demo_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "a.py").write_text("a = 1\n", encoding="utf-8")
    monkeypatch.setattr(demo, "DEADLINE_SECONDS", 0.0)
    monkeypatch.setattr(demo, "DEADLINE_SECONDS_PER_FILE", 0.0)

    run = run_in_process(tmp_path / "out", source, 10)

    assert run.code == 1
    assert "the demo timed out" in run.stderr


def test_keep_open_needs_dashboard(tmp_path: Path) -> None:
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = run_demo(directory=str(tmp_path / "out"), source=None, limit=1, workers=1,
                        dashboard_port=None, keep_open=True)

    assert code == 2
    assert "--keep-open" in stderr.getvalue()
    assert not (tmp_path / "out").exists()


def read_lines(stream: Any, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def next_line(lines: queue.Queue[str], deadline: float, pattern: str) -> str:
    """Return the next output line containing ``pattern``, failing after ``deadline``."""
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no line with {pattern!r} in time"
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            continue
        if pattern in line:
            return line


def fetch(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


def test_cli_keep_open_dashboard(tmp_path: Path) -> None:
    source = tmp_path / "source"
    write_source_tree(source)
    folder = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "backburner", "demo", "--dir", str(folder), "--source",
         str(source), "--limit", "10", "--workers", "2", "--dashboard-port", "0",
         "--keep-open"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tmp_path)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=read_lines, args=(process.stdout, lines), daemon=True).start()
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT
    try:
        url_line = next_line(lines, deadline, "Dashboard: ")
        url = url_line.split()[1]
        during = fetch(url)
        next_line(lines, deadline, "Press Ctrl-C to stop")
        after = fetch(url)
        recurring = fetch(url + "recurring")
        running = process.poll()
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
    heartbeat = Backburner(f"sqlite:///{folder / 'demo.db'}").recurring.get(demo.HEARTBEAT_ID)

    assert DASHBOARD_LINE.match(url_line.rstrip("\n"))
    assert during[0] == 200
    assert "<h1>Overview</h1>" in during[1]
    assert after[0] == 200
    assert 'data-stat="states.Succeeded">' in after[1]
    assert demo.HEARTBEAT_ID in recurring[1]
    assert running is None
    assert code == 0
    assert heartbeat.paused


def test_demo_no_files(tmp_path: Path) -> None:
    run = run_in_process(tmp_path / "out", tmp_path, 10)

    assert run.code == 1
    assert "no *.py files found" in run.stderr
    assert not (tmp_path / "out").exists()


# -- helpers ------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 6, 7, 40, 600, 1790])
def test_flaky_files_choice(count: int) -> None:
    chosen = demo.pick_flaky_files(count)

    assert len(chosen) == min(demo.FLAKY_FILE_JOBS, count)
    assert all(0 <= index < count for index in chosen)
    assert sorted(chosen.values()) == [1] * (len(chosen) - 1) + [2]


def test_find_files_skips(tmp_path: Path) -> None:
    write_source_tree(tmp_path)
    expected = expected_files(tmp_path, 1000)
    (tmp_path / "pkg0" / "folder.py").mkdir()
    (tmp_path / "dangling.py").symlink_to(tmp_path / "missing")

    found = demo.find_source_files(tmp_path, 1000)

    assert found == expected
    assert len(found) == 45


def test_find_files_limit(tmp_path: Path) -> None:
    write_source_tree(tmp_path)

    assert demo.find_source_files(tmp_path, 5) == expected_files(tmp_path, 5)


def test_analyse_bytes_values() -> None:
    data = b"alpha beta\ngamma\n\ndelta"
    result = demo.analyse_bytes(data)

    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    assert result["lines"] == 4
    assert result["words"] == 4
    assert result["bytes"] == len(data)
    assert result["compressed_bytes"] == len(zlib.compress(data))


def test_analyse_bytes_empty() -> None:
    result = demo.analyse_bytes(b"")

    assert result["lines"] == 0
    assert result["words"] == 0
    assert result["compressed_bytes"] > 0
