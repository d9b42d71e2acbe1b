"""Fixtures for the dashboard tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dashboard_helpers import LOCAL, Seeded, make_app, seed
from starlette.testclient import TestClient

from backburner import Backburner


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Backburner]:
    """An app on an empty SQLite file of this test's own."""
    application = make_app(tmp_path)
    yield application
    application.close()


@pytest.fixture
def seeded(app: Backburner) -> Seeded:
    """Jobs in every state in ``app``."""
    return seed(app)


@pytest.fixture
def client(app: Backburner) -> Iterator[TestClient]:
    """A local client of the default dashboard."""
    with TestClient(app.dashboard(), client=LOCAL, base_url="http://127.0.0.1") as test_client:
        yield test_client
