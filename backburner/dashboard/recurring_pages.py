"""The recurring jobs pages and the form actions behind their buttons.

A recurring job id may hold any printable character, slashes included, so
pages name it in the ``id`` query parameter rather than in the path.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from backburner.dashboard import recurring_views, views
from backburner.dashboard.actions import RECURRING_ACTIONS, clean_ids, run_recurring_action
from backburner.dashboard.config import config_of
from backburner.dashboard.pages import pager, redirect_with_report, render, safe_next


def routes() -> list[Route]:
    """Return the recurring job pages and their form-action route."""
    return [
        Route("/recurring", recurring_list, methods=["GET"]),
        Route("/recurring/details", recurring_details, methods=["GET"]),
        Route("/actions/recurring/{action}", recurring_action, methods=["POST"]),
    ]


def recurring_list(request: Request) -> Response:
    """Show every recurring job, ordered by id, with its schedule, runs and status."""
    storage = config_of(request).app.storage
    records = views.recurring_records(storage)
    paging = pager(request, len(records))
    chosen = records[paging.offset:paging.offset + paging.size]
    return render(request, "recurring.html", {
        "page": "recurring", "rows": recurring_views.recurring_rows(storage, chosen),
        "pager": paging, "recurring_counts": views.recurring_counts(records),
        "action_names": RECURRING_ACTIONS,
    })


def recurring_details(request: Request) -> Response:
    """Show one recurring job with the next occurrences, or a 404 page if it does not exist."""
    recurring_id = request.query_params.get("id", "")
    storage = config_of(request).app.storage
    record = storage.get_recurring(recurring_id) if recurring_id else None
    if record is None:
        return render(request, "recurring_missing.html",
                      {"page": "recurring", "recurring_id": recurring_id}, status=404)

    row = recurring_views.recurring_rows(storage, [record])[0]
    occurrences, preview_error = recurring_views.preview(row, storage.now())
    return render(request, "recurring_job.html", {
        "page": "recurring", "row": row, "occurrences": occurrences,
        "preview_error": preview_error, "action_names": RECURRING_ACTIONS,
    })


def recurring_action(request: Request) -> Response:
    """Apply a form action to the selected recurring jobs, then go back with a report."""
    name = request.path_params["action"]
    if name not in RECURRING_ACTIONS:
        raise HTTPException(404, f"no recurring job action named {name!r}")
    form: dict[str, list[str]] = request.state.form
    try:
        ids = clean_ids(form.get("ids", []), strip=False)
    except (TypeError, ValueError) as exc:
        return PlainTextResponse(f"422: {exc}\n", status_code=422)
    if not ids:
        return PlainTextResponse("422: no recurring jobs selected; select at least one\n",
                                 status_code=422)

    result = run_recurring_action(config_of(request).app, name, ids)
    target = safe_next((form.get("next") or ["/recurring"])[0])
    if name == "remove" and urlsplit(target).path == "/recurring/details":
        target = "/recurring"  # the page of a removed recurring job would be a 404
    report: dict[str, object] = {"done": name, "changed": len(result.changed),
                                 "unchanged": len(result.unchanged)}
    if len(result.created) == 1:
        report["job"] = next(iter(result.created.values()))
    return redirect_with_report(request, target, report)
