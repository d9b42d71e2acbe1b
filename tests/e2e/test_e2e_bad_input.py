"""Bad input at run time and at the command line: clean failures, no code execution."""

from __future__ import annotations

import base64
import json
import os
import pickle
import time
from pathlib import Path
from typing import Any

import jobapp
import pytest
from backends import StorageSpace
from harness import (
    ServerProcess,
    StartServer,
    Workspace,
    all_in_state,
    executions,
    run_cli,
    states_of,
    wait_for,
)

DEADLINE = 60.0

NOT_REGISTERED = "backburner.errors.JobNotRegistered"
INVALID_PAYLOAD = "backburner.errors.InvalidPayload"
INVALID_ARGUMENTS = "backburner.errors.InvalidArguments"


class Exploit:
    """Unpickling this runs a shell command, as a hostile pickle payload would."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


#: (label, function, payload, reason fragment, exception type) of one crafted job.
CraftedCase = tuple[str, str, Any, str, str]


def hostile_pickle(canary: Path) -> bytes:
    """Return a pickle that creates ``canary`` when it is loaded."""
    return pickle.dumps(Exploit(f"touch {canary}"))


def crafted_rows(canary: Path) -> list[CraftedCase]:
    """Return crafted jobs whose payloads are text (binary ones have a test of their own)."""
    command = f"touch {canary}"
    binary_pickle = hostile_pickle(canary)
    pickle_text = base64.b64encode(binary_pickle).decode()
    # Protocol 0 is ASCII text without NUL characters, so every backend can store it.
    ascii_pickle = pickle.dumps(Exploit(command), protocol=0).decode("ascii")

    def call(*args: Any, **kwargs: Any) -> str:
        return json.dumps({"args": list(args), "kwargs": kwargs})

    deep = "[" * 250 + "]" * 250
    very_deep = "[" * 100_000 + "]" * 100_000
    return [
        ("pickle-text", "e2e.echo", binary_pickle.decode("latin-1"), "not valid JSON",
         INVALID_PAYLOAD),
        ("pickle-ascii", "e2e.echo", ascii_pickle, "not valid JSON", INVALID_PAYLOAD),
        ("pickle-tag", "e2e.echo", call({"$bb": "pickle", "v": pickle_text}),
         "unknown tag 'pickle'", INVALID_PAYLOAD),
        ("os-system-tag", "e2e.echo", call({"$bb": "os.system", "v": command}),
         "unknown tag 'os.system'", INVALID_PAYLOAD),
        ("import-path-tag", "e2e.echo", call({"$bb": "global", "v": "os:system",
                                              "args": [command]}),
         "unexpected keys", INVALID_PAYLOAD),
        ("invalid-json", "e2e.echo", '{"args": [1,', "not valid JSON", INVALID_PAYLOAD),
        ("not-an-object", "e2e.echo", "[1, 2]", "exactly 'args' and 'kwargs'",
         INVALID_PAYLOAD),
        ("number", "e2e.echo", 42, "exactly 'args' and 'kwargs'", INVALID_PAYLOAD),
        ("args-not-list", "e2e.echo", '{"args": {"a": 1}, "kwargs": {}}',
         "'args' must be a list", INVALID_PAYLOAD),
        ("bare-nan", "e2e.echo", '{"args": [NaN], "kwargs": {}}', "bare NaN",
         INVALID_PAYLOAD),
        ("nested-250", "e2e.echo", f'{{"args": [{deep}], "kwargs": {{}}}}',
         "nested deeper than", INVALID_PAYLOAD),
        ("nested-100000", "e2e.echo", f'{{"args": [{very_deep}], "kwargs": {{}}}}',
         "not valid JSON", INVALID_PAYLOAD),
        ("huge-int", "e2e.echo", '{"args": [1' + "0" * 5_000 + '], "kwargs": {}}',
         "not valid JSON", INVALID_PAYLOAD),
        ("bad-base64", "e2e.echo", call({"$bb": "bytes", "v": "!!not base64!!"}),
         "does not decode", INVALID_PAYLOAD),
        ("bad-datetime", "e2e.echo", call({"$bb": "datetime", "v": "yesterday"}),
         "does not decode", INVALID_PAYLOAD),
        ("os-system-function", "os:system", call(command), "not registered", NOT_REGISTERED),
        ("posix-system-function", "posix.system", call(command), "not registered",
         NOT_REGISTERED),
        ("eval-function", "builtins:eval", call(f"open({str(canary)!r}, 'w')"),
         "not registered", NOT_REGISTERED),
        ("empty-function", "", call(1), "not registered", NOT_REGISTERED),
        ("too-many-args", "e2e.echo", call(1, 2, 3), "arguments do not match",
         INVALID_ARGUMENTS),
        ("unknown-kwarg", "e2e.echo", call(1, nope=2), "arguments do not match",
         INVALID_ARGUMENTS),
        ("missing-arg", "e2e.echo", call(), "arguments do not match", INVALID_ARGUMENTS),
        ("context-kwarg", "e2e.echo", call(1, ctx="forged"), "do not pass 'ctx'",
         INVALID_ARGUMENTS),
    ]


def storable_cases(workspace: Workspace, cases: list[CraftedCase]) -> list[CraftedCase]:
    """Return the cases that the workspace's backend can store.

    PostgreSQL keeps payloads in ``text`` columns, which reject NUL characters.
    """
    if workspace.backend != "postgres":
        return cases
    return [case for case in cases if "\x00" not in str(case[2])]


def insert_rows(workspace: Workspace, rows: list[tuple[str, str, Any]]) -> None:
    """Insert Enqueued jobs (id, function, payload) behind the storage's back."""
    inserters = {"sqlite": insert_sqlite_rows, "postgres": insert_postgres_rows,
                 "redis": insert_redis_rows}
    inserters[workspace.backend](workspace.space, rows, time.time())


def insert_sqlite_rows(space: StorageSpace, rows: list[tuple[str, str, Any]],
                       now: float) -> None:
    conn = space.connect_sqlite()
    try:
        conn.execute("BEGIN IMMEDIATE")
        for job_id, function, payload in rows:
            conn.execute(
                "INSERT INTO jobs (id, function, payload, queue, state, created_at, state_at, "
                "enqueued_at) VALUES (?, ?, ?, 'default', 'Enqueued', ?, ?, ?)",
                (job_id, function, payload, now, now, now))
            conn.execute("INSERT INTO history (job_id, state, reason, data, at) "
                         "VALUES (?, 'Enqueued', 'crafted by the test', '{}', ?)", (job_id, now))
        conn.execute("COMMIT")
    finally:
        conn.close()


def insert_postgres_rows(space: StorageSpace, rows: list[tuple[str, str, Any]],
                         now: float) -> None:
    # History reasons are stored as JSON strings. No NOTIFY is sent, because a
    # foreign writer would not send one, so servers find the rows by polling.
    with space.connect_postgres() as conn, conn.transaction():
        for job_id, function, payload in rows:
            conn.execute(
                "INSERT INTO jobs (id, function, payload, queue, state, created_at, state_at, "
                "enqueued_at) VALUES (%s, %s, %s, 'default', 'Enqueued', %s, %s, %s)",
                (job_id, function, payload, now, now, now))
            conn.execute("INSERT INTO history (job_id, state, reason, data, at) "
                         "VALUES (%s, 'Enqueued', %s, '{}', %s)",
                         (job_id, json.dumps("crafted by the test"), now))


def insert_redis_rows(space: StorageSpace, rows: list[tuple[str, str, Any]],
                      now: float) -> None:
    # The keys that create_jobs.lua writes for an Enqueued job (common.lua lists them).
    prefix = space.prefix
    with space.connect_redis() as client:
        pipe = client.pipeline(transaction=True)
        for job_id, function, payload in rows:
            pipe.hset(f"{prefix}job:{job_id}", mapping={
                "function": function, "payload": payload, "queue": "default",
                "state": "Enqueued", "created_at": repr(now), "state_at": repr(now)})
            pipe.rpush(f"{prefix}history:{job_id}",
                       json.dumps(["Enqueued", "crafted by the test", {}, now]))
            pipe.zadd(f"{prefix}queue:default", {job_id: now})
            pipe.hincrby(f"{prefix}state-counts", "Enqueued", 1)
        pipe.sadd(f"{prefix}queues", "default")
        pipe.rpush(f"{prefix}wakeup:default", "1")
        pipe.execute()


def test_crafted_rows_fail_cleanly(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    canary = workspace.root / "canary"
    server = start_server(workers=2)
    server.wait_announced(app)
    cases = storable_cases(workspace, crafted_rows(canary))
    ids = [f"crafted-{label}" for label, *_ in cases]
    rows = [(job_id, function, payload)
            for job_id, (_, function, payload, _, _) in zip(ids, cases, strict=True)]
    insert_rows(workspace, rows)

    wait_for(lambda: all_in_state(app, ids, "Failed"), DEADLINE, "every crafted job to fail")
    good = [jobapp.sleep.enqueue(0.0) for _ in range(5)]
    wait_for(lambda: all_in_state(app, good, "Succeeded"), DEADLINE, "the good jobs after them")

    for job_id, (label, _, _, fragment, exception_type) in zip(ids, cases, strict=True):
        job = app.get_job(job_id)
        assert job.attempt == 1, label
        assert fragment in job.history[-1].reason, label
        assert job.history[-1].data["exception_type"] == exception_type, label
        assert "Scheduled" not in [entry.state for entry in job.history], label
    runs = executions(workspace.log_path)
    assert not set(ids) & set(runs)
    assert not canary.exists()
    assert server.alive()
    assert "Exception in thread" not in server.output_tail(10_000)


def test_cli_reads_crafted_rows(workspace: Workspace) -> None:
    cases = storable_cases(workspace, crafted_rows(workspace.root / "canary"))
    insert_rows(workspace, [(f"crafted-{label}", function, payload)
                            for label, function, payload, _, _ in cases])

    list_result = run_cli(["jobs", "list", "--json", "--limit", "100",
                           *storage_args(workspace)], workspace)
    show_results = {label: run_cli(["jobs", "show", f"crafted-{label}",
                                    *storage_args(workspace)], workspace)
                    for label, *_ in cases if label.startswith("pickle-")}

    listed = [json.loads(line)["id"] for line in list_result.stdout.splitlines()]
    assert list_result.returncode == 0, list_result.stderr
    assert sorted(listed) == sorted(f"crafted-{label}" for label, *_ in cases)
    assert "pickle-ascii" in show_results
    for label, result in show_results.items():
        assert result.returncode == 0, f"{label}: {result.stderr}"
        assert json.loads(result.stdout)["payload_error"], label
    assert not (workspace.root / "canary").exists()


#: PostgreSQL is left out: its ``text`` payload column cannot hold bytes that are not UTF-8.
BINARY_BACKENDS = pytest.mark.parametrize("backend", [
    "sqlite",
    "redis",
])


@BINARY_BACKENDS
def test_binary_payload_fails_cleanly(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    canary = workspace.root / "canary"
    insert_rows(workspace, [("crafted-pickle-blob", "e2e.echo", hostile_pickle(canary))])
    # Enqueued right behind it, so that the first fetch claims them together.
    good = [jobapp.sleep.enqueue(0.0) for _ in range(3)]

    list_result = run_cli(["jobs", "list", "--json", *storage_args(workspace)], workspace)
    show_result = run_cli(["jobs", "show", "crafted-pickle-blob", *storage_args(workspace)],
                          workspace)
    assert list_result.returncode == 0, list_result.stderr
    assert show_result.returncode == 0, show_result.stderr
    assert "not valid JSON" in json.loads(show_result.stdout)["payload_error"]

    server = start_server(workers=2)
    server.wait_announced(app)
    wait_for(lambda: all_in_state(app, ["crafted-pickle-blob"], "Failed"), DEADLINE,
             "the binary job to fail")
    wait_for(lambda: all_in_state(app, good, "Succeeded"), DEADLINE, "the good jobs")

    failed = app.get_job("crafted-pickle-blob").history[-1]
    assert "not valid JSON" in failed.reason
    assert failed.data["exception_type"] == INVALID_PAYLOAD
    assert "crafted-pickle-blob" not in executions(workspace.log_path)
    assert not canary.exists()
    assert server.alive()


def overwrite_job_field(workspace: Workspace, job_id: str, name: str, value: str) -> None:
    """Store ``value`` in one field of a job behind the storage's back (SQLite or Redis)."""
    if workspace.backend == "redis":
        with workspace.space.connect_redis() as client:
            client.hset(f"{workspace.space.prefix}job:{job_id}", name, value)
        return
    conn = workspace.space.connect_sqlite()
    try:
        conn.execute(f"UPDATE jobs SET {name} = ? WHERE id = ?", (value, job_id))
    finally:
        conn.close()


#: PostgreSQL is left out: its typed columns reject text in number fields.
TEXT_NUMBER_BACKENDS = pytest.mark.parametrize("backend", [
    "sqlite",
    "redis",
])


@TEXT_NUMBER_BACKENDS
def test_text_in_number_fields(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    fields = {"created_at": "yesterday", "attempt": "one", "crash_count": "many"}
    crafted = {name: f"crafted-{name.replace('_', '-')}" for name in fields}
    insert_rows(workspace, [(job_id, "e2e.echo", '{"args": [1], "kwargs": {}}')
                            for job_id in crafted.values()])
    for name, value in fields.items():
        overwrite_job_field(workspace, crafted[name], name, value)
    # Enqueued right behind them, so that the first fetches claim them together.
    good = [jobapp.sleep.enqueue(0.0) for _ in range(3)]

    server = start_server(workers=2)
    server.wait_announced(app)
    wait_for(lambda: all(app.get_job(job_id).state in ("Succeeded", "Failed")
                         for job_id in crafted.values()), DEADLINE, "the crafted jobs to end")
    wait_for(lambda: all_in_state(app, good, "Succeeded"), DEADLINE, "the good jobs")

    assert server.alive()
    assert "Exception in thread" not in server.output_tail(10_000)


def test_unregistered_function_fails(workspace: Workspace, start_server: StartServer) -> None:
    import clientonly

    app = workspace.app
    server = start_server(workers=2)
    server.wait_announced(app)
    unknown = [clientonly.client_only.enqueue(n) for n in range(3)]
    good = jobapp.sleep.enqueue(0.0)
    wait_for(lambda: all_in_state(app, unknown, "Failed"), DEADLINE, "the unknown jobs to fail")
    wait_for(lambda: all_in_state(app, [good], "Succeeded"), DEADLINE, "the good job")

    for job_id in unknown:
        failed = app.get_job(job_id).history[-1]
        assert "'e2e.client_only' is not registered" in failed.reason
        assert failed.data["exception_type"] == NOT_REGISTERED
    assert server.alive()


def no_dead_worker(server: ServerProcess) -> None:
    """Fail at once if a worker thread of the server died with an exception."""
    if "Exception in thread" in server.output_tail(10_000):
        raise AssertionError(f"a worker thread died:\n{server.output_tail()}")


def test_unprintable_error_fails(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    server = start_server(workers=1)
    server.wait_announced(app)
    bad = jobapp.huge_error.enqueue()
    good = jobapp.sleep.enqueue(0.0)

    def finished() -> bool:
        no_dead_worker(server)
        return app.get_job(bad).state == "Failed" and app.get_job(good).state == "Succeeded"

    wait_for(finished, DEADLINE, "the failing job and the next one to finish")

    failed = app.get_job(bad).history[-1]
    assert failed.data["exception_type"] == "builtins.ValueError"
    assert failed.reason
    assert server.alive()


def test_unencodable_result_succeeds(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    server = start_server(workers=1)
    server.wait_announced(app)
    bad = jobapp.huge_result.enqueue()
    good = jobapp.sleep.enqueue(0.0)

    def finished() -> bool:
        no_dead_worker(server)
        return all_in_state(app, [bad, good], "Succeeded")

    wait_for(finished, DEADLINE, "the job with the huge result and the next one to succeed")

    assert len(executions(workspace.log_path)[bad].finishes) == 1
    assert server.alive()


def storage_args(workspace: Workspace) -> list[str]:
    return ["--storage", workspace.storage_url]


@pytest.mark.parametrize(("label", "args", "fragment"), [
    ("invalid-json", ["--args", "[1,"], "is not valid JSON"),
    ("args-object", ["--args", '{"seconds": 1}'], "is not a JSON array"),
    ("kwargs-array", ["--kwargs", "[1]"], "is not a JSON object"),
    ("bad-queue", ["--queue", "Bad Queue!"], "invalid queue name"),
    ("wrong-arguments", ["--args", "[1, 2, 3]"], "arguments do not match"),
    ("unknown-kwarg", ["--kwargs", '{"nope": 1}'], "arguments do not match"),
])
def test_cli_enqueue_rejects(workspace: Workspace, label: str, args: list[str],
                             fragment: str) -> None:
    result = run_cli(["enqueue", "e2e.sleep", "--app", "jobapp:app",
                      *storage_args(workspace), *args], workspace)

    assert result.returncode != 0
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert sum(workspace.app.storage.count_jobs_by_state().values()) == 0


def test_cli_enqueue_unknown_function(workspace: Workspace) -> None:
    result = run_cli(["enqueue", "e2e.missing", "--app", "jobapp:app",
                      *storage_args(workspace)], workspace)

    assert result.returncode != 0
    assert "no job function is registered as 'e2e.missing'" in result.stderr
    assert "Traceback" not in result.stderr
    assert sum(workspace.app.storage.count_jobs_by_state().values()) == 0


def test_cli_enqueue_unknown_app(workspace: Workspace) -> None:
    result = run_cli(["enqueue", "e2e.sleep", "--app", "no_such_module:app",
                      *storage_args(workspace)], workspace)

    assert result.returncode != 0
    assert "cannot import module 'no_such_module'" in result.stderr
    assert sum(workspace.app.storage.count_jobs_by_state().values()) == 0


def test_cli_enqueue_valid(workspace: Workspace) -> None:
    result = run_cli(["enqueue", "e2e.sleep", "--app", "jobapp:app", "--args", "[0.5]",
                      *storage_args(workspace)], workspace)

    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    assert states_of(workspace.app, [job_id]) == {job_id: "Enqueued"}
    assert workspace.app.get_job(job_id).args == [0.5]


@pytest.mark.parametrize("command", ["show", "requeue", "delete"])
def test_cli_missing_job(workspace: Workspace, command: str) -> None:
    result = run_cli(["jobs", command, "no-such-job", *storage_args(workspace)],
                     workspace)

    assert result.returncode != 0
    assert "job 'no-such-job' not found" in result.stderr
    assert "Traceback" not in result.stderr
    assert sum(workspace.app.storage.count_jobs_by_state().values()) == 0
