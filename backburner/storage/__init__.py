"""Storage backends behind one contract (``Storage``), chosen by URL scheme."""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

from backburner.errors import ConfigurationError
from backburner.storage.base import Storage

__all__ = ["Storage", "open_storage"]

DEFAULT_STORAGE_URL = "sqlite:///backburner.db"


def open_storage(url: str) -> Storage:
    """Open the storage named by ``url``.

    ``sqlite:///relative.db`` and ``sqlite:////absolute/path.db`` open a SQLite
    file; query options: ``busy_timeout_ms`` and ``synchronous`` (``full``,
    the default, survives power loss; ``normal`` is faster and survives
    process crashes only). ``postgresql://`` opens PostgreSQL (see
    ``PostgresStorage.from_url``), and ``redis://``, ``rediss://`` and
    ``unix://`` open Redis (see ``open_redis``).
    """
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        return _open_sqlite(url)
    if scheme in ("postgres", "postgresql"):
        try:
            from backburner.storage.postgres import PostgresStorage
        except ImportError as exc:
            if (exc.name or "").startswith("backburner"):
                raise
            raise ConfigurationError(
                f"storage URL scheme {scheme!r} needs psycopg 3 and psycopg-pool, which could "
                f"not be imported ({exc}); install them with: pip install 'backburner[postgres]'"
            ) from None
        return PostgresStorage.from_url(url)
    if scheme in ("redis", "rediss", "unix"):
        from backburner.storage.redis import open_redis

        return open_redis(url)
    raise ConfigurationError(
        f"invalid storage URL {_redact(url)!r}: expected sqlite:///path/to/file.db, "
        "postgresql://user@host/database or redis://host:6379/0")


def _open_sqlite(url: str) -> Storage:
    from backburner.storage.sqlite import SQLiteStorage

    parts = urlsplit(url)
    if parts.netloc or not url.lower().startswith("sqlite:///"):
        raise ConfigurationError(
            f"invalid SQLite URL {url!r}: use three slashes for a relative path "
            "(sqlite:///jobs.db) or four for an absolute one (sqlite:////var/lib/jobs.db)")
    path = unquote(parts.path[1:])
    options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    unknown = set(options) - {"busy_timeout_ms", "synchronous"}
    if unknown:
        raise ConfigurationError(
            f"unknown SQLite URL option(s) {sorted(unknown)} in {url!r}; "
            "supported: busy_timeout_ms, synchronous")
    try:
        busy_timeout_ms = int(options.get("busy_timeout_ms", 10_000))
    except ValueError:
        raise ConfigurationError(
            f"invalid busy_timeout_ms {options['busy_timeout_ms']!r} in {url!r}: "
            "use a whole number of milliseconds") from None
    return SQLiteStorage(path, busy_timeout_ms=busy_timeout_ms,
                         synchronous=options.get("synchronous", "full"))


def _redact(url: str) -> str:
    """Return ``url`` with any password replaced, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()
