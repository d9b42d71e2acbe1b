"""Build the dashboard's Starlette application."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import jinja2
import markupsafe
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from backburner.dashboard import api, pages, recurring_pages
from backburner.dashboard.config import DashboardConfig
from backburner.dashboard.csrf import CsrfTokens
from backburner.dashboard.middleware import DashboardMiddleware
from backburner.dashboard.security import AuthorizationHook, local_requests_only
from backburner.dashboard.views import (
    SERVER_ABORTED_THRESHOLD,
    format_duration,
    format_relative,
    format_time,
    iso_time,
)

if TYPE_CHECKING:
    from backburner.app import Backburner

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent


def create_dashboard(app: Backburner, *,
                     authorization: AuthorizationHook | Sequence[AuthorizationHook] | None = None,
                     read_only: bool = False, secret: str | bytes | None = None,
                     allowed_origins: Iterable[str] = (), title: str = "backburner",
                     poll_interval: float = 2.0,
                     server_aborted_threshold: float = SERVER_ABORTED_THRESHOLD) -> Starlette:
    """Return the dashboard of ``app`` as an ASGI application to serve or mount anywhere.

    ``authorization`` is one hook or a list of hooks (see
    ``backburner.dashboard.security``). The default allows only local requests;
    passing hooks replaces that default, so add ``local_requests_only()`` to the
    list to keep it. ``read_only`` hides actions and rejects them for everyone.
    ``secret`` signs CSRF tokens: give every process behind one load balancer
    the same value. ``allowed_origins`` lists extra origins (such as
    ``"https://ops.example.com"``) whose POSTs are accepted. ``poll_interval``
    is how often the pages refresh live numbers, in seconds.
    """
    hooks = _hooks(authorization)
    config = DashboardConfig(app=app, templates=_templates(), title=title,
                             poll_interval=poll_interval,
                             server_aborted_threshold=server_aborted_threshold)
    middleware = [Middleware(DashboardMiddleware, hooks=hooks, read_only=read_only,
                             tokens=CsrfTokens(secret), allowed_origins=allowed_origins)]
    routes = [
        *pages.routes(),
        *recurring_pages.routes(),
        Mount("/api", routes=api.routes()),
        Route("/metrics", api.metrics, methods=["GET"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    dashboard = Starlette(routes=routes, middleware=middleware,
                          exception_handlers=pages.exception_handlers())
    dashboard.state.dashboard = config
    return dashboard


def _hooks(authorization: AuthorizationHook | Sequence[AuthorizationHook] | None,
           ) -> list[AuthorizationHook]:
    if authorization is None:
        return [local_requests_only()]
    if callable(authorization):
        return [authorization]
    hooks = list(authorization)
    if not hooks or not all(callable(hook) for hook in hooks):
        raise ValueError("authorization must be a hook or a non-empty list of hooks; "
                         "pass allow_all to open the dashboard to everyone")
    return hooks


def _templates() -> Jinja2Templates:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        finalize=_encodable)
    environment.filters.update(
        time=format_time, iso=iso_time, duration=format_duration, segment=_segment,
        query=_query)
    environment.globals.update(relative=format_relative)
    return Jinja2Templates(env=environment)


def _encodable(value: Any) -> Any:
    """Escape lone surrogates in text printed by a template, which UTF-8 cannot encode."""
    if isinstance(value, str) and not isinstance(value, markupsafe.Markup):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _segment(value: Any) -> str:
    """Quote a value for one URL path segment (slashes included)."""
    return quote(str(value), safe="", errors="backslashreplace")


def _query(params: dict[str, Any]) -> str:
    """Encode query parameters, leaving out empty ones."""
    return urlencode({key: value for key, value in params.items() if value not in (None, "")},
                     errors="backslashreplace")
