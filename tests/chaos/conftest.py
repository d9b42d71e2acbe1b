"""Fixtures for the fault-injection battery's short form.

Each test runs one scenario on one backend ("sqlite", "postgres" or
"redis"). PostgreSQL and Redis tests are skipped when the service is not
reachable on 127.0.0.1, unless BACKBURNER_REQUIRE_SERVICES=1 (as in CI),
where they fail instead.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

CHAOS_DIR = Path(__file__).resolve().parent
if str(CHAOS_DIR) not in sys.path:
    sys.path.insert(0, str(CHAOS_DIR))

PORTS = {"postgres": 5432, "redis": 6379}


def reachable(port: int) -> bool:
    """Return True if something listens on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def backend_name(request: pytest.FixtureRequest) -> str:
    """The backend a test runs on; skips PostgreSQL or Redis when they are down."""
    name: str = request.param
    port = PORTS.get(name)
    if port is not None and not reachable(port):
        if os.environ.get("BACKBURNER_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{name} is not reachable on 127.0.0.1:{port}")
        pytest.skip(f"{name} is not reachable on 127.0.0.1:{port}")
    return name
