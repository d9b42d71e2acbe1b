"""PostgreSQL schema, as numbered migrations applied in order on first use.

Every object lives in one schema (``backburner`` unless the storage URL names
another), so several applications or test runs can share a database. The
token ``{schema}`` in the scripts stands for that schema's quoted name.

Times are ``double precision`` seconds since the Unix epoch, read from the
database clock, so that rows compare directly with the floats of the storage
contract. Payloads, reasons and history data are ``text``: the encoded JSON
is pure ASCII, so NUL characters and lone surrogates in job arguments survive
exactly, which ``jsonb`` would not allow.
"""

from __future__ import annotations

import re

import psycopg

from backburner.errors import ConfigurationError, StorageError

#: First key of the advisory lock that serialises migrations; the second is
#: a hash of the schema name. The value spells "bbmg" in ASCII.
MIGRATION_LOCK_CLASS = 0x62626D67

#: Schema names: lowercase so they need no quoting in psql, short enough that
#: the notification channel name stays under PostgreSQL's 63-byte limit.
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")

#: Each entry upgrades the schema from version ``index`` to ``index + 1``.
MIGRATIONS: list[str] = [
    # 1: tables and indexes.
    """
    CREATE TABLE {schema}.jobs (
        id          text PRIMARY KEY,
        function    text NOT NULL,
        payload     text NOT NULL,
        queue       text NOT NULL,
        state       text NOT NULL,
        created_at  double precision NOT NULL,
        state_at    double precision NOT NULL,
        enqueued_at double precision,          -- FIFO position while Enqueued
        attempt     integer NOT NULL DEFAULT 0,
        retry_count integer NOT NULL DEFAULT 0,
        crash_count integer NOT NULL DEFAULT 0,
        lease_token text,                      -- set only while Processing
        server_id   text,                      -- set only while Processing
        due_at      double precision,          -- set only while Scheduled
        expire_at   double precision,          -- set only in final states
        parent_id   text,                      -- continuations
        continue_on text
    );
    -- fetch: the oldest enqueued jobs of one queue
    CREATE INDEX jobs_enqueued ON {schema}.jobs (queue, enqueued_at, id)
        WHERE state = 'Enqueued';
    CREATE INDEX jobs_scheduled ON {schema}.jobs (due_at, id) WHERE state = 'Scheduled';
    CREATE INDEX jobs_processing ON {schema}.jobs (server_id) WHERE state = 'Processing';
    CREATE INDEX jobs_lease ON {schema}.jobs (lease_token) WHERE lease_token IS NOT NULL;
    CREATE INDEX jobs_awaiting ON {schema}.jobs (parent_id) WHERE state = 'Awaiting';
    CREATE INDEX jobs_expire ON {schema}.jobs (expire_at) WHERE expire_at IS NOT NULL;
    -- monitoring: lists and counts by state, newest state change first
    CREATE INDEX jobs_state ON {schema}.jobs (state, state_at, id);

    CREATE TABLE {schema}.history (
        id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        job_id  text NOT NULL,
        state   text NOT NULL,
        reason  text,                          -- a JSON string, or NULL
        data    text NOT NULL,                 -- a JSON object
        at      double precision NOT NULL
    );
    CREATE INDEX history_job ON {schema}.history (job_id, id);

    CREATE TABLE {schema}.servers (
        id           text PRIMARY KEY,
        queues       text NOT NULL,            -- a JSON array
        workers      integer NOT NULL,
        info         text NOT NULL,            -- a JSON object
        started_at   double precision NOT NULL,
        heartbeat_at double precision NOT NULL
    );

    CREATE TABLE {schema}.locks (
        name       text PRIMARY KEY,
        owner      text NOT NULL,
        expires_at double precision NOT NULL
    );

    CREATE TABLE {schema}.counters (
        name       text NOT NULL,
        resolution text NOT NULL,              -- 'total', 'minute' or 'hour'
        bucket     double precision NOT NULL,  -- bucket start, or 0 for totals
        value      bigint NOT NULL,
        expire_at  double precision,
        PRIMARY KEY (name, resolution, bucket)
    );
    CREATE INDEX counters_expire ON {schema}.counters (expire_at) WHERE expire_at IS NOT NULL;
    """,

    # 2: the claim function, so that a claim over several queues is one
    # statement that locks exactly the rows it takes. The caller makes the
    # lease tokens (one per job it can take), so that it can find the jobs of
    # a claim whose reply it never received.
    """
    CREATE FUNCTION {schema}.claim_jobs(p_queues text[], p_server_id text, p_tokens text[])
    RETURNS SETOF {schema}.jobs
    LANGUAGE plpgsql AS $$
    DECLARE
        v_now double precision := extract(epoch FROM now());
        v_queue text;
        v_taken integer := 0;
        v_claimed integer;
        v_limit integer := coalesce(cardinality(p_tokens), 0);
    BEGIN
        -- Queues in the listed order, each in FIFO order. FOR NO KEY UPDATE
        -- does not conflict with the FOR KEY SHARE lock that creating a
        -- continuation takes on its parent, so such a parent is not skipped.
        FOREACH v_queue IN ARRAY p_queues LOOP
            EXIT WHEN v_taken >= v_limit;
            RETURN QUERY
                WITH picked AS MATERIALIZED (
                    SELECT id, enqueued_at FROM {schema}.jobs
                    WHERE state = 'Enqueued' AND queue = v_queue
                    ORDER BY enqueued_at, id
                    LIMIT v_limit - v_taken
                    FOR NO KEY UPDATE SKIP LOCKED
                ), numbered AS (
                    SELECT id, row_number() OVER (ORDER BY enqueued_at, id) AS position
                    FROM picked
                ), claimed AS (
                    UPDATE {schema}.jobs AS j
                    SET state = 'Processing', state_at = v_now, enqueued_at = NULL,
                        lease_token = p_tokens[v_taken + numbered.position],
                        server_id = p_server_id, attempt = j.attempt + 1
                    FROM numbered
                    WHERE j.id = numbered.id
                    RETURNING j.*
                ), logged AS (
                    INSERT INTO {schema}.history (job_id, state, reason, data, at)
                    SELECT c.id, 'Processing', NULL,
                           json_build_object('server_id', p_server_id,
                                             'attempt', c.attempt)::text,
                           v_now
                    FROM claimed AS c JOIN numbered AS n USING (id)
                    ORDER BY n.position
                )
                SELECT c.* FROM claimed AS c JOIN numbered AS n USING (id)
                ORDER BY n.position;
            GET DIAGNOSTICS v_claimed = ROW_COUNT;
            v_taken := v_taken + v_claimed;
        END LOOP;
    END
    $$;
    """,

    # 3: recurring jobs, and the one job per occurrence that they create.
    """
    ALTER TABLE {schema}.jobs ADD COLUMN recurring_id text;
    ALTER TABLE {schema}.jobs ADD COLUMN occurrence double precision;
    -- one job per occurrence of a recurring job, whatever the schedulers do
    CREATE UNIQUE INDEX jobs_occurrence ON {schema}.jobs (recurring_id, occurrence)
        WHERE occurrence IS NOT NULL;

    CREATE TABLE {schema}.recurring (
        id          text PRIMARY KEY,
        cron        text NOT NULL,
        tz          text NOT NULL,
        function    text NOT NULL,
        payload     text NOT NULL,
        queue       text NOT NULL,
        misfire     text NOT NULL,
        paused      boolean NOT NULL DEFAULT false,
        next_at     double precision,          -- NULL when there is no future occurrence
        last_at     double precision,
        last_job_id text,
        created_at  double precision NOT NULL,
        updated_at  double precision NOT NULL,
        error       text,                      -- a JSON string, or NULL
        error_count integer NOT NULL DEFAULT 0,
        retry_at    double precision
    );
    CREATE INDEX recurring_due ON {schema}.recurring (next_at) WHERE NOT paused;
    """,

    # 4: job counts per state and queue, so the dashboard and metrics never
    # count the jobs table, and indexes for retries and continuations.
    # Statement triggers append one delta row per changed (state, queue) to
    # job_count_deltas, an insert-only table, so concurrent transactions never
    # wait on a counter row. tidy() folds the deltas into job_counts, and a
    # reader sums both in one snapshot. CREATE TRIGGER locks out writers until
    # this transaction commits, so the seed count is exact.
    """
    CREATE TABLE {schema}.job_counts (
        state text NOT NULL,
        queue text NOT NULL,
        n     bigint NOT NULL,
        PRIMARY KEY (state, queue)
    );
    CREATE TABLE {schema}.job_count_deltas (
        state text NOT NULL,
        queue text NOT NULL,
        delta bigint NOT NULL
    );

    -- the dashboard's retries list and a job's continuations in any state
    CREATE INDEX jobs_retries ON {schema}.jobs (due_at, id)
        WHERE state = 'Scheduled' AND retry_count > 0;
    CREATE INDEX jobs_parent ON {schema}.jobs (parent_id, created_at)
        WHERE parent_id IS NOT NULL;

    CREATE FUNCTION {schema}.count_inserted_jobs() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {schema}.job_count_deltas (state, queue, delta)
        SELECT state, queue, count(*) FROM new_rows GROUP BY state, queue;
        RETURN NULL;
    END
    $$;
    CREATE FUNCTION {schema}.count_deleted_jobs() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {schema}.job_count_deltas (state, queue, delta)
        SELECT state, queue, -count(*) FROM old_rows GROUP BY state, queue;
        RETURN NULL;
    END
    $$;
    CREATE FUNCTION {schema}.count_updated_jobs() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {schema}.job_count_deltas (state, queue, delta)
        SELECT state, queue, sum(delta) FROM (
            SELECT state, queue, -1 AS delta FROM old_rows
            UNION ALL
            SELECT state, queue, 1 FROM new_rows
        ) AS moves
        GROUP BY state, queue
        HAVING sum(delta) <> 0;
        RETURN NULL;
    END
    $$;

    CREATE TRIGGER jobs_count_insert AFTER INSERT ON {schema}.jobs
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION {schema}.count_inserted_jobs();
    CREATE TRIGGER jobs_count_delete AFTER DELETE ON {schema}.jobs
        REFERENCING OLD TABLE AS old_rows
        FOR EACH STATEMENT EXECUTE FUNCTION {schema}.count_deleted_jobs();
    CREATE TRIGGER jobs_count_update AFTER UPDATE ON {schema}.jobs
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION {schema}.count_updated_jobs();

    INSERT INTO {schema}.job_counts (state, queue, n)
    SELECT state, queue, count(*) FROM {schema}.jobs GROUP BY state, queue;
    """,
]


def quote_schema(schema: str) -> str:
    """Return ``schema`` as a quoted SQL identifier, raising ConfigurationError if invalid."""
    if not SCHEMA_NAME.fullmatch(schema):
        raise ConfigurationError(
            f"invalid PostgreSQL schema name {schema!r}: use 1 to 48 lowercase letters, digits "
            "and underscores, starting with a letter or underscore")
    return f'"{schema}"'


def current_version(conn: psycopg.Connection, schema: str) -> int:
    """Return the schema's migration version, 0 when nothing is installed."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                       (f"{quote_schema(schema)}.schema_version",)).fetchone()
    if row is None or not row[0]:
        return 0
    version = conn.execute(
        f"SELECT coalesce(max(version), 0) FROM {quote_schema(schema)}.schema_version").fetchone()
    return int(version[0]) if version else 0


def migrate(conn: psycopg.Connection, schema: str, target: int | None = None) -> int:
    """Apply pending migrations up to ``target`` (default: all); return the new version.

    ``conn`` must be in autocommit mode. The work runs in one transaction
    under a transaction-level advisory lock, so processes that start at the
    same time wait for each other and only the first one migrates. A schema
    already up to date is detected without the lock (and without the CREATE
    privilege that taking it may need).
    """
    target = len(MIGRATIONS) if target is None else target
    if not 0 <= target <= len(MIGRATIONS):
        raise ValueError(f"invalid migration target {target}; use 0 to {len(MIGRATIONS)}")
    installed = _checked(current_version(conn, schema))
    if installed >= target:
        return installed

    name = quote_schema(schema)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                     (MIGRATION_LOCK_CLASS, schema))
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {name}")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {name}.schema_version ("
            "version integer PRIMARY KEY, "
            "applied_at timestamptz NOT NULL DEFAULT now())")
        version = _checked(current_version(conn, schema))
        for number in range(version + 1, target + 1):
            conn.execute(MIGRATIONS[number - 1].replace("{schema}", name))
            conn.execute(f"INSERT INTO {name}.schema_version (version) VALUES (%s)", (number,))
    return max(version, target)


def _checked(version: int) -> int:
    if version > len(MIGRATIONS):
        raise StorageError(
            f"the PostgreSQL schema is at version {version}, newer than this backburner "
            f"release supports ({len(MIGRATIONS)}); upgrade backburner")
    return version
