"""Helpers for the dashboard tests: an app on a real SQLite file and jobs in every state."""

from __future__ import annotations

import html as html_lib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.testclient import TestClient

from backburner import Backburner
from backburner.ids import new_job_id
from backburner.records import NewJob, RecurringRecord
from backburner.retry import RetryPolicy

LOCAL = ("127.0.0.1", 50000)
REMOTE = ("203.0.113.7", 50000)
#: The address local test clients open the dashboard by (the Host header must name this machine).
LOCAL_URL = "http://127.0.0.1"

#: Hostile strings for every job-controlled field; each would run script if
#: written into a page unescaped.
XSS_CORPUS = [
    "<script>window.__xss = 1</script>",
    '"><img src=x onerror="window.__xss = 1">',
    "'><svg onload=window.__xss=1>",
    "</textarea><script>window.__xss = 1</script>",
    "javascript:window.__xss=1",
    "{{ 7 * 7 }}<b>bold</b>",
]


@dataclass
class Seeded:
    """Ids of the jobs made by ``seed``, by the state they are in."""

    enqueued: list[str] = field(default_factory=list)
    scheduled: list[str] = field(default_factory=list)
    retry: str = ""
    awaiting: str = ""
    parent: str = ""
    processing: str = ""
    succeeded: str = ""
    failed: str = ""
    deleted: str = ""


def make_app(path: Path) -> Backburner:
    """Return an app with the job functions the tests enqueue."""
    app = Backburner(f"sqlite:///{path / 'dashboard.db'}")

    @app.job(name="tests.add", retries=0)
    def add(a: int, b: int) -> int:
        return a + b

    @app.job(name="tests.echo", retries=0)
    def echo(*args: Any, **kwargs: Any) -> None:
        return None

    return app


def run_one(app: Backburner, queue: str = "default", server_id: str = "test-server") -> Any:
    """Claim the oldest job of ``queue`` as a server would, leaving it Processing."""
    records = app.storage.fetch_jobs([queue], server_id, 1)
    assert records, f"no job to fetch in queue {queue!r}"
    return records[0]


def fail(app: Backburner, message: str, queue: str = "default") -> str:
    """Run the next job of ``queue`` and record a failure with ``message``."""
    record = run_one(app, queue)
    machine = app.state_machine
    assert machine.apply([machine.failed(record, RuntimeError(message), None)]) == [True]
    return record.id


def succeed(app: Backburner, queue: str = "default") -> str:
    """Run the next job of ``queue`` and record a success."""
    record = run_one(app, queue)
    machine = app.state_machine
    assert machine.apply([machine.succeeded(record, 0.25, 3)]) == [True]
    return record.id


def seed(app: Backburner) -> Seeded:
    """Make jobs in every state, one queue at a time so each step claims the intended job."""
    ids = Seeded()
    ids.succeeded = app.enqueue("tests.add", 1, 2)
    succeed(app)
    ids.failed = app.enqueue("tests.echo", "boom")
    fail(app, "boom: something broke")
    ids.deleted = app.enqueue("tests.add", 5, 6)
    assert app.delete(ids.deleted)
    ids.processing = app.enqueue("tests.add", 7, 8)
    run_one(app)

    ids.parent = app.schedule(3600, "tests.add", 0, 0)
    ids.scheduled.append(ids.parent)
    ids.awaiting = app.continue_with(ids.parent, "tests.add", 9, 9)
    ids.retry = _retrying_job(app)
    ids.enqueued = [app.enqueue("tests.add", n, n) for n in range(3)]
    ids.enqueued.append(app.options(queue="critical").enqueue("tests.add", 10, 10))
    app.storage.announce_server("test-server", ["default", "critical"], 4, {"host": "test"})
    return ids


def _retrying_job(app: Backburner) -> str:
    job_id = app.options(queue="retrying").enqueue("tests.echo", "flaky")
    record = run_one(app, "retrying")
    machine = app.state_machine
    policy = RetryPolicy(retries=3, delays=[3600])
    assert machine.apply([machine.failed(record, ValueError("try later"), policy)]) == [True]
    return job_id


def add_raw_job(app: Backburner, *, function: str = "tests.add", queue: str = "default",
                job_id: str | None = None, payload: str = '{"args":[],"kwargs":{}}') -> str:
    """Create a job through storage directly, bypassing the client's checks."""
    job_id = job_id or new_job_id()
    app.storage.create_jobs([NewJob(id=job_id, function=function, payload=payload,
                                    queue=queue, state="Enqueued")])
    return job_id


def csrf_token(client: TestClient, path: str = "/") -> str:
    """Load a page and return the CSRF token from its forms (the cookie is kept by the client)."""
    response = client.get(path)
    assert response.status_code == 200, response.text
    token = client.cookies.get("backburner_csrf")
    assert token, "the dashboard set no CSRF cookie"
    return token


def post_action(client: TestClient, action: str, ids: list[str], *, token: str | None = None,
                next_path: str = "/jobs/failed", headers: dict[str, str] | None = None,
                prefix: str = "") -> Any:
    """Post an action form as the page's buttons do."""
    if token is None:
        token = csrf_token(client, prefix + "/")
    data = {"csrf_token": token, "ids": ids, "next": next_path}
    return client.post(f"{prefix}/actions/{action}", data=data, headers=headers or {},
                       follow_redirects=False)


def form_token(html: str) -> str:
    """Return the CSRF token written into a page's action form."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


def add_raw_recurring(app: Backburner, recurring_id: str, *, cron: str = "0 9 * * *",
                      tz: str = "UTC", function: str = "tests.add", queue: str = "default",
                      next_at: float | None = None, errors: int = 0,
                      error: str = "RuntimeError: creating the job failed") -> str:
    """Save a recurring job through storage directly, bypassing add_or_update's checks.

    ``errors`` scheduling failures with message ``error`` are recorded;
    MAX_ERRORS of them disable it.
    """
    app.storage.save_recurring(RecurringRecord(
        id=recurring_id, cron=cron, tz=tz, function=function,
        payload='{"args":[1,2],"kwargs":{}}', queue=queue, misfire="relaxed",
        next_at=app.storage.now() + 3600 if next_at is None else next_at))
    for _ in range(errors):
        app.storage.record_recurring_error(recurring_id, error, app.storage.now() + 3600)
    return recurring_id


def post_recurring(client: TestClient, action: str, ids: list[str], *,
                   token: str | None = None, next_path: str = "/recurring",
                   headers: dict[str, str] | None = None) -> Any:
    """Post a recurring job action form as the page's buttons do."""
    if token is None:
        token = csrf_token(client, "/recurring")
    data = {"csrf_token": token, "ids": ids, "next": next_path}
    return client.post(f"/actions/recurring/{action}", data=data, headers=headers or {},
                       follow_redirects=False)


def details_path(recurring_id: str) -> str:
    """Return the dashboard path of a recurring job's page."""
    return "/recurring/details?" + urlencode({"id": recurring_id})


def table_row(html: str, recurring_id: str) -> str:
    """Return the HTML of the recurring jobs table row for ``recurring_id``."""
    marker = f'data-recurring-row="{html_lib.escape(recurring_id)}"'
    start = html.index(marker)
    return html[start:html.index("</tr>", start)]
