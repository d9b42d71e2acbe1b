"""Bounded memory on Redis: a steady load leaves no keys behind once its jobs expire.

The test runs a redis-server of its own (no persistence) on a free port, so
that DBSIZE and INFO count only this test's keys, and an in-process server
with a short job retention.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from outage_helpers import free_port, wait_for

from backburner import Backburner, states
from backburner.storage.redis import WAKE_CAP

PREFIX = "mem:"
WAVES = 20
WAVE_SIZE = 1_000
MAX_LISTED = 1_000
#: Seconds that Succeeded jobs are kept.
RETENTION = 1.0


@pytest.fixture
def redis_port(tmp_path: Path) -> Iterator[int]:
    """A redis-server of this test's own on a free port, without persistence."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed; install the redis-server package")
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with redis.Redis(host="127.0.0.1", port=port) as probe:
            wait_for(lambda: _answers(probe), 30, f"redis-server on port {port} to answer")
        yield port
    finally:
        process.kill()
        process.wait(30)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False


@dataclass
class Sample:
    """Sizes read after one wave of jobs finished."""

    keys: int
    succeeded_listed: int
    expiring: int
    wakeup_tokens: int
    interrupt_lists: int


def sample(client: redis.Redis) -> Sample:
    return Sample(keys=client.dbsize(), succeeded_listed=client.zcard(f"{PREFIX}state:Succeeded"),
                  expiring=client.zcard(f"{PREFIX}expiring"),
                  wakeup_tokens=client.llen(f"{PREFIX}wakeup:default"),
                  interrupt_lists=len(list(client.scan_iter(match=f"{PREFIX}interrupt:*"))))


def kind(key: str) -> str:
    """Name the key family of ``key``: job, history, counter-bucket, state:Succeeded..."""
    parts = key.removeprefix(PREFIX).split(":")
    if parts[0] == "counter" and len(parts) == 4:
        return "counter-bucket"
    if parts[0] in ("state", "queue", "wakeup", "counter"):
        return ":".join(parts[:2])
    return parts[0]


def census(client: redis.Redis) -> Counter[str]:
    """Count the keys of each family."""
    return Counter(kind(key) for key in client.scan_iter(count=1000))


def run_waves(app: Backburner, noop: object, client: redis.Redis, waves: int) -> list[Sample]:
    """Enqueue ``waves`` waves of jobs, each after the previous one finished; sample each."""
    samples = []
    for _ in range(waves):
        app.enqueue_many([noop.call() for _ in range(WAVE_SIZE)])  # type: ignore[attr-defined]
        wait_for(lambda: _busy(app) == 0, 60, "the wave to finish", interval=0.02)
        samples.append(sample(client))
    return samples


def _busy(app: Backburner) -> int:
    counts = app.storage.count_jobs_by_state()
    return counts[states.ENQUEUED] + counts[states.PROCESSING]


def wait_expired(client: redis.Redis) -> None:
    wait_for(lambda: client.zcard(f"{PREFIX}expiring") == 0, 60, "every job to expire")


def test_steady_load_bounded(redis_port: int) -> None:
    app = Backburner(f"redis://127.0.0.1:{redis_port}/0?prefix={PREFIX}"
                     f"&max_listed_jobs={MAX_LISTED}", job_retention=RETENTION)

    @app.job(name="memory.noop", retries=0)
    def noop() -> None:
        return None

    client = redis.Redis(host="127.0.0.1", port=redis_port, decode_responses=True)
    try:
        with app.server(workers=8, expiration_interval=0.5):
            first = run_waves(app, noop, client, WAVES // 2)
            wait_expired(client)
            half, half_memory = census(client), client.info("memory")["used_memory"]
            second = run_waves(app, noop, client, WAVES - WAVES // 2)
            wait_expired(client)
            end, end_memory = census(client), client.info("memory")["used_memory"]
            bucket_ttls = [client.ttl(key)
                           for key in client.scan_iter(match=f"{PREFIX}counter:*:*")]
            interrupt_ttls = [client.ttl(key)
                              for key in client.scan_iter(match=f"{PREFIX}interrupt:*")]
            counts = app.storage.count_jobs_by_state()
            totals = app.storage.counter_totals()
            leases = client.hlen(f"{PREFIX}leases")
    finally:
        client.close()
        app.close()
    samples = first + second
    print(f"keys after each wave: {[item.keys for item in samples]}")
    print(f"used_memory after expiry: {half_memory} bytes at half time, {end_memory} at the end")
    print(f"key families at the end: {dict(end)}")

    assert max(item.succeeded_listed for item in samples) <= MAX_LISTED
    assert max(item.wakeup_tokens for item in samples) <= WAKE_CAP
    assert end - Counter({"counter-bucket": end["counter-bucket"]}) == \
        half - Counter({"counter-bucket": half["counter-bucket"]})
    assert end["job"] == 0
    assert end["history"] == 0
    assert end["continuations"] == 0
    assert end["wakeup:default"] == 0
    assert end["state:Succeeded"] == 0
    assert all(ttl > 0 for ttl in bucket_ttls)
    assert all(ttl > 0 for ttl in interrupt_ttls)
    assert leases == 0
    assert counts == dict.fromkeys(states.ALL_STATES, 0)
    assert totals["succeeded"] == WAVES * WAVE_SIZE
