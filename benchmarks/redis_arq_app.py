"""arq's worker settings: the defaults (max_jobs 10, poll_delay 0.5 s) and the job."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from arq.connections import RedisSettings

from benchmarks.marks import mark


def redis_settings() -> RedisSettings:
    """Return the connection settings for the Redis URL that the harness set for arq."""
    return RedisSettings.from_dsn(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/6"))


async def noop(ctx: dict[str, Any], index: int, enqueued_at: float) -> None:
    """Do nothing but record when the job started."""
    mark(index, enqueued_at)


class WorkerSettings:
    """Settings that ``arq benchmarks.redis_arq_app.WorkerSettings`` reads."""

    functions: ClassVar[list[Any]] = [noop]
    redis_settings = redis_settings()
