"""Redis storage: checks beyond the conformance suite (keys, prefixes, URLs, errors).

Tests on the shared Redis at 127.0.0.1:6379 use a key prefix of their own and
delete their keys afterwards. Tests that stall or flush Redis start a private
redis-server on a free port instead, so they never disturb other users.
"""

from __future__ import annotations

import json
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from backburner import states
from backburner.errors import BackburnerError, ConfigurationError, StorageError
from backburner.ids import new_job_id
from backburner.records import HistoryEntry, JobRecord, NewJob, RecurringRecord, StateChange
from backburner.storage import open_storage
from backburner.storage.base import Storage
from backburner.storage.redis import WAKE_CAP, RedisStorage, default_client_name
from backburner.storage.sqlite import SQLiteStorage

SHARED_URL = "redis://127.0.0.1:6379/0"
T = TypeVar("T")


def poll(action: Callable[[], T], timeout: float = 20.0) -> T:
    """Call ``action`` until it returns a truthy value, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = action()
        if result:
            return result
        assert time.monotonic() < deadline, f"{action} returned nothing for {timeout} s"
        time.sleep(0.02)


def free_port() -> int:
    """Return a loopback TCP port that nothing listens on (closed right after binding)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def new_job(queue: str = "default", state: str = states.ENQUEUED, **fields: object) -> NewJob:
    values: dict[str, object] = {"id": new_job_id(), "function": "tests.jobs:noop",
                                 "payload": "[[],{}]", "queue": queue, "state": state}
    values.update(fields)
    return NewJob(**values)  # type: ignore[arg-type]


def delete_keys(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


def keys_of(client: redis.Redis, prefix: str) -> set[str]:
    return {key.decode() for key in client.scan_iter(match=f"{prefix}*", count=1000)}


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    """A plain redis-py client on the shared Redis, for looking at keys."""
    with redis.Redis(host="127.0.0.1", port=6379) as plain:
        yield plain


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    name = f"backburner-test:{uuid.uuid4().hex}:"
    yield name
    delete_keys(client, name)


@pytest.fixture
def make_storage(prefix: str) -> Iterator[Callable[..., RedisStorage]]:
    """Open Redis storages on the shared Redis under ``prefix``; closed afterwards."""
    opened: list[RedisStorage] = []

    def make(**options: object) -> RedisStorage:
        storage = RedisStorage(SHARED_URL, prefix=prefix, **options)  # type: ignore[arg-type]
        opened.append(storage)
        return storage

    yield make
    for storage in opened:
        storage.close()


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A redis-server of this module's own on a free port: (port, unix socket path)."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed; install the redis-server package")
    folder = tmp_path_factory.mktemp("redis")
    port, unix_socket = free_port(), folder / "redis.sock"
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(folder), "--unixsocket", str(unix_socket),
         "--enable-debug-command", "local"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with redis.Redis(host="127.0.0.1", port=port) as probe:
            poll(lambda: _answers(probe))
        yield port, unix_socket
    finally:
        process.terminate()
        process.wait(30)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False


# -- keys and prefixes --------------------------------------------------------


def test_prefix_isolation(make_storage, client: redis.Redis, prefix: str) -> None:
    other_prefix = f"backburner-test:{uuid.uuid4().hex}:"
    mine = make_storage()
    other = RedisStorage(SHARED_URL, prefix=other_prefix)
    try:
        job = new_job()
        mine.create_jobs([job])

        assert other.get_job(job.id) is None
        assert other.fetch_jobs(["default"], "server-a", 5) == []
        assert other.queue_lengths() == {}
        assert sum(other.count_jobs_by_state().values()) == 0
        assert keys_of(client, other_prefix) == set()
        assert f"{prefix}job:{job.id}" in keys_of(client, prefix)
    finally:
        other.close()
        delete_keys(client, other_prefix)


def test_prefix_from_url(client: redis.Redis, prefix: str) -> None:
    storage = open_storage(f"{SHARED_URL}?prefix={prefix}")
    try:
        job = new_job()
        storage.create_jobs([job])

        assert f"{prefix}job:{job.id}" in keys_of(client, prefix)
        assert prefix in storage.describe()
    finally:
        storage.close()


def test_default_prefix() -> None:
    storage = open_storage(SHARED_URL)
    try:
        assert isinstance(storage, RedisStorage)
        assert storage.prefix == "backburner:"
    finally:
        storage.close()


def test_expired_job_keys_gone(make_storage, client: redis.Redis, prefix: str) -> None:
    storage = make_storage()
    parent, child = new_job(), new_job(state=states.AWAITING, continue_on="deleted")
    child = NewJob(**{**child.__dict__, "parent_id": parent.id})
    storage.create_jobs([parent, child])
    claimed = storage.fetch_jobs(["default"], "server-a", 1)
    storage.change_states([StateChange(parent.id, states.SUCCEEDED, expire_in=0.01,
                                       lease_token=claimed[0].lease_token)])

    # The child was deleted with the parent's expiry, so both go at once.
    assert poll(lambda: storage.expire(100)) == 2
    remaining = keys_of(client, prefix)

    assert storage.get_job(parent.id) is None
    assert storage.get_job(child.id) is None
    assert [key for key in remaining if parent.id in key or child.id in key] == []
    assert client.zcard(f"{prefix}expiring") == 0
    assert client.zcard(f"{prefix}state:{states.SUCCEEDED}") == 0
    assert client.zcard(f"{prefix}state:{states.DELETED}") == 0
    assert storage.count_jobs_by_state() == dict.fromkeys(states.ALL_STATES, 0)


@pytest.mark.parametrize("final_state", [states.SUCCEEDED, states.DELETED])
def test_final_lists_capped(make_storage, client: redis.Redis, prefix: str,
                            final_state: str) -> None:
    storage = make_storage(max_listed_jobs=5)
    batch = [new_job() for _ in range(12)]
    storage.create_jobs(batch)
    fetched = storage.fetch_jobs(["default"], "server-a", 12)
    for job in fetched:
        storage.change_states([StateChange(job.id, final_state, lease_token=job.lease_token)])
    newest = [job.id for job in fetched][::-1][:5]

    assert len(fetched) == 12
    assert client.zcard(f"{prefix}state:{final_state}") == 5
    assert storage.count_jobs_by_state()[final_state] == 12
    assert [job.id for job in storage.list_jobs(final_state, limit=50)] == newest
    assert storage.get_job(fetched[0].id) is not None


def test_failed_list_not_capped(make_storage, client: redis.Redis, prefix: str) -> None:
    storage = make_storage(max_listed_jobs=2)
    storage.create_jobs([new_job() for _ in range(4)])
    for job in storage.fetch_jobs(["default"], "server-a", 4):
        storage.change_states([StateChange(job.id, states.FAILED, lease_token=job.lease_token)])

    assert client.zcard(f"{prefix}state:{states.FAILED}") == 4
    assert len(storage.list_jobs(states.FAILED)) == 4


def test_wakeup_tokens_bounded(make_storage, client: redis.Redis, prefix: str) -> None:
    storage = make_storage()
    count = WAKE_CAP + 200
    storage.create_jobs([new_job() for _ in range(count)])

    assert client.llen(f"{prefix}wakeup:default") == WAKE_CAP

    fetched = 0
    while batch := storage.fetch_jobs(["default"], "server-a", 500):
        fetched += len(batch)

    assert fetched == count
    assert client.exists(f"{prefix}wakeup:default") == 0


def test_wakeup_token_left_for_others(make_storage, client: redis.Redis, prefix: str) -> None:
    # A fetcher that takes some of the jobs leaves a token for a blocked fetcher.
    storage = make_storage()
    storage.create_jobs([new_job() for _ in range(3)])
    client.delete(f"{prefix}wakeup:default")
    storage.fetch_jobs(["default"], "server-a", 1)

    assert client.llen(f"{prefix}wakeup:default") == 1


def test_queue_filter_other_states(make_storage) -> None:
    storage = make_storage()
    storage.create_jobs([new_job("a"), new_job("b"), new_job("a")])
    for job in storage.fetch_jobs(["a", "b"], "server-a", 3):
        storage.change_states([StateChange(job.id, states.FAILED, lease_token=job.lease_token)])

    listed = storage.list_jobs(states.FAILED, queue="a")

    assert [job.queue for job in listed] == ["a", "a"]
    assert storage.list_jobs(states.FAILED, queue="a", offset=1, limit=5) == listed[1:]
    assert storage.list_jobs(states.FAILED, queue="c") == []


def test_history_precision(make_storage) -> None:
    # Times keep their microseconds through Lua, which prints numbers with 14 digits.
    storage = make_storage()
    due_at = 1_900_000_000.123456
    job = new_job(state=states.SCHEDULED, due_at=due_at)
    storage.create_jobs([job])
    stored = storage.get_job(job.id)

    assert stored is not None
    assert stored.due_at == due_at
    assert stored.history[0].data == {"due_at": due_at}


def test_text_round_trip(make_storage) -> None:
    # Jobs and changes travel to the scripts as JSON text; any text must come back unchanged.
    storage = make_storage()
    text = 'é 😀 \x00 / \\ " \n \u2028 \x7f {}[] ,:'
    job = new_job(function=f"tests.jobs:{text}", payload=json.dumps([[text], {}]),
                  reason=text)
    storage.create_jobs([job])
    fetched = storage.fetch_jobs(["default"], "server-a", 1)
    change = StateChange(job.id, states.FAILED, text, {"note": text},
                         lease_token=fetched[0].lease_token,
                         traversed=(HistoryEntry(states.FAILED, text, {"note": text}),))
    applied = storage.change_states([change])
    stored = storage.get_job(job.id)

    assert fetched[0].function == job.function
    assert fetched[0].payload == job.payload
    assert applied == [True]
    assert stored is not None
    assert [entry.reason for entry in stored.history] == [text, None, text, text]
    assert stored.history[2].data == {"note": text}
    assert stored.history[3].data == {"note": text}


def test_binary_field_fetched(make_storage, client: redis.Redis, prefix: str) -> None:
    # Bytes that are not UTF-8, written behind the storage's back, must not fail a
    # fetch that claimed other jobs too.
    storage = make_storage()
    damaged, good = new_job(), new_job()
    storage.create_jobs([damaged, good])
    client.hset(f"{prefix}job:{damaged.id}", "payload", b"\x80\x04\x95 not utf-8 \xff")
    fetched = storage.fetch_jobs(["default"], "server-a", 5)
    applied = storage.change_states([StateChange(job.id, states.FAILED, "bad payload",
                                                 lease_token=job.lease_token)
                                     for job in fetched])
    stored = client.hget(f"{prefix}job:{damaged.id}", "payload")

    assert [job.id for job in fetched] == [damaged.id, good.id]
    assert fetched[0].payload.encode("utf-8", "surrogateescape") == \
        b"\x80\x04\x95 not utf-8 \xff"
    assert applied == [True, True]
    assert stored == b"\x80\x04\x95 not utf-8 \xff"


def test_text_in_number_fields(make_storage, client: redis.Redis, prefix: str) -> None:
    storage = make_storage()
    jobs = [new_job() for _ in range(3)]
    storage.create_jobs(jobs)
    damage = {"attempt": "one", "crash_count": "many", "created_at": "yesterday"}
    for job, (name, value) in zip(jobs, damage.items()):
        client.hset(f"{prefix}job:{job.id}", name, value)
    fetched = storage.fetch_jobs(["default"], "server-a", 5)
    recovered = storage.recover_jobs_of_dead_servers(3600.0, 3)
    after = [storage.get_job(job.id) for job in jobs]

    assert [job.id for job in fetched] == [job.id for job in jobs]
    assert [job.attempt for job in fetched] == [1, 1, 1]
    assert fetched[2].created_at == 0.0
    assert fetched[1].crash_count == 0
    assert sorted(item.job_id for item in recovered) == sorted(job.id for job in jobs)
    assert [job.state if job else None for job in after] == [states.ENQUEUED] * 3
    assert [job.crash_count if job else None for job in after] == [1, 1, 1]
    assert storage.queue_lengths() == {"default": 3}


def test_now_is_redis_time(make_storage, client: redis.Redis) -> None:
    storage = make_storage()
    seconds, microseconds = client.time()
    now = storage.now()

    assert now >= seconds + microseconds / 1_000_000
    assert now - seconds < 60.0


# -- URLs, secrets and errors -------------------------------------------------


def test_connection_name(client: redis.Redis, prefix: str) -> None:
    named = open_storage(f"{SHARED_URL}?prefix={prefix}")
    chosen = open_storage(f"{SHARED_URL}?prefix={prefix}&client_name={prefix}own")
    try:
        named.now()
        chosen.now()
        names = {entry["name"] for entry in client.client_list()}
    finally:
        named.close()
        chosen.close()

    assert f"backburner[{prefix}]" in names
    assert f"{prefix}own" in names
    assert default_client_name("app é {x}:") == "backburner[app___{x}:]"


def test_describe_redacts_password() -> None:
    storage = open_storage("redis://worker:s3cret-pass@127.0.0.1:6379/2?prefix=app:")
    try:
        text = storage.describe()
    finally:
        storage.close()

    assert "s3cret-pass" not in text
    assert text == "redis://worker:***@127.0.0.1:6379/2?prefix=app:"


def test_describe_unix_socket() -> None:
    storage = open_storage("unix:///run/redis/redis.sock?db=3&password=s3cret-pass")
    try:
        text = storage.describe()
    finally:
        storage.close()

    assert "s3cret-pass" not in text
    assert text == "unix:///run/redis/redis.sock?db=3&prefix=backburner:"


def test_describe_tls() -> None:
    storage = open_storage("rediss://:s3cret-pass@127.0.0.1:6380/0")
    try:
        text = storage.describe()
    finally:
        storage.close()

    assert text == "rediss://:***@127.0.0.1:6380/0?prefix=backburner:"


def test_unreachable_server() -> None:
    port = free_port()
    storage = open_storage(f"redis://:s3cret-pass@127.0.0.1:{port}/0")
    try:
        with pytest.raises(StorageError) as raised:
            storage.create_jobs([new_job()])
    finally:
        storage.close()
    message = str(raised.value)

    assert f"127.0.0.1:{port}" in message
    assert "failed to create jobs" in message
    assert "running and reachable" in message
    assert "s3cret-pass" not in message
    assert isinstance(raised.value.__cause__, redis.ConnectionError)


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:6379/0?prefx=app:",
    "redis://127.0.0.1:6379/0?max_listed_jobs=0",
    "redis://127.0.0.1:6379/0?max_listed_jobs=many",
    "redis://127.0.0.1:6379/0?socket_timeout=-1",
    "redis://127.0.0.1:6379/0?prefix=",
])
def test_invalid_url(url: str) -> None:
    with pytest.raises(ConfigurationError):
        open_storage(url)


def test_invalid_url_redacted() -> None:
    with pytest.raises(ConfigurationError) as raised:
        open_storage("redis://:s3cret-pass@127.0.0.1:6379/0?prefx=app:")

    assert "s3cret-pass" not in str(raised.value)
    assert "prefx" in str(raised.value)


def test_missing_redis_package() -> None:
    code = ("import sys\n"
            "sys.modules['redis'] = None\n"
            "from backburner.storage import open_storage\n"
            "try:\n"
            "    open_storage('redis://127.0.0.1:6379/0')\n"
            "except Exception as exc:\n"
            "    print(type(exc).__name__, exc)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)

    assert result.stdout.startswith("ConfigurationError")
    assert "pip install 'backburner[redis]'" in result.stdout


def test_closed_storage_raises(make_storage) -> None:
    storage = make_storage()
    storage.close()
    storage.close()

    with pytest.raises(StorageError, match="closed"):
        storage.get_job("any")


# -- private Redis: unix sockets, script cache, lost replies ------------------


def test_unix_socket(private_redis: tuple[int, Path]) -> None:
    _, unix_socket = private_redis
    storage = open_storage(f"unix://{unix_socket}?prefix=unix-test:")
    try:
        job = new_job()
        storage.create_jobs([job])
        fetched = storage.fetch_jobs(["default"], "server-a", 1)
    finally:
        storage.close()

    assert [record.id for record in fetched] == [job.id]


def test_script_flush(private_redis: tuple[int, Path]) -> None:
    # After a Redis restart the script cache is empty; calls load the scripts again.
    port, _ = private_redis
    storage = open_storage(f"redis://127.0.0.1:{port}/0?prefix=flush-test:")
    try:
        job = new_job()
        storage.create_jobs([job])
        with redis.Redis(host="127.0.0.1", port=port) as admin:
            admin.script_flush()
        fetched = storage.fetch_jobs(["default"], "server-a", 1)
    finally:
        storage.close()

    assert [record.id for record in fetched] == [job.id]


def test_lost_fetch_reply(private_redis: tuple[int, Path]) -> None:
    # DEBUG SLEEP stalls Redis while the claim script waits in the socket, so
    # the client times out, and the script runs after it left: the claim
    # happens but its reply is lost. The next fetch puts the job back.
    port, _ = private_redis
    storage = open_storage(f"redis://127.0.0.1:{port}/0?prefix=lost-test:&socket_timeout=0.5")
    admin = redis.Redis(host="127.0.0.1", port=port)
    probe = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.1,
                        socket_connect_timeout=0.1, retry=Retry(NoBackoff(), 0))
    sleeper = threading.Thread(target=admin.execute_command, args=("DEBUG", "SLEEP", "3"))
    try:
        # An empty fetch first, so that Redis has the claim script cached.
        assert storage.fetch_jobs(["default"], "server-a", 1) == []
        job = new_job()
        storage.create_jobs([job])
        assert _answers(probe), "the probe could not connect"
        sleeper.start()
        poll(lambda: not _answers(probe))
        with pytest.raises(StorageError, match="Timeout"):
            storage.fetch_jobs(["default"], "server-a", 1)
        sleeper.join()
        lost = storage.get_job(job.id, history=False)
        fetched = storage.fetch_jobs(["default"], "server-b", 1)
        stored = storage.get_job(job.id)
    finally:
        sleeper.join()
        probe.close()
        admin.close()
        storage.close()

    assert lost is not None
    assert lost.state == states.PROCESSING
    assert lost.server_id == "server-a"
    assert [record.id for record in fetched] == [job.id]
    assert fetched[0].attempt == 2
    assert stored is not None
    assert [entry.state for entry in stored.history] == [
        states.ENQUEUED, states.PROCESSING, states.ENQUEUED, states.PROCESSING]
    assert "lost" in (stored.history[2].reason or "")


# -- same results as SQLite, the reference backend ----------------------------


class Twin:
    """An SQLite and a Redis storage driven with the same calls, side by side."""

    def __init__(self, sqlite: SQLiteStorage, redis_storage: RedisStorage) -> None:
        self.backends: dict[str, Storage] = {"sqlite": sqlite, "redis": redis_storage}
        #: Lease token per backend and job id, from the latest fetch.
        self.tokens: dict[str, dict[str, str]] = {"sqlite": {}, "redis": {}}

    def call(self, action: Callable[[str, Storage], object]) -> dict[str, object]:
        """Run ``action`` on each backend; return its result or exception type per backend."""
        results: dict[str, object] = {}
        for name, storage in self.backends.items():
            try:
                results[name] = action(name, storage)
            except BackburnerError as exc:
                results[name] = type(exc).__name__
        return results

    def fetch(self, queues: list[str], limit: int, server_id: str) -> dict[str, object]:
        def run(name: str, storage: Storage) -> object:
            fetched = storage.fetch_jobs(queues, server_id, limit)
            for job in fetched:
                self.tokens[name][job.id] = job.lease_token or ""
            return [view_job(job) for job in fetched]

        return self.call(run)


def view_job(job: JobRecord | None) -> object:
    """A job without the values that depend on each backend's clock or tokens."""
    if job is None:
        return None
    history = [(entry.state, entry.reason,
                {key: value for key, value in entry.data.items() if key != "due_at"},
                "due_at" in entry.data) for entry in job.history]
    return (job.id, job.function, job.payload, job.queue, job.state, job.attempt,
            job.retry_count, job.crash_count, job.lease_token is not None, job.server_id,
            job.due_at is not None, job.expire_at is not None, job.parent_id, job.continue_on,
            job.recurring_id, job.occurrence, history)


def view_recurring(record: RecurringRecord | None) -> object:
    """A recurring job without its storage-clock times (created, updated, triggered)."""
    if record is None:
        return None
    return (record.id, record.cron, record.tz, record.function, record.payload, record.queue,
            record.misfire, record.next_at, record.paused, record.last_job_id, record.error,
            record.error_count, record.retry_at)


@pytest.fixture
def twin(tmp_path: Path, make_storage) -> Iterator[Twin]:
    sqlite = SQLiteStorage(str(tmp_path / "twin.db"))
    yield Twin(sqlite, make_storage())
    sqlite.close()


def random_change(rng: random.Random, twin: Twin, job_id: str) -> Callable[[str], StateChange]:
    """Pick a random compare-and-set change; it is built per backend for its lease token."""
    state = rng.choice([states.SUCCEEDED, states.SUCCEEDED, states.FAILED, states.DELETED,
                        states.DELETED, states.ENQUEUED, states.SCHEDULED, states.AWAITING])
    expected = rng.choice([(), (), tuple(rng.sample(states.ALL_STATES, rng.randint(1, 3)))])
    lease = rng.choice(["none", "none", "none", "current", "current", "stale"])
    due_at = rng.choice([None, 1_000.0, 4_000_000_000.0])
    expire_in = rng.choice([None, None, 3600.0, -1.0])
    traversed = tuple(rng.sample([HistoryEntry(states.FAILED, "boom", {"type": "ValueError"}),
                                  HistoryEntry(states.SCHEDULED, None)], rng.randint(0, 1)))
    delay = None if due_at else rng.choice([None, 0.0])
    retry_count = rng.choice([None, 2])

    def build(name: str) -> StateChange:
        token = {"none": None, "stale": "stale-token",
                 "current": twin.tokens[name].get(job_id, "unknown")}[lease]
        return StateChange(job_id, state, f"to {state}", {"step": 1}, expected=expected,
                           lease_token=token, traversed=traversed, due_at=due_at,
                           delay=delay, retry_count=retry_count, expire_in=expire_in)

    return build


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_as_sqlite(twin: Twin, seed: int) -> None:
    rng = random.Random(seed)
    ids: list[str] = []
    results = []
    twin.call(lambda _, storage: storage.announce_server("server-a", ["a", "b"], 1, {}))
    for step in range(300):
        operation = rng.choice(["create", "create", "fetch", "fetch", "change", "change",
                                "change", "due", "recover", "expire"])
        if operation == "change" and not ids:
            operation = "create"
        if operation == "create":
            batch = []
            for _ in range(rng.randint(1, 3)):
                state = rng.choice([states.ENQUEUED, states.SCHEDULED, states.AWAITING])
                fields: dict[str, object] = {"queue": rng.choice(["a", "b"]), "state": state}
                if state == states.SCHEDULED:
                    fields["due_at"] = rng.choice([1_000.0, 4_000_000_000.0])
                if state == states.AWAITING:
                    fields["parent_id"] = rng.choice(ids[-6:]) if ids and rng.random() < 0.95 \
                        else "no-such-job"
                    fields["continue_on"] = rng.choice(["succeeded", "finished", "deleted"])
                    fields["expire_in"] = rng.choice([None, 3600.0, -1.0])
                batch.append(new_job(**fields))  # type: ignore[arg-type]
            outcome = twin.call(lambda _, storage, jobs=batch: storage.create_jobs(jobs))
            if outcome["sqlite"] is None:
                ids += [job.id for job in batch]
        elif operation == "fetch":
            outcome = twin.fetch(rng.sample(["a", "b"], rng.randint(1, 2)), rng.randint(1, 3),
                                 rng.choice(["server-a", "server-a", "server-b"]))
        elif operation == "change":
            builders = [random_change(rng, twin, rng.choice(ids))
                        for _ in range(rng.randint(1, 3))]
            outcome = twin.call(lambda name, storage, changes=builders: storage.change_states(
                [build(name) for build in changes]))
        elif operation == "due":
            outcome = twin.call(lambda _, storage: sorted(storage.enqueue_due_jobs(5)))
        elif operation == "recover":
            outcome = twin.call(lambda _, storage: sorted(
                storage.recover_jobs_of_dead_servers(3600.0, 1), key=lambda r: r.job_id))
        else:
            outcome = twin.call(lambda _, storage: storage.expire(5))
        results.append((step, operation, outcome["sqlite"], outcome["redis"]))

    differences = [result for result in results if result[2] != result[3]]
    final = twin.call(lambda _, storage: [view_job(storage.get_job(job_id)) for job_id in ids])
    listed = twin.call(lambda _, storage: {
        state: [job.id for job in storage.list_jobs(state, limit=-1)]
        for state in states.ALL_STATES})
    by_queue = twin.call(lambda _, storage: [
        job.id for job in storage.list_jobs(states.FAILED, queue="a")])
    counts = twin.call(lambda _, storage: storage.count_jobs_by_state())
    lengths = twin.call(lambda _, storage: storage.queue_lengths())
    totals = twin.call(lambda _, storage: storage.counter_totals())

    assert differences == []
    assert final["redis"] == final["sqlite"]
    assert listed["redis"] == listed["sqlite"]
    assert by_queue["redis"] == by_queue["sqlite"]
    assert counts["redis"] == counts["sqlite"]
    assert lengths["redis"] == lengths["sqlite"]
    assert totals["redis"] == totals["sqlite"]


def recurring(recurring_id: str, next_at: float | None, cron: str = "* * * * *",
              tz: str = "UTC") -> RecurringRecord:
    return RecurringRecord(id=recurring_id, cron=cron, tz=tz, function="tests.jobs:noop",
                           payload="[[],{}]", queue="default", misfire="relaxed",
                           next_at=next_at)


def occurrence_job(recurring_id: str, occurrence: float | None) -> NewJob:
    return new_job(recurring_id=recurring_id, occurrence=occurrence)


def test_recurring_same_as_sqlite(twin: Twin) -> None:
    due, later = 1_000_000.0, 4_000_000_000.0
    first, second = occurrence_job("nightly", due), occurrence_job("nightly", due)
    third, manual = occurrence_job("nightly", due + 60), occurrence_job("nightly", None)
    steps: list[tuple[str, Callable[[str, Storage], object]]] = [
        ("save", lambda _, s: s.save_recurring(recurring("nightly", due))),
        ("save other", lambda _, s: s.save_recurring(recurring("hourly", later, "0 * * * *"))),
        ("get", lambda _, s: view_recurring(s.get_recurring("nightly"))),
        ("due", lambda _, s: [view_recurring(r) for r in s.due_recurring(10, 3)]),
        ("fire", lambda _, s: s.fire_recurring("nightly", due, [first], due + 60)),
        ("fire again", lambda _, s: s.fire_recurring("nightly", due, [first], due + 60)),
        ("fire same occurrence", lambda _, s: s.fire_recurring("nightly", due + 60, [second],
                                                               due + 120)),
        ("job skipped", lambda _, s: s.get_job(second.id)),
        ("after fire", lambda _, s: view_recurring(s.get_recurring("nightly"))),
        ("error", lambda _, s: s.record_recurring_error("nightly", "boom", later)),
        ("error missing", lambda _, s: s.record_recurring_error("none", "boom", None)),
        ("due after error", lambda _, s: [r.id for r in s.due_recurring(10, 3)]),
        ("after error", lambda _, s: view_recurring(s.get_recurring("nightly"))),
        ("save again", lambda _, s: s.save_recurring(recurring("nightly", due + 30))),
        ("after save", lambda _, s: view_recurring(s.get_recurring("nightly"))),
        ("save same", lambda _, s: s.save_recurring(recurring("nightly", due + 90))),
        ("after same", lambda _, s: view_recurring(s.get_recurring("nightly"))),
        ("pause", lambda _, s: s.set_recurring_paused("nightly", True, None)),
        ("due paused", lambda _, s: [r.id for r in s.due_recurring(10, 3)]),
        ("fire paused", lambda _, s: s.fire_recurring("nightly", due + 30, [third], due + 60)),
        ("save paused", lambda _, s: s.save_recurring(recurring("nightly", due, "*/5 * * * *"))),
        ("after paused save", lambda _, s: view_recurring(s.get_recurring("nightly"))),
        ("resume", lambda _, s: s.set_recurring_paused("nightly", False, due + 60)),
        ("fire resumed", lambda _, s: s.fire_recurring("nightly", due + 60, [third], None)),
        ("after last", lambda _, s: view_recurring(s.get_recurring("nightly"))),
        ("due none left", lambda _, s: [r.id for r in s.due_recurring(10, 3)]),
        ("trigger", lambda _, s: s.trigger_recurring("nightly", manual)),
        ("triggered job", lambda _, s: view_job(s.get_job(manual.id))),
        ("after trigger", lambda _, s: view_recurring(s.get_recurring("nightly"))),
        ("list", lambda _, s: [view_recurring(r) for r in s.list_recurring()]),
        ("errors disable", lambda _, s: [s.record_recurring_error("hourly", "x", None)
                                         for _ in range(3)]),
        ("due disabled", lambda _, s: [r.id for r in s.due_recurring(10, 3)]),
        ("remove", lambda _, s: s.remove_recurring("nightly")),
        ("remove again", lambda _, s: s.remove_recurring("nightly")),
        ("trigger removed", lambda _, s: s.trigger_recurring("nightly", new_job())),
        ("pause removed", lambda _, s: s.set_recurring_paused("nightly", True, None)),
        ("jobs stay", lambda _, s: [view_job(s.get_job(job.id)) for job in (first, third)]),
    ]
    results = [(name, twin.call(action)) for name, action in steps]
    differences = [(name, outcome) for name, outcome in results
                   if outcome["sqlite"] != outcome["redis"]]

    assert differences == []
