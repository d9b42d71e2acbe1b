"""Shared fixtures for the whole test suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backburner.storage.sqlite import SQLiteStorage

# -- storage fixtures ---------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A storage URL for an empty SQLite file of this test's own."""
    return f"sqlite:///{tmp_path / 'backburner.db'}"


@pytest.fixture
def sqlite_storage(tmp_path: Path) -> Iterator[SQLiteStorage]:
    """An open SQLite storage on the file that ``sqlite_url`` names, closed after the test."""
    storage = SQLiteStorage(str(tmp_path / "backburner.db"))
    yield storage
    storage.close()
