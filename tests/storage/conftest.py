"""Fixtures for the storage conformance suite.

Every test that takes the ``storage`` or ``backend`` fixture runs once per
entry in ``BACKENDS``, each time on a fresh, empty storage of its own. Those
tests use only the ``Storage`` contract and the records in
``backburner.records``.
"""

from __future__ import annotations

import itertools
import os
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backburner import states
from backburner.ids import new_job_id
from backburner.records import JobRecord, NewJob, StateChange
from backburner.storage.base import Storage
from backburner.storage.sqlite import SQLiteStorage


@dataclass
class Backend:
    """An open storage under test, with the URL that opens the same data again."""

    storage: Storage
    #: Opens the same data with ``backburner.storage.open_storage``, in this
    #: process or in another one (the multiprocess tests pass it to children).
    url: str
    cleanup: Callable[[], None]


def make_sqlite(tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    """Open an SQLite storage on a new file under the test's ``tmp_path``."""
    path = tmp_path / "conformance.db"
    storage = SQLiteStorage(str(path))
    return Backend(storage, f"sqlite:///{path}", storage.close)


def make_redis(tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    """Open a Redis storage on 127.0.0.1:6379 under a key prefix of this test's own."""
    import redis

    from backburner.storage.redis import RedisStorage

    prefix = f"backburner-test:{uuid.uuid4().hex}:"
    url = f"redis://127.0.0.1:6379/0?prefix={prefix}"
    storage = RedisStorage("redis://127.0.0.1:6379/0", prefix=prefix)

    def cleanup() -> None:
        storage.close()
        with redis.Redis(host="127.0.0.1", port=6379) as client:
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)

    return Backend(storage, url, cleanup)


#: The PostgreSQL database the "postgres" backend uses; each test gets its own schema in it.
POSTGRES_URL = os.environ.get("BACKBURNER_TEST_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/test")


def make_postgres(tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    """Open a PostgreSQL storage in a new schema of its own, dropped by the cleanup."""
    import psycopg

    from backburner.storage.postgres import PostgresStorage

    schema = f"bb_test_{secrets.token_hex(6)}"
    url = f"{POSTGRES_URL}?schema={schema}"
    storage = PostgresStorage.from_url(url)

    def cleanup() -> None:
        storage.close()
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    return Backend(storage, url, cleanup)


#: Backend name -> factory. To run the suite on another backend, add one
#: entry: a function of (tmp_path, request) that returns a Backend on an
#: empty storage no other test can see, whose cleanup closes and drops it.
BACKENDS: dict[str, Callable[[Path, pytest.FixtureRequest], Backend]] = {
    "sqlite": make_sqlite,
    "redis": make_redis,
    "postgres": make_postgres,
}


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh storage of each backend in turn."""
    handle = BACKENDS[request.param](tmp_path, request)
    yield handle
    handle.cleanup()


@pytest.fixture
def storage(backend: Backend) -> Storage:
    """The fresh storage under test."""
    return backend.storage


class JobMaker:
    """Builds jobs and drives them into a given state through the contract only."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._numbers = itertools.count(1)

    def new(self, state: str = states.ENQUEUED, queue: str = "default",
            **fields: Any) -> NewJob:
        """Build a NewJob with a fresh id; ``fields`` override the NewJob defaults."""
        number = next(self._numbers)
        values: dict[str, Any] = {
            "id": new_job_id(), "function": f"tests.jobs:job_{number}",
            "payload": f'[[{number}],{{}}]', "queue": queue, "state": state,
            "reason": f"created as job {number}"}
        values.update(fields)
        return NewJob(**values)

    def create(self, state: str = states.ENQUEUED, queue: str = "default",
               **fields: Any) -> str:
        """Create one job and return its id."""
        job = self.new(state, queue, **fields)
        self.storage.create_jobs([job])
        return job.id

    def processing(self, queue: str = "default", server_id: str = "server-a") -> JobRecord:
        """Create a job in ``queue`` and fetch it; the queue must have no other jobs."""
        job_id = self.create(queue=queue)
        fetched = self.storage.fetch_jobs([queue], server_id, 1)
        assert [job.id for job in fetched] == [job_id], "the queue held other jobs"
        return fetched[0]

    def in_state(self, state: str) -> str:
        """Return the id of a new job in ``state``, reached by legal changes."""
        if state == states.ENQUEUED:
            return self.create()
        if state == states.SCHEDULED:
            return self.create(states.SCHEDULED, delay=3600.0)
        if state == states.AWAITING:
            parent_id = self.create(queue="parents")
            return self.create(states.AWAITING, parent_id=parent_id, continue_on="succeeded")
        job = self.processing(queue=f"to-{state.lower()}")
        if state != states.PROCESSING:
            applied = self.storage.change_states([StateChange(job.id, state, "set up")])
            assert applied == [True], f"could not move the job to {state}"
        return job.id

    def get(self, job_id: str) -> JobRecord:
        """Return the job with its history, which must exist."""
        job = self.storage.get_job(job_id)
        assert job is not None, f"job {job_id} not found"
        return job

    def history(self, job_id: str) -> list[str]:
        """Return the states in the job's history, oldest first."""
        return [entry.state for entry in self.get(job_id).history]


@pytest.fixture
def jobs(storage: Storage) -> JobMaker:
    """A JobMaker on the storage under test."""
    return JobMaker(storage)
