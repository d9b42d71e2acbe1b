"""SQLite-only behaviour: schema upgrades of files written by older releases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from backburner.storage import open_storage
from backburner.storage.sqlite_schema import MIGRATIONS, _statements


def test_migrate_counts_existing_jobs(tmp_path: Path) -> None:
    # A file at schema version 2 (before job counts existed) with jobs in it.
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:2]:
        for statement in _statements(script):
            conn.execute(statement)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version (version) VALUES (2)")
    rows = [("Enqueued", "a")] * 3 + [("Enqueued", "b")] + [("Succeeded", "a")] * 2
    conn.executemany(
        "INSERT INTO jobs (id, function, payload, queue, state, created_at, state_at) "
        "VALUES (?, 'f', '[[],{}]', ?, ?, 0, 0)",
        [(f"job-{index}", queue, state) for index, (state, queue) in enumerate(rows)])
    conn.close()

    storage = open_storage(f"sqlite:///{path}")
    try:
        counts = storage.count_jobs_by_state()
        lengths = storage.queue_lengths()
    finally:
        storage.close()
    version = sqlite3.connect(path).execute("SELECT version FROM schema_version").fetchone()

    assert (counts["Enqueued"], counts["Succeeded"], sum(counts.values())) == (4, 2, 6)
    assert lengths == {"a": 3, "b": 1}
    assert version == (len(MIGRATIONS),)


def test_statements_keep_trigger_bodies_whole() -> None:
    script = "CREATE TABLE t (x); CREATE TRIGGER g AFTER INSERT ON t BEGIN SELECT 1; SELECT 2; END;"

    assert [statement.split()[1] for statement in _statements(script)] == ["TABLE", "TRIGGER"]
