"""SQLite schema, as numbered migrations applied in order on first use."""

from __future__ import annotations

import sqlite3

#: Each entry upgrades the schema from version ``index`` to ``index + 1``.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE jobs (
        id          TEXT PRIMARY KEY,
        function    TEXT NOT NULL,
        payload     TEXT NOT NULL,
        queue       TEXT NOT NULL,
        state       TEXT NOT NULL,
        created_at  REAL NOT NULL,
        state_at    REAL NOT NULL,
        enqueued_at REAL,              -- FIFO position while Enqueued
        attempt     INTEGER NOT NULL DEFAULT 0,
        retry_count INTEGER NOT NULL DEFAULT 0,
        crash_count INTEGER NOT NULL DEFAULT 0,
        lease_token TEXT,              -- set only while Processing
        server_id   TEXT,              -- set only while Processing
        due_at      REAL,              -- set only while Scheduled
        expire_at   REAL,              -- set only in final states
        parent_id   TEXT,              -- continuations
        continue_on TEXT
    );
    -- fetch: the oldest enqueued jobs of one queue
    CREATE INDEX jobs_enqueued ON jobs (queue, enqueued_at, id) WHERE state = 'Enqueued';
    CREATE INDEX jobs_scheduled ON jobs (due_at) WHERE state = 'Scheduled';
    CREATE INDEX jobs_processing ON jobs (server_id) WHERE state = 'Processing';
    CREATE INDEX jobs_lease ON jobs (lease_token) WHERE lease_token IS NOT NULL;
    CREATE INDEX jobs_awaiting ON jobs (parent_id) WHERE state = 'Awaiting';
    CREATE INDEX jobs_expire ON jobs (expire_at) WHERE expire_at IS NOT NULL;
    -- monitoring: lists and counts by state
    CREATE INDEX jobs_state ON jobs (state, state_at);

    CREATE TABLE history (
        id      INTEGER PRIMARY KEY,
        job_id  TEXT NOT NULL,
        state   TEXT NOT NULL,
        reason  TEXT,
        data    TEXT NOT NULL,
        at      REAL NOT NULL
    );
    CREATE INDEX history_job ON history (job_id, id);

    CREATE TABLE servers (
        id           TEXT PRIMARY KEY,
        queues       TEXT NOT NULL,
        workers      INTEGER NOT NULL,
        info         TEXT NOT NULL,
        started_at   REAL NOT NULL,
        heartbeat_at REAL NOT NULL
    );

    CREATE TABLE locks (
        name       TEXT PRIMARY KEY,
        owner      TEXT NOT NULL,
        expires_at REAL NOT NULL
    );

    CREATE TABLE counters (
        name       TEXT NOT NULL,
        resolution TEXT NOT NULL,      -- 'total', 'minute' or 'hour'
        bucket     REAL NOT NULL,      -- bucket start, or 0 for totals
        value      INTEGER NOT NULL,
        expire_at  REAL,
        PRIMARY KEY (name, resolution, bucket)
    ) WITHOUT ROWID;
    """,
    """
    ALTER TABLE jobs ADD COLUMN recurring_id TEXT;
    ALTER TABLE jobs ADD COLUMN occurrence REAL;
    -- one job per occurrence of a recurring job, whatever the schedulers do
    CREATE UNIQUE INDEX jobs_occurrence ON jobs (recurring_id, occurrence)
        WHERE occurrence IS NOT NULL;

    CREATE TABLE recurring (
        id          TEXT PRIMARY KEY,
        cron        TEXT NOT NULL,
        tz          TEXT NOT NULL,
        function    TEXT NOT NULL,
        payload     TEXT NOT NULL,
        queue       TEXT NOT NULL,
        misfire     TEXT NOT NULL,
        paused      INTEGER NOT NULL DEFAULT 0,
        next_at     REAL,              -- NULL when there is no future occurrence
        last_at     REAL,
        last_job_id TEXT,
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL,
        error       TEXT,
        error_count INTEGER NOT NULL DEFAULT 0,
        retry_at    REAL
    );
    CREATE INDEX recurring_due ON recurring (next_at) WHERE paused = 0;
    """,
    """
    -- job counts per state and queue, kept by triggers in the writing
    -- transaction, so the dashboard and metrics never count the jobs table,
    -- and indexes for the other monitoring queries
    CREATE TABLE job_counts (
        state TEXT NOT NULL,
        queue TEXT NOT NULL,
        n     INTEGER NOT NULL,
        PRIMARY KEY (state, queue)
    ) WITHOUT ROWID;
    INSERT INTO job_counts (state, queue, n)
        SELECT state, queue, COUNT(*) FROM jobs GROUP BY state, queue;

    -- lists by state and due time in their full order, without a sort step
    DROP INDEX jobs_state;
    CREATE INDEX jobs_state ON jobs (state, state_at, id);
    DROP INDEX jobs_scheduled;
    CREATE INDEX jobs_scheduled ON jobs (due_at, id) WHERE state = 'Scheduled';
    -- the dashboard's retries list and a job's continuations in any state
    CREATE INDEX jobs_retries ON jobs (due_at, id) WHERE state = 'Scheduled' AND retry_count > 0;
    CREATE INDEX jobs_parent ON jobs (parent_id, created_at) WHERE parent_id IS NOT NULL;

    CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs BEGIN
        INSERT INTO job_counts (state, queue, n) VALUES (NEW.state, NEW.queue, 1)
            ON CONFLICT (state, queue) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs BEGIN
        UPDATE job_counts SET n = n - 1 WHERE state = OLD.state AND queue = OLD.queue;
    END;
    CREATE TRIGGER jobs_count_update AFTER UPDATE OF state, queue ON jobs
        WHEN OLD.state IS NOT NEW.state OR OLD.queue IS NOT NEW.queue BEGIN
        UPDATE job_counts SET n = n - 1 WHERE state = OLD.state AND queue = OLD.queue;
        INSERT INTO job_counts (state, queue, n) VALUES (NEW.state, NEW.queue, 1)
            ON CONFLICT (state, queue) DO UPDATE SET n = n + 1;
    END;
    """,
]


def migrate(conn: sqlite3.Connection) -> int:
    """Apply pending migrations in one exclusive transaction; return the new version."""
    conn.execute("BEGIN EXCLUSIVE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        version = row[0] if row else 0
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"the database schema is version {version}, newer than this backburner "
                f"release supports ({len(MIGRATIONS)}); upgrade backburner")
        for script in MIGRATIONS[version:]:
            for statement in _statements(script):
                conn.execute(statement)
        if row is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (len(MIGRATIONS),))
        else:
            conn.execute("UPDATE schema_version SET version = ?", (len(MIGRATIONS),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(MIGRATIONS)


def _statements(script: str) -> list[str]:
    """Split ``script`` into complete statements; a trigger body's inner ";" does not end one.

    No comment in the scripts may contain ";".
    """
    statements: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending)
            pending = ""
    if pending.strip(" \n;"):
        raise ValueError(f"incomplete SQL statement in a migration: {pending.strip()[:80]!r}")
    return statements
