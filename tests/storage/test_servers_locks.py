"""Conformance: server records and named locks."""

from __future__ import annotations

import time

from backburner.storage.base import Storage

# -- servers ------------------------------------------------------------------


def test_announce(storage: Storage) -> None:
    before = storage.now()
    storage.announce_server("host:1:abc", ["critical", "default"], 4, {"host": "host", "pid": 1})
    servers = storage.list_servers()

    assert len(servers) == 1
    assert servers[0].id == "host:1:abc"
    assert servers[0].queues == ("critical", "default")
    assert servers[0].workers == 4
    assert servers[0].info == {"host": "host", "pid": 1}
    assert before <= servers[0].started_at <= storage.now()
    assert servers[0].heartbeat_at >= servers[0].started_at


def test_announce_again(storage: Storage) -> None:
    storage.announce_server("server-a", ["default"], 2, {})
    first = storage.list_servers()[0]
    time.sleep(0.01)
    storage.announce_server("server-a", ["default"], 2, {})
    servers = storage.list_servers()

    assert [server.id for server in servers] == ["server-a"]
    assert servers[0].heartbeat_at > first.heartbeat_at


def test_list_oldest_first(storage: Storage) -> None:
    for name in ("first", "second", "third"):
        storage.announce_server(name, ["default"], 1, {})
        time.sleep(0.01)

    assert [server.id for server in storage.list_servers()] == ["first", "second", "third"]


def test_list_empty(storage: Storage) -> None:
    assert storage.list_servers() == []


def test_heartbeat(storage: Storage) -> None:
    storage.announce_server("server-a", ["default"], 1, {})
    announced = storage.list_servers()[0].heartbeat_at
    time.sleep(0.01)

    assert storage.heartbeat("server-a") is True
    assert storage.list_servers()[0].heartbeat_at > announced


def test_heartbeat_unknown(storage: Storage) -> None:
    assert storage.heartbeat("never-announced") is False
    assert storage.list_servers() == []


def test_heartbeat_after_remove(storage: Storage) -> None:
    storage.announce_server("server-a", ["default"], 1, {})
    storage.announce_server("server-b", ["default"], 1, {})
    storage.remove_server("server-a")

    assert storage.heartbeat("server-a") is False
    assert storage.heartbeat("server-b") is True
    assert [server.id for server in storage.list_servers()] == ["server-b"]


def test_remove_unknown(storage: Storage) -> None:
    storage.remove_server("never-announced")

    assert storage.list_servers() == []


# -- locks --------------------------------------------------------------------


def test_lock_acquire(storage: Storage) -> None:
    assert storage.acquire_lock("recurring", "server-a", 60.0) is True


def test_lock_reentrant(storage: Storage) -> None:
    storage.acquire_lock("recurring", "server-a", 60.0)

    assert storage.acquire_lock("recurring", "server-a", 60.0) is True


def test_lock_exclusive(storage: Storage) -> None:
    storage.acquire_lock("recurring", "server-a", 60.0)

    assert storage.acquire_lock("recurring", "server-b", 60.0) is False


def test_lock_names_independent(storage: Storage) -> None:
    storage.acquire_lock("recurring", "server-a", 60.0)

    assert storage.acquire_lock("expiration", "server-b", 60.0) is True


def test_lock_expires(storage: Storage) -> None:
    storage.acquire_lock("recurring", "server-a", 0.2)
    deadline = time.monotonic() + 20.0
    while not storage.acquire_lock("recurring", "server-b", 60.0):
        assert time.monotonic() < deadline, "the lock did not expire"
        time.sleep(0.02)

    assert storage.acquire_lock("recurring", "server-a", 60.0) is False


def test_lock_extend(storage: Storage) -> None:
    # Re-acquiring with a long ttl keeps the lock past the first, short ttl.
    storage.acquire_lock("recurring", "server-a", 0.2)
    storage.acquire_lock("recurring", "server-a", 60.0)
    time.sleep(0.3)

    assert storage.acquire_lock("recurring", "server-b", 60.0) is False


def test_lock_release(storage: Storage) -> None:
    storage.acquire_lock("recurring", "server-a", 60.0)
    storage.release_lock("recurring", "server-a")

    assert storage.acquire_lock("recurring", "server-b", 60.0) is True


def test_lock_release_other_owner(storage: Storage) -> None:
    storage.acquire_lock("recurring", "server-a", 60.0)
    storage.release_lock("recurring", "server-b")

    assert storage.acquire_lock("recurring", "server-b", 60.0) is False
    assert storage.acquire_lock("recurring", "server-a", 60.0) is True


def test_lock_release_unheld(storage: Storage) -> None:
    storage.release_lock("recurring", "server-a")

    assert storage.acquire_lock("recurring", "server-a", 60.0) is True
