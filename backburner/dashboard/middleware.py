"""The ASGI middleware in front of every dashboard route, static files included.

It runs the authorisation hooks, rejects state-changing requests that are
read-only, cross-origin or lack the CSRF token, and adds the security headers
(a Content-Security-Policy that allows no inline script) to every response.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backburner.dashboard.csrf import (
    COOKIE_NAME,
    FORM_FIELD,
    HEADER_NAME,
    CsrfTokens,
    cross_origin_reason,
)
from backburner.dashboard.security import READ_ONLY_ACCESS, Access, AuthorizationHook, authorize

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Largest request body a state-changing request may have, in bytes.
MAX_BODY_BYTES = 1024 * 1024

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")

SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class Rejected(Exception):
    """A rejection that the middleware sends itself, with ``status`` and ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class DashboardMiddleware:
    """Authorisation, CSRF checks and security headers around the dashboard app."""

    def __init__(self, app: ASGIApp, *, hooks: Sequence[AuthorizationHook], read_only: bool,
                 tokens: CsrfTokens, allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.hooks = list(hooks)
        self.read_only = read_only
        self.tokens = tokens
        self.allowed_origins = frozenset(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
            return

        request = Request(scope, receive)
        access = await authorize(request, self.hooks)
        if not access.allowed:
            await self._reject(scope, receive, send, access.status, access.reason,
                               dict(access.headers))
            return
        if self.read_only:
            access = READ_ONLY_ACCESS

        cookie = request.cookies.get(COOKIE_NAME)
        new_token = None if self.tokens.is_valid(cookie) else self.tokens.issue()
        state = scope.setdefault("state", {})
        state["access"] = access
        state["csrf_token"] = new_token or cookie

        if request.method not in SAFE_METHODS:
            try:
                receive = await self._check_change(request, access, cookie, state)
            except Rejected as exc:
                logger.warning("dashboard %s %s rejected: %s", request.method,
                               request.url.path, exc.message)
                await self._reject(scope, receive, send, exc.status, exc.message, {})
                return

        await self.app(scope, receive, self._with_headers(scope, send, new_token))

    async def _check_change(self, request: Request, access: Access, cookie: str | None,
                            state: dict[str, object]) -> Receive:
        """Reject a state-changing request unless it may change state; return a replaying receive."""
        if access.read_only:
            raise Rejected(403, "this dashboard is read-only for you")
        reason = cross_origin_reason(request, self.allowed_origins)
        if reason is not None:
            raise Rejected(403, f"cross-origin request rejected: {reason}")

        body = await _read_body(request)
        form = _parse_form(request, body)
        state["form"] = form
        submitted = request.headers.get(HEADER_NAME)
        if submitted is None and form.get(FORM_FIELD):
            submitted = form[FORM_FIELD][0]
        if not self.tokens.matches(cookie, submitted):
            raise Rejected(403, "missing or invalid CSRF token; reload the page and try again")
        return _replay(body)

    def _with_headers(self, scope: Scope, send: Send, new_token: str | None) -> Send:
        cookie_header = None
        if new_token is not None:
            cookie_header = _cookie(scope, new_token).encode("latin-1")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += SECURITY_HEADERS
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                if cookie_header is not None:
                    headers.append((b"set-cookie", cookie_header))
                message = {**message, "headers": headers}
            await send(message)

        return send_with_headers

    async def _reject(self, scope: Scope, receive: Receive, send: Send, status: int,
                      message: str, headers: dict[str, str]) -> None:
        response = PlainTextResponse(f"{status}: {message}\n", status_code=status,
                                     headers=headers)
        await response(scope, receive, self._with_headers(scope, send, None))


async def _read_body(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise Rejected(413, f"request body over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_form(request: Request, body: bytes) -> dict[str, list[str]]:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(400, "form data is not valid UTF-8") from None
    try:
        return parse_qs(text, keep_blank_values=True, max_num_fields=10_000)
    except ValueError:
        raise Rejected(400, "form data has more than 10000 fields") from None


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _cookie(scope: Scope, token: str) -> str:
    path = (scope.get("root_path") or "").rstrip("/") + "/"
    secure = "; Secure" if scope.get("scheme") == "https" else ""
    return f"{COOKIE_NAME}={token}; Path={path}; HttpOnly; SameSite=Strict{secure}"
