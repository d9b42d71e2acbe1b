"""HTML pages and the form actions behind their buttons."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from backburner import states
from backburner.dashboard import views
from backburner.dashboard.actions import ACTIONS, RECURRING_ACTIONS, clean_ids, run_action
from backburner.dashboard.config import DashboardConfig, base_path, config_of
from backburner.errors import StorageError
from backburner.job import Job
from backburner.storage.base import Storage

if TYPE_CHECKING:
    from backburner.app import Backburner

logger = logging.getLogger(__name__)

#: Query parameters that report an action's result after its redirect.
RESULT_PARAMS = ("done", "changed", "unchanged", "job")


def routes() -> list[Route]:
    """Return the page and form-action routes."""
    return [
        Route("/", overview, methods=["GET"]),
        Route("/jobs/enqueued", queues, methods=["GET"]),
        Route("/jobs/enqueued/{queue}", queue_jobs, methods=["GET"]),
        Route("/jobs/details/{job_id}", job_details, methods=["GET"]),
        Route("/jobs/{slug}", state_jobs, methods=["GET"]),
        Route("/retries", retries, methods=["GET"]),
        Route("/servers", servers, methods=["GET"]),
        Route("/search", search, methods=["GET"]),
        Route("/actions/{action}", action, methods=["POST"]),
    ]


def exception_handlers() -> dict[Any, Any]:
    """Return handlers that show errors as dashboard pages."""
    return {404: not_found, StorageError: storage_error}


# -- rendering ------------------------------------------------------------------------


def render(request: Request, template: str, context: dict[str, Any],
           status: int = 200) -> Response:
    """Render a page with the layout's shared values."""
    config = config_of(request)
    storage = config.app.storage
    shared = {
        "base": base_path(request),
        "title": config.title,
        "read_only": request.state.access.read_only,
        "csrf_token": request.state.csrf_token,
        "poll_interval_ms": int(config.poll_interval * 1000),
        "counts": storage.count_jobs_by_state(),
        "now": storage.now(),
        "flash": _flash(request, storage),
        "state_pages": views.STATE_PAGES,
        "current_path": _current_path(request),
    }
    return config.templates.TemplateResponse(request, template, {**shared, **context},
                                             status_code=status)


def _current_path(request: Request) -> str:
    """Return this page's path inside the dashboard with its query, less any action result."""
    path = request.url.path
    base = base_path(request)
    if base and path.startswith(base):
        path = path[len(base):] or "/"
    query = [(key, value) for key, value in request.query_params.multi_items()
             if key not in RESULT_PARAMS]
    return path + ("?" + urlencode(query) if query else "")


@dataclass
class Flash:
    """The report of an action, shown once after its redirect."""

    message: str
    #: The job a "trigger" created, linked after the message.
    job_id: str | None = None


#: The reason an action leaves an item unchanged, by action.
UNCHANGED_REASONS = {
    "trigger": "not found",
    "pause": "not found or already paused",
    "resume": "not found or not paused",
    "remove": "not found",
}
JOB_UNCHANGED_REASON = "not found, expired, or in a state this action does not apply to"


def _flash(request: Request, storage: Storage) -> Flash | None:
    params = request.query_params
    done = params.get("done", "")
    if done not in ACTIONS and done not in RECURRING_ACTIONS:
        return None
    try:
        changed = int(params.get("changed", "0"))
        unchanged = int(params.get("unchanged", "0"))
    except ValueError:
        return None

    recurring = done in RECURRING_ACTIONS
    noun = "recurring job" if recurring else "job"
    past = RECURRING_ACTIONS[done] if recurring else ACTIONS[done]
    message = f"{changed} {noun}{'s' if changed != 1 else ''} {past}."
    if unchanged:
        reason = UNCHANGED_REASONS.get(done, JOB_UNCHANGED_REASON)
        message += (f" {unchanged} left as {'they were' if unchanged != 1 else 'it was'}: "
                    f"{reason}.")

    # The created job is linked only if it exists, so a forged link cannot
    # put arbitrary text in the report.
    job_id = params.get("job") if done == "trigger" else None
    if job_id and storage.get_job(job_id, history=False) is None:
        job_id = None
    return Flash(message, job_id or None)


@dataclass
class Pager:
    """Page number and size of a list, from the query string."""

    page: int
    size: int
    total: int

    @property
    def offset(self) -> int:
        """Jobs to skip."""
        return (self.page - 1) * self.size

    @property
    def pages(self) -> int:
        """Number of pages, at least one."""
        return max(1, math.ceil(self.total / self.size))

    @property
    def numbers(self) -> list[int | None]:
        """Page numbers to link, with None for a gap."""
        nearby = {1, self.pages, *range(self.page - 2, self.page + 3)}
        visible = sorted(n for n in nearby if 1 <= n <= self.pages)
        numbers: list[int | None] = []
        for number in visible:
            if numbers and number - (numbers[-1] or 0) > 1:
                numbers.append(None)
            numbers.append(number)
        return numbers

    @property
    def sizes(self) -> tuple[int, ...]:
        """Page sizes offered."""
        return views.PAGE_SIZES


def pager(request: Request, total: int) -> Pager:
    """Read ``page`` and ``size`` from the query string, falling back to defaults."""
    size = _int_param(request, "size", views.DEFAULT_PAGE_SIZE)
    if size not in views.PAGE_SIZES:
        size = views.DEFAULT_PAGE_SIZE
    page = max(1, _int_param(request, "page", 1))
    result = Pager(page=page, size=size, total=total)
    result.page = min(page, result.pages)
    return result


def _int_param(request: Request, name: str, default: int) -> int:
    try:
        return int(request.query_params.get(name, default))
    except ValueError:
        return default


# -- pages ----------------------------------------------------------------------------


def overview(request: Request) -> Response:
    """Show counts per state, servers, queues, retries and the throughput graphs."""
    storage = _app(request).storage
    numbers = views.stats(storage)
    now = numbers["now"]
    charts = [views.history_chart(storage, now, days=1), views.history_chart(storage, now, days=7)]
    return render(request, "overview.html", {
        "page": "overview", "stats": numbers, "charts": charts,
        "servers": storage.list_servers(),
        "threshold": _config(request).server_aborted_threshold,
    })


def queues(request: Request) -> Response:
    """Show every queue with its length and first jobs."""
    storage = _app(request).storage
    lengths = storage.queue_lengths()
    served = {queue for server in storage.list_servers() for queue in server.queues}
    now = storage.now()
    items = []
    for name in sorted(set(lengths) | served):
        records = storage.list_jobs(states.ENQUEUED, queue=name, limit=5) \
            if lengths.get(name) else []
        items.append({"name": name, "length": lengths.get(name, 0), "served": name in served,
                      "rows": views.job_rows(storage, records, now)})
    return render(request, "queues.html", {"page": "enqueued", "queues": items})


def queue_jobs(request: Request) -> Response:
    """Show one queue's enqueued jobs, in the order they will run."""
    name = request.path_params["queue"]
    storage = _app(request).storage
    total = storage.queue_lengths().get(name, 0)
    return _job_list(request, states.ENQUEUED, total, queue=name,
                     heading=f"Queue {name}", page="enqueued")


def state_jobs(request: Request) -> Response:
    """Show jobs in one state, newest state change first (scheduled: due first)."""
    slug = request.path_params["slug"]
    state = views.STATE_PAGES.get(slug)
    if state is None:
        raise HTTPException(404, f"no job list named {slug!r}")
    total = _app(request).storage.count_jobs_by_state().get(state, 0)
    return _job_list(request, state, total, heading=f"{state} jobs", page=slug)


def _job_list(request: Request, state: str, total: int, *, heading: str, page: str,
              queue: str | None = None) -> Response:
    storage = _app(request).storage
    paging = pager(request, total)
    records = storage.list_jobs(state, queue=queue, offset=paging.offset, limit=paging.size)
    servers = storage.list_servers() if state == states.PROCESSING else None
    rows = views.job_rows(storage, records, storage.now(), servers,
                          _config(request).server_aborted_threshold)
    return render(request, "jobs.html", {
        "page": page, "heading": heading, "state": state, "queue": queue, "rows": rows,
        "pager": paging, "actions": views.STATE_ACTIONS[state], "action_names": ACTIONS,
    })


def retries(request: Request) -> Response:
    """Show Scheduled jobs that wait for an automatic retry."""
    storage = _app(request).storage
    paging = pager(request, storage.count_retries())
    chosen = storage.list_retries(offset=paging.offset, limit=paging.size)
    rows = views.job_rows(storage, chosen, storage.now())
    return render(request, "jobs.html", {
        "page": "retries", "heading": "Retries", "state": states.SCHEDULED, "queue": None,
        "rows": rows, "pager": paging, "actions": ("enqueue-now", "delete"),
        "action_names": ACTIONS,
    })


def servers(request: Request) -> Response:
    """Show every announced server with its workers, queues and heartbeat."""
    storage = _app(request).storage
    return render(request, "servers.html", {
        "page": "servers", "servers": storage.list_servers(),
        "threshold": _config(request).server_aborted_threshold,
    })


def job_details(request: Request) -> Response:
    """Show one job: call, arguments, state timeline, exception, parent and continuations."""
    job_id = request.path_params["job_id"]
    storage = _app(request).storage
    record = storage.get_job(job_id)
    if record is None:
        return missing_job(request, job_id)

    now = storage.now()
    job = Job.from_record(record)
    arguments = views.arguments_json(job)
    show_all = request.query_params.get("args") == "full"
    parent = storage.get_job(record.parent_id, history=False) if record.parent_id else None
    continuations, more = views.continuations_of(storage, record.id)
    warning = None
    if record.state == states.PROCESSING:
        heartbeats = {server.id: server.heartbeat_at for server in storage.list_servers()}
        warning = views.server_warning(record.server_id, heartbeats, now,
                                       _config(request).server_aborted_threshold)
    return render(request, "job.html", {
        "page": "job", "job": job, "record": record,
        "arguments": arguments if show_all else arguments[:views.DETAIL_ARGS_CHARS],
        "arguments_cut": not show_all and len(arguments) > views.DETAIL_ARGS_CHARS,
        "arguments_size": len(arguments.encode("utf-8", "surrogatepass")), "timeline": views.timeline(record, now),
        "parent": parent, "continuations": views.job_rows(storage, continuations, now),
        "continuations_cut": more, "continuations_shown": views.CONTINUATIONS_SHOWN,
        "server_warning": warning,
        "actions": views.STATE_ACTIONS[record.state], "action_names": ACTIONS,
    })


def missing_job(request: Request, job_id: str) -> Response:
    """Explain that a job does not exist or has expired, with status 404."""
    retention = _app(request).job_retention
    return render(request, "missing.html", {
        "page": "missing", "job_id": job_id, "retention": views.format_duration(retention),
    }, status=404)


def search(request: Request) -> Response:
    """Open the job with the id in ``q``, or explain that it does not exist."""
    job_id = request.query_params.get("q", "").strip()
    if not job_id:
        return RedirectResponse(base_path(request) + "/", status_code=303)
    if _app(request).storage.get_job(job_id, history=False) is None:
        return missing_job(request, job_id)
    return RedirectResponse(f"{base_path(request)}/jobs/details/{_quote(job_id)}",
                            status_code=303)


# -- actions --------------------------------------------------------------------------


def action(request: Request) -> Response:
    """Apply a form action to the selected jobs, then go back with a report of what changed."""
    name = request.path_params["action"]
    if name not in ACTIONS:
        raise HTTPException(404, f"no action named {name!r}")
    form: dict[str, list[str]] = request.state.form
    try:
        ids = clean_ids(form.get("ids", []))
    except (TypeError, ValueError) as exc:
        return PlainTextResponse(f"422: {exc}\n", status_code=422)
    if not ids:
        return PlainTextResponse("422: no jobs selected; select at least one job\n",
                                 status_code=422)

    result = run_action(_app(request), name, ids)
    return redirect_with_report(request, safe_next((form.get("next") or ["/"])[0]),
                                {"done": name, "changed": len(result.changed),
                                 "unchanged": len(result.unchanged)})


def redirect_with_report(request: Request, target: str, report: dict[str, Any]) -> Response:
    """Redirect to ``target`` (a safe path inside the dashboard) with an action's report."""
    separator = "&" if "?" in target else "?"
    return RedirectResponse(f"{base_path(request)}{target}{separator}{urlencode(report)}",
                            status_code=303)


def safe_next(target: str) -> str:
    """Return ``target`` if it is a path inside the dashboard, else ``/``."""
    if not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if any(ord(char) < 0x20 or char == "\\" for char in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    query = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True)
             if key not in RESULT_PARAMS]
    return parts.path + ("?" + urlencode(query) if query else "")


# -- errors ---------------------------------------------------------------------------


async def not_found(request: Request, exc: Exception) -> Response:
    """Show a 404 page (plain text for static files and the API)."""
    detail = getattr(exc, "detail", "not found")
    relative = request.url.path[len(base_path(request)):]
    outside_pages = relative.startswith(("/static/", "/api/", "/metrics"))
    if outside_pages or getattr(request.state, "access", None) is None:
        return PlainTextResponse(f"404: {detail}\n", status_code=404)
    return await run_in_threadpool(
        render, request, "error.html", {"page": "error", "status": 404, "message": detail},
        404)


async def storage_error(request: Request, exc: Exception) -> Response:
    """Return a 503 response when the storage cannot be reached."""
    logger.error("dashboard request %s failed: %s", request.url.path, exc)
    return PlainTextResponse(f"503: the job storage is unavailable ({exc}); try again shortly\n",
                             status_code=503)


def _app(request: Request) -> Backburner:
    return config_of(request).app


def _config(request: Request) -> DashboardConfig:
    return config_of(request)


def _quote(value: str) -> str:
    return quote(value, safe="")
