"""Dashboard settings shared by every route, and helpers to reach them from a request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.templating import Jinja2Templates

if TYPE_CHECKING:
    from backburner.app import Backburner


@dataclass(frozen=True)
class DashboardConfig:
    """Settings shared by every route, stored on ``app.state.dashboard``."""

    app: Backburner
    templates: Jinja2Templates
    title: str
    #: How often pages refresh live numbers, in seconds.
    poll_interval: float
    #: A server whose last heartbeat is older than this may have died, in seconds.
    server_aborted_threshold: float


def config_of(request: Request) -> DashboardConfig:
    """Return the dashboard settings for this request."""
    config: DashboardConfig = request.app.state.dashboard
    return config


def base_path(request: Request) -> str:
    """Return the path the dashboard is mounted at, without a trailing slash."""
    return str(request.scope.get("root_path") or "").rstrip("/")
