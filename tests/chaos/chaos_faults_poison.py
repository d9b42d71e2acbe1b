"""Crafted storage rows (T19) and a job that exhausts memory (T5b).

T19 writes job rows and keys that no client would write straight into the
storage: pickle bytes as the payload, functions that are not registered,
import paths such as ``os.system``, malformed JSON and values of the wrong
type. Each crafted call would create a canary file if it ran. The jobs are
written before the server starts, normal jobs are enqueued before and
while it runs, and every crafted job must end Failed with a reason while
the server stays up and runs the normal ones.

T5b runs ``chaos.hog``, which allocates until the allocation fails, on
servers whose address space is limited (RLIMIT_AS), among normal jobs.
Either the job fails with MemoryError and is retried, or the server dies
and the crash limit moves the job to Failed; the report says which.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import chaos_faults_app  # noqa: F401 (registers chaos.hog in the client's registry too)
from chaos_checker import Report
from chaos_faults import spawn_server
from chaos_harness import POSTGRES_URL, REDIS_URL, Run, wait_for
from chaos_scenarios import SETTLE_TIMEOUT, finish

from backburner import states

logger = logging.getLogger(__name__)

#: Address-space limit of the T5b servers (bytes). A server with 4 workers
#: and MALLOC_ARENA_MAX=2 maps about 0.5 GiB, so this leaves the job about
#: half a GiB to fill.
MEMORY_LIMIT = 1024 * 1024 * 1024
APP = "chaos_faults_app:app"


class Touch:
    """Unpickling this object calls ``os.system("touch PATH")``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.path}",)


def payload(*args: Any) -> str:
    """Return a well-formed payload with ``args``, as plain JSON."""
    return json.dumps({"args": list(args), "kwargs": {}})


def crafted_cases(backend: str, folder: Path) -> list[tuple[str, Any, Any]]:
    """Return (label, function, payload) rows; each names its canary ``folder/canary-LABEL``."""
    def canary(label: str) -> str:
        return str(folder / f"canary-{label}")

    pickled = pickle.dumps(Touch(Path(canary("pickle-text"))), protocol=0).decode("latin-1")
    cases: list[tuple[str, Any, Any]] = [
        ("pickle-text", "chaos.work", pickled),
        ("pickle-in-tag", "chaos.work", payload({"$bb": "pickle", "v": pickled})),
        ("unregistered", "chaos.not_registered", payload(0.1)),
        ("os.system", "os.system", payload(f"touch {canary('os.system')}")),
        ("os:system", "os:system", payload(f"touch {canary('os:system')}")),
        ("subprocess.run", "subprocess.run", payload(["touch", canary("subprocess.run")])),
        ("builtins.exec", "builtins.exec",
         payload(f"open({canary('builtins.exec')!r}, 'w')")),
        ("malformed-json", "chaos.work", '{"args": [0.1'),
        ("json-list", "chaos.work", "[0.1]"),
        ("json-null", "chaos.work", "null"),
        ("args-not-list", "chaos.work", '{"args": "0.1", "kwargs": {}}'),
        ("kwargs-not-object", "chaos.work", '{"args": [0.1], "kwargs": []}'),
        ("extra-key", "chaos.work", '{"args": [0.1], "kwargs": {}, "code": "x"}'),
        ("too-many-args", "chaos.work", payload(0.1, 2, 3)),
        ("empty-function", "", payload(0.1)),
        ("empty-payload", "chaos.work", ""),
    ]
    binary = pickle.dumps(Touch(Path(canary("pickle-binary"))))
    if backend == "sqlite":
        cases += [("pickle-binary", "chaos.work", binary),
                  ("function-integer", 42, payload(0.1)),
                  ("payload-integer", "chaos.work", 7)]
    elif backend == "redis":
        cases += [("pickle-binary", "chaos.work", binary),
                  ("payload-not-utf8", "chaos.work", b'{"args": ["\xff\xfe"], "kwargs": {}}')]
    return cases


def overwrite(run: Run, job_id: str, function: Any, data: Any) -> None:
    """Replace a stored job's function and payload behind the client's back."""
    url = run.backend.url
    if run.backend.name == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30) as conn:
            conn.execute("UPDATE jobs SET function = ?, payload = ? WHERE id = ?",
                         (function, data, job_id))
        return
    query = parse_qs(urlsplit(url).query)
    if run.backend.name == "postgres":
        import psycopg

        schema = query["schema"][0]
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'UPDATE "{schema}".jobs SET function = %s, payload = %s '
                         "WHERE id = %s", (function, data, job_id))
        return
    import redis

    with redis.Redis.from_url(REDIS_URL) as client:
        client.hset(f"{query['prefix'][0]}job:{job_id}",
                    mapping={"function": function, "payload": data})


def poisoned_storage(run: Run, normal: int = 40) -> Report:
    """Write crafted jobs, start a server, and check that none ran code and all ended Failed."""
    cases = crafted_cases(run.backend.name, run.workdir)
    crafted: dict[str, str] = {}
    for index, (label, function, data) in enumerate(cases):
        job_id = run.enqueue(label, "chaos.work", 0.1, expect=states.FAILED)
        overwrite(run, job_id, function, data)
        crafted[job_id] = label
        if index % 2 == 0:
            run.enqueue("work", "chaos.work", 0.1)

    server = spawn_server(run, workers=2)
    run.wait_announced([server])
    for _ in range(normal):
        run.enqueue("work", "chaos.work", round(run.rng.uniform(0.05, 0.3), 2))
    run.settle(SETTLE_TIMEOUT)
    up_at_end = server.alive()

    report = finish(run)
    report.metrics["crafted"] = len(crafted)
    report.metrics["server_up_at_end"] = up_at_end
    if not up_at_end:
        report.fail("T19", f"the server exited with {server.process.returncode}:\n"
                           f"{server.output_tail()}")
    check_crafted(run, report, crafted)
    return report


def check_crafted(run: Run, report: Report, crafted: dict[str, str]) -> None:
    """Every crafted job ended Failed with a reason, and no canary file exists."""
    canaries = sorted(path.name for path in run.workdir.glob("canary-*"))
    report.metrics["canaries_created"] = len(canaries)
    if canaries:
        report.fail("T19", f"crafted code ran: {', '.join(canaries)} exist")
    reasons: dict[str, str] = {}
    for job_id, label in crafted.items():
        job = run.client.get_job(job_id)
        state = None if job is None else job.state
        reason = (job.history[-1].reason or "") if job is not None and job.history else ""
        reasons[label] = f"{state}: {reason[:120]}"
        if state != states.FAILED:
            report.fail("T19", f"crafted job {label} ({job_id}) is {state}, not Failed")
        elif not reason:
            report.fail("T19", f"crafted job {label} ({job_id}) Failed without a reason")
    report.metrics["crafted_failed"] = sum(1 for r in reasons.values()
                                           if r.startswith(states.FAILED))
    report.metrics["reasons"] = reasons


# -- T5b: memory exhaustion ------------------------------------------------------------


def memory_exhaustion(run: Run, normal: int = 60, servers: int = 2) -> Report:
    """A job that allocates until RLIMIT_AS stops it, among normal jobs; dead servers restart."""
    env = {"MALLOC_ARENA_MAX": "2"}
    started = [spawn_server(run, env=env, address_space=MEMORY_LIMIT, app=APP)
               for _ in range(servers)]
    run.wait_announced(started)
    hog_id = run.enqueue("hog", "chaos.hog", expect=states.FAILED)
    for _ in range(normal):
        run.enqueue("work", "chaos.work", round(run.rng.uniform(0.2, 1.0), 2))

    exits: list[int | None] = []

    def supervise() -> bool:
        for server in run.note_exits():
            exits.append(server.process.returncode)
            spawn_server(run, env=env, address_space=MEMORY_LIMIT, app=APP)
        job = run.client.get_job(hog_id)
        return job is not None and job.state == states.FAILED

    wait_for(supervise, SETTLE_TIMEOUT, "the memory-hungry job to end Failed", interval=0.5)
    report = finish(run)
    describe_hog(run, report, hog_id, exits)
    return report


def describe_hog(run: Run, report: Report, hog_id: str, exits: list[int | None]) -> None:
    """Record how the memory-hungry job ended and check that servers did not crash-loop."""
    job = run.client.get_job(hog_id)
    assert job is not None
    runs = sum(1 for change in job.history if change.state == states.PROCESSING)
    reasons = [change.reason or "" for change in job.history if change.reason]
    report.metrics["hog_runs"] = runs
    report.metrics["hog_reason"] = reasons[-1][:200] if reasons else None
    report.metrics["server_exits_caused"] = len(exits)
    report.metrics["server_exit_codes"] = exits
    report.metrics["hog_outcome"] = ("server died" if exits else
                                     "job failed with MemoryError" if any(
                                         "MemoryError" in r for r in reasons) else "other")
    if len(exits) > 4:
        report.fail("T5b", f"servers exited {len(exits)} times; at most 1 + 3 crash "
                           "requeues expected")
    if job.state != states.FAILED:
        report.fail("T5b", f"the memory-hungry job is {job.state}, not Failed")
