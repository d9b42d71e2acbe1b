"""The JSON API behind the pages, and the Prometheus ``/metrics`` endpoint.

Paths are relative to where the dashboard is mounted. Times are ISO 8601 in
UTC; durations are seconds. The same authorisation hooks apply as for pages.

``GET /api/stats``
    ``{"now", "states": {state: count}, "queues": {queue: length},
    "totals": {"succeeded", "failed", "deleted"}, "servers", "retries",
    "recurring": {"total", "active", "paused", "failing", "disabled"}}``. The
    pages poll it to refresh live numbers.
``GET /api/jobs?state=Failed&queue=default&page=1&size=20``
    ``{"state", "queue", "page", "size", "total", "jobs": [job...]}``; ``state``
    is required, ``queue`` only filters Enqueued jobs.
``GET /api/jobs/{id}``
    One job with ``args``, ``kwargs`` and its ``history``; 404 with
    ``{"error"}`` when it does not exist or has expired.
``GET /api/recurring?page=1&size=20``
    ``{"page", "size", "total", "recurring": [recurring job...]}``, ordered by
    id. A recurring job is ``{"id", "cron", "description", "tz", "function",
    "queue", "misfire", "status", "paused", "disabled", "error", "next_at",
    "last_at", "created_at", "last_job_id", "last_job_state"}``. Its ``status``
    is active, paused, failing (the last attempt to create its job failed) or
    disabled (too many failures in a row). ``next_at`` is the stored next
    occurrence, which does not fire while the job is paused or disabled. 501
    when the storage backend has no recurring jobs.
``GET /api/recurring/details?id=ID``
    One recurring job with ``"preview"``: its next five occurrences as ISO
    8601 times in its own time zone. 404 with ``{"error"}`` when it does not exist.
``POST /api/recurring/{action}`` with action ``trigger``, ``pause``, ``resume`` or ``remove``
    Body ``{"ids": [...]}`` and the CSRF token, as for jobs. Returns
    ``{"action", "changed", "unchanged"}``, plus ``"jobs": {recurring id: job id}``
    for ``trigger``. Pausing a paused or resuming an unpaused recurring job
    leaves it unchanged.
``GET /api/servers``
    ``{"servers": [{"id", "queues", "workers", "started_at", "heartbeat_at",
    "heartbeat_age", "info"}]}``.
``GET /api/history?days=1``
    Succeeded and failed counts per hour (``days=1``) or per day (``days=7``):
    ``{"labels", "succeeded", "failed"}``.
``POST /api/jobs/{action}`` with action ``requeue``, ``delete`` or ``enqueue-now``
    Body ``{"ids": [...]}`` as JSON, the CSRF token in the ``X-CSRF-Token``
    header and the ``backburner_csrf`` cookie (any GET sets it). Returns
    ``{"action", "changed": [ids], "unchanged": [ids]}``; 422 for an invalid body.
``GET /metrics``
    Prometheus text exposition format: ``backburner_jobs{state}``,
    ``backburner_queue_length{queue}``, ``backburner_jobs_finished_total{state}``,
    ``backburner_servers``, ``backburner_workers``, and
    ``backburner_recurring_jobs{status}`` unless the storage backend has no
    recurring jobs.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from backburner import states
from backburner.dashboard import recurring_views, views
from backburner.dashboard.actions import (
    ACTIONS,
    RECURRING_ACTIONS,
    ActionResult,
    clean_ids,
    run_action,
    run_recurring_action,
)
from backburner.dashboard.config import config_of
from backburner.dashboard.pages import pager
from backburner.job import Job
from backburner.records import JobRecord

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def routes() -> list[Route]:
    """Return the JSON API routes, to mount at ``/api``."""
    return [
        Route("/stats", stats, methods=["GET"]),
        Route("/jobs", jobs, methods=["GET"]),
        Route("/jobs/{job_id}", job, methods=["GET"]),
        Route("/jobs/{action}", act, methods=["POST"]),
        Route("/recurring", recurring_list, methods=["GET"]),
        Route("/recurring/details", recurring_details, methods=["GET"]),
        Route("/recurring/{action}", recurring_act, methods=["POST"]),
        Route("/servers", servers, methods=["GET"]),
        Route("/history", history, methods=["GET"]),
    ]


def json_response(data: Any, status: int = 200) -> Response:
    """Return ``data`` as JSON, writing dates and other tagged values as strings.

    ASCII output escapes every character, so text from jobs that contains lone
    surrogates (valid in Python strings, not in UTF-8) cannot break the response.
    """
    body = json.dumps(data, ensure_ascii=True, default=views.display_value)
    return Response(body, status_code=status, media_type="application/json")


def stats(request: Request) -> Response:
    """Return the overview numbers."""
    return json_response(views.stats(config_of(request).app.storage))


def jobs(request: Request) -> Response:
    """Return one page of jobs in a state."""
    storage = config_of(request).app.storage
    state = request.query_params.get("state", "")
    state = next((name for name in states.ALL_STATES if name.lower() == state.lower()), "")
    if not state:
        return json_response({"error": f"invalid state; use one of {', '.join(states.ALL_STATES)}"},
                             422)
    queue = request.query_params.get("queue") or None
    if state == states.ENQUEUED and queue is not None:
        total = storage.queue_lengths().get(queue, 0)
    else:
        total = storage.count_jobs_by_state().get(state, 0)
    paging = pager(request, total)
    records = storage.list_jobs(state, queue=queue, offset=paging.offset, limit=paging.size)
    return json_response({"state": state, "queue": queue, "page": paging.page,
                          "size": paging.size, "total": total,
                          "jobs": [job_summary(record) for record in records]})


def job(request: Request) -> Response:
    """Return one job with its history."""
    record = config_of(request).app.storage.get_job(request.path_params["job_id"])
    if record is None:
        return json_response({"error": "job not found; it may have expired"}, 404)
    summary = job_summary(record)
    summary["history"] = [{"state": entry.state, "at": views.iso_time(entry.at),
                           "reason": entry.reason, "data": entry.data}
                          for entry in record.history]
    return json_response(summary)


def job_summary(record: JobRecord) -> dict[str, Any]:
    """Return a job as the API shows it (without history)."""
    public = Job.from_record(record)
    return {
        "id": record.id, "function": record.function, "queue": record.queue,
        "state": record.state, "args": public.args, "kwargs": public.kwargs,
        "payload_error": public.payload_error, "created_at": views.iso_time(record.created_at),
        "state_changed_at": views.iso_time(record.state_at), "attempt": record.attempt,
        "retry_count": record.retry_count, "crash_count": record.crash_count,
        "server_id": record.server_id, "due_at": views.iso_time(record.due_at) or None,
        "expire_at": views.iso_time(record.expire_at) or None, "parent_id": record.parent_id,
        "continue_on": record.continue_on, "recurring_id": record.recurring_id,
        "occurrence": views.iso_time(record.occurrence) or None,
    }


async def act(request: Request) -> Response:
    """Apply an action to the jobs listed in the JSON body."""
    name = request.path_params["action"]
    if name not in ACTIONS:
        return json_response({"error": f"unknown action; use one of {', '.join(ACTIONS)}"}, 404)
    ids = await _body_ids(request, strip=True)
    if isinstance(ids, Response):
        return ids

    result = await run_in_threadpool(run_action, config_of(request).app, name, ids)
    return json_response(result.as_dict())


async def _body_ids(request: Request, *, strip: bool) -> list[str] | Response:
    """Return the ids of a ``{"ids": [...]}`` JSON body, or a 422 response."""
    try:
        body = json.loads(await request.body() or b"null")
        ids = clean_ids(body["ids"], strip=strip) if isinstance(body, dict) and \
            isinstance(body.get("ids"), list) else None
    except (TypeError, ValueError) as exc:
        return json_response({"error": f"invalid request body: {exc}"}, 422)
    if not ids:
        return json_response({"error": 'send {"ids": ["id", ...]} with at least one id'}, 422)
    return ids


def recurring_list(request: Request) -> Response:
    """Return one page of recurring jobs, ordered by id."""
    storage = config_of(request).app.storage
    records = views.recurring_records(storage)
    paging = pager(request, len(records))
    chosen = records[paging.offset:paging.offset + paging.size]
    rows = recurring_views.recurring_rows(storage, chosen)
    return json_response({"page": paging.page, "size": paging.size, "total": len(records),
                          "recurring": [recurring_summary(row) for row in rows]})


def recurring_details(request: Request) -> Response:
    """Return one recurring job with its next occurrences."""
    storage = config_of(request).app.storage
    recurring_id = request.query_params.get("id", "")
    record = storage.get_recurring(recurring_id) if recurring_id else None
    if record is None:
        return json_response({"error": "recurring job not found; it may have been removed"},
                             404)
    row = recurring_views.recurring_rows(storage, [record])[0]
    occurrences, error = recurring_views.preview(row, storage.now())
    summary = recurring_summary(row)
    summary["preview"] = [recurring_views.local_iso(item.at, row.tz) for item in occurrences]
    summary["preview_error"] = error
    return json_response(summary)


def recurring_summary(row: recurring_views.RecurringRow) -> dict[str, Any]:
    """Return a recurring job as the API shows it."""
    return {
        "id": row.id, "cron": row.cron, "description": row.description, "tz": row.tz,
        "function": row.function, "queue": row.queue, "misfire": row.misfire,
        "status": row.status, "paused": row.paused, "disabled": row.disabled,
        "error": row.error, "next_at": views.iso_time(row.next_at) or None,
        "last_at": views.iso_time(row.last_at) or None,
        "created_at": views.iso_time(row.created_at) or None,
        "last_job_id": row.last_job_id, "last_job_state": row.last_job_state,
    }


async def recurring_act(request: Request) -> Response:
    """Apply an action to the recurring jobs listed in the JSON body."""
    name = request.path_params["action"]
    if name not in RECURRING_ACTIONS:
        return json_response(
            {"error": f"unknown action; use one of {', '.join(RECURRING_ACTIONS)}"}, 404)
    ids = await _body_ids(request, strip=False)
    if isinstance(ids, Response):
        return ids

    result: ActionResult = await run_in_threadpool(
        run_recurring_action, config_of(request).app, name, ids)
    return json_response(result.as_dict())


def servers(request: Request) -> Response:
    """Return every announced server."""
    storage = config_of(request).app.storage
    now = storage.now()
    return json_response({"servers": [{
        "id": server.id, "queues": list(server.queues), "workers": server.workers,
        "started_at": views.iso_time(server.started_at),
        "heartbeat_at": views.iso_time(server.heartbeat_at),
        "heartbeat_age": round(now - server.heartbeat_at, 3), "info": server.info,
    } for server in storage.list_servers()]})


def history(request: Request) -> Response:
    """Return succeeded and failed counts per hour of the last day or per day of the last week."""
    storage = config_of(request).app.storage
    days = 7 if request.query_params.get("days") == "7" else 1
    chart = views.history_chart(storage, storage.now(), days=days)
    return json_response({"labels": chart.labels, "succeeded": chart.succeeded,
                          "failed": chart.failed})


def metrics(request: Request) -> Response:
    """Return queue lengths, jobs by state, finished-job counters and servers for Prometheus."""
    storage = config_of(request).app.storage
    server_list = storage.list_servers()
    lines = [
        "# HELP backburner_jobs Jobs in each state.",
        "# TYPE backburner_jobs gauge",
        *(f'backburner_jobs{{state="{_label(state.lower())}"}} {count}'
          for state, count in storage.count_jobs_by_state().items()),
        "# HELP backburner_queue_length Enqueued jobs in each queue.",
        "# TYPE backburner_queue_length gauge",
        *(f'backburner_queue_length{{queue="{_label(queue)}"}} {length}'
          for queue, length in storage.queue_lengths().items()),
        "# HELP backburner_jobs_finished_total Jobs that entered each final or failed state.",
        "# TYPE backburner_jobs_finished_total counter",
        *(f'backburner_jobs_finished_total{{state="{_label(name)}"}} {value}'
          for name, value in storage.counter_totals().items()),
        "# HELP backburner_servers Servers that are announced and not yet removed.",
        "# TYPE backburner_servers gauge",
        f"backburner_servers {len(server_list)}",
        "# HELP backburner_workers Workers of all announced servers.",
        "# TYPE backburner_workers gauge",
        f"backburner_workers {sum(server.workers for server in server_list)}",
    ]
    counts = views.recurring_counts(views.recurring_records(storage))
    lines += [
        ("# HELP backburner_recurring_jobs Recurring jobs by status: active, paused, failing "
         "(the last attempt to create its job failed) or disabled (too many failures in a "
         "row)."),
        "# TYPE backburner_recurring_jobs gauge",
        *(f'backburner_recurring_jobs{{status="{status}"}} {counts[status]}'
          for status in views.RECURRING_STATUSES),
    ]
    return PlainTextResponse("\n".join(lines) + "\n", media_type=METRICS_CONTENT_TYPE)


def _label(value: str) -> str:
    """Escape a label value as the Prometheus text format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
