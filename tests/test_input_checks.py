"""Bad input at every entry point fails with a clear error and loses nothing."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import sys
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from backburner import Backburner, ConfigurationError

CLI = [sys.executable, "-c", "from backburner.cli import main; main()"]


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Backburner]:
    application = Backburner(f"sqlite:///{tmp_path / 'jobs.db'}")

    @application.job(name="take")
    def take(value: object = None) -> None: ...

    yield application
    application.close()


@pytest.mark.parametrize("delay", [float("inf"), float("nan"), 1e17, dt.timedelta.max, -1])
def test_delay_out_of_range(app: Backburner, delay: object) -> None:
    with pytest.raises(ConfigurationError, match="invalid delay"):
        app.schedule(delay, "take")  # type: ignore[arg-type]
    assert app.storage.count_jobs_by_state()["Scheduled"] == 0


@pytest.mark.parametrize("at", [
    dt.datetime.max.replace(tzinfo=dt.timezone.utc),
    dt.datetime.min.replace(tzinfo=dt.timezone(dt.timedelta(hours=14))),
    dt.datetime(1960, 1, 1, tzinfo=dt.timezone.utc),
])
def test_time_out_of_range(app: Backburner, at: dt.datetime) -> None:
    with pytest.raises(ConfigurationError, match="between 1970 and 9999"):
        app.schedule(at, "take")


@pytest.mark.parametrize("delays", [[float("nan")], [float("inf")], [True], []])
def test_retry_delays_checked(app: Backburner, delays: list[object]) -> None:
    with pytest.raises(ConfigurationError, match="invalid retry delays"):
        app.job(name="other", retry_delays=delays)(lambda: None)  # type: ignore[arg-type]


@pytest.mark.parametrize("queue", ["default\n", "\ndefault", "default\x00"])
def test_queue_name_control_characters(app: Backburner, queue: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid queue name"):
        app.options(queue=queue)


def test_payload_limit_rejects_bool(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="max_payload_bytes"):
        Backburner(f"sqlite:///{tmp_path / 'x.db'}", max_payload_bytes=True)


@pytest.mark.parametrize("setting", ["heartbeat_interval", "server_timeout",
                                     "schedule_poll_interval", "shutdown_timeout"])
def test_server_settings_checked(app: Backburner, setting: str) -> None:
    for value in (float("nan"), -1.0):
        with pytest.raises(ConfigurationError, match=setting):
            app.server(**{setting: value})


def test_crafted_times_do_not_break_reads(app: Backburner, tmp_path: Path) -> None:
    job_id = app.enqueue("take", 1)
    with sqlite3.connect(tmp_path / "jobs.db") as conn:
        conn.execute("UPDATE jobs SET created_at = 'yesterday', state_at = 1e300 WHERE id = ?",
                     (job_id,))

    job = app.get_job(job_id)

    assert job is not None
    assert job.created_at.year == 1970
    assert job.state_changed_at.year == 1970


def test_null_id_row_does_not_block_queue(app: Backburner, tmp_path: Path) -> None:
    job_id = app.enqueue("take", 1)
    with sqlite3.connect(tmp_path / "jobs.db") as conn:  # at the head of the queue
        conn.execute("INSERT INTO jobs (id, function, payload, queue, state, created_at, "
                     "state_at, enqueued_at) VALUES (NULL, 'take', '{}', 'default', "
                     "'Enqueued', 0, 0, 0)")

    fetched = app.storage.fetch_jobs(["default"], "server", 5)

    assert [job.id for job in fetched] == [job_id]


def test_cli_json_list_with_tagged_arguments(app: Backburner) -> None:
    app.enqueue("take", {"raw": b"\x00\xff", "when": dt.date(2026, 1, 2), "nan": float("nan")})

    result = subprocess.run([*CLI, "jobs", "list", "--json", "--storage", app.storage_url],
                            capture_output=True, text=True, timeout=60)
    row = json.loads(result.stdout.splitlines()[0])

    assert result.returncode == 0, result.stderr
    assert row["args"][0]["raw"] == {"$bb": "bytes", "v": "AP8="}
    assert row["args"][0]["nan"] == {"$bb": "float", "v": "nan"}


def test_cli_bad_storage_is_a_message(tmp_path: Path) -> None:
    result = subprocess.run([*CLI, "stats", "--storage", "sqlite:////nonexistent/dir/x.db"],
                            capture_output=True, text=True, timeout=60)

    assert result.returncode == 1
    assert result.stderr.startswith("Error: SQLite storage")
    assert "Traceback" not in result.stderr
