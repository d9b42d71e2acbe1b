"""``BackgroundServer`` serves the dashboard with uvicorn on a thread of the running program."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from backburner import Backburner
from backburner.dashboard.background import BackgroundServer


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another socket listens on during the test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def fetch(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


def test_background_serves_and_stops(app: Backburner) -> None:
    app.enqueue("tests.add", 1, 2)
    with BackgroundServer(app.dashboard(), port=0) as server:
        status, page = fetch(server.url)
        url = server.url

    assert status == 200
    assert 'data-stat="states.Enqueued">1<' in page
    assert server.fallback_reason is None
    with pytest.raises(urllib.error.URLError):
        fetch(url)


def test_background_port_fallback(app: Backburner, taken_port: int) -> None:
    with BackgroundServer(app.dashboard(), port=taken_port) as server:
        status, _ = fetch(server.url + "recurring")
        port = server.port
        reason = server.fallback_reason

    assert status == 200
    assert port != taken_port
    assert reason is not None
    assert "in use" in reason.lower()


def test_background_no_fallback(app: Backburner, taken_port: int) -> None:
    server = BackgroundServer(app.dashboard(), port=taken_port, fallback=False)

    with pytest.raises(OSError):
        server.start()
    with pytest.raises(RuntimeError):
        _ = server.port
