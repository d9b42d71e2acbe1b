"""Fixtures for end-to-end tests that run real ``backburner server`` processes.

Every test runs once per storage backend (SQLite, PostgreSQL, Redis) unless
it narrows the ``backend`` parameter, as ``harness.SQLITE_ONLY`` does.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

E2E_DIR = Path(__file__).resolve().parent
for folder in (E2E_DIR, E2E_DIR.parent):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import jobapp
from backends import BACKENDS, storage_space
from harness import ServerProcess, Workspace, child_env


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The storage backend of the test: each one in turn."""
    return str(request.param)


@pytest.fixture
def workspace(backend: str, tmp_path: Path) -> Iterator[Workspace]:
    """Point the shared job app at a fresh storage of ``backend``, removed afterwards."""
    with storage_space(backend, tmp_path) as space:
        app = jobapp.app
        app.close()
        app.use_storage(space.url)
        app.storage.count_jobs_by_state()  # creates the schema before any server starts
        try:
            yield Workspace(tmp_path, space, tmp_path / "executions.jsonl", app)
        finally:
            app.close()


@pytest.fixture
def start_server(workspace: Workspace,
                 request: pytest.FixtureRequest) -> Iterator[Callable[..., ServerProcess]]:
    """Start ``backburner server`` processes, and kill any still running at teardown.

    ``settings`` are extra ``Server`` keyword arguments, such as
    ``harness.FAST_RECOVERY``. When the test failed, the end of each server's
    log is printed.
    """
    started: list[ServerProcess] = []

    def start(*, workers: int = 4, queues: str = "default", shutdown_timeout: float = 5.0,
              app_target: str = "jobapp:app",
              settings: dict[str, Any] | None = None) -> ServerProcess:
        args = ["server", "--app", app_target, "--storage", workspace.storage_url,
                "--workers", str(workers), "--queues", queues,
                "--shutdown-timeout", str(shutdown_timeout)]
        output = workspace.root / f"server-{len(started)}.log"
        server = ServerProcess(args, child_env(workspace, settings), output)
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
