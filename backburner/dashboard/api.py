"""The JSON API behind the pages, and the Prometheus ``/metrics`` endpoint.

Paths are relative to where the dashboard is mounted. Times are ISO 8601 in
UTC; durations are seconds. The same authorisation hooks apply as for pages.

``GET /api/stats``
    ``{"now", "states": {state: count}, "queues": {queue: length},
    "totals": {"succeeded", "failed", "deleted"}, "servers", "retries",
    "retries_complete"}``. The pages poll it to refresh live numbers.
``GET /api/jobs?state=Failed&queue=default&page=1&size=20``
    ``{"state", "queue", "page", "size", "total", "jobs": [job...]}``; ``state``
    is required, ``queue`` only filters Enqueued jobs.
``GET /api/jobs/{id}``
    One job with ``args``, ``kwargs`` and its ``history``; 404 with
    ``{"error"}`` when it does not exist or has expired.
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
    ``backburner_servers``, ``backburner_workers``.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from backburner import states
from backburner.dashboard import views
from backburner.dashboard.actions import ACTIONS, clean_ids, run_action
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
        Route("/servers", servers, methods=["GET"]),
        Route("/history", history, methods=["GET"]),
    ]


def json_response(data: Any, status: int = 200) -> Response:
    """Return ``data`` as JSON, writing dates and other tagged values as strings."""
    body = json.dumps(data, ensure_ascii=False, default=views.display_value)
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
        "continue_on": record.continue_on,
    }


async def act(request: Request) -> Response:
    """Apply an action to the jobs listed in the JSON body."""
    name = request.path_params["action"]
    if name not in ACTIONS:
        return json_response({"error": f"unknown action; use one of {', '.join(ACTIONS)}"}, 404)
    try:
        body = json.loads(await request.body() or b"null")
        ids = clean_ids(body["ids"]) if isinstance(body, dict) and \
            isinstance(body.get("ids"), list) else None
    except (TypeError, ValueError) as exc:
        return json_response({"error": f"invalid request body: {exc}"}, 422)
    if not ids:
        return json_response({"error": 'send {"ids": ["job id", ...]} with at least one id'}, 422)

    result = await run_in_threadpool(run_action, config_of(request).app, name, ids)
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
    return PlainTextResponse("\n".join(lines) + "\n", media_type=METRICS_CONTENT_TYPE)


def _label(value: str) -> str:
    """Escape a label value as the Prometheus text format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
