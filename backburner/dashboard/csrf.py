"""CSRF protection: an origin check plus a signed double-submit token.

A state-changing request passes only if

1. it is not cross-origin. ``Sec-Fetch-Site`` (sent by current browsers) must
   be ``same-origin`` or ``none``. ``Origin``, when present, must name the
   host the request was sent to or an origin the application allowed; without
   ``Origin``, a ``Referer`` must do the same.
2. it carries the token from the ``backburner_csrf`` cookie again, in the
   ``csrf_token`` form field or the ``X-CSRF-Token`` header. Another site can
   make the browser send the cookie but cannot read it, so it cannot copy it.

No state is kept on the server, so any number of dashboard processes behind a
load balancer accept each other's tokens. With a ``secret`` (the same in every
process), a token is a random nonce plus its HMAC-SHA256, so a cookie planted
by a sibling subdomain without the secret is rejected as well.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.requests import Request

COOKIE_NAME = "backburner_csrf"
FORM_FIELD = "csrf_token"
HEADER_NAME = "x-csrf-token"


class CsrfTokens:
    """Issues and checks tokens; ``secret`` signs them when given."""

    def __init__(self, secret: str | bytes | None = None) -> None:
        if isinstance(secret, str):
            secret = secret.encode()
        self._key = secret

    def issue(self) -> str:
        """Return a new token."""
        nonce = secrets.token_urlsafe(24)
        return f"{nonce}.{self._signature(nonce)}"

    def is_valid(self, token: str | None) -> bool:
        """Tell whether ``token`` was issued by a process with the same secret."""
        if not token or len(token) > 200:
            return False
        nonce, separator, signature = token.partition(".")
        if not separator or not nonce:
            return False
        return hmac.compare_digest(signature, self._signature(nonce))

    def matches(self, cookie: str | None, submitted: str | None) -> bool:
        """Tell whether the submitted token is the cookie's, and valid."""
        if not cookie or not submitted:
            return False
        return hmac.compare_digest(cookie, submitted) and self.is_valid(cookie)

    def _signature(self, nonce: str) -> str:
        if self._key is None:
            return ""
        return hmac.new(self._key, nonce.encode(), hashlib.sha256).hexdigest()


def cross_origin_reason(request: Request, allowed_origins: Iterable[str] = ()) -> str | None:
    """Return why the request looks cross-origin, or None when it is same-origin."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return f"cross-site request (Sec-Fetch-Site: {fetch_site})"

    host = request.headers.get("host", "").lower()
    origin = request.headers.get("origin")
    if origin is not None:
        parts = urlsplit(origin)
        if origin in allowed_origins:
            return None
        if origin == "null" or not parts.netloc or parts.netloc.lower() != host:
            return "the Origin header does not match this dashboard's host"
        return None

    # Without Origin (older browsers, some form posts), the Referer names the
    # page the request came from, when the browser sends it.
    referer = request.headers.get("referer")
    if referer is None:
        return None
    parts = urlsplit(referer)
    if f"{parts.scheme}://{parts.netloc}" in allowed_origins:
        return None
    if parts.netloc.lower() != host:
        return "the Referer header does not match this dashboard's host"
    return None
