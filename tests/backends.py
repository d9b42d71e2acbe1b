"""Fresh, isolated storage for tests that run on every backend.

Each ``StorageSpace`` is a place no other test can see: a new SQLite file
under the test's ``tmp_path``, a new schema in the PostgreSQL database, or a
new key prefix in the Redis database. ``storage_space`` removes it afterwards.
A backend whose service does not respond fails the test instead of skipping
it, because CI runs PostgreSQL and Redis (scripts/run-tests.sh starts them).
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

#: Backend names, in the order the tests run on them.
BACKENDS = ("sqlite", "postgres", "redis")

#: The PostgreSQL database the tests use; each space is one schema in it.
POSTGRES_URL = os.environ.get("BACKBURNER_TEST_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/test")
#: The Redis database the tests use; each space is one key prefix in it.
REDIS_URL = os.environ.get("BACKBURNER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
#: Seconds to wait for a service to respond before the test fails.
CONNECT_TIMEOUT = 5


@dataclass
class StorageSpace:
    """One test's storage: its URL, and what the backend needs to reach it directly."""

    backend: str
    url: str
    #: The SQLite file; None on the other backends.
    sqlite_path: Path | None = None
    #: The PostgreSQL schema; None on the other backends.
    schema: str | None = None
    #: The Redis key prefix; None on the other backends.
    prefix: str | None = None

    def connect_sqlite(self) -> sqlite3.Connection:
        """Open a connection to the SQLite file in autocommit mode; the caller closes it."""
        assert self.sqlite_path is not None, f"{self.backend} storage has no SQLite file"
        return sqlite3.connect(self.sqlite_path, timeout=30, isolation_level=None)

    def connect_postgres(self) -> psycopg.Connection[Any]:
        """Open an autocommit connection whose search path is the test's schema."""
        assert self.schema is not None, f"{self.backend} storage has no PostgreSQL schema"
        return psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                               options=f"-c search_path={self.schema}")

    def connect_redis(self) -> redis.Redis:
        """Open a Redis client that returns bytes; the caller closes it."""
        assert self.prefix is not None, f"{self.backend} storage has no Redis prefix"
        return redis.Redis.from_url(REDIS_URL, socket_timeout=CONNECT_TIMEOUT,
                                    socket_connect_timeout=CONNECT_TIMEOUT)

    def drop(self) -> None:
        """Delete the schema or the keys under the prefix (a SQLite file goes with tmp_path)."""
        if self.schema is not None:
            with psycopg.connect(POSTGRES_URL, autocommit=True,
                                 connect_timeout=CONNECT_TIMEOUT) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        if self.prefix is not None:
            with self.connect_redis() as client:
                # SCAN and DEL, never FLUSHDB: other tests and people share this database.
                keys = list(client.scan_iter(match=f"{self.prefix}*", count=1000))
                for start in range(0, len(keys), 1000):
                    client.delete(*keys[start:start + 1000])


def new_space(backend: str, tmp_path: Path) -> StorageSpace:
    """Return an empty storage space of ``backend``, failing the test if its service is down."""
    if backend == "sqlite":
        path = tmp_path / "jobs.db"
        return StorageSpace(backend, f"sqlite:///{path}", sqlite_path=path)
    if backend == "postgres":
        check_postgres()
        schema = f"bb_test_{secrets.token_hex(6)}"
        return StorageSpace(backend, f"{POSTGRES_URL}?schema={schema}", schema=schema)
    if backend == "redis":
        check_redis()
        prefix = f"backburner-test:{secrets.token_hex(8)}:"
        return StorageSpace(backend, f"{REDIS_URL}?prefix={prefix}", prefix=prefix)
    raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")


@contextmanager
def storage_space(backend: str, tmp_path: Path) -> Iterator[StorageSpace]:
    """Provide an empty storage space of ``backend`` and remove it afterwards."""
    space = new_space(backend, tmp_path)
    try:
        yield space
    finally:
        space.drop()


def check_postgres() -> None:
    """Fail the test unless the test PostgreSQL database accepts connections."""
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=CONNECT_TIMEOUT) as conn:
            conn.execute("SELECT 1")
        return
    except psycopg.Error as exc:
        error = str(exc).strip()
    pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL} ({error}); start it, as "
                "scripts/run-tests.sh does, or set BACKBURNER_TEST_POSTGRES_URL", pytrace=False)


def check_redis() -> None:
    """Fail the test unless the test Redis database answers PING."""
    try:
        with redis.Redis.from_url(REDIS_URL, socket_timeout=CONNECT_TIMEOUT,
                                  socket_connect_timeout=CONNECT_TIMEOUT) as client:
            client.ping()
        return
    except redis.RedisError as exc:
        error = str(exc).strip()
    pytest.fail(f"Redis is not reachable at {REDIS_URL} ({error}); start it, as "
                "scripts/run-tests.sh does, or set BACKBURNER_TEST_REDIS_URL", pytrace=False)
