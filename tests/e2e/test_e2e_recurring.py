"""A per-second recurring job on three real servers: one job per occurrence,
even when a server is killed part way."""

from __future__ import annotations

import time

import jobapp
from harness import ServerProcess, StartServer, Workspace, wait_for


def occurrences(workspace: Workspace, recurring_id: str) -> list[float]:
    records = []
    for state in ("Enqueued", "Processing", "Succeeded", "Failed"):
        records += workspace.app.storage.list_jobs(state, limit=100_000)
    return sorted(r.occurrence for r in records
                  if r.recurring_id == recurring_id and r.occurrence is not None)


def test_three_servers_fire_once(workspace: Workspace, start_server: StartServer) -> None:
    app = workspace.app
    servers: list[ServerProcess] = [start_server(workers=2) for _ in range(3)]
    for server in servers:
        server.wait_announced(app)
    app.recurring.add_or_update("tick", jobapp.echo, "* * * * * *", args=["tick"])

    wait_for(lambda: len(occurrences(workspace, "tick")) >= 5, 30, "five ticks")
    servers[0].kill()
    wait_for(lambda: len(occurrences(workspace, "tick")) >= 12, 30, "seven more ticks")
    app.recurring.remove("tick")
    time.sleep(1.5)  # a pass that read the schedule before the removal may still fire
    fired = occurrences(workspace, "tick")

    assert len(fired) == len(set(fired))
    assert all(b - a == 1 for a, b in zip(fired, fired[1:])), fired
    assert all(server.alive() for server in servers[1:])
