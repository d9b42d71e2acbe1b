"""Short forms of the storage outage, SQLite kill, clock skew, crafted row and memory scenarios.

The full forms run from ``scripts/chaos.py`` (t5b, t6, t7, t10, t19); these
run the same scenario functions at a size that fits CI.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from chaos_faults import redis_restarts, storage_outage
from chaos_faults_poison import memory_exhaustion, poisoned_storage
from chaos_faults_skew import FaketimeMissing, check_faketime, clock_skew
from chaos_faults_sqlite import sqlite_kills
from chaos_scenarios import open_run


def required_or_skip(message: str) -> None:
    """Fail when CI requires every service and tool, else skip."""
    if os.environ.get("BACKBURNER_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def faketime(tmp_path: Path) -> None:
    """Make sure libfaketime shifts a Python child's clock (apt-get install -y faketime)."""
    try:
        check_faketime(120, tmp_path / "faketime-probe")
    except FaketimeMissing as exc:
        required_or_skip(str(exc))


# SQLite has no connection to end or server to restart.
@pytest.mark.parametrize("backend_name", ["postgres", "redis"])
def test_storage_session_kills(backend_name: str, tmp_path: Path) -> None:
    with open_run(backend_name, tmp_path) as run:
        report = storage_outage(run, kills=2, restarts=0, interval=2.0)

    assert report.violations == []
    assert report.metrics["lost"] == 0
    assert report.metrics["unexpected_server_exits"] == 0
    assert report.metrics["storage_kills"] == 2
    assert report.metrics["sessions_ended"] >= 2
    assert report.metrics["resume_after_kill_max_s"] is not None


def test_private_redis_restart(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        required_or_skip("redis-server is not installed; install the redis-server package")
    report = redis_restarts(tmp_path, restarts=1, interval=2.0, downtime=2.0)

    assert report.violations == []
    assert report.metrics["lost"] == 0
    assert report.metrics["unexpected_server_exits"] == 0
    assert "StorageError" in (report.metrics["enqueue_error_while_down"] or "")
    assert report.metrics["resume_after_restart_max_s"] is not None


def test_sqlite_kills_during_writes(tmp_path: Path) -> None:
    with open_run("sqlite", tmp_path) as run:
        report = sqlite_kills(run, kills=3)

    assert report.violations == []
    assert report.metrics["lost"] == 0
    assert report.metrics["integrity_checks"] == 3
    assert report.metrics["integrity_not_ok"] == 0
    assert report.metrics["logs_with_database_locked"] == 0
    assert report.metrics["acknowledged_by_client"] > 0


def test_clock_skew(backend_name: str, tmp_path: Path, faketime: None) -> None:
    with open_run(backend_name, tmp_path) as run:
        report = clock_skew(run, seconds=4.0, delayed=3, job_seconds=(1.0, 3.0))

    assert report.violations == []
    assert report.metrics["lost"] == 0
    assert report.metrics["unexpected_server_exits"] == 0
    assert report.metrics["leases_taken_from_live_servers"] == 0
    assert report.metrics["missed_ticks_chaos-skew"] == 0
    assert report.metrics["ticks_chaos-skew"] >= 2


def test_poisoned_storage(backend_name: str, tmp_path: Path) -> None:
    with open_run(backend_name, tmp_path) as run:
        report = poisoned_storage(run, normal=10)

    assert report.violations == []
    assert report.metrics["canaries_created"] == 0
    assert report.metrics["crafted_failed"] == report.metrics["crafted"]
    assert report.metrics["server_up_at_end"] is True
    assert report.metrics["lost"] == 0


def test_memory_exhaustion(tmp_path: Path) -> None:
    with open_run("sqlite", tmp_path) as run:
        report = memory_exhaustion(run, normal=10)

    assert report.violations == []
    assert report.metrics["lost"] == 0
    assert report.metrics["failed_or_deleted"] == 1
    assert report.metrics["server_exits_caused"] <= 4
