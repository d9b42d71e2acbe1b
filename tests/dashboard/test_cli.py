"""``backburner dashboard`` serves the dashboard with uvicorn in its own process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from backburner import Backburner

APP_MODULE = '''
from backburner import Backburner
app = Backburner()

@app.job(name="cli.add")
def add(a, b):
    return a + b
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def fetch(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


def fetch_when_up(url: str, process: subprocess.Popen[str],
                  timeout: float = 60.0) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"dashboard exited with {process.returncode}: "
                                 f"{process.stdout.read() if process.stdout else ''}")
        try:
            return fetch(url)
        except (ConnectionError, urllib.error.URLError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_dashboard_command_serves(tmp_path: Path) -> None:
    (tmp_path / "cliapp.py").write_text(APP_MODULE)
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    writer = Backburner(url)
    writer.job(name="cli.add")(lambda a, b: a + b)
    writer.enqueue("cli.add", 1, 2)
    writer.close()
    port = free_port()
    command = [sys.executable, "-m", "backburner", "dashboard", "--app", "cliapp:app",
               "--port", str(port), "--storage", url, "--root-path", "/jobs"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "BACKBURNER_APP": ""})
    try:
        status, page = fetch_when_up(f"http://127.0.0.1:{port}/", process)
        _, metrics = fetch(f"http://127.0.0.1:{port}/metrics")
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)

    assert status == 200
    assert 'data-stat="states.Enqueued">1<' in page
    assert 'href="/jobs/static/dashboard.css"' in page
    assert "backburner_jobs{" in metrics
    assert f"http://127.0.0.1:{port}/jobs/" in output
