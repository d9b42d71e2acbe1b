"""Serve an ASGI application with uvicorn on a background thread of the running program.

``backburner demo`` uses it to show the dashboard while its jobs run. The
listening socket is bound before the thread starts, so the port is known (and
a taken port detected) up front.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType
from typing import Any, Self

logger = logging.getLogger(__name__)

#: Seconds to wait for uvicorn to start, and for it to stop after it is asked to.
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
#: Seconds open connections get to finish when the server stops.
GRACEFUL_SHUTDOWN = 2


class BackgroundServer:
    """An ASGI application served by uvicorn on a daemon thread, on one TCP port.

    With ``fallback=True``, a port that cannot be bound (in use, or not
    permitted) is replaced by a free one that the system chooses. ``port=0``
    always picks a free one. Use it as a context manager, or call ``start``
    and ``stop``.
    """

    def __init__(self, asgi_app: Any, *, host: str = "127.0.0.1", port: int = 8000,
                 fallback: bool = True) -> None:
        self.asgi_app = asgi_app
        self.host = host
        self.requested_port = port
        self.fallback = fallback
        #: Why the requested port was not used, or None when it was.
        self.fallback_reason: str | None = None
        self._socket: socket.socket | None = None
        self._port: int | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port bound by ``start``."""
        if self._port is None:
            raise RuntimeError("the server was not started")
        return self._port

    @property
    def url(self) -> str:
        """The server's base URL, with a trailing slash."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        """Bind the port, start uvicorn and wait until it accepts connections.

        Raises OSError when no port can be bound and RuntimeError when uvicorn
        does not start within START_TIMEOUT seconds.
        """
        import uvicorn

        self._socket = self._bind()
        self._port = self._socket.getsockname()[1]
        # log_config=None leaves the program's logging setup alone. The client
        # address is the TCP peer (proxy_headers=False), as the dashboard's
        # local-only default expects.
        config = uvicorn.Config(self.asgi_app, log_config=None, log_level="warning",
                                access_log=False, lifespan="off", proxy_headers=False,
                                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, args=([self._socket],),
                                        name=f"uvicorn-{self.port}", daemon=True)
        self._thread.start()

        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"uvicorn did not start on {self.host} within "
                                   f"{START_TIMEOUT:.0f} s")
            time.sleep(0.02)
        logger.info("serving %s", self.url)

    def _bind(self) -> socket.socket:
        try:
            return _listening_socket(self.host, self.requested_port)
        except OSError as exc:
            if not self.fallback or self.requested_port == 0:
                raise
            self.fallback_reason = exc.strerror or str(exc)
        return _listening_socket(self.host, 0)

    def stop(self) -> None:
        """Ask uvicorn to stop, wait up to STOP_TIMEOUT seconds, and close the socket."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT)
            if self._thread.is_alive():
                logger.warning("uvicorn on %s did not stop within %.0f s; leaving its daemon "
                               "thread behind", self.host, STOP_TIMEOUT)
                self._server.force_exit = True
        if self._socket is not None:
            self._socket.close()
        self._socket = None
        self._thread = None
        self._server = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # SO_REUSEADDR lets a restarted program take a port still in TIME_WAIT;
        # on Linux it does not let two listeners share a port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock
