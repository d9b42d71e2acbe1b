"""Fixtures for end-to-end tests that run real ``backburner server`` processes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

E2E_DIR = Path(__file__).resolve().parent
if str(E2E_DIR) not in sys.path:
    sys.path.insert(0, str(E2E_DIR))

import jobapp
from harness import ServerProcess, Workspace


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    """Point the shared job app at a fresh SQLite file under ``tmp_path``."""
    db_path = tmp_path / "jobs.db"
    storage_url = f"sqlite:///{db_path}"
    app = jobapp.app
    app.close()
    app.use_storage(storage_url)
    _ = app.storage  # opening the storage creates the schema before any server starts
    yield Workspace(tmp_path, db_path, storage_url, tmp_path / "executions.jsonl", app)
    app.close()


@pytest.fixture
def start_server(workspace: Workspace,
                 request: pytest.FixtureRequest) -> Iterator[Callable[..., ServerProcess]]:
    """Start ``backburner server`` processes, and kill any still running at teardown.

    When the test failed, the end of each server's log is printed.
    """
    started: list[ServerProcess] = []

    def start(*, workers: int = 4, queues: str = "default", shutdown_timeout: float = 5.0,
              app_target: str = "jobapp:app") -> ServerProcess:
        args = ["server", "--app", app_target, "--storage", workspace.storage_url,
                "--workers", str(workers), "--queues", queues,
                "--shutdown-timeout", str(shutdown_timeout)]
        output = workspace.root / f"server-{len(started)}.log"
        server = ServerProcess(args, workspace.log_path, output)
        started.append(server)
        return server

    yield start

    for server in started:
        server.kill()
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        for server in started:
            print(f"--- server pid {server.pid}, exit code {server.process.returncode} ---")
            print(server.output_tail())
