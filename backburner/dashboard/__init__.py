"""The web dashboard: an ASGI application that shows and manages jobs.

Build it with ``app.dashboard(...)`` or ``create_dashboard(app, ...)`` and
serve or mount it anywhere; ``backburner dashboard`` serves it with uvicorn.
It needs the ``starlette``, ``jinja2`` and (to serve) ``uvicorn`` packages.
"""

from backburner.dashboard.app import create_dashboard
from backburner.dashboard.security import (
                                           Access,
                                           AuthorizationHook,
                                           allow_all,
                                           basic_auth,
                                           local_requests_only,
                                           read_only,
)

__all__ = ["Access", "AuthorizationHook", "allow_all", "basic_auth", "create_dashboard",
           "local_requests_only", "read_only"]
