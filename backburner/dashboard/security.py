"""Authorisation hooks for the dashboard: who may see it and who may change jobs.

A hook is a callable (plain or async) that takes the Starlette ``Request`` and
returns an ``Access``, ``True`` (full access) or ``False`` (denied). Every
hook runs on every request, static files and the JSON API included. A request
passes only if every hook allows it, and it is read-only if any hook returns read-only access.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import inspect
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.requests import Request

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Access:
    """A hook's decision: allowed or not, read-only or not, and how to reject.

    ``status`` and ``headers`` shape the rejection (for example 401 with a
    ``WWW-Authenticate`` challenge); they are ignored when access is allowed.
    """

    allowed: bool
    read_only: bool = False
    status: int = 403
    headers: Mapping[str, str] = field(default_factory=dict)
    reason: str = "access to this dashboard is not allowed"


FULL_ACCESS = Access(True)
READ_ONLY_ACCESS = Access(True, read_only=True)

HookResult = Access | bool
AuthorizationHook = Callable[[Request], HookResult | Awaitable[HookResult]]


async def authorize(request: Request, hooks: Sequence[AuthorizationHook]) -> Access:
    """Run every hook in order and combine them: the first denial wins, read-only sticks."""
    read_only = False
    for hook in hooks:
        result = hook(request)
        if inspect.isawaitable(result):
            result = await result
        access = _as_access(result)
        if not access.allowed:
            return access
        read_only = read_only or access.read_only
    return READ_ONLY_ACCESS if read_only else FULL_ACCESS


def _as_access(result: object) -> Access:
    if isinstance(result, Access):
        return result
    if result is True:
        return FULL_ACCESS
    return Access(False)


# -- local requests ---------------------------------------------------------------


def local_requests_only(trusted_proxies: Iterable[str] = (),
                        allowed_hosts: Iterable[str] = ()) -> AuthorizationHook:
    """Return a hook that allows only requests from this machine.

    The client is the ASGI ``client`` address (the TCP peer). ``X-Forwarded-For``
    is read only when that peer is one of ``trusted_proxies`` (addresses or
    networks such as ``"10.0.0.0/8"``): the client is then the rightmost
    address in the header that is not a trusted proxy. An unknown client is
    rejected.

    The Host header must name this machine too: ``localhost``, a loopback
    address, the server's own address, or one of ``allowed_hosts`` (host
    names without port). Otherwise a web page could point its own host name
    at 127.0.0.1 (DNS rebinding) and read or drive the dashboard from the
    user's browser.
    """
    networks = [ipaddress.ip_network(item, strict=False) for item in trusted_proxies]
    hosts = frozenset(host.lower() for host in allowed_hosts)

    def local_only(request: Request) -> Access:
        client = client_address(request, networks)
        if client is None or not is_local(client, request):
            logger.info("dashboard request from %s rejected: only local requests are allowed",
                        client or "an unknown client")
            return Access(False,
                          reason="only requests from this machine may open this dashboard")
        host = host_name(request)
        if host not in hosts and not _names_this_machine(host, request):
            logger.info("dashboard request for host %r rejected: not a name of this machine",
                        host)
            return Access(False, reason=(
                f"the dashboard was opened as {host!r}, which is not a name of this machine; "
                "open it as localhost or 127.0.0.1, or list the name in "
                "local_requests_only(allowed_hosts=...)"))
        return FULL_ACCESS

    return local_only


def host_name(request: Request) -> str:
    """Return the host name of the Host header, lowercase, without port or brackets."""
    try:
        return urlsplit("//" + request.headers.get("host", "")).hostname or ""
    except ValueError:
        return ""


def _names_this_machine(host: str, request: Request) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    address = _parse_ip(host)
    return address is not None and is_local(address, request)


def client_address(request: Request, trusted: Sequence[IPNetwork] = ()) -> IPAddress | None:
    """Return the client's IP address, looking through trusted proxies only."""
    peer = _parse_ip(request.client.host if request.client else None)
    if peer is None or not _in_networks(peer, trusted):
        return peer

    forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
    hops = [_parse_ip(item.strip()) for item in forwarded.split(",") if item.strip()]
    for hop in reversed(hops):
        if hop is None:
            return None
        if not _in_networks(hop, trusted):
            return hop
    return peer


def is_local(address: IPAddress, request: Request) -> bool:
    """Tell whether ``address`` is loopback or this server's own address for the connection."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return True
    server = request.scope.get("server")
    own = _parse_ip(server[0]) if server else None
    return own is not None and own == address


def _parse_ip(text: str | None) -> IPAddress | None:
    if not text:
        return None
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def _in_networks(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


# -- basic auth and roles ---------------------------------------------------------


def basic_auth(users: Mapping[str, str], *, read_only_users: Mapping[str, str] | None = None,
               realm: str = "backburner") -> AuthorizationHook:
    """Return a hook that requires HTTP basic auth with one of a fixed set of users.

    Users in ``read_only_users`` may look but not act. Names and passwords are
    compared in constant time, and every user is checked so that the time taken
    does not reveal which names exist. Use it over HTTPS only: basic auth sends
    the password with every request.
    """
    accounts = [(name, password, False) for name, password in users.items()]
    accounts += [(name, password, True) for name, password in (read_only_users or {}).items()]
    if not accounts:
        raise ValueError("basic_auth needs at least one user")
    challenge = {"WWW-Authenticate": f'Basic realm="{realm}", charset="UTF-8"'}
    denied = Access(False, status=401, headers=challenge, reason="authentication required")

    def check_basic_auth(request: Request) -> Access:
        credentials = _basic_credentials(request.headers.get("authorization", ""))
        if credentials is None:
            return denied
        name, password = credentials
        match: bool | None = None
        for account_name, account_password, read_only in accounts:
            same_name = hmac.compare_digest(account_name.encode(), name.encode())
            same_password = hmac.compare_digest(account_password.encode(), password.encode())
            if same_name and same_password and match is None:
                match = read_only
        if match is None:
            return denied
        return READ_ONLY_ACCESS if match else FULL_ACCESS

    return check_basic_auth


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, separator, password = decoded.partition(":")
    return (name, password) if separator else None


def read_only(request: Request) -> Access:
    """A hook that allows every request but only to look; add it after a hook that authenticates."""
    return READ_ONLY_ACCESS


def allow_all(request: Request) -> Access:
    """A hook that allows every request; only for dashboards behind your own authentication."""
    return FULL_ACCESS
