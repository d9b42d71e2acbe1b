"""PostgreSQL storage: migrations, URLs and secrets, startup errors, text jsonb rejects, races.

The conformance suite covers the contract; these tests cover what only the
PostgreSQL backend has. Each test works in a schema of its own in the
database named by BACKBURNER_TEST_POSTGRES_URL, dropped afterwards.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.rows import dict_row

from backburner import Backburner, states
from backburner.cli import main
from backburner.errors import ConfigurationError, JobNotFound, StorageError
from backburner.ids import new_job_id
from backburner.records import NewJob, RecurringRecord, StateChange
from backburner.storage import open_storage
from backburner.storage.postgres import PostgresStorage
from backburner.storage.postgres_schema import MIGRATIONS

POSTGRES_URL = os.environ.get("BACKBURNER_TEST_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/test")
#: Seconds to wait for a process, thread or condition before the test fails.
TIMEOUT = 120.0
PASSWORD = "pw-Zq8-secret"


# -- fixtures and helpers -----------------------------------------------------


def new_schema_name() -> str:
    return f"bb_test_{secrets.token_hex(6)}"


def drop_schema(schema: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def schema() -> Iterator[str]:
    """A schema name no other test uses; the schema is dropped after the test."""
    name = new_schema_name()
    yield name
    drop_schema(name)


@pytest.fixture
def url(schema: str) -> str:
    return f"{POSTGRES_URL}?schema={schema}"


@pytest.fixture
def storage(url: str) -> Iterator[PostgresStorage]:
    opened = open_storage(url)
    assert isinstance(opened, PostgresStorage)
    yield opened
    opened.close()


@pytest.fixture
def admin() -> Iterator[Any]:
    """A separate autocommit connection for looking at the database directly."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        yield conn


def closed_port() -> int:
    """Return a loopback TCP port that nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dump_schema(conn: Any, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Return the schema's columns, indexes, constraints and functions, with its name erased."""
    queries = {
        "columns": "SELECT table_name, column_name, ordinal_position, data_type, is_nullable, "
                   "column_default, is_identity FROM information_schema.columns "
                   "WHERE table_schema = %(s)s ORDER BY table_name, ordinal_position",
        "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes "
                   "WHERE schemaname = %(s)s ORDER BY tablename, indexname",
        "constraints": "SELECT c.conrelid::regclass::text, c.conname, "
                       "pg_get_constraintdef(c.oid) FROM pg_constraint AS c "
                       "JOIN pg_namespace AS n ON n.oid = c.connamespace "
                       "WHERE n.nspname = %(s)s ORDER BY 1, 2",
        "functions": "SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc AS p "
                     "JOIN pg_namespace AS n ON n.oid = p.pronamespace "
                     "WHERE n.nspname = %(s)s ORDER BY 1",
        "triggers": "SELECT t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger AS t "
                    "JOIN pg_class AS c ON c.oid = t.tgrelid "
                    "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %(s)s AND NOT t.tgisinternal ORDER BY 1",
    }
    dump = {}
    for name, query in queries.items():
        rows = conn.execute(query, {"s": schema}).fetchall()
        dump[name] = [tuple(str(value).replace(schema, "<schema>") for value in row)
                      for row in rows]
    return dump


def wait_for(condition: Any, message: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def migrate_in_process(url: str, explicit: bool, barrier: Any, results: Any) -> None:
    """Open the storage at ``url`` right after the others, and migrate it explicitly (as
    ``backburner migrate`` does) or by using it once (runs in a child)."""
    try:
        barrier.wait(TIMEOUT)
        storage = open_storage(url)
        assert isinstance(storage, PostgresStorage)
        try:
            if explicit:
                results.put(("ok", storage.migrate()))
            else:
                results.put(("ok", storage.count_jobs_by_state()[states.ENQUEUED]))
        finally:
            storage.close()
    except BaseException as exc:
        results.put(("error", repr(exc)))
        raise


# -- migrations ---------------------------------------------------------------


def test_migrate_ten_processes(url: str, schema: str, admin: Any) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(10)
    results = context.Queue()
    processes = [context.Process(target=migrate_in_process,
                                 args=(url, index % 2 == 0, barrier, results))
                 for index in range(10)]
    for process in processes:
        process.start()
    try:
        reports = [results.get(timeout=TIMEOUT) for _ in processes]
    finally:
        for process in processes:
            process.join(TIMEOUT)
            if process.is_alive():
                process.kill()

    versions = admin.execute(
        f'SELECT version, applied_at FROM "{schema}".schema_version ORDER BY version').fetchall()
    assert [report for report in reports if report[0] != "ok"] == []
    assert [process.exitcode for process in processes] == [0] * 10
    assert [version for version, _ in versions] == list(range(1, len(MIGRATIONS) + 1))
    # Every migration ran in the one transaction of the one process that migrated.
    assert len({applied_at for _, applied_at in versions}) == 1


def test_fresh_equals_replayed(admin: Any) -> None:
    fresh, replayed = new_schema_name(), new_schema_name()
    try:
        storage = open_storage(f"{POSTGRES_URL}?schema={fresh}")
        storage.count_jobs_by_state()  # the first use installs the schema
        storage.close()
        for target in range(1, len(MIGRATIONS) + 1):
            step = PostgresStorage.from_url(f"{POSTGRES_URL}?schema={replayed}")
            assert step.migrate(target) == target
            step.close()

        fresh_dump = dump_schema(admin, fresh)
        replayed_dump = dump_schema(admin, replayed)
    finally:
        drop_schema(fresh)
        drop_schema(replayed)

    assert [row[1] for row in fresh_dump["indexes"] if row[0] == "jobs"] == [
        "jobs_awaiting", "jobs_enqueued", "jobs_expire", "jobs_lease", "jobs_occurrence",
        "jobs_parent", "jobs_pkey", "jobs_processing", "jobs_retries", "jobs_scheduled",
        "jobs_state"]
    assert [row[0] for row in fresh_dump["functions"]] == [
        "claim_jobs", "count_deleted_jobs", "count_inserted_jobs", "count_updated_jobs"]
    assert [row[0] for row in fresh_dump["triggers"]] == [
        "jobs_count_delete", "jobs_count_insert", "jobs_count_update"]
    assert fresh_dump["columns"] == replayed_dump["columns"]
    assert fresh_dump["indexes"] == replayed_dump["indexes"]
    assert fresh_dump["constraints"] == replayed_dump["constraints"]
    assert fresh_dump["functions"] == replayed_dump["functions"]
    assert fresh_dump["triggers"] == replayed_dump["triggers"]


def test_migrate_partial_upgrade(url: str) -> None:
    old = PostgresStorage.from_url(url)
    assert old.migrate(1) == 1
    old.close()

    storage = PostgresStorage.from_url(url)
    try:
        assert storage.schema_version() == 1
        assert storage.fetch_jobs(["default"], "server-a", 1) == []
        assert storage.schema_version() == len(MIGRATIONS)
    finally:
        storage.close()


def test_migrate_counts_existing_jobs(url: str, schema: str, admin: Any) -> None:
    old = PostgresStorage.from_url(url)
    assert old.migrate(3) == 3
    old.close()
    rows = [(f"job-{index}", state, queue) for index, (state, queue) in enumerate(
        [("Enqueued", "a")] * 3 + [("Enqueued", "b")] + [("Succeeded", "a")] * 2)]
    with admin.cursor() as cursor:
        cursor.executemany(
            f'INSERT INTO "{schema}".jobs (id, function, payload, queue, state, created_at, '
            "state_at) VALUES (%s, 'f', '[[],{}]', %s, %s, 0, 0)",
            [(job_id, queue, state) for job_id, state, queue in rows])

    storage = PostgresStorage.from_url(url)
    try:
        counts = storage.count_jobs_by_state()
        lengths = storage.queue_lengths()
    finally:
        storage.close()

    assert (counts["Enqueued"], counts["Succeeded"], sum(counts.values())) == (4, 2, 6)
    assert lengths == {"a": 3, "b": 1}


def test_tidy_folds_deltas(storage: PostgresStorage, schema: str, admin: Any) -> None:
    storage.create_jobs([NewJob(id=f"job-{index}", function="f", payload="[[],{}]",
                                queue="q", state="Enqueued") for index in range(5)])
    fetched = storage.fetch_jobs(["q"], "server-a", 2)
    before = storage.count_jobs_by_state()
    storage.tidy()
    deltas = admin.execute(f'SELECT count(*) FROM "{schema}".job_count_deltas').fetchone()[0]
    folded = admin.execute(
        f'SELECT state, queue, n FROM "{schema}".job_counts ORDER BY state').fetchall()

    assert len(fetched) == 2
    assert deltas == 0
    assert folded == [("Enqueued", "q", 3), ("Processing", "q", 2)]
    assert storage.count_jobs_by_state() == before


def test_migrate_newer_schema(storage: PostgresStorage, schema: str, admin: Any) -> None:
    storage.now()
    admin.execute(f'INSERT INTO "{schema}".schema_version (version) VALUES (%s)',
                  (len(MIGRATIONS) + 1,))

    newer = PostgresStorage.from_url(f"{POSTGRES_URL}?schema={schema}")
    try:
        with pytest.raises(StorageError, match="newer than this backburner release"):
            newer.count_jobs_by_state()
    finally:
        newer.close()


def test_migrate_cli(url: str, schema: str) -> None:
    runner = CliRunner()
    first = runner.invoke(main, ["migrate", "--storage", url])
    second = runner.invoke(main, ["migrate", "--storage", url])
    unreachable = f"postgresql://postgres@127.0.0.1:{closed_port()}/test?pool_timeout=1"
    missing = runner.invoke(main, ["migrate", "--storage", unreachable])

    assert first.exit_code == 0, first.output
    assert f"?schema={schema}: schema version {len(MIGRATIONS)} " in first.output
    assert f"(applied {len(MIGRATIONS)} migration(s))" in first.output
    assert second.exit_code == 0, second.output
    assert "(up to date)" in second.output
    assert missing.exit_code == 1
    assert "failed to read the schema version" in missing.output


# -- URLs, secrets and startup errors -----------------------------------------


def test_default_schema() -> None:
    storage = open_storage(POSTGRES_URL)
    try:
        assert isinstance(storage, PostgresStorage)
        assert storage.schema == "backburner"
        assert storage.describe().endswith("?schema=backburner")
    finally:
        storage.close()


def test_both_schemes(schema: str) -> None:
    for scheme in ("postgresql", "postgres"):
        rest = POSTGRES_URL.split("://", 1)[1]
        storage = open_storage(f"{scheme}://{rest}?schema={schema}")
        try:
            assert storage.now() > 0
        finally:
            storage.close()


@pytest.mark.parametrize("option, message", [
    ("schema=Bad-Name", "invalid PostgreSQL schema name"),
    ("pool_size=0", "invalid pool_size"),
    ("pool_timeout=soon", "invalid pool_timeout"),
    ("poll_interval=-1", "invalid poll_interval"),
    ("no_such_option=1", "invalid PostgreSQL URL"),
])
def test_invalid_url(option: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        open_storage(f"{POSTGRES_URL}?{option}")


def test_describe_hides_password(schema: str) -> None:
    rest = POSTGRES_URL.split("://", 1)[1]
    user, _, host = rest.partition("@")
    for url in (f"postgresql://{user}:{PASSWORD}@{host}?schema={schema}",
                f"{POSTGRES_URL}?password={PASSWORD}&schema={schema}"):
        storage = open_storage(url)
        try:
            description = storage.describe()
            assert storage.count_jobs_by_state()[states.ENQUEUED] == 0
        finally:
            storage.close()

        assert PASSWORD not in description
        assert "127.0.0.1" in description
        assert description.endswith(f"?schema={schema}")


def test_errors_hide_password(caplog: pytest.LogCaptureFixture) -> None:
    port = closed_port()
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/test?pool_timeout=1"
    caplog.set_level(logging.DEBUG)

    storage = open_storage(url)
    try:
        with pytest.raises(StorageError) as failure:
            storage.now()
    finally:
        storage.close()
    with pytest.raises(ConfigurationError) as invalid:
        open_storage(f"{url}&pool_size=none")

    assert PASSWORD not in str(failure.value)
    assert PASSWORD not in str(invalid.value)
    assert PASSWORD not in caplog.text
    assert "postgres:***@" in str(invalid.value)


def test_missing_server() -> None:
    port = closed_port()
    storage = open_storage(f"postgresql://postgres@127.0.0.1:{port}/test?pool_timeout=1")
    try:
        with pytest.raises(StorageError) as failure:
            storage.create_jobs([NewJob(new_job_id(), "f", "[[],{}]", "default",
                                        states.ENQUEUED)])
    finally:
        storage.close()

    message = str(failure.value)
    assert f"127.0.0.1:{port}" in message
    assert "failed to create jobs" in message
    assert "Connection refused" in message
    assert isinstance(failure.value.__cause__, psycopg.Error)


def test_missing_psycopg() -> None:
    # A child interpreter in which importing psycopg fails, as without the extra.
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('psycopg', 'psycopg_pool'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from backburner.errors import ConfigurationError\n"
        "from backburner.storage import open_storage\n"
        "try:\n"
        "    open_storage('postgresql://127.0.0.1/test')\n"
        "except ConfigurationError as exc:\n"
        "    print('ConfigurationError:', exc)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=TIMEOUT, check=False)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ConfigurationError:")
    assert "pip install 'backburner[postgres]'" in result.stdout


# -- text that jsonb and PostgreSQL text reject --------------------------------


def test_args_nul_surrogate(url: str) -> None:
    app = Backburner(url)
    received: list[tuple[Any, ...]] = []

    @app.job(name="tests.postgres:echo", retries=0)
    def echo(*args: Any, **kwargs: Any) -> None:
        received.append((args, kwargs))

    args = ("a\x00b", "\udc80", ["\ud800x", {"k\x00": "\x00"}])
    kwargs = {"text": "lone \udfff and nul \x00"}
    try:
        job_id = echo.enqueue(*args, **kwargs)
        stored = app.get_job(job_id)
        with app.server(workers=1, heartbeat_interval=0.5):
            wait_for(lambda: app.get_job(job_id).state == states.SUCCEEDED,
                     "the job did not succeed")
    finally:
        app.close()

    assert stored.args == list(args)
    assert stored.kwargs == kwargs
    assert received == [(args, kwargs)]


def test_reason_nul_surrogate(storage: PostgresStorage) -> None:
    job_id = new_job_id()
    reason = "ValueError: bad \x00 byte and \udc80 surrogate"
    storage.create_jobs([NewJob(job_id, "f", "[[],{}]", "default", states.ENQUEUED,
                                reason="created \x00")])
    applied = storage.change_states([StateChange(job_id, states.DELETED, reason,
                                                 {"message": "\x00\udc80"})])
    job = storage.get_job(job_id)

    assert applied == [True]
    assert job is not None
    assert job.history[0].reason == "created \x00"
    assert job.history[-1].reason == reason
    assert job.history[-1].data == {"message": "\x00\udc80"}


def test_ids_with_nul(storage: PostgresStorage) -> None:
    assert storage.get_job("a\x00b") is None
    assert storage.change_states([StateChange("a\x00b", states.DELETED)]) == [False]
    assert storage.current_leases(["\x00", "\udc80"]) == set()


# -- transactional enqueue ----------------------------------------------------


def tx_app(url: str) -> tuple[Backburner, Any]:
    """Return an app on ``url`` with one job function, and that function."""
    app = Backburner(url)

    @app.job(name="tests.postgres:add", retries=0)
    def add(a: int, b: int) -> int:
        return a + b

    return app, add


def test_tx_commit_runs(url: str) -> None:
    app, add = tx_app(url)
    try:
        with psycopg.connect(POSTGRES_URL) as conn:
            conn.execute("CREATE TEMPORARY TABLE orders (id integer)")
            conn.execute("INSERT INTO orders VALUES (1)")
            job_id = app.options(connection=conn).enqueue(add, 1, 2)
            before_commit = app.get_job(job_id)
            conn.commit()
        with app.server(workers=1, heartbeat_interval=0.5):
            wait_for(lambda: app.get_job(job_id).state == states.SUCCEEDED,
                     "the committed job did not succeed")
        job = app.get_job(job_id)
    finally:
        app.close()

    assert before_commit is None
    assert job is not None
    assert job.history[-1].data["result"] == "3"


def test_tx_rollback_no_job(url: str) -> None:
    app, add = tx_app(url)
    parent_id = add.enqueue(0, 0)
    try:
        with psycopg.connect(POSTGRES_URL) as conn:
            client = app.options(connection=conn)
            ids = [client.enqueue(add, 1, 2),
                   app.options(connection=conn, delay=60).enqueue(add, 1, 2),
                   client.continue_with(parent_id, add, 3, 4),
                   *client.enqueue_many([add.call(5, 6), add.call(7, 8)])]
            conn.rollback()
        counts = app.storage.count_jobs_by_state()
        found = [app.get_job(job_id) for job_id in ids]
    finally:
        app.close()

    assert found == [None] * 5
    assert counts[states.ENQUEUED] == 1
    assert sum(counts.values()) == 1


def test_tx_notify_on_commit(url: str, schema: str) -> None:
    app, add = tx_app(url)
    app.storage.now()  # installs the schema
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as listener, \
                psycopg.connect(POSTGRES_URL) as conn:
            listener.execute(f'LISTEN "{schema}.enqueued"')
            app.options(connection=conn, queue="mail").enqueue(add, 1, 2)
            app.options(connection=conn, queue="mail").enqueue(add, 3, 4)
            before_commit = list(listener.notifies(timeout=0.5))
            conn.commit()
            after_commit = list(listener.notifies(timeout=TIMEOUT, stop_after=1))
            app.options(connection=conn, queue="other").enqueue(add, 1, 2)
            conn.rollback()
            after_rollback = list(listener.notifies(timeout=0.5))
    finally:
        app.close()

    assert before_commit == []
    assert [note.payload for note in after_commit] == ["mail"]
    assert after_rollback == []


def test_tx_savepoint_keeps_transaction(url: str) -> None:
    # A missing parent undoes only the jobs of that call, and the application's
    # transaction, with its own rows and an earlier job, stays usable. The
    # connection returns dict rows and binds parameters on the client side.
    app, add = tx_app(url)
    batch = [NewJob(new_job_id(), "tests.postgres:add", "[[1,2],{}]", "default",
                    states.ENQUEUED),
             NewJob(new_job_id(), "tests.postgres:add", "[[3,4],{}]", "default",
                    states.AWAITING, parent_id="no-such-job", continue_on="succeeded")]
    try:
        with psycopg.connect(POSTGRES_URL, row_factory=dict_row,
                             cursor_factory=psycopg.ClientCursor) as conn:
            conn.execute("CREATE TEMPORARY TABLE orders (id integer)")
            kept = app.options(connection=conn).enqueue(add, 1, 2)
            with pytest.raises(JobNotFound):
                app.storage.create_jobs(batch, connection=conn)
            with pytest.raises(JobNotFound):
                app.options(connection=conn).continue_with("no-such-job", add, 5, 6)
            child = app.options(connection=conn).continue_with(kept, add, 7, 8)
            conn.execute("INSERT INTO orders VALUES (1)")
            row = conn.execute("SELECT count(*) AS n FROM orders").fetchone()
            conn.commit()
        counts = app.storage.count_jobs_by_state()
        child_job = app.get_job(child)
    finally:
        app.close()

    assert row == {"n": 1}
    assert counts[states.ENQUEUED] == 1
    assert counts[states.AWAITING] == 1
    assert sum(counts.values()) == 2
    assert child_job is not None
    assert child_job.parent_id == kept


def test_tx_autocommit(url: str) -> None:
    app, add = tx_app(url)
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            with pytest.raises(ConfigurationError, match="autocommit mode"):
                app.options(connection=conn).enqueue(add, 1, 2)
            with conn.transaction():
                committed = app.options(connection=conn).enqueue(add, 1, 2)
            with pytest.raises(ZeroDivisionError), conn.transaction():
                rolled_back = app.options(connection=conn).enqueue(add, 3, 4)
                _ = 1 / 0
        found = [app.get_job(committed), app.get_job(rolled_back)]
        counts = app.storage.count_jobs_by_state()
    finally:
        app.close()

    assert found[0] is not None
    assert found[1] is None
    assert sum(counts.values()) == 1


def test_tx_invalid_connection(url: str) -> None:
    app, add = tx_app(url)
    try:
        with pytest.raises(ConfigurationError, match="pass a psycopg 3 Connection"):
            app.options(connection=object()).enqueue(add, 1, 2)
        closed = psycopg.connect(POSTGRES_URL)
        closed.close()
        with pytest.raises(ConfigurationError, match="connection is closed"):
            app.options(connection=closed).enqueue(add, 1, 2)
        other_database = POSTGRES_URL.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(other_database) as conn, \
                pytest.raises(ConfigurationError, match="database 'postgres'"):
            app.options(connection=conn).enqueue(add, 1, 2)
        counts = app.storage.count_jobs_by_state()
    finally:
        app.close()

    assert sum(counts.values()) == 0


def test_tx_missing_schema(url: str, schema: str, admin: Any) -> None:
    app, add = tx_app(url)
    try:
        app.storage.now()
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        with psycopg.connect(POSTGRES_URL) as conn:
            with pytest.raises(StorageError) as failure:
                app.options(connection=conn).enqueue(add, 1, 2)
            status = conn.info.transaction_status
            conn.rollback()
    finally:
        app.close()

    assert f"has no backburner schema {schema!r}" in str(failure.value)
    assert status == psycopg.pq.TransactionStatus.INERROR


@pytest.mark.parametrize("storage_url", ["sqlite", "redis"])
def test_tx_other_storage(storage_url: str, tmp_path: Any) -> None:
    urls = {"sqlite": f"sqlite:///{tmp_path / 'jobs.db'}",
            "redis": f"redis://127.0.0.1:6379/0?prefix=backburner-test:{secrets.token_hex(6)}:"}
    app, add = tx_app(urls[storage_url])
    try:
        with psycopg.connect(POSTGRES_URL) as conn, \
                pytest.raises(ConfigurationError, match="needs PostgreSQL storage"):
            app.options(connection=conn).enqueue(add, 1, 2)
    finally:
        app.close()


# -- notifications and races --------------------------------------------------


def test_notify_wakes_other_process(url: str) -> None:
    # The safety poll is far longer than the wait, so only a notification
    # can return the job before the wait ends.
    waiting = PostgresStorage.from_url(f"{url}&poll_interval=600")
    code = (
        "import sys, time\n"
        "from backburner.ids import new_job_id\n"
        "from backburner.records import NewJob\n"
        "from backburner.storage import open_storage\n"
        "storage = open_storage(sys.argv[1])\n"
        "storage.now()\n"
        "time.sleep(1.0)\n"
        "storage.create_jobs([NewJob(new_job_id(), 'f', '[[],{}]', 'mail', 'Enqueued')])\n"
        "storage.close()\n")
    creator = subprocess.Popen([sys.executable, "-c", code, url])
    try:
        fetched = waiting.fetch_jobs(["default", "mail"], "server-a", 5, wait=60.0)
    finally:
        creator.wait(TIMEOUT)
        waiting.close()

    assert creator.returncode == 0
    assert [job.queue for job in fetched] == ["mail"]


def test_continuation_race(storage: PostgresStorage) -> None:
    # Parents finish while their continuations are being created; each
    # continuation must see its parent finish, either at creation or after.
    count = 100
    parents = []
    for _ in range(count):
        job_id = new_job_id()
        storage.create_jobs([NewJob(job_id, "f", "[[],{}]", "race", states.ENQUEUED)])
        parents += storage.fetch_jobs(["race"], "server-a", 1)
    children = [new_job_id() for _ in range(count)]
    barrier = threading.Barrier(2)

    def finish_parents() -> None:
        barrier.wait(TIMEOUT)
        for parent in parents:
            storage.change_states([StateChange(parent.id, states.SUCCEEDED,
                                               lease_token=parent.lease_token)])

    def create_children() -> None:
        barrier.wait(TIMEOUT)
        for parent, child_id in zip(parents, children):
            storage.create_jobs([NewJob(child_id, "f", "[[],{}]", "next", states.AWAITING,
                                        parent_id=parent.id, continue_on="succeeded")])

    threads = [threading.Thread(target=finish_parents), threading.Thread(target=create_children)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)

    assert not any(thread.is_alive() for thread in threads)
    assert storage.count_jobs_by_state()[states.AWAITING] == 0
    assert storage.count_jobs_by_state()[states.SUCCEEDED] == count
    assert storage.queue_lengths() == {"next": count}


def test_claim_locks_taken_only(storage: PostgresStorage, admin: Any) -> None:
    # A claim over several queues locks only the rows it takes: a second
    # claim from another session, while the first one's locks are held,
    # gets the next job in line instead of nothing.
    jobs = [NewJob(new_job_id(), "f", "[[],{}]", queue, states.ENQUEUED)
            for queue in ("high", "high", "low", "low")]
    storage.create_jobs(jobs)
    schema = storage.schema
    with admin.transaction():
        first = admin.execute(f'SELECT id FROM "{schema}".claim_jobs(%s, %s, %s)',
                              (["high", "low"], "server-a", ["token-1"])).fetchall()
        second = storage.fetch_jobs(["high", "low"], "server-b", 2)

    assert [row[0] for row in first] == [jobs[0].id]
    assert [job.id for job in second] == [jobs[1].id, jobs[2].id]


def test_list_enqueued_queues(storage: PostgresStorage) -> None:
    # Listing over all queues merges the queues' own FIFO orders.
    jobs = [NewJob(new_job_id(), "f", "[[],{}]", f"q{index % 3}", states.ENQUEUED)
            for index in range(12)]
    for job in jobs:
        storage.create_jobs([job])
    expected = [job.id for job in jobs]
    storage.fetch_jobs(["q1"], "server-a", 1)  # the oldest job of q1 leaves the list
    del expected[1]

    pages = [[job.id for job in storage.list_jobs(states.ENQUEUED, offset=offset, limit=4)]
             for offset in (0, 4, 8)]

    assert pages[0] == expected[0:4]
    assert pages[1] == expected[4:8]
    assert pages[2] == expected[8:]
    assert storage.list_jobs(states.ENQUEUED, offset=11) == []
    assert [job.queue for job in storage.list_jobs(states.ENQUEUED, limit=3)] == [
        "q0", "q2", "q0"]


# -- recurring jobs -----------------------------------------------------------


def test_recurring_fires_once(url: str, storage: PostgresStorage) -> None:
    due = storage.now() - 60
    storage.save_recurring(RecurringRecord(
        id="report", cron="* * * * *", tz="UTC", function="f", payload="[[],{}]",
        queue="default", misfire="relaxed", next_at=due))
    others = [PostgresStorage.from_url(url) for _ in range(4)]
    barrier = threading.Barrier(len(others))
    results: list[bool] = []

    def fire(other: PostgresStorage) -> None:
        job = NewJob(new_job_id(), "f", "[[],{}]", "default", states.ENQUEUED,
                     recurring_id="report", occurrence=due)
        barrier.wait(TIMEOUT)
        results.append(other.fire_recurring("report", due, [job], due + 60))

    threads = [threading.Thread(target=fire, args=(other,)) for other in others]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
    finally:
        for other in others:
            other.close()
    record = storage.get_recurring("report")

    assert sorted(results) == [False, False, False, True]
    assert storage.queue_lengths() == {"default": 1}
    assert record is not None
    assert record.next_at == due + 60
    assert record.last_at == due


def test_occurrence_created_once(storage: PostgresStorage) -> None:
    def occurrence_job() -> NewJob:
        return NewJob(new_job_id(), "f", "[[],{}]", "default", states.ENQUEUED,
                      recurring_id="report", occurrence=1_000.0)

    storage.create_jobs([occurrence_job()])
    storage.create_jobs([occurrence_job(), occurrence_job()])
    parent = new_job_id()
    storage.create_jobs([NewJob(parent, "f", "[[],{}]", "default", states.ENQUEUED),
                         NewJob(new_job_id(), "f", "[[],{}]", "next", states.AWAITING,
                                parent_id=parent, continue_on="succeeded"),
                         occurrence_job()])
    jobs = storage.list_jobs(states.ENQUEUED)

    assert len([job for job in jobs if job.recurring_id == "report"]) == 1
    assert len(jobs) == 2
    assert storage.count_jobs_by_state()[states.AWAITING] == 1


# -- a lost fetch reply -------------------------------------------------------


class ReplyDroppingProxy:
    """A loopback TCP proxy to PostgreSQL that can swallow the reply to one claim.

    Once ``drop_next_claim`` is set, the connection that sends the next
    ``claim_jobs`` query is closed as soon as PostgreSQL reports the query
    finished (ReadyForQuery, sent after the commit), and that reply is never
    forwarded: the claim happened, but the client cannot know what it took.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.drop_next_claim = threading.Event()
        self.dropped = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        for sock in self.sockets:
            self._cut(sock)

    @staticmethod
    def _cut(sock: socket.socket) -> None:
        # shutdown() wakes a thread blocked in recv() on the socket; close() alone does not.
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self.sockets += [client, server]
            doomed = threading.Event()
            threading.Thread(target=self._to_server, args=(client, server, doomed),
                             daemon=True).start()
            threading.Thread(target=self._to_client, args=(server, client, doomed),
                             daemon=True).start()

    def _to_server(self, client: socket.socket, server: socket.socket,
                   doomed: threading.Event) -> None:
        while data := self._receive(client):
            if self.drop_next_claim.is_set() and b"claim_jobs" in data:
                self.drop_next_claim.clear()
                doomed.set()
            try:
                server.sendall(data)
            except OSError:
                return

    def _to_client(self, server: socket.socket, client: socket.socket,
                   doomed: threading.Event) -> None:
        pending = b""
        while data := self._receive(server):
            if not doomed.is_set():
                try:
                    client.sendall(data)
                except OSError:
                    return
                continue
            pending += data
            if self._has_ready_for_query(pending):
                self._cut(client)
                self._cut(server)
                self.dropped.set()
                return

    @staticmethod
    def _receive(sock: socket.socket) -> bytes:
        try:
            return sock.recv(65536)
        except OSError:
            return b""

    @staticmethod
    def _has_ready_for_query(stream: bytes) -> bool:
        # Backend messages: a type byte, then a 4-byte length that counts itself.
        offset = 0
        while offset + 5 <= len(stream):
            kind = stream[offset:offset + 1]
            length = int.from_bytes(stream[offset + 1:offset + 5], "big")
            if kind == b"Z":
                return True
            offset += 1 + length
        return False


def test_lost_fetch_reply(url: str, storage: PostgresStorage) -> None:
    storage.now()  # installs the schema, so the proxied storage sends no claim_jobs text
    direct = psycopg.conninfo.conninfo_to_dict(POSTGRES_URL)
    proxy = ReplyDroppingProxy(direct.get("host") or "127.0.0.1", int(direct.get("port") or 5432))
    user = direct.get("user") or "postgres"
    proxied = open_storage(f"postgresql://{user}@127.0.0.1:{proxy.port}/{direct['dbname']}"
                           f"?schema={storage.schema}")
    job_id = new_job_id()
    try:
        proxied.create_jobs([NewJob(job_id, "f", "[[],{}]", "default", states.ENQUEUED)])
        proxy.drop_next_claim.set()
        with pytest.raises(StorageError):
            proxied.fetch_jobs(["default"], "server-a", 1)
        lost = storage.get_job(job_id, history=False)
        fetched = proxied.fetch_jobs(["default"], "server-b", 1)
        stored = storage.get_job(job_id)
    finally:
        proxied.close()
        proxy.close()

    assert proxy.dropped.is_set()
    assert lost is not None
    assert lost.state == states.PROCESSING
    assert lost.server_id == "server-a"
    assert [job.id for job in fetched] == [job_id]
    assert fetched[0].attempt == 2
    assert stored is not None
    assert [entry.state for entry in stored.history] == [
        states.ENQUEUED, states.PROCESSING, states.ENQUEUED, states.PROCESSING]
    assert "lost" in (stored.history[2].reason or "")
